//! Requantization and element-wise add in forms a 32-bit core without SIMD computes quickly,
//! bit-exact with TFLite's reference arithmetic ([`crate::kernels::reference_i8`]); the
//! Cortex-M DSP kernels use [`Rq`], and every instruction set without a vector add runs
//! [`add_tables`].

// Only the Cortex-M DSP kernels read `Rq` per layer (`covers`, `of`, the single-rounding form).
#![cfg_attr(not(kiln_dsp), allow(dead_code))]

use crate::kernels::reference_i8::{QuantParams, Rounding};

/// One output channel's requantization in a form the Cortex-M computes in a few instructions,
/// bit-exact with [`QuantParams::requantize_with`] (TFLite's double rounding) for the layers
/// [`Rq::covers`].
///
/// With `p = acc · mult` (64-bit) and a right shift `R`, TFLite computes
/// `r = SaturatingRoundingDoublingHighMul(acc, mult)`, which is `⌊(p + 2^30) / 2^31⌋` (the
/// nudge toward zero of a negative product and C++'s truncating division cancel), then the
/// rounding shift `⌊(r + 2^(R-1) - [r < 0]) / 2^R⌋`, then adds the zero point and clamps.
/// Nested floors of integers merge, so before the zero point the output is
/// `⌊(p + 2^30 + 2^(30+R) - [r < 0]·2^31) / 2^(31+R)⌋`: one multiply-accumulate into a
/// per-channel 64-bit constant, one more for the sign term, and the high word shifted right by
/// `R - 1`. With `mult > 2^30` (TFLite normalizes multipliers to `[2^30, 2^31)`), `r < 0`
/// exactly when `acc < 0`; with `1 ≤ R ≤ 31` nothing overflows, and the result is below
/// `2^30` in magnitude, so adding the zero point never saturates. A zero multiplier (TFLite's
/// for scales below `2^-32`) gives the zero point: the constant `2^31` with no shift.
#[derive(Clone, Copy)]
pub(crate) struct Rq {
    pub(crate) mult: i32,
    pub(crate) rsh: u32,
    pub(crate) c: i64,
}

impl Rq {
    /// Whether every channel of `q` (`co` of them) has the fast form: double rounding and a
    /// normalized multiplier above `2^30` with a right shift of 1 to 31, or a zero multiplier.
    pub(crate) fn covers(q: &QuantParams<'_>, co: usize) -> bool {
        Rq::every_channel(q, co, Rounding::Double, |c| {
            Rq::fast(q.multiplier.get(c), q.shift_of(c))
        })
    }

    /// Whether `q` rounds as `rounding`, has an int8 zero point and a clamp, and every one of
    /// its `co` channels (one table entry when per-tensor) passes `ok`.
    #[inline(always)]
    fn every_channel(
        q: &QuantParams<'_>,
        co: usize,
        rounding: Rounding,
        ok: impl Fn(usize) -> bool,
    ) -> bool {
        let n = if q.multiplier.len() == 1 { 1 } else { co };
        q.rounding == rounding
            && q.act[0] <= q.act[1]
            && (-128..=127).contains(&q.output_zp)
            && (0..n).all(ok)
    }

    /// Channel `c`'s constants (meaningful when [`Rq::covers`] holds).
    #[inline(always)]
    pub(crate) fn of(q: &QuantParams<'_>, c: usize) -> Rq {
        Rq::with(q.multiplier.get(c), q.shift_of(c))
    }

    /// Whether every channel of `q` has the fast form of single rounding
    /// (`TFLITE_SINGLE_ROUNDING`, [`Rq::single`]): a right shift of 1 to 31.
    pub(crate) fn covers_single(q: &QuantParams<'_>, co: usize) -> bool {
        Rq::every_channel(q, co, Rounding::Single, |c| {
            (-31..=-1).contains(&q.shift_of(c))
        })
    }

    /// Whether `(mult, shift)` has the fast form (see [`Rq::covers`]).
    #[inline(always)]
    pub(crate) fn fast(mult: i32, shift: i32) -> bool {
        mult == 0 || (mult > 1 << 30 && (-31..=-1).contains(&shift))
    }

