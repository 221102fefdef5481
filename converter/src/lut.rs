//! int8 element-wise functions as 256-entry tables (kiln's `lut` op) computed with the integer
//! arithmetic of TFLite's reference kernels, so that a table lookup gives exactly the byte the
//! reference kernel computes for each input byte: leaky ReLU and hard-swish here; logistic and
//! tanh are [`kiln_quantize::requant::lut_i8`] of the float function, as TFLite's own tables.

use kiln_quantize::requant::quantize_multiplier;
use kiln_runtime::fixedpoint::multiply_by_quantized_multiplier;

/// TFLite's `MultiplyByQuantizedMultiplier`, saturating where TFLite's own would overflow (its
/// `x · 2^shift` wraps, undefined in C++, once the output scale is some million times finer than
/// the input's, which a crafted file can carry): such values go to the end of the range.
fn rescale(x: i32, m: i32, s: i32) -> i32 {
    let pre = (x as i64) << s.clamp(0, 32);
    if s > 30 || pre > i32::MAX as i64 || pre < i32::MIN as i64 {
        return match x.signum() * m.signum() {
            0 => 0,
            1 => i32::MAX,
            _ => i32::MIN,
        };
    }
    multiply_by_quantized_multiplier(x, m, s)
}

/// The table of `f` over every int8 input byte, indexed by the byte as `u8`.
fn table(f: impl Fn(i32) -> i32) -> Vec<i8> {
    let mut t = vec![0i8; 256];
    for q in -128i32..=127 {
        t[q as i8 as u8 as usize] = f(q).clamp(-128, 127) as i8;
    }
    t
}

/// TFLite's int8 LEAKY_RELU (`reference_ops::QuantizeLeakyRelu`): the input offset, then one of
/// two quantized multipliers, `s_x / s_y` for `x >= 0` and `alpha · s_x / s_y` below, computed
/// in f32 as TFLite's `Prepare` does.
pub fn leaky_relu_i8(sx: f32, zx: i32, sy: f32, zy: i32, alpha: f32) -> Vec<i8> {
    let (mi, si) = quantize_multiplier((sx / sy) as f64);
    let (ma, sa) = quantize_multiplier((sx * alpha / sy) as f64);
    table(|q| {
        let v = q.wrapping_sub(zx);
        let (m, s) = if v >= 0 { (mi, si) } else { (ma, sa) };
        zy.saturating_add(rescale(v, m, s))
    })
}

/// TFLite's int8 RELU, RELU6 and RELU_N1_TO_1 (`QuantizedReluX`): the input rescaled by
/// `s_x / s_y`, clamped to `[lo, hi]` quantized with `roundf` (`hi` infinite: no upper clamp).
pub fn relu_i8(sx: f32, zx: i32, sy: f32, zy: i32, lo: f32, hi: f32) -> Vec<i8> {
    let (m, s) = quantize_multiplier((sx / sy) as f64);
    // Saturating, and kept ordered: any clip bounds give a valid range (TFLite's for the
    // ReLUs, whose lower bound is at most 0).
    let qlo = zy.saturating_add((lo / sy).round() as i32).clamp(-128, 127);
    let qhi = if hi.is_infinite() {
        127
    } else {
        zy.saturating_add((hi / sy).round() as i32).clamp(qlo, 127)
    };
    table(|q| {
        zy.saturating_add(rescale(q.wrapping_sub(zx), m, s))
            .clamp(qlo, qhi)
    })
}

/// gemmlowp's 16-bit `SaturatingRoundingDoublingHighMul`.
fn srdhm16(a: i16, b: i16) -> i16 {
    if a == b && a == i16::MIN {
        return i16::MAX;
    }
    let ab = a as i32 * b as i32;
    let nudge = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((ab + nudge) / (1 << 15)) as i16
}

/// TFLite's `SaturatingDoublingHighMul` (16-bit, rounding toward zero).
fn sdhm16(a: i16, b: i16) -> i16 {
    if a == b && a == i16::MIN {
        return i16::MAX;
    }
    ((a as i32 * b as i32) / (1 << 15)) as i16
}

