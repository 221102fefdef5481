//! Axis permutation, f32 or int8 (the quantization is kept).
//!
//! Words: 0-5 the permutation (`y.dims[d] = x.dims[perm[d]]`); words past the rank are 0.

use core::fmt;

use super::{Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut, bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::{DType, MAX_RANK};
use crate::kernels::reference_f32 as kf;
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::Transpose`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransposeParams {
    /// The permutation; entries past the rank are 0.
    pub perm: [usize; MAX_RANK],
}

impl TransposeParams {
    /// The permutation `perm` (at most [`MAX_RANK`] axes).
    pub fn new(perm: &[usize]) -> Self {
        let mut p = [0; MAX_RANK];
        p[..perm.len()].copy_from_slice(perm);
        TransposeParams { perm: p }
    }
}

impl OpDef for TransposeParams {
    fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        let mut perm = [0; MAX_RANK];
        for (d, p) in perm.iter_mut().enumerate() {
            *p = usize::try_from(w[d]).map_err(|_| "not a permutation")?;
        }
        Ok(TransposeParams { perm })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        for (d, &p) in self.perm.iter().enumerate() {
            w[d] = p as i32;
        }
        w
    }
    fn describe(&self, s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        write!(f, "perm {:?}", &self.perm[..s.y.len().min(MAX_RANK)])
    }
}

pub(super) fn validate(c: &Ctx, p: &TransposeParams) -> Result<()> {
    c.arity(1, 1, 1)?;
    c.same_type_move()?;
    let (x, y) = (c.input(0)?, c.output(0));
    c.check(x.rank == y.rank, "transpose keeps the rank")?;
    let mut seen = 0u32;
    for d in 0..x.rank {
        let a = p.perm[d];
        c.check(a < x.rank && seen & (1 << a) == 0, "not a permutation")?;
        seen |= 1 << a;
        c.check(
            y.dims[d] == x.dims[a],
            "output shape does not match the permutation",
        )?;
    }
    Ok(())
}

pub(super) fn run(v: &View, p: &TransposeParams, out: &mut [u8], _yt: &TensorInfo) -> Result<()> {
    let xt = v.info(0)?;
    let perm = &p.perm[..xt.rank];
    let xb = v.bytes(&xt)?;
    if xt.dtype == DType::I8 {
        kf::transpose(bytes_as_i8(xb), xt.shape(), perm, bytes_as_i8_mut(out));
    } else {
        kf::transpose(bytes_as_f32(xb), xt.shape(), perm, bytes_as_f32_mut(out));
    }
    Ok(())
}
