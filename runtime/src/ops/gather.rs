//! Gather along an axis with constant indices, f32 or int8 (the quantization is kept).
//!
//! * **take** (ONNX `Gather`, TFLite `GATHER`): `y[o, j, i] = x[o, idx[j], i]` for `o` over the
//!   axes before `axis`, `j` over every index (the indices tensor may have any shape; the output
//!   puts it in place of the axis) and `i` over the axes after it.
//! * **elements** (ONNX `GatherElements`): indices of the output's shape (and rank), `y[p] =
//!   x[p with its axis coordinate replaced by idx[p]]`.
//!
//! Input 1 is a constant i32 tensor; every index is in `0..x.dims[axis]` (the converter resolves
//! negative ones), checked at load. Words: 0 axis; 1 mode (0 take, 1 elements).

use core::fmt;

use super::{Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut, bytes_as_i32, bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::{DType, Storage};
use crate::kernels::reference_f32 as kf;
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::Gather`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatherParams {
    /// The axis of `x` the indices select along.
    pub axis: usize,
    /// `false`: take whole slices (ONNX `Gather`); `true`: one element per index (ONNX
    /// `GatherElements`).
    pub elements: bool,
}

impl OpDef for GatherParams {
    fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        let [axis] = super::words_at::<1>(w, 0, 0, "gather axis out of range")?;
        let elements = match w[1] {
            0 => false,
            1 => true,
            _ => return Err("unknown gather mode"),
        };
        Ok(GatherParams { axis, elements })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[0] = self.axis as i32;
        w[1] = self.elements as i32;
        w
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        let mode = if self.elements { " elements" } else { "" };
        write!(f, "axis {}{mode}", self.axis)
    }
}

pub(super) fn validate(c: &Ctx, p: &GatherParams) -> Result<()> {
    c.extended_enabled()?;
    c.arity(2, 2, 1)?;
    let (x, idx, y) = (c.input(0)?, c.input(1)?, c.output(0));
    match x.dtype {
        DType::I8 => {
            c.q8(&x)?;
            c.check(
                y.dtype == DType::I8 && x.quant == y.quant,
                "int8 gather keeps the quantization",
            )?;
        }
        DType::F32 => {
            c.float_enabled()?;
            c.check(y.dtype == DType::F32, "f32 gather writes f32")?;
        }
        _ => return Err(c.err("gather reads f32 or int8 data")),
    }
    c.check(
        idx.dtype == DType::I32 && idx.storage == Storage::Constant,
        "gather indices must be a constant i32 tensor",
    )?;
    c.check(p.axis < x.rank, "gather axis out of range")?;
    let (xs, is, ys) = (x.shape(), idx.shape(), y.shape());
    if p.elements {
        c.check(
            is == ys && xs.len() == ys.len(),
            "gather elements: the output has the indices' shape and the data's rank",
        )?;
        c.check(
            (0..xs.len()).all(|d| d == p.axis || ys[d] <= xs[d]),
            "gather elements: the indices exceed the data off the axis",
        )?;
    } else {
        let fits = ys.len() + 1 == xs.len() + is.len()
            && ys[..p.axis] == xs[..p.axis]
            && ys[p.axis..p.axis + is.len()] == *is
            && ys[p.axis + is.len()..] == xs[p.axis + 1..];
        c.check(fits, "gather output shape does not match data and indices")?;
    }
    let n = xs[p.axis] as i32;
    let ok = bytes_as_i32(c.m.constant_bytes(&idx))
        .iter()
        .all(|&i| (0..n).contains(&i));
    c.check(ok, "gather index out of range")
}

pub(super) fn run(v: &View, p: &GatherParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    if !cfg!(feature = "extended-ops") {
        return super::no_kernel(v);
    }
    let (xt, it) = (v.info(0)?, v.info(1)?);
    let (x, idx) = (v.bytes(&xt)?, bytes_as_i32(v.bytes(&it)?));
    let (xs, ys) = (xt.shape(), yt.shape());
    match (xt.dtype, p.elements) {
        (DType::I8, false) => kf::gather(bytes_as_i8(x), xs, idx, p.axis, bytes_as_i8_mut(out)),
        (DType::I8, true) => {
            kf::gather_elements(bytes_as_i8(x), xs, idx, ys, p.axis, bytes_as_i8_mut(out))
        }
        (DType::F32, false) if cfg!(feature = "float") => {
            kf::gather(bytes_as_f32(x), xs, idx, p.axis, bytes_as_f32_mut(out))
        }
        (DType::F32, true) if cfg!(feature = "float") => {
            kf::gather_elements(bytes_as_f32(x), xs, idx, ys, p.axis, bytes_as_f32_mut(out))
        }
        _ => return super::no_kernel(v),
    }
    Ok(())
}
