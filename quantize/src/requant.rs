//! Requantization parameters, as TFLite's `quantization_util.cc` and kernel `Prepare` functions
//! compute them (double precision, round half away from zero).

/// `(mantissa, exponent)` with `x = mantissa * 2^exponent`, mantissa in `[0.5, 1)` (C `frexp`).
pub fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale into the normal range first.
        let (m, e) = frexp(x * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (m, e - 54);
    }
    let mantissa = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (mantissa, exp - 1022)
}

/// TFLite's `QuantizeMultiplier`: a real multiplier as a Q0.31 fixed-point value and a shift
/// (positive = left), so that `real = multiplier * 2^(shift - 31)`.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real == 0.0 {
        return (0, 0);
    }
    let (q, mut shift) = frexp(real);
    let mut q_fixed = (q * (1u64 << 31) as f64).round() as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        shift = 0;
        q_fixed = 0;
    }
    (q_fixed as i32, shift)
}

/// The per-output-channel multipliers and shifts of a conv/dense:
/// `input_scale * weight_scale[c] / output_scale`, each in double as TFLite computes it.
pub fn conv_multipliers(
    input_scale: f32,
    weight_scales: &[f32],
    output_scale: f32,
) -> (Vec<i32>, Vec<i32>) {
    weight_scales
        .iter()
        .map(|&ws| quantize_multiplier(input_scale as f64 * ws as f64 / output_scale as f64))
        .unzip()
}

/// Fused activations as TFLite encodes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// No clamp beyond the type's range.
    None,
    /// max(x, 0)
    Relu,
    /// clamp(x, -1, 1)
    ReluN1To1,
    /// clamp(x, 0, 6)
    Relu6,
}

/// TFLite's `CalculateActivationRangeQuantized` for int8: the clamp in the quantized domain.
pub fn activation_range_i8(act: Activation, scale: f32, zero_point: i32) -> (i32, i32) {
    let q = |f: f32| zero_point.saturating_add((f / scale).round() as i32);
    match act {
        Activation::None => (-128, 127),
        Activation::Relu => ((-128).max(q(0.0)), 127),
        Activation::Relu6 => ((-128).max(q(0.0)), 127.min(q(6.0))),
        Activation::ReluN1To1 => ((-128).max(q(-1.0)), 127.min(q(1.0))),
    }
}

/// Parameters of TFLite's int8 add/sub: `(left_shift, [(mult, shift); 3])` for input 1, input 2
/// and the output.
pub fn add_params(scale_a: f32, scale_b: f32, scale_out: f32) -> (i32, [(i32, i32); 3]) {
    let left_shift = 20;
    let twice_max = 2.0 * (scale_a.max(scale_b) as f64);
    let real_a = scale_a as f64 / twice_max;
    let real_b = scale_b as f64 / twice_max;
    let real_out = twice_max / ((1i64 << left_shift) as f64 * scale_out as f64);
    (
        left_shift,
        [
            quantize_multiplier(real_a),
            quantize_multiplier(real_b),
            quantize_multiplier(real_out),
        ],
    )
}

/// Parameters of TFLite's int8 softmax: `(input_multiplier, input_left_shift, diff_min)`.
pub fn softmax_params(beta: f32, input_scale: f32) -> (i32, i32, i32) {
    const SCALED_DIFF_INTEGER_BITS: i32 = 5;
    let max_real = (1i64 << 31) as f64 - 1.0;
    let real =
        (beta as f64 * input_scale as f64 * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64)
            .min(max_real);
    let (multiplier, shift) = quantize_multiplier(real);
    let max_input_rescaled = ((1i64 << SCALED_DIFF_INTEGER_BITS) - 1) as f64
        * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64
        / (1i64 << shift) as f64;
    (multiplier, shift, -(max_input_rescaled.floor() as i32))
}

/// TFLite's int8 lookup table for an element-wise function (`LUTPopulate`): entry
/// `(q as u8)` holds `clamp(round(f(in_scale * (q - in_zp)) / out_scale) + out_zp)`, computed in
/// f32 exactly as TFLite does.
pub fn lut_i8(
    in_scale: f32,
    in_zp: i32,
    out_scale: f32,
    out_zp: i32,
    f: impl Fn(f32) -> f32,
) -> Vec<i8> {
    let inverse_scale = 1.0 / out_scale;
    let mut table = vec![0i8; 256];
    for q in -128i32..=127 {
        let dequantized = in_scale * (q - in_zp) as f32;
        let rescaled = (f(dequantized) * inverse_scale).round();
        let quantized = (rescaled + out_zp as f32) as i32;
        table[q as i8 as u8 as usize] = quantized.clamp(-128, 127) as i8;
    }
    table
}

/// TFLite's logistic, as its lookup table evaluates it.
pub fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Parameters of an int8 multiply: the multiplier and shift of `scale_a * scale_b / scale_out`.
pub fn mul_params(scale_a: f32, scale_b: f32, scale_out: f32) -> (i32, i32) {
    quantize_multiplier(scale_a as f64 * scale_b as f64 / scale_out as f64)
}

/// Parameters of TFLite's int8 mean over `count` elements: the multiplier of
/// `input_scale / output_scale` with `1 / count` folded in as `QuantizedMeanOrSum` does.
pub fn mean_params(input_scale: f32, output_scale: f32, count: i64) -> (i32, i32) {
    let (mut multiplier, mut shift) = quantize_multiplier(input_scale as f64 / output_scale as f64);
    let mut s = 63 - (count as u64).leading_zeros() as i32;
    s = s.min(32).min(31 + shift);
    multiplier = (((multiplier as i64) << s) / count) as i32;
    shift -= s;
    (multiplier, shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_like_c() {
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(3.0), (0.75, 2));
        let (m, e) = frexp(1e-310);
        // 1e-310 = 0.57526... * 2^-1029 (a subnormal; Python math.frexp agrees)
        assert!(
            (m - 0.575_261_803_155_939_3).abs() < 1e-15 && e == -1029,
            "{m} {e}"
        );
    }

    #[test]
    fn multipliers() {
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        // Rounds up to 2^31: renormalized.
        assert_eq!(quantize_multiplier(0.999_999_999_9), (1 << 30, 1));
        let (m, s) = quantize_multiplier(0.003);
        let back = m as f64 * 2f64.powi(s - 31);
        assert!((back - 0.003).abs() < 1e-11);
    }

    #[test]
    fn activation_ranges() {
        assert_eq!(activation_range_i8(Activation::Relu, 0.1, -10), (-10, 127));
        assert_eq!(
            activation_range_i8(Activation::Relu6, 0.1, -128),
            (-128, -68)
        );
        assert_eq!(activation_range_i8(Activation::None, 0.1, 0), (-128, 127));
    }
}
