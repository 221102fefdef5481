//! int8 -> int8 through a 256-entry table (input 1, indexed by the input byte): how int8
//! logistic, tanh and other element-wise functions run, as in TFLite. No parameter words.

use super::{Ctx, View};
use crate::cast::{bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::{DType, Storage};
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::Lut`] (none: the table is input 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LutParams;

super::no_params!(LutParams);

pub(super) fn validate(c: &Ctx, _p: &LutParams) -> Result<()> {
    c.arity(2, 2, 1)?;
    let (x, t, y) = (c.input(0)?, c.input(1)?, c.output(0));
    c.q8(&x)?;
    c.q8(&y)?;
    c.check(
        t.dtype == DType::I8 && t.len() == 256 && t.storage == Storage::Constant,
        "lookup table must be a constant int8 [256]",
    )?;
    c.check(x.shape() == y.shape(), "lookup keeps the shape")
}

pub(super) fn run(v: &View, _p: &LutParams, out: &mut [u8], _yt: &TensorInfo) -> Result<()> {
    let x = bytes_as_i8(v.bytes(&v.info(0)?)?);
    let table = bytes_as_i8(v.bytes(&v.info(1)?)?);
    for (o, &q) in bytes_as_i8_mut(out).iter_mut().zip(x) {
        *o = table[q as u8 as usize];
    }
    Ok(())
}
