//! Transposed 2-D convolution (ONNX `ConvTranspose`, TFLite `TRANSPOSE_CONV`, Keras
//! `Conv2DTranspose`): every input pixel scatters its kernel into the output,
//! `y[oy, ox, o] = bias[o] + Σ x[iy, ix, i] · w[o, ky, kx, i]` over `oy = iy·s + ky·d - pad_top`
//! (and the same across). NHWC activations, `[out_channels, KH, KW, in_channels / groups]`
//! weights, optional bias; f32 (f32 or f16 weights) and int8 (per-channel requantization, as
//! TFLite's reference kernel). The output's height and width come from its tensor (output
//! padding and explicit output shapes are the converter's business); the kernels compute each
//! output pixel from the taps that reach it, so no scratch is needed and the int8 sums are
//! TFLite's exactly.
//!
//! Words: 0-1 stride h/w, 2-3 dilation h/w, 4-5 padding top/left, 8 groups, 9-10 fused
//! activation, 11 requantization rounding (int8).

use core::fmt;

use super::conv::{int8_operands, Int8Operands};
use super::{
    decode_rounding, dims4, encode_rounding, no_kernel, put_words, words_at, Act, ConvGeom, Ctx,
    OpDef, OpShapes, Rounding, View, Words,
};
use crate::cast::{bytes_as_f16, bytes_as_f32, bytes_as_f32_mut, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::DType;
use crate::kernels::{reference_f32 as kf, reference_i8 as ki8};
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::TransposeConv`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransposeConvParams {
    /// Stride, dilation, groups and the top/left padding (`pad[2..]` is unused and 0).
    pub geom: ConvGeom,
    /// Fused activation.
    pub act: Act,
    /// Requantization rounding (int8).
    pub rounding: Rounding,
}

impl OpDef for TransposeConvParams {
    fn decode(w: &Words, int8: bool) -> core::result::Result<Self, &'static str> {
        let [top, left] = words_at(w, 4, 0, "negative padding")?;
        Ok(TransposeConvParams {
            geom: ConvGeom {
                stride: words_at(w, 0, 1, "stride must be positive")?,
                dilation: words_at(w, 2, 1, "dilation must be positive")?,
                pad: [top, left, 0, 0],
                groups: words_at::<1>(w, 8, 1, "groups must be positive")?[0],
            },
            act: Act::decode(w, int8),
            rounding: decode_rounding(w)?,
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        let g = &self.geom;
        put_words(&mut w, 0, &g.stride);
        put_words(&mut w, 2, &g.dilation);
        put_words(&mut w, 4, &g.pad[..2]);
        put_words(&mut w, 8, &[g.groups]);
        self.act.encode(&mut w);
        encode_rounding(self.rounding, &mut w);
        w
    }
    fn macs(&self, s: &OpShapes) -> u64 {
        // Every input pixel meets every tap (taps that land outside the output are skipped, so
        // this is an upper bound).
        let inp: usize = s.x.iter().product();
        match s.w {
            [co, kh, kw, _] => (inp * kh * kw * (co / self.geom.groups.max(1))) as u64,
            _ => 0,
        }
    }
    fn describe(&self, s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        let (kh, kw) = match s.w {
            [_, kh, kw, _] => (*kh, *kw),
            _ => (0, 0),
        };
        let g = &self.geom;
        write!(
            f,
            "k{kh}x{kw} s{},{} d{},{} p{},{} g{}{}",
            g.stride[0],
            g.stride[1],
            g.dilation[0],
            g.dilation[1],
            g.pad[0],
            g.pad[1],
            g.groups,
            self.act,
        )
    }
}

pub(super) fn validate(c: &Ctx, p: &TransposeConvParams) -> Result<()> {
    c.extended_enabled()?;
    c.weighted(4, false)?;
    let (x, w, y) = (c.input(0)?, c.input(1)?, c.output(0));
    c.check(
        x.rank == 4 && w.rank == 4 && y.rank == 4,
        "transposed conv tensors must be 4-D (NHWC, OHWI)",
    )?;
    let g = &p.geom;
    c.check(g.pad.iter().all(|&v| v < 1 << 30), "padding too large")?;
    let [n, _, _, ci] = dims4(&x);
    let [co, _, _, cig] = dims4(&w);
    let [yn, _, _, yc] = dims4(&y);
    c.check(
        co % g.groups == 0 && cig * g.groups == ci,
        "channels do not match groups and weights",
    )?;
    c.check(
        yn == n && yc == co,
        "output shape does not match the transposed conv's batch and channels",
    )?;
    c.act(p.act)
}

pub(super) fn run(
    v: &View,
    p: &TransposeConvParams,
    out: &mut [u8],
    yt: &TensorInfo,
) -> Result<()> {
    if !cfg!(feature = "extended-ops") {
        return no_kernel(v);
    }
    let (xt, wt) = (v.info(0)?, v.info(1)?);
    let (xs, ws, ys) = (dims4(&xt), dims4(&wt), dims4(yt));
    match xt.dtype {
        DType::I8 => {
            let Int8Operands { x, w, bias, q } =
                int8_operands(v, (&xt, &wt), yt, p.act, p.rounding)?;
            ki8::transpose_conv(x, xs, w, ws, bias, bytes_as_i8_mut(out), ys, &p.geom, &q);
            Ok(())
        }
        DType::F32 if cfg!(feature = "float") => {
            let (x, bias) = (bytes_as_f32(v.bytes(&xt)?), v.opt_f32(2)?);
            let (y, act, wb) = (bytes_as_f32_mut(out), p.act.f32_bounds(), v.bytes(&wt)?);
            if wt.dtype == DType::F16 {
                let w = bytes_as_f16(wb);
                kf::transpose_conv(x, xs, w, ws, bias, y, ys, &p.geom, act);
            } else {
                let w = bytes_as_f32(wb);
                kf::transpose_conv(x, xs, w, ws, bias, y, ys, &p.geom, act);
            }
            Ok(())
        }
        _ => no_kernel(v),
    }
}
