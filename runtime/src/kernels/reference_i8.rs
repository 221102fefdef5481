//! Portable int8 reference kernels, bit-exact with TFLite's reference integer kernels
//! (`reference_integer_ops`). Requantization parameters are precomputed by the converter.

use crate::fixedpoint::{
    exp_on_negative_values, get_reciprocal, multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_single, rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
};

/// Quantization of a conv/dense: zero points, per-output-channel requantization, clamp.
#[derive(Clone, Copy, Debug)]
pub struct QuantParams<'a> {
    /// Zero point of the input activation.
    pub input_zp: i32,
    /// Zero point of the weights (0 for symmetric weights).
    pub weight_zp: i32,
    /// Zero point of the output activation.
    pub output_zp: i32,
    /// Fixed-point multiplier per output channel (one entry = per-tensor).
    pub multiplier: Multipliers<'a>,
    /// Shift per output channel (positive = left).
    pub shift: Shifts<'a>,
    /// Output clamp `[min, max]` in the quantized domain.
    pub act: [i32; 2],
    /// How the accumulator is rescaled.
    pub rounding: Rounding,
}

/// Per-channel Q0.31 multipliers, stored as i32 (TFLite's layout) or as i16 holding the top 16
/// bits (compact; kiln's own quantizer picks scales whose multipliers fit).
#[derive(Clone, Copy, Debug)]
pub enum Multipliers<'a> {
    /// One Q0.31 multiplier per channel.
    I32(&'a [i32]),
    /// One multiplier per channel, `(m as i32) << 16`.
    I16(&'a [i16]),
}

impl Multipliers<'_> {
    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Multipliers::I32(m) => m.len(),
            Multipliers::I16(m) => m.len(),
        }
    }
    /// Whether there are no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The Q0.31 multiplier of channel `c`.
    #[inline]
    pub fn get(&self, c: usize) -> i32 {
        match self {
            Multipliers::I32(m) => m[c],
            Multipliers::I16(m) => (m[c] as i32) << 16,
        }
    }
}

/// Per-channel shifts, stored as i32 (TFLite's layout) or i8 (compact).
#[derive(Clone, Copy, Debug)]
pub enum Shifts<'a> {
    /// One i32 per channel.
    I32(&'a [i32]),
    /// One i8 per channel.
    I8(&'a [i8]),
}

impl Shifts<'_> {
    #[inline]
    fn get(&self, c: usize) -> i32 {
        match self {
            Shifts::I32(s) => s[c],
            Shifts::I8(s) => s[c] as i32,
        }
    }
}

/// The two requantization roundings TFLite builds use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// gemmlowp's rounding doubling high multiply, then a rounding right shift (TFLite's default
    /// reference kernels, TFLite Micro).
    Double,
    /// One 64-bit multiply and one rounding shift (`TFLITE_SINGLE_ROUNDING`; LiteRT's reference
    /// fully connected kernel).
    Single,
}

impl QuantParams<'_> {
    /// The output value for accumulator `acc` of output channel `channel`.
    #[inline]
    pub fn requantize(&self, acc: i32, channel: usize) -> i8 {
        let c = if self.multiplier.len() == 1 {
            0
        } else {
            channel
        };
        self.requantize_with(acc, self.multiplier.get(c), self.shift.get(c))
    }

    /// The shift of table entry `c` (positive = left).
    #[inline]
    pub fn shift_of(&self, c: usize) -> i32 {
        self.shift.get(c)
    }

    /// The output value for accumulator `acc` with this multiplier and shift.
    #[inline]
    pub fn requantize_with(&self, acc: i32, multiplier: i32, shift: i32) -> i8 {
        let scaled = match self.rounding {
            Rounding::Double => multiply_by_quantized_multiplier(acc, multiplier, shift),
            Rounding::Single => multiply_by_quantized_multiplier_single(acc, multiplier, shift),
        };
        scaled
            .saturating_add(self.output_zp)
            .clamp(self.act[0], self.act[1]) as i8
    }
}

