//! Strided slice, f32 or int8 (the quantization is kept).
//!
//! Words: 0-5 begin per axis, 6-11 step per axis (non-zero; negative walks backwards). The
//! output shape gives the count per axis.

use core::fmt;

use super::{Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut, bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::{DType, MAX_RANK};
use crate::kernels::reference_f32 as kf;
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::Slice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceParams {
    /// First index read per axis.
    pub begin: [i32; MAX_RANK],
    /// Step per axis.
    pub step: [i32; MAX_RANK],
}

impl Default for SliceParams {
    /// Everything from index 0 with step 1.
    fn default() -> Self {
        SliceParams {
            begin: [0; MAX_RANK],
            step: [1; MAX_RANK],
        }
    }
}

impl OpDef for SliceParams {
    fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        let mut p = SliceParams::default();
        p.begin.copy_from_slice(&w[..MAX_RANK]);
        p.step.copy_from_slice(&w[MAX_RANK..2 * MAX_RANK]);
        Ok(p)
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[..MAX_RANK].copy_from_slice(&self.begin);
        w[MAX_RANK..2 * MAX_RANK].copy_from_slice(&self.step);
        w
    }
    fn describe(&self, s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        let r = s.y.len().min(MAX_RANK);
        write!(f, "begin {:?} step {:?}", &self.begin[..r], &self.step[..r])
    }
}

pub(super) fn validate(c: &Ctx, p: &SliceParams) -> Result<()> {
    c.arity(1, 1, 1)?;
    c.same_type_move()?;
    let (x, y) = (c.input(0)?, c.output(0));
    c.check(x.rank == y.rank, "slice keeps the rank")?;
    for d in 0..x.rank {
        let (b, s) = (p.begin[d] as i64, p.step[d] as i64);
        c.check(s != 0, "slice step is zero")?;
        let last = b + (y.dims[d] as i64 - 1) * s;
        let n = x.dims[d] as i64;
        c.check(
            (0..n).contains(&b) && (0..n).contains(&last),
            "slice reads outside the input",
        )?;
    }
    Ok(())
}

pub(super) fn run(v: &View, p: &SliceParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    let xt = v.info(0)?;
    let r = xt.rank;
    let mut begin = [0i64; MAX_RANK];
    let mut step = [1i64; MAX_RANK];
    for d in 0..r {
        begin[d] = p.begin[d] as i64;
        step[d] = p.step[d] as i64;
    }
    let xb = v.bytes(&xt)?;
    let (b, s) = (&begin[..r], &step[..r]);
    if xt.dtype == DType::I8 {
        kf::slice(
            bytes_as_i8(xb),
            xt.shape(),
            b,
            s,
            bytes_as_i8_mut(out),
            yt.shape(),
        );
    } else {
        kf::slice(
            bytes_as_f32(xb),
            xt.shape(),
            b,
            s,
            bytes_as_f32_mut(out),
            yt.shape(),
        );
    }
    Ok(())
}
