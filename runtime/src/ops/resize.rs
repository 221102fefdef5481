//! Spatial resize of an NHWC tensor (ONNX `Resize`/`Upsample`, TFLite `RESIZE_BILINEAR` and
//! `RESIZE_NEAREST_NEIGHBOR`, Keras `UpSampling2D`/`Resizing`), nearest or bilinear, f32 or
//! int8 (input and output share the quantization, as TFLite requires).
//!
//! Each output row `o` (and column) maps to a source coordinate by the [`Transform`] the
//! source framework defines, evaluated in f32 exactly as it writes it (the formulas differ in
//! rounding, which decides nearest-neighbour ties). Nearest rounds it by [`NearestRounding`] and
//! clamps into the input. Bilinear in f32 blends the four neighbours as TFLite's reference
//! kernel does; bilinear in int8 is TFLite's 10-bit fixed-point kernel, bit for bit.
//!
//! Words: 0 mode (0 nearest, 1 bilinear); 1 transform; 2 nearest rounding; 3-4 the ONNX scale
//! of rows and columns (f32 bits; output / input length, read by the ONNX transforms only).

use core::fmt;

use super::{dims4, no_kernel, Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut, bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::DType;
use crate::model::TensorInfo;

crate::format::code_enum! {
    /// Where output index `o` of an axis (input length `n`, output length `m`, ONNX scale `s`,
    /// TFLite ratio `r = n / m`) samples the input (word 1).
    pub enum Transform: i32, from_i32 {
        HalfPixel = 0, "half_pixel", "ONNX half_pixel: (o + 0.5) / s - 0.5";
        AlignCorners = 1, "align_corners", "ONNX align_corners: o · (n - 1) / (m - 1), 0 when m = 1";
        Asymmetric = 2, "asymmetric", "ONNX asymmetric: o / s";
        PytorchHalfPixel = 3, "pytorch_half_pixel", "ONNX pytorch_half_pixel: half_pixel, 0 when m = 1";
        TfHalfPixel = 4, "tf_half_pixel", "TFLite half_pixel_centers: (o + 0.5) · r - 0.5 (bilinear), (o + 0.5) · r (nearest)";
        TfAsymmetric = 5, "tf_asymmetric", "TFLite default: o · r";
        TfAlignCorners = 6, "tf_align_corners", "TFLite align_corners: o · ((n - 1) / (m - 1)), o · r when m = 1";
    }
}

crate::format::code_enum! {
    /// How nearest mode rounds the source coordinate (word 2).
    pub enum NearestRounding: i32, from_i32 {
        Floor = 0, "floor", "round down";
        Ceil = 1, "ceil", "round up";
        RoundPreferFloor = 2, "round_prefer_floor", "to nearest, halves down";
        RoundPreferCeil = 3, "round_prefer_ceil", "to nearest, halves up";
        HalfAway = 4, "half_away", "to nearest, halves away from zero (TFLite align_corners)";
    }
}

/// Parameters of [`super::OpKind::Resize`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResizeParams {
    /// Bilinear (else nearest).
    pub bilinear: bool,
    /// The coordinate transform.
    pub transform: Transform,
    /// Nearest mode's rounding.
    pub rounding: NearestRounding,
    /// ONNX scale (output / input length) of rows and columns.
    pub scale: [f32; 2],
}

impl ResizeParams {
    /// The source coordinate of output index `o` along an axis of input length `n`, output
    /// length `m`, ONNX scale `s`.
    #[inline]
    pub fn source(&self, o: usize, n: usize, m: usize, s: f32) -> f32 {
        let (of, nf, mf) = (o as f32, n as f32, m as f32);
        match self.transform {
            Transform::HalfPixel => (of + 0.5) / s - 0.5,
            Transform::AlignCorners if m == 1 => 0.0,
            Transform::AlignCorners => of * (nf - 1.0) / (mf - 1.0),
            Transform::Asymmetric => of / s,
            Transform::PytorchHalfPixel if m == 1 => 0.0,
            Transform::PytorchHalfPixel => (of + 0.5) / s - 0.5,
            Transform::TfHalfPixel if self.bilinear => (of + 0.5) * (nf / mf) - 0.5,
            Transform::TfHalfPixel => (of + 0.5) * (nf / mf),
            Transform::TfAsymmetric => of * (nf / mf),
            Transform::TfAlignCorners if m == 1 => of * (nf / mf),
            Transform::TfAlignCorners => of * ((nf - 1.0) / (mf - 1.0)),
        }
    }

