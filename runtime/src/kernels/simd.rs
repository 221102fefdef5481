//! The int8 inner product every conv / dense kernel spends its time in, with one implementation
//! per instruction set and a portable one that defines the result:
//!
//! `dot(a, b, za, zb) = Σ (a[i] - za) * (b[i] - zb)` in wrapping 32-bit arithmetic, exactly as
//! TFLite's reference kernels accumulate.
//!
//! * **aarch64** (Raspberry Pi 3/4/5): NEON `smull` / `sadalp`, 16 lanes per step. NEON is part of
//!   the aarch64 baseline, so no detection is needed.
//! * **x86-64**: AVX2 `vpmaddwd`, 16 lanes per step, chosen at run time (`std` feature) or at
//!   compile time (`-C target-feature=+avx2`, for `no_std` builds).
//! * **Cortex-M4/M7/M33** (`thumbv7em`, `thumbv8m.main`): the DSP extension's `sxtb16` / `sadd16`
//!   / `smlad`, two 16-bit MACs per instruction (the build script sets `kiln_dsp` for these
//!   targets; Cortex-M0+ has no DSP and takes the portable loop).
//!
//! The vector forms compute `Σab - zb·Σa - za·Σb + n·za·zb`, which equals the reference sum
//! modulo 2^32 (the identity holds in the ring of 32-bit integers), so every path is bit-exact
//! with the portable one; `tests` and `kiln-tests` check that over lengths 0..=100 and every
//! zero point corner.
#![allow(unsafe_code)]

/// `Σ (a[i] - za) * (b[i] - zb)` over the common length, wrapping, portable.
#[inline]
pub fn dot_portable(a: &[i8], b: &[i8], za: i32, zb: i32) -> i32 {
    let mut acc: i32 = 0;
    for (&x, &w) in a.iter().zip(b) {
        acc = acc.wrapping_add((x as i32 - za).wrapping_mul(w as i32 - zb));
    }
    acc
}

/// A dot-product implementation: `(a, b, za, zb) -> Σ (a - za)(b - zb)`.
pub type DotFn = fn(&[i8], &[i8], i32, i32) -> i32;

/// The fastest dot product this CPU supports (checked once per call site; cheap).
#[inline]
pub fn best() -> DotFn {
    select().0
}

/// Name of the instruction set [`best`] uses, for reports.
pub fn isa() -> &'static str {
    select().1
}

/// The dot product for this target and CPU, with the name of its instruction set.
#[inline]
fn select() -> (DotFn, &'static str) {
    #[cfg(target_arch = "aarch64")]
    {
        (neon::dot, "neon")
    }
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    {
        if std::is_x86_feature_detected!("avx2") {
            (avx2_dot, "avx2")
        } else {
            (dot_portable, "portable")
        }
    }
    #[cfg(all(target_arch = "x86_64", not(feature = "std"), target_feature = "avx2"))]
    {
        (avx2_dot, "avx2")
    }
    #[cfg(kiln_dsp)]
    {
        (dsp::dot, "cortex-m dsp")
    }
    #[cfg(not(any(
        target_arch = "aarch64",
        all(target_arch = "x86_64", feature = "std"),
        all(target_arch = "x86_64", not(feature = "std"), target_feature = "avx2"),
        kiln_dsp
    )))]
    {
        (dot_portable, "portable")
    }
}

/// Finishes a vector dot product: adds the raw sums `(Σab, Σa, Σb)` of the elements the vector
/// loop left over (`a_tail`, `b_tail`) to the loop's, then applies the zero points over all `n`
/// elements: `Σab - zb·Σa - za·Σb + n·za·zb` (wrapping).
#[inline]
#[allow(dead_code)]
fn finish(a_tail: &[i8], b_tail: &[i8], n: usize, sums: (i32, i32, i32), za: i32, zb: i32) -> i32 {
    let (mut ab, mut sa, mut sb) = sums;
    for (&x, &w) in a_tail.iter().zip(b_tail) {
        ab = ab.wrapping_add(x as i32 * w as i32);
        sa = sa.wrapping_add(x as i32);
        sb = sb.wrapping_add(w as i32);
    }
    ab.wrapping_sub(zb.wrapping_mul(sa))
        .wrapping_sub(za.wrapping_mul(sb))
        .wrapping_add((n as i32).wrapping_mul(za).wrapping_mul(zb))
}