/// int8 2-D convolution (per-channel), NHWC / OHWI, int32 bias.
#[allow(clippy::too_many_arguments)]
// Out of line: inlined into the dispatch (or the optimized kernel's fallback), the M4 keyword
// spotter took up to 34.9 M instead of 29.6 M instructions per inference (opt-level "s", LTO).
#[inline(never)]
pub fn conv2d(
    x: &[i8],
    xs: [usize; 4],
    w: &[i8],
    ws: [usize; 4],
    bias: Option<&[i32]>,
    y: &mut [i8],
    ys: [usize; 4],
    geo: &crate::ops::ConvGeom,
    q: &QuantParams<'_>,
) {
    let [n, h, wd, ci] = xs;
    let [co, kh, kw, cig] = ws;
    let [_, oh, ow, _] = ys;
    let cog = co / geo.groups;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for oc in 0..co {
                    let g = oc / cog;
                    let mut acc: i32 = 0;
                    geo.taps((oy, ox), [h, wd], [kh, kw], |ky, kx, iy, ix| {
                        let xrow = &x[((b * h + iy) * wd + ix) * ci + g * cig..][..cig];
                        let wrow = &w[((oc * kh + ky) * kw + kx) * cig..][..cig];
                        for (&a, &f) in xrow.iter().zip(wrow) {
                            acc = acc
                                .wrapping_add((a as i32 - q.input_zp) * (f as i32 - q.weight_zp));
                        }
                    });
                    if let Some(bb) = bias {
                        acc = acc.wrapping_add(bb[oc]);
                    }
                    y[((b * oh + oy) * ow + ox) * co + oc] = q.requantize(acc, oc);
                }
            }
        }
    }
}

/// int8 transposed 2-D convolution (per-channel), NHWC / `[O, KH, KW, I/groups]`, int32 bias:
/// the sum TFLite's reference kernel scatters into its int32 scratch, gathered per output pixel
/// instead (the same integers in another order: two's-complement sums do not depend on it),
/// then requantized.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub fn transpose_conv(
    x: &[i8],
    xs: [usize; 4],
    w: &[i8],
    ws: [usize; 4],
    bias: Option<&[i32]>,
    y: &mut [i8],
    ys: [usize; 4],
    geo: &crate::ops::ConvGeom,
    q: &QuantParams<'_>,
) {
    let [_, h, wd, ci] = xs;
    let [co, kh, kw, cig] = ws;
    let [n, oh, ow, _] = ys;
    let cog = co / geo.groups;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for oc in 0..co {
                    let g = oc / cog;
                    let mut acc: i32 = 0;
                    geo.transposed_taps((oy, ox), [h, wd], [kh, kw], |ky, kx, iy, ix| {
                        let xrow = &x[((b * h + iy) * wd + ix) * ci + g * cig..][..cig];
                        let wrow = &w[((oc * kh + ky) * kw + kx) * cig..][..cig];
                        for (&a, &f) in xrow.iter().zip(wrow) {
                            acc = acc
                                .wrapping_add((a as i32 - q.input_zp) * (f as i32 - q.weight_zp));
                        }
                    });
                    if let Some(bb) = bias {
                        acc = acc.wrapping_add(bb[oc]);
                    }
                    y[((b * oh + oy) * ow + ox) * co + oc] = q.requantize(acc, oc);
                }
            }
        }
    }
}

/// int8 fully connected: `y[r, m] = requant(sum_k (x - zx)(w - zw) + bias[m])`.
// Out of line, as `conv2d`.
#[inline(never)]
pub fn dense(
    x: &[i8],
    k: usize,
    w: &[i8],
    m: usize,
    bias: Option<&[i32]>,
    y: &mut [i8],
    q: &QuantParams<'_>,
) {
    for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(m)) {
        for (j, o) in yr.iter_mut().enumerate() {
            let wr = &w[j * k..][..k];
            let mut acc: i32 = 0;
            for (&a, &b) in xr.iter().zip(wr) {
                acc = acc.wrapping_add((a as i32 - q.input_zp) * (b as i32 - q.weight_zp));
            }
            if let Some(bb) = bias {
                acc = acc.wrapping_add(bb[j]);
            }
            *o = q.requantize(acc, j);
        }
    }
}

/// int8 max or average pooling (input and output share scale and zero point, as in TFLite).
/// Average pooling divides with rounding half away from zero over the valid window only.
pub fn pool2d(
    x: &[i8],
    xs: [usize; 4],
    y: &mut [i8],
    ys: [usize; 4],
    p: &crate::ops::PoolWindow,
    act: [i32; 2],
    is_max: bool,
) {
    let [n, h, w, c] = xs;
    let [_, oh, ow, _] = ys;
    // Channels innermost, in chunks: each window pixel's channels are one contiguous run.
    const CHUNK: usize = 64;
    for b in 0..n {
        for oy in 0..oh {
            let (_, rows) = p.span(0, oy, h);
            for ox in 0..ow {
                let (_, cols) = p.span(1, ox, w);
                let count = (rows.len() * cols.len()) as i32;
                let out = &mut y[((b * oh + oy) * ow + ox) * c..][..c];
                for (c0, out) in (0..c).step_by(CHUNK).zip(out.chunks_mut(CHUNK)) {
                    let nc = out.len();
                    let mut acc = [if is_max { i32::MIN } else { 0 }; CHUNK];
                    for iy in rows.clone() {
                        for ix in cols.clone() {
                            let xs = &x[((b * h + iy) * w + ix) * c + c0..][..nc];
                            if is_max {
                                for (a, &v) in acc.iter_mut().zip(xs) {
                                    *a = (*a).max(v as i32);
                                }
                            } else {
                                for (a, &v) in acc.iter_mut().zip(xs) {
                                    *a += v as i32;
                                }
                            }
                        }
                    }
                    for (o, &a) in out.iter_mut().zip(&acc) {
                        let v = if is_max {
                            a
                        } else if count == 0 {
                            0
                        } else if a > 0 {
                            (a + count / 2) / count
                        } else {
                            (a - count / 2) / count
                        };
                        *o = v.clamp(act[0], act[1]) as i8;
                    }
                }
            }
        }
    }
}