/// gemmlowp's `RoundingDivideByPOT` on 16 bits (`0 <= exponent <= 31`; C++'s promotions and
/// truncations kept for exponents of 16 and more).
fn rdbpot16(x: i16, exponent: i32) -> i16 {
    // Past 31 bits C++ would shift out of range; the value is gone either way.
    let exponent = exponent.clamp(0, 31);
    let mask = ((1i64 << exponent) - 1) as i16;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i16;
    (((x as i32) >> exponent) as i16).wrapping_add((remainder > threshold) as i16)
}

/// TFLite's `SaturatingLeftShift` on 16 bits.
fn sat_shl16(v: i16, amount: i32) -> i16 {
    // Any shift past 31 saturates every non-zero value, as a shift of 31 does.
    let amount = amount.clamp(0, 31);
    (v as i64 * (1i64 << amount)).clamp(i16::MIN as i64, i16::MAX as i64) as i16
}

/// TFLite's `DownScaleInt32ToInt16Multiplier`.
fn to_i16_multiplier(m: i32) -> i16 {
    const ROUND: i32 = 1 << 15;
    if m >= i32::MAX - ROUND {
        return i16::MAX;
    }
    ((m + ROUND) >> 16) as i16
}

/// TFLite's int8 HARD_SWISH (`reference_ops::HardSwish` with the parameters of its `Prepare`):
/// 16-bit fixed point on a "high-resolution" input scale `s_x / 128`, a saturating "relu-ish"
/// factor in [0, 1] and a final rounding shift. `None` when TFLite would refuse the
/// quantization (an output multiplier above 1).
pub fn hard_swish_i8(sx: f32, zx: i32, sy: f32, zy: i32) -> Option<Vec<i8>> {
    let hires = (1.0f32 / 128.0) * sx;
    let reluish_scale = 3.0f32 / 32768.0;
    let (om, oe) = quantize_multiplier((hires / sy) as f64);
    if oe > 0 {
        return None;
    }
    let (rm, re) = quantize_multiplier((hires / reluish_scale) as f64);
    let (om16, rm16) = (to_i16_multiplier(om), to_i16_multiplier(rm));
    Some(table(|q| {
        let v = (q - zx) as i16;
        let hires_v = v.wrapping_mul(1 << 7);
        let preshift_out = srdhm16(hires_v, om16);
        let mut r = hires_v;
        if re > 0 {
            r = sat_shl16(r, re - 1);
        }
        r = srdhm16(r, rm16);
        if re > 0 {
            r = sat_shl16(r, 1);
        }
        if re < 0 {
            r = rdbpot16(r, -re);
        }
        let r = ((r as i32 + (1 << 15)) >> 1) as i16;
        let pre = sdhm16(r, preshift_out);
        // C++ adds the zero point in int and stores it back into an int16 before clamping.
        ((rdbpot16(pre, -oe) as i32 + zy) as i16) as i32
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any scale a file can carry, from 1e-30 to 1e30, and zero points at the limits: every
    /// table is built (no overflow, no crossed clamp, which a fuzzed file once caused) and the
    /// monotone functions stay monotone in the input value.
    #[test]
    fn extreme_quantizations_build_monotone_tables() {
        let scales = [1e-30f32, 6.5e-12, 1e-3, 0.05, 1.0, 1e3, 1e12, 1e30];
        let monotone = |t: &[i8]| {
            (-128i32..127).all(|q| t[q as i8 as u8 as usize] <= t[(q + 1) as i8 as u8 as usize])
        };
        for &sx in &scales {
            for &sy in &scales {
                for zx in [-128, 0, 127] {
                    for zy in [-128, 0, 127] {
                        for (lo, hi) in [(0.0, f32::INFINITY), (0.0, 6.0), (-1.0, 1.0), (2.0, 5.0)]
                        {
                            assert!(
                                monotone(&relu_i8(sx, zx, sy, zy, lo, hi)),
                                "{sx} {zx} {sy} {zy} {lo} {hi}"
                            );
                        }
                        for alpha in [0.0, 0.1, 0.5] {
                            assert!(
                                monotone(&leaky_relu_i8(sx, zx, sy, zy, alpha)),
                                "{sx} {zx} {sy} {zy} {alpha}"
                            );
                        }
                        let _ = hard_swish_i8(sx, zx, sy, zy);
                    }
                }
            }
        }
    }
}