/// Compares `dot` with [`dot_portable`] over every length 0..=100 (bytes from a fixed LCG) at the
/// zero-point corners, and on all -128 inputs (every product at its maximum). Returns the number
/// of cases, or the first mismatch as `(length, za, zb)`. No allocation: the firmware
/// `dsp_check` runs it on a Cortex-M, the unit tests on the host.
pub fn check_against_portable(dot: DotFn) -> Result<usize, (usize, i32, i32)> {
    let mut seed: u32 = 0x1234_5678;
    let mut next = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 24) as u8 as i8
    };
    let zps = [
        (0, 0),
        (-128, 0),
        (127, 0),
        (5, -3),
        (-128, 127),
        (127, -128),
        (0, 3),
    ];
    let extremes = [(127, 127), (0, 0), (-128, -128)];
    let lo = [-128i8; 100];
    let mut cases = 0;
    for n in 0..=100usize {
        let mut a = [0i8; 100];
        let mut b = [0i8; 100];
        for v in a.iter_mut().chain(b.iter_mut()) {
            *v = next();
        }
        let runs = zps
            .iter()
            .map(|z| (&a, &b, z))
            .chain(extremes.iter().map(|z| (&lo, &lo, z)));
        for (a, b, &(za, zb)) in runs {
            cases += 1;
            if dot(&a[..n], &b[..n], za, zb) != dot_portable(&a[..n], &b[..n], za, zb) {
                return Err((n, za, zb));
            }
        }
    }
    Ok(cases)
}

#[cfg(target_arch = "aarch64")]
pub mod neon {
    //! NEON (aarch64 baseline).
    use core::arch::aarch64::*;

    /// NEON dot product; see the module docs.
    pub fn dot(a: &[i8], b: &[i8], za: i32, zb: i32) -> i32 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let main = n - n % 16;
        // SAFETY: NEON is always present on aarch64; every load reads 16 bytes at offset
        // `i < main <= n - 16 + 16` inside both slices (checked lengths above).
        let (ab, sa, sb) = unsafe {
            let mut vab = vdupq_n_s32(0);
            let mut vsa = vdupq_n_s32(0);
            let mut vsb = vdupq_n_s32(0);
            let mut i = 0;
            while i < main {
                let va = vld1q_s8(a.as_ptr().add(i));
                let vb = vld1q_s8(b.as_ptr().add(i));
                // i8 x i8 fits i16 (at most 16384); pairwise-add into i32 lanes.
                vab = vpadalq_s16(vab, vmull_s8(vget_low_s8(va), vget_low_s8(vb)));
                vab = vpadalq_s16(vab, vmull_high_s8(va, vb));
                vsa = vpadalq_s16(vsa, vpaddlq_s8(va));
                vsb = vpadalq_s16(vsb, vpaddlq_s8(vb));
                i += 16;
            }
            (vaddvq_s32(vab), vaddvq_s32(vsa), vaddvq_s32(vsb))
        };
        super::finish(&a[main..], &b[main..], n, (ab, sa, sb), za, zb)
    }
}

/// The AVX2 dot product behind a safe signature for [`DotFn`]. Private to this module and handed
/// out only by [`select`], after `is_x86_feature_detected!("avx2")` (or in a build whose target
/// features include AVX2): no safe code elsewhere can call it on a CPU without AVX2.
#[cfg(all(target_arch = "x86_64", any(feature = "std", target_feature = "avx2")))]
fn avx2_dot(a: &[i8], b: &[i8], za: i32, zb: i32) -> i32 {
    // SAFETY: see above; `select` is the only place that names this function.
    unsafe { avx2::dot(a, b, za, zb) }
}

#[cfg(all(target_arch = "x86_64", any(feature = "std", target_feature = "avx2")))]
mod avx2 {
    //! AVX2 (x86-64, detected at run time with `std`).
    use core::arch::x86_64::*;

    /// AVX2 dot product; see the module docs.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot(a: &[i8], b: &[i8], za: i32, zb: i32) -> i32 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let main = n - n % 16;
        let ones = _mm256_set1_epi16(1);
        let mut vab = _mm256_setzero_si256();
        let mut vsa = _mm256_setzero_si256();
        let mut vsb = _mm256_setzero_si256();
        let mut i = 0;
        while i < main {
            // SAFETY: 16-byte unaligned loads at `i + 16 <= main <= n`, inside both slices.
            let (xa, xb) = unsafe {
                (
                    _mm_loadu_si128(a.as_ptr().add(i) as *const __m128i),
                    _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i),
                )
            };
            let wa = _mm256_cvtepi8_epi16(xa);
            let wb = _mm256_cvtepi8_epi16(xb);
            // vpmaddwd: pairs of i16 products summed into i32 (at most 2 * 16384).
            vab = _mm256_add_epi32(vab, _mm256_madd_epi16(wa, wb));
            vsa = _mm256_add_epi32(vsa, _mm256_madd_epi16(wa, ones));
            vsb = _mm256_add_epi32(vsb, _mm256_madd_epi16(wb, ones));
            i += 16;
        }
        let (ab, sa, sb) = (hsum(vab), hsum(vsa), hsum(vsb));
        super::finish(&a[main..], &b[main..], n, (ab, sa, sb), za, zb)
    }

    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }
}

