//! 2-D convolution (NHWC activations, OHWI weights, optional bias; `groups` covers depthwise),
//! f32 (f32 or f16 weights) and int8 (per-channel requantization, as TFLite).
//!
//! Words: 0-1 stride h/w, 2-3 dilation h/w, 4-7 padding top/left/bottom/right, 8 groups,
//! 9-10 fused activation, 11 requantization rounding (int8).

use core::fmt;

use super::{
    decode_rounding_layout, dims4, encode_rounding_layout, no_kernel, per_tensor, put_words,
    window_out, words_at, Act, Ctx, OpDef, OpShapes, Rounding, View, Words,
};
use crate::cast::{bytes_as_f16, bytes_as_f32, bytes_as_f32_mut, bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::DType;
use crate::kernels::{
    f32gemm as f32k, optimized_i8 as opt8, qs8, reference_f32 as kf, reference_i8 as ki8,
};
use crate::model::TensorInfo;

/// Where a convolution's window goes: the geometry every conv kernel reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Padding top, left, bottom, right.
    pub pad: [usize; 4],
    /// Groups (`in_channels` for depthwise).
    pub groups: usize,
}

impl Default for ConvGeom {
    fn default() -> Self {
        ConvGeom {
            stride: [1, 1],
            dilation: [1, 1],
            pad: [0; 4],
            groups: 1,
        }
    }
}

impl ConvGeom {
    /// Calls `f(ky, kx, iy, ix)` for every kernel tap `(ky, kx)` of output pixel `(oy, ox)` that
    /// lands inside the `hw` input (input row `iy`, column `ix`); padding taps are skipped.
    #[inline(always)]
    pub fn taps(
        &self,
        (oy, ox): (usize, usize),
        hw: [usize; 2],
        k: [usize; 2],
        mut f: impl FnMut(usize, usize, usize, usize),
    ) {
        for ky in 0..k[0] {
            let iy = (oy * self.stride[0] + ky * self.dilation[0]) as isize - self.pad[0] as isize;
            if iy < 0 || iy >= hw[0] as isize {
                continue;
            }
            for kx in 0..k[1] {
                let ix =
                    (ox * self.stride[1] + kx * self.dilation[1]) as isize - self.pad[1] as isize;
                if ix >= 0 && ix < hw[1] as isize {
                    f(ky, kx, iy as usize, ix as usize);
                }
            }
        }
    }
}

impl ConvGeom {
    /// The transposed convolution's taps: calls `f(ky, kx, iy, ix)` for every kernel tap
    /// `(ky, kx)` and input pixel `(iy, ix)` of the `hw` input that adds into output pixel
    /// `(oy, ox)`, i.e. `oy = iy·stride + ky·dilation - pad_top` (and the same across). Only
    /// `pad[0]` (top) and `pad[1]` (left) are read: the output's size sets the rest.
    #[inline(always)]
    pub fn transposed_taps(
        &self,
        (oy, ox): (usize, usize),
        hw: [usize; 2],
        k: [usize; 2],
        mut f: impl FnMut(usize, usize, usize, usize),
    ) {
        let at = |o: usize, kk: usize, axis: usize, len: usize| -> Option<usize> {
            let t = (o + self.pad[axis]).checked_sub(kk * self.dilation[axis])?;
            let i = t / self.stride[axis];
            (t % self.stride[axis] == 0 && i < len).then_some(i)
        };
        for ky in 0..k[0] {
            let Some(iy) = at(oy, ky, 0, hw[0]) else {
                continue;
            };
            for kx in 0..k[1] {
                if let Some(ix) = at(ox, kx, 1, hw[1]) {
                    f(ky, kx, iy, ix);
                }
            }
        }
    }
}