    /// The constants of `(mult, shift)` (meaningful when [`Rq::fast`] holds).
    #[inline(always)]
    pub(crate) fn with(mult: i32, shift: i32) -> Rq {
        if mult == 0 {
            return Rq {
                mult,
                rsh: 0,
                c: 1 << 31,
            };
        }
        let r = shift.saturating_neg().clamp(1, 31) as u32;
        Rq {
            mult,
            rsh: r - 1,
            c: (1i64 << 30) + (1i64 << (30 + r)),
        }
    }

    /// Channel `c`'s constants for single rounding: `⌊(p + 2^(30+R)) / 2^(31+R)⌋`, the same
    /// multiply-accumulate without the sign term (meaningful when [`Rq::covers_single`] holds).
    #[inline(always)]
    pub(crate) fn single(q: &QuantParams<'_>, c: usize) -> Rq {
        let r = q.shift_of(c).saturating_neg().clamp(1, 31) as u32;
        Rq {
            mult: q.multiplier.get(c),
            rsh: r - 1,
            c: 1i64 << (30 + r),
        }
    }

    /// [`Rq::scale`] for constants from [`Rq::single`].
    #[inline(always)]
    pub(crate) fn scale_single(&self, acc: i32) -> i32 {
        let t = acc as i64 * self.mult as i64 + self.c;
        ((t >> 32) as i32) >> self.rsh
    }

    /// The output of accumulator `acc` (bias included) before the zero point and clamp: the
    /// product accumulated into the constant (`smlal`), the sign term added to it, and one
    /// shift of the high word.
    #[inline(always)]
    pub(crate) fn scale(&self, acc: i32) -> i32 {
        let t = acc as i64 * self.mult as i64 + (((acc >> 31) as i64) << 31) + self.c;
        ((t >> 32) as i32) >> self.rsh
    }
}

/// Elements below which [`add_tables`] leaves the work to the scalar loop (its tables cost about as
/// much as this many elements).
const ADD_MIN: usize = 256;

/// int8 add/sub of two same-shape tensors, bit-exact with
/// [`add_one`](crate::kernels::reference_i8::add_one): TFLite rescales each input,
/// `SaturatingRoundingDoublingHighMul` then a rounding shift of `(x - z) << left`, which
/// depends on one byte, so both are read from 256-entry tables built here; the rescale of the
/// sum takes [`Rq`]'s fast form when its multiplier has it. Returns false (writing nothing) for
/// short tensors or shifts outside TFLite's range.
pub(crate) fn add_tables(
    a: &[i8],
    b: &[i8],
    y: &mut [i8],
    p: &crate::kernels::reference_i8::AddParams,
) -> bool {
    use crate::kernels::reference_i8::{add_input, add_output};
    let n = y.len();
    let ok_shift = |s: i32| (-31..=0).contains(&s);
    if n < ADD_MIN
        || a.len() != n
        || b.len() != n
        || !(0..=31).contains(&p.q.left_shift)
        || !p.q.mult.iter().all(|&(_, s)| ok_shift(s))
        || p.act[0] > p.act[1]
    {
        return false;
    }
    // Each input's rescaled value, by the reference's own arithmetic, once per byte value.
    let mut ta = [0i32; 256];
    let mut tb = [0i32; 256];
    for v in i8::MIN..=i8::MAX {
        ta[v as u8 as usize] = add_input(v, 0, p);
        let sb = add_input(v, 1, p);
        tb[v as u8 as usize] = if p.subtract { sb.wrapping_neg() } else { sb };
    }
    let (m2, s2) = p.q.mult[2];
    let (zp, lo, hi) = (p.zp[2], p.act[0], p.act[1]);
    if Rq::fast(m2, s2) && (-128..=127).contains(&zp) {
        let rq = Rq::with(m2, s2);
        for ((o, &x), &z) in y.iter_mut().zip(a).zip(b) {
            let sum = ta[x as u8 as usize].wrapping_add(tb[z as u8 as usize]);
            *o = (rq.scale(sum) + zp).max(lo).min(hi) as i8;
        }
    } else {
        for ((o, &x), &z) in y.iter_mut().zip(a).zip(b) {
            *o = add_output(ta[x as u8 as usize].wrapping_add(tb[z as u8 as usize]), p);
        }
    }
    true
}
