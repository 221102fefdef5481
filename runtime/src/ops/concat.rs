//! Concatenation along an axis, f32 or int8 (all inputs share the output's quantization).
//!
//! Words: 0 axis.

use core::fmt;

use super::{no_kernel, non_negative, Ctx, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut, bytes_as_i8, bytes_as_i8_mut};
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

impl ConcatParams {
    /// Decodes the words (see the module docs).
    pub fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        Ok(ConcatParams {
            axis: non_negative(w[0], "axis must be non-negative")?,
        })
    }
    /// The words.
    pub fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[0] = self.axis as i32;
        w
    }
}

pub(super) fn validate(c: &Ctx<'_, '_>, p: &ConcatParams) -> Result<()> {
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

pub(super) fn run(
    v: &View<'_, '_>,
    p: &ConcatParams,
    out: &mut [u8],
    yt: &TensorInfo<'_>,
) -> Result<()> {
    let axis = p.axis;
    let outer: usize = yt.shape()[..axis].iter().product();
    let inner: usize = yt.shape()[axis + 1..].iter().product();
    let y_chunk = yt.dims[axis] * inner;
    let mut off = 0;
    match yt.dtype {
        DType::I8 => {
            let y = bytes_as_i8_mut(out);
            for i in 0..v.num_inputs() {
                let it = v.info(i)?;
                let chunk = it.dims[axis] * inner;
                kf::concat_block(bytes_as_i8(v.bytes(&it)?), y, outer, chunk, y_chunk, off);
                off += chunk;
            }
        }
        DType::F32 => {
            let y = bytes_as_f32_mut(out);
            for i in 0..v.num_inputs() {
                let it = v.info(i)?;
                let chunk = it.dims[axis] * inner;
                kf::concat_block(bytes_as_f32(v.bytes(&it)?), y, outer, chunk, y_chunk, off);
                off += chunk;
            }
        }
        _ => return no_kernel(v),
    }
    Ok(())
}

pub(super) fn macs(_p: &ConcatParams, _s: &OpShapes<'_>) -> u64 {
    0
}

pub(super) fn describe(p: &ConcatParams, _s: &OpShapes<'_>, f: &mut dyn fmt::Write) -> fmt::Result {
    write!(f, "axis {}", p.axis)
}
