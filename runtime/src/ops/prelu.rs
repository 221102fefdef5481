//! Parametric ReLU: `y = x` where `x >= 0`, else `alpha * x`, with `alpha` (input 1, a constant)
//! broadcast to `x` (numpy rules; one slope per channel is `[C]` against NHWC). f32. No parameter
//! words.

use super::{broadcast_ok, no_kernel, Ctx, View};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut};
use crate::error::Result;
use crate::format::{DType, Storage};
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::Prelu`] (none: the slopes are input 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PreluParams;

super::no_params!(PreluParams);

pub(super) fn validate(c: &Ctx, _p: &PreluParams) -> Result<()> {
    c.arity(2, 2, 1)?;
    c.all_f32()?;
    let (x, alpha, y) = (c.input(0)?, c.input(1)?, c.output(0));
    c.check(
        alpha.storage == Storage::Constant,
        "prelu slopes must be a constant",
    )?;
    c.check(x.shape() == y.shape(), "prelu keeps the shape")?;
    c.check(
        broadcast_ok(x.shape(), alpha.shape(), y.shape()),
        "prelu slopes do not broadcast to the input",
    )
}

pub(super) fn run(v: &View, _p: &PreluParams, out: &mut [u8], _yt: &TensorInfo) -> Result<()> {
    let (xt, at) = (v.info(0)?, v.info(1)?);
    if xt.dtype != DType::F32 || !cfg!(feature = "float") {
        return no_kernel(v);
    }
    let (x, alpha) = (bytes_as_f32(v.bytes(&xt)?), bytes_as_f32(v.bytes(&at)?));
    crate::kernels::reference_f32::prelu(x, xt.shape(), alpha, at.shape(), bytes_as_f32_mut(out));
    Ok(())
}
