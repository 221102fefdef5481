//! Compare and select: `y = cmp(a, b) ? x : z`, the four inputs numpy-broadcast to `y`. f32.
//! How ONNX `Where` and the comparisons that feed it import (Selu, ThresholdedRelu, Shrink and
//! other functions tract expands into `Iff(test, ..)`); a constant condition arrives as a 0/1
//! mask compared `!= 0`.
//!
//! Words: 0 the comparison (see [`Compare`]).

use core::fmt;

use super::{broadcast_ok, no_kernel, Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut};
use crate::error::Result;
use crate::format::DType;
use crate::model::TensorInfo;

crate::format::code_enum! {
    /// The test of [`super::OpKind::Select`] (word 0), between inputs `a` and `b`.
    pub enum Compare: i32, from_i32 {
        Lt = 0, "lt", "a < b";
        Le = 1, "le", "a <= b";
        Gt = 2, "gt", "a > b";
        Ge = 3, "ge", "a >= b";
        Eq = 4, "eq", "a == b";
        Ne = 5, "ne", "a != b (true when either is NaN)";
    }
}

impl Compare {
    /// The test on two values (IEEE comparisons: only `Ne` holds for a NaN).
    #[inline]
    pub fn test(self, a: f32, b: f32) -> bool {
        match self {
            Compare::Lt => a < b,
            Compare::Le => a <= b,
            Compare::Gt => a > b,
            Compare::Ge => a >= b,
            Compare::Eq => a == b,
            Compare::Ne => a != b,
        }
    }
}

/// Parameters of [`super::OpKind::Select`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectParams {
    /// The test between inputs 0 and 1.
    pub cmp: Compare,
}

impl OpDef for SelectParams {
    fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        Ok(SelectParams {
            cmp: Compare::from_i32(w[0]).ok_or("unknown comparison")?,
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[0] = self.cmp as i32;
        w
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        f.write_str(self.cmp.name())
    }
}

pub(super) fn validate(c: &Ctx, _p: &SelectParams) -> Result<()> {
    c.extended_enabled()?;
    c.arity(4, 4, 1)?;
    c.all_f32()?;
    let y = c.output(0);
    for k in 0..4 {
        let t = c.input(k)?;
        c.check(
            broadcast_ok(t.shape(), y.shape(), y.shape()),
            "select operands do not broadcast to the output",
        )?;
    }
    Ok(())
}

pub(super) fn run(v: &View, p: &SelectParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    if !cfg!(feature = "extended-ops") {
        return no_kernel(v);
    }
    let ts = [v.info(0)?, v.info(1)?, v.info(2)?, v.info(3)?];
    if ts.iter().any(|t| t.dtype != DType::F32) || !cfg!(feature = "float") {
        return no_kernel(v);
    }
    let mut ins: [(&[f32], &[usize]); 4] = [(&[], &[]); 4];
    for (i, t) in ins.iter_mut().zip(&ts) {
        *i = (bytes_as_f32(v.bytes(t)?), t.shape());
    }
    crate::kernels::reference_f32::select(p.cmp, ins, bytes_as_f32_mut(out), yt.shape());
    Ok(())
}
