//! Fixed-point arithmetic with the exact semantics of TFLite's reference kernels (gemmlowp's
//! `fixedpoint.h` and TFLite's `common.h`, double-rounding variant), so int8 results are
//! reproducible on every CPU and bit-exact with TFLite.
//!
//! A Q-format value with `I` integer bits is an `i32` raw value `r` meaning `r / 2^(31 - I)`.

/// `(a * b * 2) >> 32` rounded to nearest (ties away from zero), saturating the one overflow
/// case `i32::MIN * i32::MIN`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // C++ integer division truncates toward zero, as Rust's does.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent` rounded to nearest, ties away from zero (`0 <= exponent <= 31`).
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    debug_assert!((0..=31).contains(&exponent));
    let mask: i32 = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> exponent) + (remainder > threshold) as i32
}

/// `x * multiplier * 2^shift` with TFLite's double rounding (`shift` > 0 shifts left first).
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = if shift > 0 { shift } else { 0 };
    let right = if shift > 0 { 0 } else { -shift };
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x.wrapping_mul(1 << left), multiplier),
        right,
    )
}

/// `x * multiplier * 2^shift` with a single rounding (`TFLITE_SINGLE_ROUNDING`): one 64-bit
/// product, one shift rounding half up. `shift` must lie in `-31..=30`.
#[inline]
pub fn multiply_by_quantized_multiplier_single(x: i32, multiplier: i32, shift: i32) -> i32 {
    let total_shift = 31 - shift as i64;
    let round = 1i64 << (total_shift - 1);
    ((x as i64 * multiplier as i64 + round) >> total_shift) as i32
}

/// Saturating `x * 2^exponent` (rounding when `exponent < 0`).
#[inline]
pub fn saturating_rounding_multiply_by_pot(x: i32, exponent: i32) -> i32 {
    if exponent == 0 {
        x
    } else if exponent > 0 {
        let threshold: i32 = ((1i64 << (31 - exponent)) - 1) as i32;
        if x > threshold {
            i32::MAX
        } else if x < -threshold {
            i32::MIN
        } else {
            x << exponent
        }
    } else {
        rounding_divide_by_pot(x, -exponent)
    }
}

/// Product of two fixed-point numbers: the result has the sum of their integer bits.
#[inline]
fn mul(a: i32, b: i32) -> i32 {
    saturating_rounding_doubling_high_mul(a, b)
}

/// Changes the integer bits of a fixed-point value from `src` to `dst`.
#[inline]
pub fn rescale(x: i32, src_integer_bits: i32, dst_integer_bits: i32) -> i32 {
    saturating_rounding_multiply_by_pot(x, src_integer_bits - dst_integer_bits)
}

/// `(a + b) / 2` rounded, as gemmlowp's `RoundingHalfSum`.
#[inline]
fn rounding_half_sum(a: i32, b: i32) -> i32 {
    let sum = a as i64 + b as i64;
    let sign = if sum >= 0 { 1 } else { -1 };
    ((sum + sign) / 2) as i32
}

/// `exp(a)` for Q0.31 `a` in `[-1/4, 0)`, result Q0.31.
fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    const CONSTANT_TERM: i32 = 1_895_147_668; // exp(-1/8)
    const ONE_THIRD: i32 = 715_827_883;
    let x = a.wrapping_add(1 << 28); // a + 1/8
    let x2 = mul(x, x);
    let x3 = mul(x2, x);
    let x4 = mul(x2, x2);
    let x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2);
    let poly = saturating_rounding_multiply_by_pot(
        mul(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2),
        -1,
    );
    CONSTANT_TERM.wrapping_add(mul(CONSTANT_TERM, x.wrapping_add(poly)))
}

