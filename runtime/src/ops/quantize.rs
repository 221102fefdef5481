//! Quantize (f32 -> int8 with the output's scale and zero point) and dequantize (int8 -> f32
//! with the input's). No parameter words.

use super::{per_tensor, Ctx, OpKind, View};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut, bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::DType;
use crate::kernels::reference_i8 as ki8;
use crate::model::TensorInfo;

/// Parameters of [`OpKind::Quantize`] (none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QuantizeParams;

/// Parameters of [`OpKind::Dequantize`] (none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DequantizeParams;

super::no_params!(QuantizeParams);
super::no_params!(DequantizeParams);

fn check(c: &Ctx<'_, '_>) -> Result<()> {
    c.arity(1, 1, 1)?;
    let (x, y) = (c.input(0)?, c.output(0));
    c.check(x.len() == y.len(), "quantize keeps the element count")?;
    if c.kind() == OpKind::Quantize {
        c.check(x.dtype == DType::F32, "quantize reads f32")?;
        c.q8(&y)?;
    } else {
        c.check(y.dtype == DType::F32, "dequantize writes f32")?;
        c.q8(&x)?;
    }
    Ok(())
}

fn exec(v: &View<'_, '_>, out: &mut [u8], yt: &TensorInfo<'_>) -> Result<()> {
    let xt = v.info(0)?;
    let xb = v.bytes(&xt)?;
    if v.op.kind == OpKind::Quantize {
        let (scale, zp) = per_tensor(yt);
        ki8::quantize(bytes_as_f32(xb), bytes_as_i8_mut(out), scale, zp);
    } else {
        let (scale, zp) = per_tensor(&xt);
        ki8::dequantize(bytes_as_i8(xb), bytes_as_f32_mut(out), scale, zp);
    }
    Ok(())
}

pub(super) fn validate<P>(c: &Ctx, _p: &P) -> Result<()> {
    check(c)
}

pub(super) fn run<P>(v: &View, _p: &P, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    exec(v, out, yt)
}