/// Parameters of [`super::OpKind::Conv2d`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvParams {
    /// Window geometry.
    pub geom: ConvGeom,
    /// Fused activation.
    pub act: Act,
    /// Requantization rounding (int8).
    pub rounding: Rounding,
    /// int8 weights in the `pack16x4` layout with a folded bias ([`crate::kernels::qs8`]);
    /// the converter packs every int8 conv with one group and zero weight zero point.
    pub packed: bool,
    /// int8 weights as a sparse blob (a u8 tensor `[1, KH, KW, L]`) with a folded bias
    /// ([`crate::kernels::sparse`]); one group.
    pub sparse: bool,
}

impl ConvParams {
    /// Float conv with this geometry and no activation.
    pub fn new(geom: ConvGeom) -> Self {
        ConvParams {
            geom,
            act: Act::NONE,
            rounding: Rounding::Double,
            packed: false,
            sparse: false,
        }
    }
}

impl OpDef for ConvParams {
    fn decode(w: &Words, int8: bool) -> core::result::Result<Self, &'static str> {
        let (rounding, packed, sparse) = decode_rounding_layout(w)?;
        Ok(ConvParams {
            geom: ConvGeom {
                stride: words_at(w, 0, 1, "stride must be positive")?,
                dilation: words_at(w, 2, 1, "dilation must be positive")?,
                pad: words_at(w, 4, 0, "negative padding")?,
                groups: words_at::<1>(w, 8, 1, "groups must be positive")?[0],
            },
            act: Act::decode(w, int8),
            rounding,
            packed,
            sparse,
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        let g = &self.geom;
        put_words(&mut w, 0, &g.stride);
        put_words(&mut w, 2, &g.dilation);
        put_words(&mut w, 4, &g.pad);
        put_words(&mut w, 8, &[g.groups]);
        self.act.encode(&mut w);
        encode_rounding_layout(self.rounding, self.packed, self.sparse, &mut w);
        w
    }
    fn macs(&self, s: &OpShapes) -> u64 {
        let out: usize = s.y.iter().product();
        match (s.w, s.x.last()) {
            // Sparse: the dense layer's MACs (the entries run are in the blob).
            ([_, kh, kw, _], Some(ci)) if self.sparse => (out * kh * kw * ci) as u64,
            ([_, kh, kw, cig], _) => (out * kh * kw * cig) as u64,
            _ => 0,
        }
    }
    fn describe(&self, s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        let (kh, kw, cig) = match s.w {
            [_, kh, kw, _] if self.sparse => (*kh, *kw, s.x.last().copied().unwrap_or(0)),
            [_, kh, kw, cig] => (*kh, *kw, *cig),
            _ => (0, 0, 0),
        };
        let g = &self.geom;
        let dw = if g.groups > 1 && cig == 1 {
            " depthwise"
        } else {
            ""
        };
        write!(
            f,
            "k{kh}x{kw} s{},{} d{},{} p{},{},{},{} g{}{dw}{}{}",
            g.stride[0],
            g.stride[1],
            g.dilation[0],
            g.dilation[1],
            g.pad[0],
            g.pad[1],
            g.pad[2],
            g.pad[3],
            g.groups,
            self.act,
            if self.sparse {
                " sparse"
            } else if self.packed {
                " packed"
            } else {
                ""
            }
        )
    }
}

pub(super) fn validate(c: &Ctx, p: &ConvParams) -> Result<()> {
    let sparse = super::SPARSE && p.sparse;
    let int8 = c.weighted(4, sparse)?;
    let (x, w, y) = (c.input(0)?, c.input(1)?, c.output(0));
    c.check(
        x.rank == 4 && w.rank == 4 && y.rank == 4,
        "conv tensors must be 4-D (NHWC, OHWI)",
    )?;
    let g = &p.geom;
    c.check(g.pad.iter().all(|&v| v < 1 << 30), "padding too large")?;
    let [n, h, wd, ci] = dims4(&x);
    let [co, kh, kw, cig] = if sparse {
        // The blob `[1, KH, KW, L]`: the channels are the output's, the window the input's.
        let [_, kh, kw, _] = dims4(&w);
        c.check(g.groups == 1, "sparse weights need one group")?;
        [y.dims[3], kh, kw, ci]
    } else {
        dims4(&w)
    };
    c.check(
        ci % g.groups == 0 && co % g.groups == 0 && cig * g.groups == ci,
        "channels do not match groups and weights",
    )?;
    let oh = window_out(h, kh, g.stride[0], g.dilation[0], g.pad[0] + g.pad[2])
        .ok_or(c.err("kernel larger than padded input"))?;
    let ow = window_out(wd, kw, g.stride[1], g.dilation[1], g.pad[1] + g.pad[3])
        .ok_or(c.err("kernel larger than padded input"))?;
    c.check(
        y.shape() == [n, oh, ow, co],
        "output shape does not match conv arithmetic",
    )?;
    if sparse {
        let k = kh * kw * ci;
        c.check(
            k <= crate::kernels::sparse::MAX_K,
            "sparse weights: window larger than the kernels' patch",
        )?;
        c.check(
            crate::kernels::sparse::validate(c.m.constant_bytes(&w), co, k),
            "sparse weights: malformed blob (counts, gaps or columns out of range)",
        )?;
    }
    if p.packed {
        if g.groups == 1 {
            c.packed_weights(int8)?;
        } else {
            // Depthwise: tap-major `[KH·KW, C]` weights.
            c.check(
                cig == 1 && co == ci && g.groups == ci,
                "packed weights need groups = 1 or a depthwise conv",
            )?;
            c.check(
                int8 || w.dtype == DType::F32,
                "packed float weights must be f32",
            )?;
        }
    }
    c.act(p.act)
}

/// What an int8 conv or dense reads: input, weights, bias and the requantization of inputs 3-4.
pub(super) struct Int8Operands<'v> {
    pub(super) x: &'v [i8],
    pub(super) w: &'v [i8],
    pub(super) bias: Option<&'v [i32]>,
    pub(super) q: ki8::QuantParams<'v>,
}

