//! Batched f32 matrix product with broadcasting batch dims and an optional bias over N.
//!
//! Words: 9-10 fused activation.

use core::fmt;

use super::{broadcast_ok, no_kernel, Act, Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut};
use crate::error::Result;
use crate::format::DType;
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::MatMul`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatMulParams {
    /// Fused activation.
    pub act: Act,
}

impl Default for MatMulParams {
    fn default() -> Self {
        MatMulParams { act: Act::NONE }
    }
}

impl OpDef for MatMulParams {
    fn decode(w: &Words, int8: bool) -> core::result::Result<Self, &'static str> {
        Ok(MatMulParams {
            act: Act::decode(w, int8),
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        self.act.encode(&mut w);
        w
    }
    fn macs(&self, s: &OpShapes) -> u64 {
        let out: usize = s.y.iter().product();
        s.x.last().map_or(0, |&k| (out * k) as u64)
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        write!(f, "{}", self.act)
    }
}

pub(super) fn validate(c: &Ctx, p: &MatMulParams) -> Result<()> {
    c.arity(2, 3, 1)?;
    c.all_f32()?;
    let (a, b, y) = (c.input(0)?, c.input(1)?, c.output(0));
    c.check(
        a.rank >= 2 && b.rank >= 2 && y.rank == a.rank.max(b.rank),
        "matmul operands must be at least 2-D",
    )?;
    let (m, k) = (a.dims[a.rank - 2], a.dims[a.rank - 1]);
    let (k2, n) = (b.dims[b.rank - 2], b.dims[b.rank - 1]);
    c.check(k == k2, "inner dimensions differ")?;
    c.check(
        y.dims[y.rank - 2] == m && y.dims[y.rank - 1] == n,
        "output shape does not match",
    )?;
    c.check(
        broadcast_ok(
            &a.shape()[..a.rank - 2],
            &b.shape()[..b.rank - 2],
            &y.shape()[..y.rank - 2],
        ),
        "batch dims do not broadcast",
    )?;
    if let Some(bias) = c.opt_input(2) {
        c.check(bias.rank == 1 && bias.dims[0] == n, "bias must be [N]")?;
    }
    c.act(p.act)
}

pub(super) fn run(v: &View, p: &MatMulParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    let (at, bt) = (v.info(0)?, v.info(1)?);
    if at.dtype != DType::F32 || !cfg!(feature = "float") {
        return no_kernel(v);
    }
    let (a, b) = (bytes_as_f32(v.bytes(&at)?), bytes_as_f32(v.bytes(&bt)?));
    let bias = v.opt_f32(2)?;
    crate::kernels::reference_f32::matmul(
        a,
        at.shape(),
        b,
        bt.shape(),
        bias,
        bytes_as_f32_mut(out),
        yt.shape(),
        p.act.f32_bounds(),
    );
    Ok(())
}