/// Requantization of a quantized add/sub (TFLite's general rescaling path).
#[derive(Clone, Copy, Debug)]
pub struct AddParams {
    /// Zero points of a, b and the output.
    pub zp: [i32; 3],
    /// Left shift and the multiplier/shift of a, b and the output.
    pub q: crate::ops::AddQuant,
    /// Output clamp.
    pub act: [i32; 2],
    /// `true` for subtraction.
    pub subtract: bool,
}

#[inline]
fn mbqm_smaller_than_one(x: i32, m: i32, shift: i32) -> i32 {
    rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m), -shift)
}

/// Input `k` (0 or 1) of a quantized add, rescaled to the common scale: `(v - z) << left`, then
/// multiplied by its multiplier.
#[inline]
pub(crate) fn add_input(v: i8, k: usize, p: &AddParams) -> i32 {
    let x = (v as i32 - p.zp[k]).wrapping_mul(1 << p.q.left_shift);
    mbqm_smaller_than_one(x, p.q.mult[k].0, p.q.mult[k].1)
}

/// The output of a quantized add whose rescaled inputs sum (or differ) to `sum`.
#[inline]
pub(crate) fn add_output(sum: i32, p: &AddParams) -> i8 {
    let out = mbqm_smaller_than_one(sum, p.q.mult[2].0, p.q.mult[2].1).saturating_add(p.zp[2]);
    out.clamp(p.act[0], p.act[1]) as i8
}

/// One element of a quantized add.
#[inline]
pub fn add_one(a: i8, b: i8, p: &AddParams) -> i8 {
    let (sa, sb) = (add_input(a, 0, p), add_input(b, 1, p));
    let sum = if p.subtract {
        sa.wrapping_sub(sb)
    } else {
        sa.wrapping_add(sb)
    };
    add_output(sum, p)
}

/// Applies `f` element-wise with numpy broadcasting of `a` and `b` to `ysh`.
pub fn broadcast_binary(
    a: &[i8],
    ash: &[usize],
    b: &[i8],
    bsh: &[usize],
    y: &mut [i8],
    ysh: &[usize],
    f: impl Fn(i8, i8) -> i8,
) {
    super::reference_f32::broadcast(a, ash, b, bsh, y, ysh, f);
}

/// int8 mean over the axes in `mask` (TFLite's `QuantizedMeanOrSum`): the sum of the reduced
/// elements, less `input_zp * count`, rescaled by `multiplier`/`shift` (which already include
/// `1 / count`), plus the output zero point.
#[allow(clippy::too_many_arguments)]
pub fn mean(
    x: &[i8],
    xs: &[usize],
    mask: u32,
    y: &mut [i8],
    input_zp: i32,
    multiplier: i32,
    shift: i32,
    output_zp: i32,
) {
    let off = 6 - xs.len();
    let dims = super::reference_f32::pad6(xs);
    let st = super::reference_f32::strides(&dims);
    // Output space: reduced axes collapsed to 1; reduction space: only the reduced axes.
    let (mut odims, mut rdims) = (dims, [1usize; 6]);
    let mut count: i64 = 1;
    for a in 0..xs.len() {
        if mask & (1 << a) != 0 {
            odims[off + a] = 1;
            rdims[off + a] = xs[a];
            count *= xs[a] as i64;
        }
    }
    let step = super::reference_f32::next_index;
    let mut o = [0usize; 6];
    for out in y.iter_mut() {
        let mut sum: i32 = 0;
        let mut r = [0usize; 6];
        loop {
            let i: usize = (0..6).map(|d| (o[d] + r[d]) * st[d]).sum();
            sum = sum.wrapping_add(x[i] as i32);
            if !step(&mut r, &rdims) {
                break;
            }
        }
        let shifted = (sum as i64 - input_zp as i64 * count) as i32;
        let v =
            multiply_by_quantized_multiplier(shifted, multiplier, shift).saturating_add(output_zp);
        *out = v.clamp(-128, 127) as i8;
        step(&mut o, &odims);
    }
}