pub(super) fn int8_operands<'v, 'm>(
    v: &'v View<'_, 'm>,
    (xt, wt): (&TensorInfo<'m>, &TensorInfo<'m>),
    yt: &TensorInfo<'_>,
    act: Act,
    rounding: Rounding,
) -> Result<Int8Operands<'v>> {
    use crate::cast::{bytes_as_i16, bytes_as_i32};
    // (The caller's input and weight descriptors: decoding a descriptor is most of an op's
    // fixed cost on the anomaly detector's small layers.)
    let ((mb, mdt), (sb, sdt)) = (v.data(3)?, v.data(4)?);
    let q = ki8::QuantParams {
        input_zp: per_tensor(xt).1,
        weight_zp: match wt.quant {
            crate::model::Quant::PerTensor { zero_point, .. } => zero_point,
            _ => 0,
        },
        output_zp: per_tensor(yt).1,
        multiplier: if mdt == DType::I16 {
            ki8::Multipliers::I16(bytes_as_i16(mb))
        } else {
            ki8::Multipliers::I32(bytes_as_i32(mb))
        },
        shift: if sdt == DType::I8 {
            ki8::Shifts::I8(bytes_as_i8(sb))
        } else {
            ki8::Shifts::I32(bytes_as_i32(sb))
        },
        act: act.i8_bounds(),
        rounding,
    };
    Ok(Int8Operands {
        x: bytes_as_i8(v.bytes(xt)?),
        w: bytes_as_i8(v.bytes(wt)?),
        bias: v.opt_i32(2)?,
        q,
    })
}