#[cfg(kiln_dsp)]
pub mod dsp {
    //! Cortex-M DSP extension (M4, M7, M33): `sxtb16` unpacks two int8 lanes to int16,
    //! `sadd16` applies the zero point to both, `smlad` does two multiply-accumulates.
    use core::arch::asm;

    #[inline(always)]
    pub(crate) fn sxtb16(x: u32) -> u32 {
        let r;
        // SAFETY: a register-only DSP instruction, present on every `kiln_dsp` target.
        unsafe { asm!("sxtb16 {0}, {1}", out(reg) r, in(reg) x, options(pure, nomem, nostack)) };
        r
    }

    #[inline(always)]
    pub(crate) fn sxtb16_ror8(x: u32) -> u32 {
        let r;
        // SAFETY: as `sxtb16`.
        unsafe {
            asm!("sxtb16 {0}, {1}, ror #8", out(reg) r, in(reg) x, options(pure, nomem, nostack))
        };
        r
    }

    #[inline(always)]
    pub(crate) fn uxtb16(x: u32) -> u32 {
        let r;
        // SAFETY: as `sxtb16`.
        unsafe { asm!("uxtb16 {0}, {1}", out(reg) r, in(reg) x, options(pure, nomem, nostack)) };
        r
    }

    #[inline(always)]
    pub(crate) fn uxtb16_ror8(x: u32) -> u32 {
        let r;
        // SAFETY: as `sxtb16`.
        unsafe {
            asm!("uxtb16 {0}, {1}, ror #8", out(reg) r, in(reg) x, options(pure, nomem, nostack))
        };
        r
    }

    #[inline(always)]
    fn sadd16(x: u32, y: u32) -> u32 {
        let r;
        // SAFETY: as `sxtb16` (sets the GE flags, which nothing here reads).
        unsafe {
            asm!("sadd16 {0}, {1}, {2}", out(reg) r, in(reg) x, in(reg) y, options(pure, nomem, nostack))
        };
        r
    }

    #[inline(always)]
    pub(crate) fn smlad(x: u32, y: u32, acc: i32) -> i32 {
        let r;
        // SAFETY: as `sxtb16` (may set the sticky Q flag on overflow, which nothing reads; the
        // sum itself wraps, as the reference's wrapping adds do).
        unsafe {
            asm!("smlad {0}, {1}, {2}, {3}", out(reg) r, in(reg) x, in(reg) y, in(reg) acc, options(pure, nomem, nostack))
        };
        r
    }

    #[inline(always)]
    fn word(c: &[i8]) -> u32 {
        // `c` comes from `chunks_exact(4)`: one unaligned LDR, no bounds checks.
        u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8])
    }

    /// DSP dot product; see the module docs.
    pub fn dot(a: &[i8], b: &[i8], za: i32, zb: i32) -> i32 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        // Both halves of a register hold -z as i16 (|z| <= 255 for valid zero points; other
        // values take the portable loop so the i16 lanes cannot overflow).
        if !(-255..=255).contains(&za) || !(-255..=255).contains(&zb) {
            return super::dot_portable(a, b, za, zb);
        }
        let nza = ((-za) as u16 as u32) * 0x0001_0001;
        let nzb = ((-zb) as u16 as u32) * 0x0001_0001;
        let main = n - n % 4;
        let mut acc: i32 = 0;
        for (ca, cb) in a[..main].chunks_exact(4).zip(b[..main].chunks_exact(4)) {
            let (wa, wb) = (word(ca), word(cb));
            // Lanes 0, 2 and lanes 1, 3 as (x - z) int16 pairs; |x - z| <= 383 fits.
            let a02 = sadd16(sxtb16(wa), nza);
            let a13 = sadd16(sxtb16_ror8(wa), nza);
            let b02 = sadd16(sxtb16(wb), nzb);
            let b13 = sadd16(sxtb16_ror8(wb), nzb);
            acc = smlad(a02, b02, acc);
            acc = smlad(a13, b13, acc);
        }
        acc.wrapping_add(super::dot_portable(&a[main..], &b[main..], za, zb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_is_bit_exact_with_portable() {
        assert_eq!(check_against_portable(best()), Ok(1010), "isa {}", isa());
    }
}