/// Requantization of an int8 multiply.
#[derive(Clone, Copy, Debug)]
pub struct MulParams {
    /// Zero points of a, b and the output.
    pub zp: [i32; 3],
    /// Multiplier and shift of `scale_a * scale_b / scale_out`, and the rounding.
    pub q: crate::ops::MulQuant,
    /// Output clamp.
    pub act: [i32; 2],
}

/// One element of a quantized multiply (TFLite's `MulElementwise`).
#[inline]
pub fn mul_one(a: i8, b: i8, p: &MulParams) -> i8 {
    let prod = (a as i32 - p.zp[0]) * (b as i32 - p.zp[1]);
    let scaled = match p.q.rounding {
        Rounding::Double => multiply_by_quantized_multiplier(prod, p.q.multiplier, p.q.shift),
        Rounding::Single => {
            multiply_by_quantized_multiplier_single(prod, p.q.multiplier, p.q.shift)
        }
    };
    scaled.saturating_add(p.zp[2]).clamp(p.act[0], p.act[1]) as i8
}

/// Requantization of an int8 softmax (input scale and beta folded into a multiplier).
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxParams {
    /// Input multiplier (beta x input scale, Q5.26 after the shift).
    pub input_multiplier: i32,
    /// Left shift of the input multiplier.
    pub input_left_shift: i32,
    /// Differences below this are treated as -inf.
    pub diff_min: i32,
}

/// int8 softmax along the last axis (`rows` of `depth`); output scale 1/256, zero point -128.
pub fn softmax(x: &[i8], y: &mut [i8], depth: usize, p: &SoftmaxParams) {
    const SCALED_DIFF_INTEGER_BITS: i32 = 5;
    const ACCUM_INTEGER_BITS: i32 = 12;
    for (xr, yr) in x.chunks_exact(depth).zip(y.chunks_exact_mut(depth)) {
        let max = xr.iter().copied().max().unwrap_or(i8::MIN) as i32;
        let scaled = |v: i8| -> Option<i32> {
            let diff = v as i32 - max;
            (diff >= p.diff_min).then(|| {
                saturating_rounding_doubling_high_mul(
                    diff.wrapping_mul(1 << p.input_left_shift),
                    p.input_multiplier,
                )
            })
        };
        let mut sum_of_exps: i32 = 0; // Q12.19
        for &v in xr {
            if let Some(s) = scaled(v) {
                let e = exp_on_negative_values(s, SCALED_DIFF_INTEGER_BITS);
                sum_of_exps =
                    sum_of_exps.wrapping_add(crate::fixedpoint::rescale(e, 0, ACCUM_INTEGER_BITS));
            }
        }
        let (shifted_scale, num_bits_over_unit) = get_reciprocal(sum_of_exps, ACCUM_INTEGER_BITS);
        let exponent = num_bits_over_unit + 31 - 8;
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = match scaled(v) {
                Some(s) => {
                    let e = exp_on_negative_values(s, SCALED_DIFF_INTEGER_BITS);
                    let unsat = rounding_divide_by_pot(
                        saturating_rounding_doubling_high_mul(shifted_scale, e),
                        exponent.clamp(0, 31),
                    );
                    unsat.saturating_sub(128).clamp(-128, 127) as i8
                }
                None => i8::MIN,
            };
        }
    }
}

/// Float to int8: `round(x / scale) + zero_point`, clamped (TFLite's `AffineQuantize`).
pub fn quantize(x: &[f32], y: &mut [i8], scale: f32, zero_point: i32) {
    for (o, &v) in y.iter_mut().zip(x) {
        // `as i32` saturates; the zero point is added saturating too, so a huge finite input
        // clamps to the end of the range (as TFLite) instead of wrapping to the other end.
        let q = (libm::roundf(v / scale) as i32).saturating_add(zero_point);
        *o = q.clamp(-128, 127) as i8;
    }
}

/// int8 to float: `scale * (q - zero_point)` computed in double, as TFLite's reference.
pub fn dequantize(x: &[i8], y: &mut [f32], scale: f32, zero_point: i32) {
    let s = scale as f64;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = (s * (v as i32 - zero_point) as f64) as f32;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantize_saturates_huge_finite_inputs_instead_of_wrapping() {
        // roundf(1e12 / 0.5) saturates to i32::MAX; adding the zero point used to overflow
        // (a panic in debug builds, a wrap to -128 in release).
        let mut y = [0i8; 5];
        super::quantize(&[1e12, -1e12, 1e6, 3e38, -3e38], &mut y, 0.5, 5);
        assert_eq!(y, [127, -128, 127, 127, -128]);
        let mut y = [0i8; 2];
        super::quantize(&[1e12, -1e12], &mut y, 1e-3, -128);
        assert_eq!(y, [127, -128]);
    }
}