/// `exp(a)` for a non-positive fixed-point `a` with `integer_bits` integer bits; result Q0.31.
pub fn exp_on_negative_values(a: i32, integer_bits: i32) -> i32 {
    let fractional_bits = 31 - integer_bits;
    let one_quarter: i32 = 1 << (fractional_bits - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(rescale(
        a_mod_quarter_minus_one_quarter,
        integer_bits,
        0,
    ));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    // Barrel shifter: multiply by exp(-2^k) for each bit of the remainder.
    const BARREL: [(i32, i32); 7] = [
        (-2, 1_672_461_947),
        (-1, 1_302_514_674),
        (0, 790_015_084),
        (1, 290_630_308),
        (2, 39_332_535),
        (3, 720_401),
        (4, 242),
    ];
    for (exponent, multiplier) in BARREL {
        if integer_bits > exponent {
            let shift = fractional_bits + exponent;
            if remainder & (1 << shift) != 0 {
                result = mul(result, multiplier);
            }
        }
    }
    if integer_bits > 5 {
        let clamp = -(1i32 << (fractional_bits + 5));
        if a < clamp {
            result = 0;
        }
    }
    if a == 0 {
        result = i32::MAX;
    }
    result
}

/// `1 / (1 + a)` for Q0.31 `a` in `[0, 1)`, result Q0.31 (Newton-Raphson, 3 iterations).
pub fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    let half_denominator = rounding_half_sum(a, i32::MAX);
    const C48_OVER_17: i32 = 1_515_870_810; // Q2.29
    const CNEG32_OVER_17: i32 = -1_010_580_540; // Q2.29
    let mut x = C48_OVER_17.wrapping_add(mul(half_denominator, CNEG32_OVER_17));
    const ONE_Q2: i32 = 1 << 29;
    for _ in 0..3 {
        let half_denominator_times_x = mul(half_denominator, x);
        let one_minus = ONE_Q2.wrapping_sub(half_denominator_times_x);
        x = x.wrapping_add(rescale(mul(x, one_minus), 4, 2));
    }
    // ExactMulByPot<-1> keeps the raw value and moves to Q1.30; then rescale to Q0.31.
    rescale(x, 1, 0)
}

/// TFLite's `GetReciprocal`: `1 / x` for a fixed-point `x` with `integer_digits` integer bits,
/// as a Q0.31 value and the number of bits of `x` above 1.0.
pub fn get_reciprocal(x: i32, integer_digits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros() as i32;
    let num_bits_over_unit = integer_digits - headroom_plus_one;
    let shifted_sum_minus_one = ((x as u32) << headroom_plus_one).wrapping_sub(1u32 << 31) as i32;
    (
        one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one),
        num_bits_over_unit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(x: f64, integer_bits: i32) -> i32 {
        (x * (1u64 << (31 - integer_bits)) as f64).round() as i32
    }

    #[test]
    fn srdhm_and_rounding() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(-4, 1), -2);
        assert_eq!(rounding_divide_by_pot(7, 2), 2);
        // 100 * 0.5 (multiplier 2^30 with shift 0 is 0.5)
        assert_eq!(multiply_by_quantized_multiplier(100, 1 << 30, 0), 50);
        assert_eq!(multiply_by_quantized_multiplier(100, 1 << 30, 2), 200);
        // 101 * 0.5 / 2 = 25.25: double rounding gives round(round(50.5) / 2) = round(25.5) = 26,
        // as TFLite's reference kernels do (single rounding would give 25).
        assert_eq!(multiply_by_quantized_multiplier(101, 1 << 30, -1), 26);
        assert_eq!(
            multiply_by_quantized_multiplier_single(101, 1 << 30, -1),
            25
        );
        assert_eq!(
            multiply_by_quantized_multiplier_single(-101, 1 << 30, -1),
            -25
        );
        assert_eq!(
            multiply_by_quantized_multiplier_single(-102, 1 << 30, -1),
            -25
        );
    }

    #[test]
    fn exp_matches_float() {
        for k in 0..200 {
            let x = -(k as f64) * 0.05;
            let got = exp_on_negative_values(q(x, 5), 5) as f64 / (1u64 << 31) as f64;
            assert!((got - x.exp()).abs() < 2e-6, "exp({x}) = {got}");
        }
    }

    #[test]
    fn reciprocal_matches_float() {
        for k in 0..100 {
            let x = k as f64 / 100.0;
            let got = one_over_one_plus_x_for_x_in_0_1(q(x, 0)) as f64 / (1u64 << 31) as f64;
            assert!((got - 1.0 / (1.0 + x)).abs() < 1e-6, "1/(1+{x}) = {got}");
        }
    }
}