    /// Whether the transform is TFLite's (bilinear then follows TFLite's kernel exactly; the
    /// ONNX ones clamp the coordinate into the input first, as onnxruntime does).
    fn tf(&self) -> bool {
        matches!(
            self.transform,
            Transform::TfHalfPixel | Transform::TfAsymmetric | Transform::TfAlignCorners
        )
    }

    /// The input index nearest mode reads for output index `o`.
    #[inline]
    pub fn nearest(&self, o: usize, n: usize, m: usize, s: f32) -> usize {
        let v = self.source(o, n, m, s);
        let fl = libm::floorf(v);
        let r = match self.rounding {
            NearestRounding::Floor => fl,
            NearestRounding::Ceil => libm::ceilf(v),
            NearestRounding::RoundPreferFloor if v - fl <= 0.5 => fl,
            NearestRounding::RoundPreferCeil if v - fl < 0.5 => fl,
            NearestRounding::RoundPreferFloor | NearestRounding::RoundPreferCeil => fl + 1.0,
            NearestRounding::HalfAway => libm::roundf(v),
        };
        // f32 -> i64 saturates (NaN to 0): any value clamps into the input.
        (r as i64).clamp(0, n as i64 - 1) as usize
    }

    /// Bilinear's two input indices and the source coordinate for output index `o`.
    #[inline]
    pub fn linear(&self, o: usize, n: usize, m: usize, s: f32) -> (usize, usize, f32) {
        let mut v = self.source(o, n, m, s);
        if !self.tf() {
            v = v.max(0.0).min((n - 1) as f32);
        }
        let lo = (libm::floorf(v) as i64).max(0);
        let hi = (libm::ceilf(v) as i64).min(n as i64 - 1).max(0);
        (lo.min(n as i64 - 1) as usize, hi as usize, v)
    }

    /// TFLite's int8 bilinear: the 10-bit fixed-point step of an axis.
    fn scale10(&self, n: usize, m: usize) -> i32 {
        let (n, m) = (n as i64, m as i64);
        let align = matches!(
            self.transform,
            Transform::AlignCorners | Transform::TfAlignCorners
        );
        let s = if align && m > 1 {
            ((1 << 10) * (n - 1) + (m - 1) / 2) / (m - 1)
        } else {
            ((1 << 10) * n + m / 2) / m
        };
        s.min(i32::MAX as i64) as i32
    }

    fn half_pixel(&self) -> bool {
        matches!(
            self.transform,
            Transform::HalfPixel | Transform::PytorchHalfPixel | Transform::TfHalfPixel
        )
    }
}

/// TFLite's integer interpolation values: the 10-bit source coordinate and its two neighbours.
/// In 64 bits and clamped into the input (TFLite's int32 arithmetic gives the same values for
/// every size it can run; an extreme size in a crafted file can neither overflow nor read out
/// of bounds here).
#[inline]
fn linear10(o: usize, scale10: i32, half: bool, n: usize) -> (i64, usize, usize) {
    let (o, s) = (o as i64, scale10 as i64);
    let v = if half {
        o * s + s / 2 - (1 << 9)
    } else {
        o * s
    };
    let last = n as i64 - 1;
    let lo = (v / (1 << 10)).clamp(0, last);
    let hi = ((v + (1 << 10) - 1) / (1 << 10)).clamp(0, last);
    (v, lo as usize, hi as usize)
}

