//! Concatenation along an axis, f32 or int8 (all inputs share the output's quantization).
//!
//! Words: 0 axis.

use core::fmt;

use super::{no_kernel, words_at, Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{view, view_mut};
use crate::error::Result;
use crate::format::DType;
use crate::kernels::reference_f32 as kf;
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::Concat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcatParams {
    /// The axis the inputs are joined along.
    pub axis: usize,
}

impl OpDef for ConcatParams {
    fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        Ok(ConcatParams {
            axis: words_at::<1>(w, 0, 0, "axis must be non-negative")?[0],
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[0] = self.axis as i32;
        w
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        write!(f, "axis {}", self.axis)
    }
}

pub(super) fn validate(c: &Ctx, p: &ConcatParams) -> Result<()> {
    c.check(
        c.num_inputs() >= 1 && c.op.num_outputs() == 1,
        "wrong number of inputs/outputs",
    )?;
    let y = c.output(0);
    if y.dtype == DType::I8 {
        c.q8(&y)?;
        for k in 0..c.num_inputs() {
            let x = c.input(k)?;
            c.check(
                x.dtype == DType::I8 && x.quant == y.quant,
                "int8 concat inputs must share the output's quantization",
            )?;
        }
    } else {
        c.all_f32()?;
    }
    let axis = p.axis;
    c.check(axis < y.rank, "axis outside the rank")?;
    let mut sum = 0;
    for k in 0..c.num_inputs() {
        let x = c.input(k)?;
        c.check(x.rank == y.rank, "inputs must have the output's rank")?;
        for d in 0..y.rank {
            c.check(
                d == axis || x.dims[d] == y.dims[d],
                "inputs differ outside the concat axis",
            )?;
        }
        sum += x.dims[axis];
    }
    c.check(sum == y.dims[axis], "concat axis sizes do not add up")
}

pub(super) fn run(v: &View, p: &ConcatParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    match yt.dtype {
        DType::I8 => join::<i8>(v, p.axis, view_mut(out), yt),
        DType::F32 => join::<f32>(v, p.axis, view_mut(out), yt),
        _ => no_kernel(v),
    }
}

/// Copies each input's `[outer, d_k * inner]` blocks side by side into `y`.
fn join<T: bytemuck::Pod>(v: &View, axis: usize, y: &mut [T], yt: &TensorInfo) -> Result<()> {
    let outer: usize = yt.shape()[..axis].iter().product();
    let inner: usize = yt.shape()[axis + 1..].iter().product();
    let y_chunk = yt.dims[axis] * inner;
    let mut off = 0;
    for i in 0..v.num_inputs() {
        let it = v.info(i)?;
        let chunk = it.dims[axis] * inner;
        kf::concat_block(view::<T>(v.bytes(&it)?), y, outer, chunk, y_chunk, off);
        off += chunk;
    }
    Ok(())
}