pub(super) fn run(v: &View, p: &ConvParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    let xt = v.info(0)?;
    let wt = v.info(1)?;
    let wb = v.bytes(&wt)?;
    match xt.dtype {
        DType::I8 => {
            let Int8Operands { x, w, bias, q } =
                int8_operands(v, (&xt, &wt), yt, p.act, p.rounding)?;
            let y = bytes_as_i8_mut(out);
            let (xs, ws, ys, g) = (dims4(&xt), dims4(&wt), dims4(yt), &p.geom);
            let s = qs8::ConvShapes {
                x: xs,
                w: ws,
                y: ys,
            };
            let c = qs8::Conv {
                x,
                w,
                bias,
                s,
                geo: *g,
                q: &q,
            };
            if super::SPARSE && p.sparse {
                // Validation guarantees the bias and the blob.
                let bias = bias.ok_or(v.err("sparse weights need a bias"))?;
                let macs = y.len() * ws[1] * ws[2] * xs[3];
                let sc = crate::kernels::sparse::SparseConv {
                    x,
                    xs,
                    blob: wb,
                    kernel: (ws[1], ws[2]),
                    bias,
                    ys,
                    geo: g,
                    q: &q,
                };
                super::parallel(v, macs, y, ys[3], |part, px0| {
                    crate::kernels::sparse::conv2d_part(&sc, part, px0, v.isa)
                });
            } else if p.packed && g.groups != 1 {
                if v.use_reference() {
                    qs8::reference_depthwise(&c, y);
                } else {
                    let macs = y.len() * ws[1] * ws[2];
                    super::parallel(v, macs, y, ws[0], |part, px0| {
                        qs8::depthwise_part(&c, part, v.isa, px0)
                    });
                }
            } else if p.packed {
                // Validation guarantees the bias of packed weights.
                let bias = bias.ok_or(v.err("packed weights need a bias"))?;
                let c = c.with_bias(bias);
                if v.use_reference() {
                    qs8::reference_conv2d(&c, y);
                } else {
                    let macs = y.len() * ws[1] * ws[2] * ws[3];
                    super::parallel(v, macs, y, ws[0], |part, px0| {
                        qs8::conv2d_part(&c, part, v.isa, px0)
                    });
                }
            } else if v.use_reference() {
                ki8::conv2d(x, xs, w, ws, bias, y, ys, g, &q);
            } else {
                opt8::conv2d(x, xs, w, ws, bias, y, ys, g, &q, v.isa);
            }
            Ok(())
        }
        DType::F32 if cfg!(feature = "float") => {
            let (x, bias) = (bytes_as_f32(v.bytes(&xt)?), v.opt_f32(2)?);
            let (y, act) = (bytes_as_f32_mut(out), p.act.f32_bounds());
            let (xs, ws, ys) = (dims4(&xt), dims4(&wt), dims4(yt));
            let s = qs8::ConvShapes {
                x: xs,
                w: ws,
                y: ys,
            };
            if p.packed {
                let c = f32k::ConvF32 {
                    x,
                    w: bytes_as_f32(wb),
                    bias,
                    s,
                    geo: p.geom,
                    act,
                };
                let (reference, macs) = (v.use_reference(), y.len() * ws[1] * ws[2]);
                match (p.geom.groups == 1, reference) {
                    (true, true) => f32k::reference_conv2d(&c, y),
                    (true, false) => super::parallel(v, macs * ws[3], y, ws[0], |part, px0| {
                        f32k::conv2d_part(&c, part, v.isa, px0)
                    }),
                    (false, true) => f32k::reference_depthwise(&c, y),
                    (false, false) => super::parallel(v, macs, y, ws[0], |part, px0| {
                        f32k::depthwise_part(&c, part, v.isa, px0)
                    }),
                }
            } else if wt.dtype == DType::F16 {
                kf::conv2d(x, xs, bytes_as_f16(wb), ws, bias, y, ys, &p.geom, act);
            } else {
                kf::conv2d(x, xs, bytes_as_f32(wb), ws, bias, y, ys, &p.geom, act);
            }
            Ok(())
        }
        _ => no_kernel(v),
    }
}