impl OpDef for ResizeParams {
    fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        let bilinear = match w[0] {
            0 => false,
            1 => true,
            _ => return Err("unknown resize mode"),
        };
        let scale = [f32::from_bits(w[3] as u32), f32::from_bits(w[4] as u32)];
        if scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err("resize scale must be positive and finite");
        }
        Ok(ResizeParams {
            bilinear,
            transform: Transform::from_i32(w[1]).ok_or("unknown resize transform")?,
            rounding: NearestRounding::from_i32(w[2]).ok_or("unknown nearest rounding")?,
            scale,
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[0] = self.bilinear as i32;
        w[1] = self.transform as i32;
        w[2] = self.rounding as i32;
        w[3] = self.scale[0].to_bits() as i32;
        w[4] = self.scale[1].to_bits() as i32;
        w
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        if self.bilinear {
            write!(f, "bilinear {}", self.transform.name())
        } else {
            write!(
                f,
                "nearest {} {}",
                self.transform.name(),
                self.rounding.name()
            )
        }
    }
}

pub(super) fn validate(c: &Ctx, _p: &ResizeParams) -> Result<()> {
    c.extended_enabled()?;
    c.arity(1, 1, 1)?;
    c.same_type_move()?;
    let (x, y) = (c.input(0)?, c.output(0));
    c.check(
        x.rank == 4 && y.rank == 4,
        "resize tensors must be 4-D (NHWC)",
    )?;
    let ([n, _, _, ch], [yn, _, _, yc]) = (dims4(&x), dims4(&y));
    c.check(
        n == yn && ch == yc,
        "resize keeps the batch and the channels",
    )
}

pub(super) fn run(v: &View, p: &ResizeParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    if !cfg!(feature = "extended-ops") {
        return no_kernel(v);
    }
    let xt = v.info(0)?;
    let (xs, ys) = (dims4(&xt), dims4(yt));
    let x = v.bytes(&xt)?;
    match xt.dtype {
        DType::I8 if p.bilinear => {
            resize_bilinear_i8(p, bytes_as_i8(x), xs, bytes_as_i8_mut(out), ys)
        }
        DType::I8 => resize_nearest(p, bytes_as_i8(x), xs, bytes_as_i8_mut(out), ys),
        DType::F32 if cfg!(feature = "float") && p.bilinear => {
            resize_bilinear_f32(p, bytes_as_f32(x), xs, bytes_as_f32_mut(out), ys)
        }
        DType::F32 if cfg!(feature = "float") => {
            resize_nearest(p, bytes_as_f32(x), xs, bytes_as_f32_mut(out), ys)
        }
        _ => return no_kernel(v),
    }
    Ok(())
}

/// Nearest-neighbour resize (any element type): whole pixels copied.
pub fn resize_nearest<T: Copy>(
    p: &ResizeParams,
    x: &[T],
    xs: [usize; 4],
    y: &mut [T],
    ys: [usize; 4],
) {
    let [n, h, w, c] = xs;
    let [_, oh, ow, _] = ys;
    let mut out = y.chunks_exact_mut(c);
    for b in 0..n {
        for oy in 0..oh {
            let iy = p.nearest(oy, h, oh, p.scale[0]);
            for ox in 0..ow {
                let ix = p.nearest(ox, w, ow, p.scale[1]);
                if let Some(o) = out.next() {
                    o.copy_from_slice(&x[((b * h + iy) * w + ix) * c..][..c]);
                }
            }
        }
    }
}

/// f32 bilinear resize, each output the four-neighbour blend of TFLite's reference kernel.
pub fn resize_bilinear_f32(
    p: &ResizeParams,
    x: &[f32],
    xs: [usize; 4],
    y: &mut [f32],
    ys: [usize; 4],
) {
    let [n, h, w, c] = xs;
    let [_, oh, ow, _] = ys;
    let mut out = y.chunks_exact_mut(c);
    for b in 0..n {
        for oy in 0..oh {
            let (y0, y1, vy) = p.linear(oy, h, oh, p.scale[0]);
            let fy = vy - y0 as f32;
            for ox in 0..ow {
                let (x0, x1, vx) = p.linear(ox, w, ow, p.scale[1]);
                let fx = vx - x0 as f32;
                let at = |yy: usize, xx: usize| &x[((b * h + yy) * w + xx) * c..][..c];
                let (a, bb, cc, d) = (at(y0, x0), at(y1, x0), at(y0, x1), at(y1, x1));
                if let Some(o) = out.next() {
                    for k in 0..c {
                        o[k] = a[k] * (1.0 - fy) * (1.0 - fx)
                            + bb[k] * fy * (1.0 - fx)
                            + cc[k] * (1.0 - fy) * fx
                            + d[k] * fy * fx;
                    }
                }
            }
        }
    }
}

/// int8 bilinear resize: TFLite's reference integer kernel (10-bit coordinates, a 64-bit blend
/// rounded half away from zero).
pub fn resize_bilinear_i8(
    p: &ResizeParams,
    x: &[i8],
    xs: [usize; 4],
    y: &mut [i8],
    ys: [usize; 4],
) {
    let [n, h, w, c] = xs;
    let [_, oh, ow, _] = ys;
    let (sh, sw, half) = (p.scale10(h, oh), p.scale10(w, ow), p.half_pixel());
    let mut out = y.chunks_exact_mut(c);
    for b in 0..n {
        for oy in 0..oh {
            let (vy, y0, y1) = linear10(oy, sh, half, h);
            let dy = vy - (1 << 10) * y0 as i64;
            for ox in 0..ow {
                let (vx, x0, x1) = linear10(ox, sw, half, w);
                let dx = vx - (1 << 10) * x0 as i64;
                let at = |yy: usize, xx: usize| &x[((b * h + yy) * w + xx) * c..][..c];
                let (a, bb, cc, d) = (at(y0, x0), at(y1, x0), at(y0, x1), at(y1, x1));
                if let Some(o) = out.next() {
                    for k in 0..c {
                        let v = a[k] as i64 * ((1 << 10) - dy) * ((1 << 10) - dx)
                            + bb[k] as i64 * dy * ((1 << 10) - dx)
                            + cc[k] as i64 * ((1 << 10) - dy) * dx
                            + d[k] as i64 * dy * dx;
                        let round = if v > 0 { 1 << 19 } else { -(1 << 19) };
                        o[k] = ((v + round) / (1 << 20)) as i8;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every transform, both modes, upscales far past anything TFLite runs and downscales to
    /// one pixel: each read stays inside the input (no panic), and a constant image stays
    /// constant (every blend's weights sum to one).
    #[test]
    fn extreme_sizes_stay_in_bounds_and_constant_images_stay_constant() {
        for transform in Transform::ALL.iter().copied() {
            for bilinear in [false, true] {
                for (h, oh) in [(1, 5000), (3, 1), (2, 4097), (7, 3)] {
                    let p = ResizeParams {
                        bilinear,
                        transform,
                        rounding: NearestRounding::RoundPreferCeil,
                        scale: [oh as f32 / h as f32, 1.0],
                    };
                    let x8 = [-7i8; 7];
                    let mut y8 = [0i8; 5000];
                    let y8 = &mut y8[..oh];
                    let xf = [2.5f32; 7];
                    let mut yf = [0f32; 5000];
                    let yf = &mut yf[..oh];
                    let (xs, ys) = ([1, h, 1, 1], [1, oh, 1, 1]);
                    if bilinear {
                        resize_bilinear_i8(&p, &x8[..h], xs, y8, ys);
                        resize_bilinear_f32(&p, &xf[..h], xs, yf, ys);
                    } else {
                        resize_nearest(&p, &x8[..h], xs, y8, ys);
                        resize_nearest(&p, &xf[..h], xs, yf, ys);
                    }
                    assert!(
                        y8.iter().all(|&v| v == -7),
                        "{transform:?} {bilinear} {h}->{oh}"
                    );
                    assert!(
                        yf.iter().all(|&v| (v - 2.5).abs() < 1e-5),
                        "{transform:?} {bilinear} {h}->{oh}"
                    );
                }
            }
        }
    }
}
