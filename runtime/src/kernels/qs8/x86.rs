//! x86-64 qs8 microkernels: `qs8_gemm_{1,4}x16c4__avx512vnni` (`vpdpbusd` on the unsigned
//! input rows, one broadcast per group, and signed packed weights), `qs8_gemm_{1,4}x16c4__avx2` (the same 4-byte groups split
//! into even/odd 16-bit pairs for `vpmaddwd`) and `qs8_requantize_16__avx2` (both TFLite
//! roundings, bit-exact with the scalar form); on AVX-512 also the fused, in-place and
//! padded-row conv kernels (`conv_rows`), the one-row dense (`dense_row`), the depthwise row
//! and run kernels (`dw_rows`, `depthwise_avx512`) and the int8 add.
//!
//! The safe wrappers are reachable only through [`super::ukernel`] / [`super::requantize`],
//! which hand them out only after [`Isa::supported`] confirmed the CPU has the features.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::{lane_mask, Panel, PanelQ, KR, NR};
use crate::kernels::isa::Isa;
use crate::kernels::reference_i8::{AddParams, QuantParams, Rounding};

/// Checks the operand lengths every microkernel relies on for its unchecked loads.
#[inline(always)]
fn check<const M: usize>(rows: &[&[u8]; M], p: &Panel<'_>) {
    assert!(
        (1..=NR).contains(&p.nr) && p.w.len() >= p.nr * p.k && rows.iter().all(|r| r.len() >= p.k),
        "qs8 microkernel operands out of shape"
    );
}

/// `qs8_gemm_Mx16c4__avx512vnni`.
pub(super) fn gemm_avx512vnni<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    check(rows, &p);
    debug_assert!(Isa::Avx512Vnni.supported());
    // SAFETY: lengths checked above; the CPU features were checked before this function was
    // handed out (module docs).
    unsafe { gemm_vnni_impl(rows, p) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemm_vnni_impl<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    let (nr, k) = (p.nr, p.k);
    let mask: __mmask16 = lane_mask(nr);
    let mut acc = [_mm512_setzero_si512(); M];
    let wp = p.w.as_ptr();
    for g in 0..k / KR {
        // Masked-off lanes (a partial last panel) are neither read nor accumulated.
        let w = _mm512_maskz_loadu_epi32(mask, wp.add(g * nr * KR) as *const i32);
        for (a, row) in acc.iter_mut().zip(rows) {
            let xv = (row.as_ptr().add(g * KR) as *const i32).read_unaligned();
            *a = _mm512_dpbusd_epi32(*a, _mm512_set1_epi32(xv), w);
        }
    }
    let mut out = [[0i32; NR]; M];
    for (o, a) in out.iter_mut().zip(&acc) {
        _mm512_storeu_si512(o.as_mut_ptr() as *mut _, *a);
    }
    super::tail(rows, p, &mut out);
    out
}

/// `qs8_gemm_Mx16c4__avx2`.
pub(super) fn gemm_avx2<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    check(rows, &p);
    assert!(
        p.tail.is_none() || rows.iter().all(|r| r.len() >= p.k.div_ceil(KR) * KR),
        "rows not padded for the tail group"
    );
    debug_assert!(Isa::Avx2.supported());
    // SAFETY: as `gemm_avx512vnni`.
    unsafe { gemm_avx2_impl(rows, p) }
}

#[target_feature(enable = "avx2")]
unsafe fn gemm_avx2_impl<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    let (nr, k) = (p.nr, p.k);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let n = _mm256_set1_epi32(nr as i32);
    let mlo = _mm256_cmpgt_epi32(n, lanes);
    let mhi = _mm256_cmpgt_epi32(n, _mm256_add_epi32(lanes, _mm256_set1_epi32(8)));
    let full = nr == NR;
    let low_bytes = _mm256_set1_epi16(0x00FF);
    let mut acc = [[_mm256_setzero_si256(); 2]; M];
    let wp = p.w.as_ptr();
    // The `K mod 4` leftover columns, when the caller prepared them as one zero-padded group
    // (the rows are padded to it with zeros), as one more group.
    let groups = k / KR + usize::from(p.tail.is_some());
    for g in 0..groups {
        let tail = g == k / KR;
        let ptr = match p.tail {
            Some(t) if tail => t.as_ptr() as *const i32,
            _ => wp.wrapping_add(g * nr * KR) as *const i32,
        };
        let (w0, w1) = if full || tail {
            (
                _mm256_loadu_si256(ptr as *const __m256i),
                _mm256_loadu_si256(ptr.wrapping_add(8) as *const __m256i),
            )
        } else {
            // Masked-off lanes are not read (so a partial panel never reads past its end).
            (
                _mm256_maskload_epi32(ptr, mlo),
                _mm256_maskload_epi32(ptr.wrapping_add(8), mhi),
            )
        };
        // Bytes 0, 2 and 1, 3 of each channel's group, sign-extended to 16 bits.
        let w0e = _mm256_srai_epi16(_mm256_slli_epi16(w0, 8), 8);
        let w0o = _mm256_srai_epi16(w0, 8);
        let w1e = _mm256_srai_epi16(_mm256_slli_epi16(w1, 8), 8);
        let w1o = _mm256_srai_epi16(w1, 8);
        for (a, row) in acc.iter_mut().zip(rows) {
            let xv = (row.as_ptr().add(g * KR) as *const i32).read_unaligned();
            let xu = _mm256_set1_epi32(xv);
            let xe = _mm256_and_si256(xu, low_bytes);
            let xo = _mm256_srli_epi16(xu, 8);
            a[0] = _mm256_add_epi32(
                a[0],
                _mm256_add_epi32(_mm256_madd_epi16(xe, w0e), _mm256_madd_epi16(xo, w0o)),
            );
            a[1] = _mm256_add_epi32(
                a[1],
                _mm256_add_epi32(_mm256_madd_epi16(xe, w1e), _mm256_madd_epi16(xo, w1o)),
            );
        }
    }
    let mut out = [[0i32; NR]; M];
    for (o, a) in out.iter_mut().zip(&acc) {
        _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, a[0]);
        _mm256_storeu_si256(o.as_mut_ptr().add(8) as *mut __m256i, a[1]);
    }
    if p.tail.is_none() {
        super::tail(rows, p, &mut out);
    }
    out
}

/// `qs8_requantize_16__avx2`.
pub(super) fn requantize_avx2(acc: &[i32; NR], pq: &PanelQ, q: &QuantParams<'_>, out: &mut [i8]) {
    debug_assert!(Isa::Avx2.supported());
    // SAFETY: fixed-size arrays; `out` is written through a checked slice copy; AVX2 was
    // checked before this function was handed out.
    unsafe { requantize_impl(acc, pq, q, out) }
}

#[target_feature(enable = "avx2")]
unsafe fn requantize_impl(acc: &[i32; NR], pq: &PanelQ, q: &QuantParams<'_>, out: &mut [i8]) {
    let mut res = [_mm256_setzero_si256(); 2];
    for (h, r) in res.iter_mut().enumerate() {
        let x = _mm256_add_epi32(half(acc, h), half(&pq.bias, h));
        let (m, s) = (half(&pq.mult, h), half(&pq.shift, h));
        let scaled = match q.rounding {
            Rounding::Double => double_rounding(x, m, s),
            Rounding::Single => single_rounding(x, m, s),
        };
        // Outputs past +-2^16 clamp to the same int8 bounds either way; bounding first keeps
        // the zero-point add from overflowing (the scalar form saturates instead).
        let b = _mm256_set1_epi32(1 << 16);
        let scaled = _mm256_min_epi32(
            _mm256_max_epi32(scaled, _mm256_sub_epi32(_mm256_setzero_si256(), b)),
            b,
        );
        let v = _mm256_add_epi32(scaled, _mm256_set1_epi32(q.output_zp));
        *r = _mm256_min_epi32(
            _mm256_max_epi32(v, _mm256_set1_epi32(q.act[0])),
            _mm256_set1_epi32(q.act[1]),
        );
    }
    // [lo0-3 hi0-3 | lo4-7 hi4-7] -> [lo0-7 | hi0-7] -> bytes.
    let p16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(res[0], res[1]), 0b11_01_10_00);
    let p8 = _mm256_packs_epi16(p16, p16);
    let mut bytes = [0i8; 16];
    _mm_storel_epi64(
        bytes.as_mut_ptr() as *mut __m128i,
        _mm256_castsi256_si128(p8),
    );
    _mm_storel_epi64(
        bytes.as_mut_ptr().add(8) as *mut __m128i,
        _mm256_extracti128_si256(p8, 1),
    );
    let n = out.len().min(NR);
    out[..n].copy_from_slice(&bytes[..n]);
}

/// Lanes `8h..8h + 8` of `a`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn half(a: &[i32; NR], h: usize) -> __m256i {
    _mm256_loadu_si256(a.as_ptr().add(8 * h) as *const __m256i)
}

/// TFLite's double rounding: `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << l, m), r)`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn double_rounding(x: __m256i, m: __m256i, s: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    let left = _mm256_max_epi32(s, zero);
    let right = _mm256_max_epi32(_mm256_sub_epi32(zero, s), zero);
    let x = _mm256_sllv_epi32(x, left);
    // (x·m + 2^30) >> 31 equals gemmlowp's nudged, truncating division for every product.
    let nudge = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, m), nudge), 31);
    let odd = _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(m, 32));
    let odd = _mm256_srli_epi64(_mm256_add_epi64(odd, nudge), 31);
    let mut r = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0b1010_1010);
    let min = _mm256_set1_epi32(i32::MIN);
    let sat = _mm256_and_si256(_mm256_cmpeq_epi32(x, min), _mm256_cmpeq_epi32(m, min));
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(i32::MAX), sat);
    // Rounding divide by 2^right, ties away from zero.
    let mask = _mm256_sub_epi32(
        _mm256_sllv_epi32(_mm256_set1_epi32(1), right),
        _mm256_set1_epi32(1),
    );
    let rem = _mm256_and_si256(r, mask);
    let thr = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_cmpgt_epi32(zero, r));
    _mm256_sub_epi32(_mm256_srav_epi32(r, right), _mm256_cmpgt_epi32(rem, thr))
}

/// TFLite's single rounding: `(x·m + 2^(30 - s)) >> (31 - s)` in 64 bits.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn single_rounding(x: __m256i, m: __m256i, s: __m256i) -> __m256i {
    let ts = _mm256_sub_epi32(_mm256_set1_epi32(31), s);
    let lo32 = _mm256_set1_epi64x(0xFFFF_FFFF);
    let even = shift_round64(_mm256_mul_epi32(x, m), _mm256_and_si256(ts, lo32));
    let odd = shift_round64(
        _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(m, 32)),
        _mm256_srli_epi64(ts, 32),
    );
    _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0b1010_1010)
}

/// `(p + 2^(t - 1)) >> t`, arithmetic, per 64-bit lane (`1 <= t <= 62`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn shift_round64(p: __m256i, t: __m256i) -> __m256i {
    let one = _mm256_set1_epi64x(1);
    let v = _mm256_add_epi64(p, _mm256_sllv_epi64(one, _mm256_sub_epi64(t, one)));
    // A logical shift, then the sign's ones shifted in.
    let neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
    let fill = _mm256_sllv_epi64(
        _mm256_set1_epi64x(-1),
        _mm256_sub_epi64(_mm256_set1_epi64x(64), t),
    );
    _mm256_or_si256(_mm256_srlv_epi64(v, t), _mm256_and_si256(neg, fill))
}

/// `qs8_dwconv_16__avx2` / `qs8_dwconv_8__avx2`: channels `c0..c0 + n` (`n` = 16, or 8 with
/// the upper 8 results 0) of one depthwise output pixel, `Σ_taps (x[xo + c] - zx) · wt[t·co + c]`
/// (weights tap-major, zero point 0; the products fit 16 bits: 255·128 < 2^15). `taps` lists
/// `(xo, t)`: the input pixel's offset and the tap index.
pub(crate) fn dwconv_avx2(
    x: &[i8],
    wt: &[i8],
    co: usize,
    taps: &[(usize, usize)],
    c0: usize,
    n: usize,
    zx: i32,
) -> [i32; NR] {
    assert!(
        (n == 8 || n == NR) && super::taps_fit(x.len(), wt.len(), co, taps, 0, c0, n),
        "dwconv operands out of shape"
    );
    debug_assert!(Isa::Avx2.supported());
    // SAFETY: every load is inside the slices (checked above); AVX2 was checked before the
    // caller chose this path.
    unsafe {
        if n == NR {
            dwconv16_impl(x, wt, co, taps, c0, zx)
        } else {
            dwconv8_impl(x, wt, co, taps, c0, zx)
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn dwconv16_impl(
    x: &[i8],
    wt: &[i8],
    co: usize,
    taps: &[(usize, usize)],
    c0: usize,
    zx: i32,
) -> [i32; NR] {
    let z = _mm256_set1_epi16(zx as i16);
    let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for &(xo, t) in taps {
        let xv = _mm_loadu_si128(x.as_ptr().add(xo + c0) as *const __m128i);
        let wv = _mm_loadu_si128(wt.as_ptr().add(t * co + c0) as *const __m128i);
        let xs = _mm256_sub_epi16(_mm256_cvtepi8_epi16(xv), z);
        let p = _mm256_mullo_epi16(xs, _mm256_cvtepi8_epi16(wv));
        lo = _mm256_add_epi32(lo, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(p)));
        hi = _mm256_add_epi32(hi, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(p, 1)));
    }
    let mut out = [0i32; NR];
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, lo);
    _mm256_storeu_si256(out.as_mut_ptr().add(8) as *mut __m256i, hi);
    out
}

#[target_feature(enable = "avx2")]
unsafe fn dwconv8_impl(
    x: &[i8],
    wt: &[i8],
    co: usize,
    taps: &[(usize, usize)],
    c0: usize,
    zx: i32,
) -> [i32; NR] {
    let z = _mm_set1_epi16(zx as i16);
    let mut acc = _mm256_setzero_si256();
    for &(xo, t) in taps {
        let xv = _mm_loadl_epi64(x.as_ptr().add(xo + c0) as *const __m128i);
        let wv = _mm_loadl_epi64(wt.as_ptr().add(t * co + c0) as *const __m128i);
        let p = _mm_mullo_epi16(
            _mm_sub_epi16(_mm_cvtepi8_epi16(xv), z),
            _mm_cvtepi8_epi16(wv),
        );
        acc = _mm256_add_epi32(acc, _mm256_cvtepi16_epi32(p));
    }
    let mut out = [0i32; NR];
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, acc);
    out
}

/// `qs8_requantize_16__avx512`: the 16 lanes at once, with AVX-512's 64-bit arithmetic shifts.
pub(super) fn requantize_avx512(acc: &[i32; NR], pq: &PanelQ, q: &QuantParams<'_>, out: &mut [i8]) {
    debug_assert!(Isa::Avx512Vnni.supported());
    let n = out.len().min(NR);
    // SAFETY: fixed-size arrays; the masked store writes `n <= out.len()` bytes; AVX-512 was
    // checked before this function was handed out.
    unsafe { requantize512_impl(acc, pq, q, out, n) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn requantize512_impl(
    acc: &[i32; NR],
    pq: &PanelQ,
    q: &QuantParams<'_>,
    out: &mut [i8],
    n: usize,
) {
    let a = _mm512_loadu_si512(acc.as_ptr() as *const _);
    requantize_rows(&[a], pq, q, out.as_mut_ptr(), 0, lane_mask(n));
}

/// One panel's requantization constants in registers.
struct Rq512 {
    bias: __m512i,
    mult: __m512i,
    shift: __m512i,
    left: __m512i,
    right: __m512i,
    zp: __m512i,
    /// The activation range less the zero point: `clamp(v, lo - zp, hi - zp) + zp` is
    /// `clamp(v + zp, lo, hi)` with the add saturating, as the scalar form does.
    lo_z: __m512i,
    hi_z: __m512i,
    mode: RqMode,
    /// Double rounding in one step, per 64-bit half (even, odd lanes): see [`Rq512::apply`].
    mult_odd: __m512i,
    add: [__m512i; 2],
    sh: [__m512i; 2],
    adj: [__mmask8; 2],
    /// The odd lanes' shift less 32 ([`RqMode::DoubleRight`]).
    sh_hi: __m512i,
}

#[derive(Clone, Copy, PartialEq)]
enum RqMode {
    /// [`RqMode::Double`] when every lane shifts right by at least 1 and none left (most
    /// layers): the odd lanes' result shifted into place by the rounding shift itself (see
    /// [`Rq512::apply`]), three shift instructions fewer.
    DoubleRight,
    /// TFLite's double rounding, both roundings in one 64-bit shift.
    Double,
    /// TFLite's double rounding step by step: only for multipliers of `i32::MIN` (whose
    /// saturating high product the one-step form does not model) or right shifts past 31.
    DoubleSteps,
    /// `TFLITE_SINGLE_ROUNDING`.
    Single,
}

impl Rq512 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn new(pq: &PanelQ, q: &QuantParams<'_>) -> Rq512 {
        let ld = |a: &[i32; NR]| _mm512_loadu_si512(a.as_ptr() as *const _);
        Rq512::of(ld(&pq.bias), ld(&pq.mult), ld(&pq.shift), q)
    }

    /// The constants of channels `c0..c0 + nr` read straight from the layer's bias and
    /// requantization arrays (per-tensor ones broadcast); lanes past `nr` are 0.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn of_channels(q: &QuantParams<'_>, bias: &[i32], c0: usize, nr: usize) -> Rq512 {
        assert!(nr <= NR && c0 + nr <= bias.len(), "channels out of range");
        let mask: __mmask16 = lane_mask(nr);
        let b = _mm512_maskz_loadu_epi32(mask, bias.as_ptr().add(c0));
        let (mult, shift) = if q.multiplier.len() == 1 {
            (
                _mm512_set1_epi32(q.multiplier.get(0)),
                _mm512_set1_epi32(q.shift_of(0)),
            )
        } else {
            use crate::kernels::reference_i8::{Multipliers, Shifts};
            let mult = match q.multiplier {
                Multipliers::I32(m) => {
                    assert!(c0 + nr <= m.len(), "multipliers out of range");
                    _mm512_maskz_loadu_epi32(mask, m.as_ptr().add(c0))
                }
                Multipliers::I16(m) => {
                    assert!(c0 + nr <= m.len(), "multipliers out of range");
                    let h = _mm256_maskz_loadu_epi16(mask, m.as_ptr().add(c0));
                    _mm512_slli_epi32(_mm512_cvtepi16_epi32(h), 16)
                }
            };
            let shift = match q.shift {
                Shifts::I32(v) => {
                    assert!(c0 + nr <= v.len(), "shifts out of range");
                    _mm512_maskz_loadu_epi32(mask, v.as_ptr().add(c0))
                }
                Shifts::I8(v) => {
                    assert!(c0 + nr <= v.len(), "shifts out of range");
                    _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, v.as_ptr().add(c0)))
                }
            };
            (mult, shift)
        };
        Rq512::of(b, mult, shift, q)
    }

    /// The constants for bias, multiplier and shift vectors.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn of(bias: __m512i, mult: __m512i, shift: __m512i, q: &QuantParams<'_>) -> Rq512 {
        Rq512::of_parts(bias, mult, shift, q.rounding, q.output_zp, q.act)
    }

    /// [`Rq512::of`] with the rounding, output zero point and clamp given one by one.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn of_parts(
        bias: __m512i,
        mult: __m512i,
        shift: __m512i,
        rounding: Rounding,
        zp: i32,
        act: [i32; 2],
    ) -> Rq512 {
        let zero = _mm512_setzero_si512();
        let right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
        let mode = if rounding == Rounding::Single {
            RqMode::Single
        } else if _mm512_cmpeq_epi32_mask(mult, _mm512_set1_epi32(i32::MIN)) == 0
            && _mm512_cmpgt_epi32_mask(right, _mm512_set1_epi32(31)) == 0
        {
            if _mm512_cmpgt_epi32_mask(shift, _mm512_set1_epi32(-1)) == 0 {
                RqMode::DoubleRight
            } else {
                RqMode::Double
            }
        } else {
            RqMode::DoubleSteps
        };
        // Per 64-bit lane with right shift r: add 2^30 + (r > 0 ? 2^(30 + r) : 0), shift by
        // 31 + r, and (r > 0) take 2^31 off products below -2^30 (see `apply`).
        let half = |r: __m512i| {
            let pos = _mm512_cmpgt_epi64_mask(r, zero);
            let base = _mm512_set1_epi64(1 << 30);
            let add = _mm512_add_epi64(base, _mm512_maskz_sllv_epi64(pos, base, r));
            (add, _mm512_add_epi64(r, _mm512_set1_epi64(31)), pos)
        };
        let (add_e, sh_e, adj_e) = half(_mm512_and_si512(right, _mm512_set1_epi64(0xFFFF_FFFF)));
        let (add_o, sh_o, adj_o) = half(_mm512_srli_epi64(right, 32));
        Rq512 {
            bias,
            mult,
            shift,
            left: _mm512_max_epi32(shift, zero),
            right,
            zp: _mm512_set1_epi32(zp),
            lo_z: _mm512_set1_epi32(act[0] - zp),
            hi_z: _mm512_set1_epi32(act[1] - zp),
            mode,
            mult_odd: _mm512_srli_epi64(mult, 32),
            add: [add_e, add_o],
            sh: [sh_e, sh_o],
            adj: [adj_e, adj_o],
            sh_hi: _mm512_sub_epi64(sh_o, _mm512_set1_epi64(32)),
        }
    }

    /// The same constants with `-z_x·Σ_t w_t` added to the bias (wrapping), for kernels that
    /// sum `x·w` instead of `(x - z_x)·w`: the same 32-bit sum.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn fold_zero_point(mut self, w: &[__m512i], zx: i32) -> Rq512 {
        let sum = w
            .iter()
            .fold(_mm512_setzero_si512(), |s, v| _mm512_add_epi32(s, *v));
        let fold = _mm512_mullo_epi32(_mm512_set1_epi32(zx), sum);
        self.bias = _mm512_sub_epi32(self.bias, fold);
        self
    }

    /// The int8 outputs (as int32 lanes in -128..=127) of 16 accumulators.
    ///
    /// Double rounding in one step: TFLite computes `t = ⌊(p + 2^30) / 2^31⌋` (the rounding
    /// doubling high product of `p = x·m`, written with a floor: its truncating division with
    /// a sign-dependent nudge is the same) and then rounds `t / 2^r` half away from zero,
    /// `⌊(t + 2^(r-1) - [t < 0]) / 2^r⌋` for `r > 0`. Since `⌊(⌊a / B⌋ + c) / C⌋ = ⌊(a + cB) / BC⌋`
    /// for integers, that is `⌊(p + 2^30 + 2^(30+r) - [p < -2^30]·2^31) / 2^(31+r)⌋`: one add,
    /// one conditional subtract, one shift per 64-bit product, no overflow (`|p| ≤ 2^62`).
    /// The high product saturates only for `m = x = i32::MIN`; such panels take the steps.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn apply(&self, acc: __m512i) -> __m512i {
        let x = _mm512_add_epi32(acc, self.bias);
        let m = self.mult;
        let zero = _mm512_setzero_si512();
        let scaled = match self.mode {
            RqMode::Double => {
                let x = _mm512_sllv_epi32(x, self.left);
                let lim = _mm512_set1_epi64(-(1 << 30));
                let two31 = _mm512_set1_epi64(1 << 31);
                let one = |x: __m512i, m: __m512i, j: usize| {
                    let p = _mm512_mul_epi32(x, m);
                    let neg = _mm512_cmplt_epi64_mask(p, lim) & self.adj[j];
                    let t = _mm512_add_epi64(p, self.add[j]);
                    _mm512_srav_epi64(_mm512_mask_sub_epi64(t, neg, t, two31), self.sh[j])
                };
                let even = one(x, m, 0);
                let odd = one(_mm512_srli_epi64(x, 32), self.mult_odd, 1);
                _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32))
            }
            RqMode::DoubleRight => {
                // As `Double` with no left shift; the odd lanes' product shifted right by
                // `31 + r - 32 = r - 1` (not `31 + r`) leaves the same 32-bit result in the
                // lane's high half, where the blend takes it (an arithmetic shift keeps the
                // sign above it), and the odd inputs reach the even positions by a shuffle.
                let lim = _mm512_set1_epi64(-(1 << 30));
                let two31 = _mm512_set1_epi64(1 << 31);
                let one = |x: __m512i, m: __m512i, add: __m512i, sh: __m512i| {
                    let p = _mm512_mul_epi32(x, m);
                    let neg = _mm512_cmplt_epi64_mask(p, lim);
                    let t = _mm512_add_epi64(p, add);
                    _mm512_srav_epi64(_mm512_mask_sub_epi64(t, neg, t, two31), sh)
                };
                let even = one(x, m, self.add[0], self.sh[0]);
                let xo = _mm512_shuffle_epi32::<0xF5>(x);
                let odd = one(xo, self.mult_odd, self.add[1], self.sh_hi);
                _mm512_mask_blend_epi32(0xAAAA, even, odd)
            }
            RqMode::DoubleSteps => {
                let x = _mm512_sllv_epi32(x, self.left);
                // (x·m + 2^30) >> 31, as in the AVX2 form.
                let nudge = _mm512_set1_epi64(1 << 30);
                let even = _mm512_srli_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, m), nudge), 31);
                let odd = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(m, 32));
                let odd =
                    _mm512_slli_epi64(_mm512_srli_epi64(_mm512_add_epi64(odd, nudge), 31), 32);
                let mut r = _mm512_mask_blend_epi32(0xAAAA, even, odd);
                let min = _mm512_set1_epi32(i32::MIN);
                let sat = _mm512_cmpeq_epi32_mask(x, min) & _mm512_cmpeq_epi32_mask(m, min);
                r = _mm512_mask_blend_epi32(sat, r, _mm512_set1_epi32(i32::MAX));
                let one = _mm512_set1_epi32(1);
                let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, self.right), one);
                let rem = _mm512_and_si512(r, mask);
                let half = _mm512_srai_epi32(mask, 1);
                let neg = _mm512_cmplt_epi32_mask(r, zero);
                let thr = _mm512_mask_add_epi32(half, neg, half, one);
                let up = _mm512_cmpgt_epi32_mask(rem, thr);
                let d = _mm512_srav_epi32(r, self.right);
                _mm512_mask_add_epi32(d, up, d, one)
            }
            RqMode::Single => {
                let ts = _mm512_sub_epi32(_mm512_set1_epi32(31), self.shift);
                let lo32 = _mm512_set1_epi64(0xFFFF_FFFF);
                let even = shift_round512(_mm512_mul_epi32(x, m), _mm512_and_si512(ts, lo32));
                let odd = shift_round512(
                    _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(m, 32)),
                    _mm512_srli_epi64(ts, 32),
                );
                _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32))
            }
        };
        let v = _mm512_min_epi32(_mm512_max_epi32(scaled, self.lo_z), self.hi_z);
        _mm512_add_epi32(v, self.zp)
    }
}

/// `(p + 2^(t - 1)) >> t`, arithmetic, per 64-bit lane (`1 <= t <= 62`).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn shift_round512(p: __m512i, t: __m512i) -> __m512i {
    let one = _mm512_set1_epi64(1);
    _mm512_srav_epi64(
        _mm512_add_epi64(p, _mm512_sllv_epi64(one, _mm512_sub_epi64(t, one))),
        t,
    )
}

/// `qs8_gemm_Mx16c4__avx512vnni` with the requantization fused: the accumulators never leave
/// registers; row `i` of the tile goes to `y[base + i·stride..][..nr]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_rq_avx512vnni<const M: usize>(
    rows: &[&[u8]; M],
    p: Panel<'_>,
    pq: &PanelQ,
    q: &QuantParams<'_>,
    y: &mut [i8],
    base: usize,
    stride: usize,
) {
    check(rows, &p);
    assert!(
        base + (M - 1) * stride + p.nr <= y.len(),
        "qs8 output tile out of range"
    );
    assert!(
        p.tail.is_none() || rows.iter().all(|r| r.len() >= p.k.div_ceil(KR) * KR),
        "rows not padded for the tail group"
    );
    debug_assert!(Isa::Avx512Vnni.supported());
    // SAFETY: operand lengths and the output range checked above; features checked before this
    // function was handed out.
    unsafe { gemm_rq_vnni_impl(rows, p, pq, q, y, base, stride) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_rq_vnni_impl<const M: usize>(
    rows: &[&[u8]; M],
    p: Panel<'_>,
    pq: &PanelQ,
    q: &QuantParams<'_>,
    y: &mut [i8],
    base: usize,
    stride: usize,
) {
    let (nr, k) = (p.nr, p.k);
    let mask: __mmask16 = lane_mask(nr);
    let mut acc = [_mm512_setzero_si512(); M];
    let wp = p.w.as_ptr();
    let groups = k / KR;
    let mut g0 = 0;
    if M == 1 {
        // One row (dense): four partial sums over the groups, so consecutive `vpdpbusd` do not
        // wait for each other (integer sums: the order changes nothing).
        let row = rows[0].as_ptr();
        let mut part = [_mm512_setzero_si512(); 4];
        while g0 + 4 <= groups {
            for (j, a) in part.iter_mut().enumerate() {
                let g = g0 + j;
                let w = _mm512_maskz_loadu_epi32(mask, wp.add(g * nr * KR) as *const i32);
                let xv = (row.add(g * KR) as *const i32).read_unaligned();
                *a = _mm512_dpbusd_epi32(*a, _mm512_set1_epi32(xv), w);
            }
            g0 += 4;
        }
        let s = _mm512_add_epi32(
            _mm512_add_epi32(part[0], part[1]),
            _mm512_add_epi32(part[2], part[3]),
        );
        acc[0] = s;
    }
    for g in g0..groups {
        let w = _mm512_maskz_loadu_epi32(mask, wp.add(g * nr * KR) as *const i32);
        for (a, row) in acc.iter_mut().zip(rows) {
            let xv = (row.as_ptr().add(g * KR) as *const i32).read_unaligned();
            *a = _mm512_dpbusd_epi32(*a, _mm512_set1_epi32(xv), w);
        }
    }
    if let Some(tg) = p.tail {
        // The leftover columns as one more group (the rows are padded to it with zeros).
        let w = _mm512_maskz_loadu_epi32(mask, tg.as_ptr() as *const i32);
        for (a, row) in acc.iter_mut().zip(rows) {
            let xv = (row.as_ptr().add(k / KR * KR) as *const i32).read_unaligned();
            *a = _mm512_dpbusd_epi32(*a, _mm512_set1_epi32(xv), w);
        }
    } else if k % KR != 0 {
        // The leftover columns on the portable tail, through memory.
        let mut t = [[0i32; NR]; M];
        super::tail(rows, p, &mut t);
        for (a, ti) in acc.iter_mut().zip(&t) {
            *a = _mm512_add_epi32(*a, _mm512_loadu_si512(ti.as_ptr() as *const _));
        }
    }
    requantize_rows(&acc, pq, q, y.as_mut_ptr().add(base), stride, mask);
}

/// Largest input row (bytes) [`dense_row`] flips onto its stack.
const DENSE_ROW_BYTES: usize = 16384;

/// `qs8_gemv_16c4__avx512vnni`: a one-row int8 dense, `y[c] = rq(Σ_k (x_k + 128)·w[c, k] +
/// bias[c])` over the packed weights and folded bias (the same sum as [`super::reference_dense`]),
/// for `K` a multiple of 4 up to [`DENSE_ROW_BYTES`]. Per call, only what a one-row layer needs:
/// the row flipped once onto the stack (no zeroed patch), each panel's constants loaded as
/// vectors straight from the layer's arrays, four partial sums per panel so consecutive
/// `vpdpbusd` do not wait for each other. Returns `false` (writing nothing) for other shapes.
pub(super) fn dense_row(
    x: &[i8],
    k: usize,
    w: &[i8],
    m: usize,
    bias: &[i32],
    y: &mut [i8],
    q: &QuantParams<'_>,
) -> bool {
    let nq = q.multiplier.len();
    let ok = k >= KR
        && k.is_multiple_of(KR)
        && k <= DENSE_ROW_BYTES
        && x.len() == k
        && y.len() == m
        && w.len() >= m * k
        && bias.len() >= m
        && (nq == 1 || nq >= m)
        && Isa::Avx512Vnni.supported();
    if !ok {
        return false;
    }
    // SAFETY: lengths checked above (every weight load is inside panel `p`'s `nr·k` bytes,
    // every row load inside the `k` flipped bytes, every store inside `y`); features checked.
    unsafe { dense_row_impl(x, k, w, m, bias, y, q) };
    true
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dense_row_impl(
    x: &[i8],
    k: usize,
    w: &[i8],
    m: usize,
    bias: &[i32],
    y: &mut [i8],
    q: &QuantParams<'_>,
) {
    let mut buf = core::mem::MaybeUninit::<[u8; DENSE_ROW_BYTES]>::uninit();
    let row = buf.as_mut_ptr() as *mut u8;
    let flip = _mm512_set1_epi8(i8::MIN);
    let mut i = 0;
    while i < k {
        let mask: __mmask64 = if k - i >= 64 {
            u64::MAX
        } else {
            (1u64 << (k - i)) - 1
        };
        let v = _mm512_maskz_loadu_epi8(mask, x.as_ptr().add(i));
        _mm512_mask_storeu_epi8(row.add(i) as *mut i8, mask, _mm512_xor_si512(v, flip));
        i += 64;
    }
    let groups = k / KR;
    for p in 0..m.div_ceil(NR) {
        let c0 = p * NR;
        let nr = (m - c0).min(NR);
        let mask: __mmask16 = lane_mask(nr);
        let wp = w.as_ptr().add(c0 * k);
        let gs = nr * KR;
        let mut part = [_mm512_setzero_si512(); 4];
        let mut g = 0;
        while g + 4 <= groups {
            for (j, a) in part.iter_mut().enumerate() {
                let wv = _mm512_maskz_loadu_epi32(mask, wp.add((g + j) * gs) as *const i32);
                let xv = (row.add((g + j) * KR) as *const i32).read_unaligned();
                *a = _mm512_dpbusd_epi32(*a, _mm512_set1_epi32(xv), wv);
            }
            g += 4;
        }
        while g < groups {
            let wv = _mm512_maskz_loadu_epi32(mask, wp.add(g * gs) as *const i32);
            let xv = (row.add(g * KR) as *const i32).read_unaligned();
            part[0] = _mm512_dpbusd_epi32(part[0], _mm512_set1_epi32(xv), wv);
            g += 1;
        }
        let acc = _mm512_add_epi32(
            _mm512_add_epi32(part[0], part[1]),
            _mm512_add_epi32(part[2], part[3]),
        );
        let rq = Rq512::of_channels(q, bias, c0, nr);
        store_i8(y.as_mut_ptr().add(c0), mask, rq.apply(acc));
    }
}

/// `qs8_gemm_Mx32c4__avx512vnni`: [`gemm_rq_avx512vnni`] over two panels at once (`p0` full,
/// `p1` of any width, the same `K`, a multiple of 4): each row's broadcast feeds both, so a
/// group costs 2 weight loads and `M` broadcasts for `2·M` `vpdpbusd`. Row `i` of panel `j`
/// goes to `y[base + i·stride + 16·j..]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_rq2_avx512vnni<const M: usize>(
    rows: &[&[u8]; M],
    p0: Panel<'_>,
    p1: Panel<'_>,
    pq0: &PanelQ,
    pq1: &PanelQ,
    q: &QuantParams<'_>,
    y: &mut [i8],
    base: usize,
    stride: usize,
) {
    check(rows, &p0);
    check(rows, &p1);
    assert!(
        p0.nr == NR
            && p0.k == p1.k
            && p0.k.is_multiple_of(KR)
            && base + (M - 1) * stride + NR + p1.nr <= y.len(),
        "qs8 two-panel operands out of shape"
    );
    debug_assert!(Isa::Avx512Vnni.supported());
    // SAFETY: operand lengths and the output range checked above; features checked before
    // this function was handed out.
    unsafe { gemm_rq2_vnni_impl(rows, p0, p1, pq0, pq1, q, y, base, stride) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_rq2_vnni_impl<const M: usize>(
    rows: &[&[u8]; M],
    p0: Panel<'_>,
    p1: Panel<'_>,
    pq0: &PanelQ,
    pq1: &PanelQ,
    q: &QuantParams<'_>,
    y: &mut [i8],
    base: usize,
    stride: usize,
) {
    let nr1 = p1.nr;
    let mask1: __mmask16 = lane_mask(nr1);
    let mut a0 = [_mm512_setzero_si512(); M];
    let mut a1 = [_mm512_setzero_si512(); M];
    let (w0, w1) = (p0.w.as_ptr(), p1.w.as_ptr());
    for g in 0..p0.k / KR {
        let v0 = _mm512_loadu_si512(w0.add(g * NR * KR) as *const _);
        let v1 = _mm512_maskz_loadu_epi32(mask1, w1.add(g * nr1 * KR) as *const i32);
        for i in 0..M {
            let xv = (rows[i].as_ptr().add(g * KR) as *const i32).read_unaligned();
            let b = _mm512_set1_epi32(xv);
            a0[i] = _mm512_dpbusd_epi32(a0[i], b, v0);
            a1[i] = _mm512_dpbusd_epi32(a1[i], b, v1);
        }
    }
    requantize_rows(&a0, pq0, q, y.as_mut_ptr().add(base), stride, 0xFFFF);
    requantize_rows(&a1, pq1, q, y.as_mut_ptr().add(base + NR), stride, mask1);
}

/// `qs8_igemm_Mx16c4__avx512vnni`: [`gemm_rq_avx512vnni`] with each of the `M` rows given as
/// `kh` segments of `run` bytes of `buf` (row `i`'s segment `ky` at `offs[i·kh + ky]`;
/// `K = kh·run`, `run` a multiple of 4), so a conv reads its windows' rows where they lie (a
/// flipped copy of the input) instead of gathering each window.
#[allow(clippy::too_many_arguments)]
pub(super) fn igemm_rq_avx512vnni<const M: usize>(
    buf: &[u8],
    offs: &[usize],
    kh: usize,
    run: usize,
    p: Panel<'_>,
    pq: &PanelQ,
    q: &QuantParams<'_>,
    y: &mut [i8],
    base: usize,
    stride: usize,
) {
    assert!(
        offs.len() == M * kh
            && run.is_multiple_of(KR)
            && kh * run == p.k
            && offs.iter().all(|&o| o <= buf.len() && buf.len() - o >= run)
            && (1..=NR).contains(&p.nr)
            && p.w.len() >= p.nr * p.k
            && base + (M - 1) * stride + p.nr <= y.len(),
        "qs8 igemm operands out of shape"
    );
    debug_assert!(Isa::Avx512Vnni.supported());
    // SAFETY: every segment holds `run` bytes and the panel `nr·K` weights (checked above),
    // the output range too; features checked before this function was handed out.
    unsafe { igemm_rq_vnni_impl::<M>(buf, offs, kh, run, p, pq, q, y, base, stride) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn igemm_rq_vnni_impl<const M: usize>(
    buf: &[u8],
    offs: &[usize],
    kh: usize,
    run: usize,
    p: Panel<'_>,
    pq: &PanelQ,
    q: &QuantParams<'_>,
    y: &mut [i8],
    base: usize,
    stride: usize,
) {
    let nr = p.nr;
    let mask: __mmask16 = lane_mask(nr);
    let mut acc = [_mm512_setzero_si512(); M];
    let groups = run / KR;
    let mut wp = p.w.as_ptr();
    for ky in 0..kh {
        let r: [*const u8; M] = core::array::from_fn(|i| buf.as_ptr().add(offs[i * kh + ky]));
        for g in 0..groups {
            let w = _mm512_maskz_loadu_epi32(mask, wp as *const i32);
            for (a, row) in acc.iter_mut().zip(&r) {
                let xv = (row.add(g * KR) as *const i32).read_unaligned();
                *a = _mm512_dpbusd_epi32(*a, _mm512_set1_epi32(xv), w);
            }
            wp = wp.add(nr * KR);
        }
    }
    requantize_rows(&acc, pq, q, y.as_mut_ptr().add(base), stride, mask);
}

/// `qs8_vadd__avx2`: TFLite's int8 add/sub of two same-shape tensors, 8 lanes at a time
/// (the tail on [`add_one`](crate::kernels::reference_i8::add_one)), bit-exact with it.
pub(super) fn add_avx2(a: &[i8], b: &[i8], y: &mut [i8], p: &AddParams) {
    debug_assert!(Isa::Avx2.supported());
    let n = y.len().min(a.len()).min(b.len());
    let main = n - n % 8;
    // SAFETY: reads and writes stay below `main` <= every slice's length; AVX2 was checked
    // before this function was handed out.
    unsafe { add_impl(&a[..main], &b[..main], &mut y[..main], p) };
    for i in main..n {
        y[i] = crate::kernels::reference_i8::add_one(a[i], b[i], p);
    }
}

#[target_feature(enable = "avx2")]
unsafe fn add_impl(a: &[i8], b: &[i8], y: &mut [i8], p: &AddParams) {
    let ls = _mm256_set1_epi32(p.q.left_shift);
    let zero = _mm256_setzero_si256();
    let side = |v: *const i8, zp: i32, (m, s): (i32, i32)| {
        let x = _mm256_cvtepi8_epi32(_mm_loadl_epi64(v as *const __m128i));
        let x = _mm256_sllv_epi32(_mm256_sub_epi32(x, _mm256_set1_epi32(zp)), ls);
        double_rounding(x, _mm256_set1_epi32(m), _mm256_set1_epi32(s.min(0)))
    };
    let (mo, so) = p.q.mult[2];
    let (lo, hi) = (_mm256_set1_epi32(p.act[0]), _mm256_set1_epi32(p.act[1]));
    let bound = _mm256_set1_epi32(1 << 16);
    for i in (0..y.len()).step_by(8) {
        let sa = side(a.as_ptr().add(i), p.zp[0], p.q.mult[0]);
        let sb = side(b.as_ptr().add(i), p.zp[1], p.q.mult[1]);
        let sum = if p.subtract {
            _mm256_sub_epi32(sa, sb)
        } else {
            _mm256_add_epi32(sa, sb)
        };
        let r = double_rounding(sum, _mm256_set1_epi32(mo), _mm256_set1_epi32(so.min(0)));
        let r = _mm256_min_epi32(_mm256_max_epi32(r, _mm256_sub_epi32(zero, bound)), bound);
        let r = _mm256_add_epi32(r, _mm256_set1_epi32(p.zp[2]));
        let r = _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
        // 8 int32 in [-128, 127] -> 8 bytes.
        let p16 = _mm256_packs_epi32(r, r);
        let p8 = _mm256_packs_epi16(p16, p16);
        let lo4 = _mm_cvtsi128_si32(_mm256_castsi256_si128(p8)) as u32;
        let hi4 = _mm_cvtsi128_si32(_mm256_extracti128_si256(p8, 1)) as u32;
        let out = (lo4 as u64) | ((hi4 as u64) << 32);
        (y.as_mut_ptr().add(i) as *mut u64).write_unaligned(out);
    }
}

/// `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, m), right)` on 16 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn mul_shift512(x: __m512i, m: __m512i, right: __m512i) -> __m512i {
    let zero = _mm512_setzero_si512();
    let nudge = _mm512_set1_epi64(1 << 30);
    let even = _mm512_srli_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, m), nudge), 31);
    let odd = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(m, 32));
    let odd = _mm512_slli_epi64(_mm512_srli_epi64(_mm512_add_epi64(odd, nudge), 31), 32);
    let mut r = _mm512_mask_blend_epi32(0xAAAA, even, odd);
    let min = _mm512_set1_epi32(i32::MIN);
    let sat = _mm512_cmpeq_epi32_mask(x, min) & _mm512_cmpeq_epi32_mask(m, min);
    r = _mm512_mask_blend_epi32(sat, r, _mm512_set1_epi32(i32::MAX));
    let one = _mm512_set1_epi32(1);
    let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    let rem = _mm512_and_si512(r, mask);
    let half = _mm512_srai_epi32(mask, 1);
    let thr = _mm512_mask_add_epi32(half, _mm512_cmplt_epi32_mask(r, zero), half, one);
    let d = _mm512_srav_epi32(r, right);
    _mm512_mask_add_epi32(d, _mm512_cmpgt_epi32_mask(rem, thr), d, one)
}

/// `qs8_vadd__avx512`: as [`add_avx2`], 16 lanes at a time.
pub(super) fn add_avx512(a: &[i8], b: &[i8], y: &mut [i8], p: &AddParams) {
    debug_assert!(Isa::Avx512Vnni.supported());
    let n = y.len().min(a.len()).min(b.len());
    let main = n - n % 16;
    // SAFETY: reads and writes stay below `main` <= every slice's length; AVX-512 was checked
    // before this function was handed out.
    unsafe { add512_impl(&a[..main], &b[..main], &mut y[..main], p) };
    for i in main..n {
        y[i] = crate::kernels::reference_i8::add_one(a[i], b[i], p);
    }
}

/// One input of TFLite's int8 add rescaled in 32-bit lanes: `(v - z) << L`, then the rounding
/// doubling high product with `m` and the rounding right shift by `r`, as
/// `((v - z)·m_hi + ((v - z)·m_lo + K) >> B) >> r` (both shifts arithmetic, `B = 31 - L`,
/// `m = m_hi·2^B + m_lo`). Why it is exact: with `p = (v - z)·m·2^L`, TFLite's two roundings
/// are `⌊(p + 2^30 + 2^(30+r) - [p < -2^30]·2^31) / 2^(31+r)⌋` (`r > 0`; without the last two
/// terms for `r = 0`; the derivation in [`Rq512::apply`]). Every term is a multiple of `2^L`,
/// so dividing through leaves `⌊(d·m + K) / 2^(B+r)⌋` with `d = v - z` and `K = 2^(B-1) +
/// 2^(B-1+r) - [d < 0]·2^B` (`[p < -2^30]` is `[d < 0]` once `m > 2^(B-1)`), and `⌊(d·m_hi·2^B
/// + d·m_lo + K) / 2^(B+r)⌋ = ⌊(d·m_hi + ⌊(d·m_lo + K) / 2^B⌋) / 2^r⌋`. With `|d| ≤ 255` and
/// `L ≤ 22` no product or sum leaves 32 bits, and the high product never saturates.
struct AddInput512 {
    z: __m512i,
    hi: __m512i,
    lo: __m512i,
    k_pos: __m512i,
    k_neg: __m512i,
    b: __m128i,
    r: __m128i,
}

impl AddInput512 {
    /// The constants for zero point `z`, multiplier `m`, shift `s` (TFLite's: `≤ 0`, a right
    /// shift) and left shift `left`; `None` where the 32-bit form is not exact.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn new(z: i32, m: i32, s: i32, left: i32) -> Option<AddInput512> {
        let r = -s;
        let b = 31 - left;
        if !(9..=22).contains(&left) || !(0..left).contains(&r) || m <= 1 << (b - 1) {
            return None;
        }
        let half = 1i32 << (b - 1);
        let (k_pos, k_neg) = if r > 0 {
            let k = half + (half << r);
            (k, k - (1 << b))
        } else {
            (half, half)
        };
        Some(AddInput512 {
            z: _mm512_set1_epi32(z),
            hi: _mm512_set1_epi32(m >> b),
            lo: _mm512_set1_epi32(m & ((1 << b) - 1)),
            k_pos: _mm512_set1_epi32(k_pos),
            k_neg: _mm512_set1_epi32(k_neg),
            b: _mm_cvtsi32_si128(b),
            r: _mm_cvtsi32_si128(r),
        })
    }

    /// The rescaled values of 16 int8 inputs (as int32 lanes).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn apply(&self, v: __m512i) -> __m512i {
        let d = _mm512_sub_epi32(v, self.z);
        let neg = _mm512_cmplt_epi32_mask(d, _mm512_setzero_si512());
        let k = _mm512_mask_blend_epi32(neg, self.k_pos, self.k_neg);
        let low = _mm512_sra_epi32(_mm512_add_epi32(_mm512_mullo_epi32(d, self.lo), k), self.b);
        _mm512_sra_epi32(
            _mm512_add_epi32(_mm512_mullo_epi32(d, self.hi), low),
            self.r,
        )
    }
}

/// [`add512_impl`] in 32-bit lanes for the inputs ([`AddInput512`]) and the one-step double
/// rounding of [`Rq512`] for the output; `false` (nothing written) where that is not exact.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn add512_lanes(a: &[i8], b: &[i8], y: &mut [i8], p: &AddParams) -> bool {
    let left = p.q.left_shift;
    let [(ma, sa), (mb, sb), (mo, so)] = p.q.mult;
    let (Some(ia), Some(ib)) = (
        AddInput512::new(p.zp[0], ma, sa, left),
        AddInput512::new(p.zp[1], mb, sb, left),
    ) else {
        return false;
    };
    if so > 0 {
        return false;
    }
    let zero = _mm512_setzero_si512();
    let out = Rq512::of_parts(
        zero,
        _mm512_set1_epi32(mo),
        _mm512_set1_epi32(so),
        Rounding::Double,
        p.zp[2],
        p.act,
    );
    for i in (0..y.len()).step_by(16) {
        let av = _mm512_cvtepi8_epi32(_mm_loadu_si128(a.as_ptr().add(i) as *const __m128i));
        let bv = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i));
        let (xa, xb) = (ia.apply(av), ib.apply(bv));
        let sum = if p.subtract {
            _mm512_sub_epi32(xa, xb)
        } else {
            _mm512_add_epi32(xa, xb)
        };
        _mm_storeu_si128(
            y.as_mut_ptr().add(i) as *mut __m128i,
            _mm512_cvtepi32_epi8(out.apply(sum)),
        );
    }
    true
}

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn add512_impl(a: &[i8], b: &[i8], y: &mut [i8], p: &AddParams) {
    if add512_lanes(a, b, y, p) {
        return;
    }
    let ls = _mm512_set1_epi32(p.q.left_shift);
    let right = |s: i32| _mm512_set1_epi32((-s).max(0));
    let (ma, ra) = (_mm512_set1_epi32(p.q.mult[0].0), right(p.q.mult[0].1));
    let (mb, rb) = (_mm512_set1_epi32(p.q.mult[1].0), right(p.q.mult[1].1));
    let (mo, ro) = (_mm512_set1_epi32(p.q.mult[2].0), right(p.q.mult[2].1));
    let (za, zb) = (_mm512_set1_epi32(p.zp[0]), _mm512_set1_epi32(p.zp[1]));
    let zy = _mm512_set1_epi32(p.zp[2]);
    let (lo, hi) = (_mm512_set1_epi32(p.act[0]), _mm512_set1_epi32(p.act[1]));
    let bound = _mm512_set1_epi32(1 << 16);
    let nbound = _mm512_sub_epi32(_mm512_setzero_si512(), bound);
    for i in (0..y.len()).step_by(16) {
        let av = _mm512_cvtepi8_epi32(_mm_loadu_si128(a.as_ptr().add(i) as *const __m128i));
        let bv = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i));
        let sa = mul_shift512(_mm512_sllv_epi32(_mm512_sub_epi32(av, za), ls), ma, ra);
        let sb = mul_shift512(_mm512_sllv_epi32(_mm512_sub_epi32(bv, zb), ls), mb, rb);
        let sum = if p.subtract {
            _mm512_sub_epi32(sa, sb)
        } else {
            _mm512_add_epi32(sa, sb)
        };
        let r = mul_shift512(sum, mo, ro);
        let r = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(r, nbound), bound), zy);
        let r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
        _mm_storeu_si128(
            y.as_mut_ptr().add(i) as *mut __m128i,
            _mm512_cvtepi32_epi8(r),
        );
    }
}

/// `qs8_dwconv_16__avx512`: the output pixels `px0..px0 + y.len() / C` of a depthwise layer
/// (`y` holds those pixels), `pqs` the constants of every panel of 16 channels (at most
/// [`DW_PANELS`]). The requantization constants of every panel are set up once per call; the
/// pixels are walked once, in runs, each run computed panel by panel. Each pixel sums
/// `(x - z_x)·w` over its taps in 32-bit lanes; along a run of interior pixels of a kernel 3
/// or 5 wide at stride 1 or 2, four pixels at a time (the last 2 or 3 together) read each input
/// column of a kernel row once (`3·S + KW` columns for four, not `4·KW`) and multiply-add it
/// into every pixel that uses it.
pub(super) fn depthwise_avx512(
    c: &super::Conv<'_, Option<&[i32]>>,
    y: &mut [i8],
    px0: usize,
    pqs: &[PanelQ],
) {
    let [_, _, _, ci] = c.s.x;
    let [co, kh, kw, _] = c.s.w;
    assert!(
        co >= 1
            && ci == co
            && pqs.len() == co.div_ceil(NR)
            && pqs.len() <= DW_PANELS
            && kh * kw <= super::DW_TAPS
            && c.w.len() >= kh * kw * co
            && y.len().is_multiple_of(co),
        "depthwise operands out of shape"
    );
    debug_assert!(Isa::Avx512Vnni.supported());
    if dw_rows(c, y, px0, pqs) {
        return;
    }
    // SAFETY: every load of a run is checked by `taps_fit` and every store against `y` before
    // the run is computed (in the impl). Features checked before this function was handed out.
    unsafe { depthwise_impl(c, y, px0, pqs) }
}

/// Most panels (of 16 channels) [`depthwise_avx512`] takes.
pub(super) const DW_PANELS: usize = 16;

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn depthwise_impl(
    c: &super::Conv<'_, Option<&[i32]>>,
    y: &mut [i8],
    px0: usize,
    pqs: &[PanelQ],
) {
    let super::Conv {
        x,
        w: wt,
        s,
        geo,
        q,
        ..
    } = *c;
    let [co, _, kw, _] = s.w;
    let rqs: [Rq512; DW_PANELS] =
        core::array::from_fn(|p| Rq512::new(&pqs[p.min(pqs.len() - 1)], q));
    let zx = _mm512_set1_epi32(q.input_zp);
    let step = geo.stride[1] * co;
    let total = y.len() / co;
    // Tiles of 4, 3 and 2 pixels (`NC = (T - 1)·S + KW` columns per kernel row).
    #[allow(clippy::type_complexity)]
    let tiles: Option<(DwTile<4>, DwTile<3>, DwTile<2>)> =
        match (kw, geo.stride[1], geo.dilation[1]) {
            (3, 1, 1) => Some((
                dw_tile::<3, 1, 6, 4>,
                dw_tile::<3, 1, 5, 3>,
                dw_tile::<3, 1, 4, 2>,
            )),
            (3, 2, 1) => Some((
                dw_tile::<3, 2, 9, 4>,
                dw_tile::<3, 2, 7, 3>,
                dw_tile::<3, 2, 5, 2>,
            )),
            (5, 1, 1) => Some((
                dw_tile::<5, 1, 8, 4>,
                dw_tile::<5, 1, 7, 3>,
                dw_tile::<5, 1, 6, 2>,
            )),
            (5, 2, 1) => Some((
                dw_tile::<5, 2, 11, 4>,
                dw_tile::<5, 2, 9, 3>,
                dw_tile::<5, 2, 7, 2>,
            )),
            _ => None,
        };
    let (xp, wp, yp) = (x.as_ptr(), wt.as_ptr(), y.as_mut_ptr());
    // Fewer channels than a vector, dividing it (C = 1, 2, 4, 8), at stride 1: along a run the
    // pixels' channels are contiguous in x and in y, so 16 lanes cover 16 / C pixels, with the
    // weights and constants tiled across the lanes (lane l holds channel l mod C).
    let tiled = co < NR && NR.is_multiple_of(co) && geo.stride[1] == 1;
    let mut wt16 = [_mm512_setzero_si512(); super::DW_TAPS];
    let mut tpq = PanelQ::ZERO;
    if tiled {
        let lanes: [i32; NR] = core::array::from_fn(|l| (l % co) as i32);
        let perm = _mm512_loadu_si512(lanes.as_ptr() as *const _);
        let mask: __mmask16 = lane_mask(co);
        let [_, kh, kw, _] = s.w;
        for (t, v) in wt16.iter_mut().enumerate().take(kh * kw) {
            let wv = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, wp.add(t * co)));
            *v = _mm512_permutexvar_epi32(perm, wv);
        }
        for l in 0..NR {
            tpq.bias[l] = pqs[0].bias[l % co];
            tpq.mult[l] = pqs[0].mult[l % co];
            tpq.shift[l] = pqs[0].shift[l % co];
        }
    }
    let rq16 = Rq512::new(&tpq, q);
    super::dw_runs(&s, &geo, px0, total, true, |i, count, taps| {
        let last = (count - 1) * step;
        assert!(
            super::taps_fit(x.len(), wt.len(), co, taps, last, 0, co.min(NR))
                && super::taps_fit(
                    x.len(),
                    wt.len(),
                    co,
                    taps,
                    last,
                    co - co.min(NR),
                    co.min(NR)
                )
                && (i + count) * co <= total * co,
            "depthwise run out of range"
        );
        if tiled && count > 1 {
            // The run's `count·C` outputs, 16 at a time (the lanes checked above: `x` up to
            // each tap's offset plus `count·C`).
            let lanes = count * co;
            let mut j = 0;
            while j < lanes {
                let n = (lanes - j).min(NR);
                let mask: __mmask16 = lane_mask(n);
                let mut acc = _mm512_setzero_si512();
                for &(xo, t) in taps {
                    let v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, xp.add(xo + j)));
                    let v = _mm512_sub_epi32(v, zx);
                    acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(v, wt16[t]));
                }
                store_i8(yp.add(i * co + j), mask, rq16.apply(acc));
                j += NR;
            }
            return;
        }
        // A run of more than one pixel is inside the input horizontally: its taps are whole
        // kernel rows of `kw` consecutive pixels.
        let tiles = tiles.filter(|_| count >= 2 && taps.len().is_multiple_of(kw));
        for (p, rq) in rqs.iter().enumerate().take(pqs.len()) {
            let c0 = p * NR;
            let n = (co - c0).min(NR);
            let mask: __mmask16 = lane_mask(n);
            let ld = |p: *const i8| _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, p));
            let (xc, wc, yc) = (xp.add(c0), wp.add(c0), yp.add(c0));
            let mut j = 0;
            if let Some((f4, f3, f2)) = tiles {
                let put = |j: usize, acc: &[__m512i]| {
                    for (k, a) in acc.iter().enumerate() {
                        store_i8(yc.add((i + j + k) * co), mask, rq.apply(*a));
                    }
                };
                while j + 4 <= count {
                    put(j, &f4(xc.add(j * step), wc, co, taps, zx, mask));
                    j += 4;
                }
                // The last 3 or 2 pixels as one tile; a last single one below.
                match count - j {
                    3 => put(j, &f3(xc.add(j * step), wc, co, taps, zx, mask)),
                    2 => put(j, &f2(xc.add(j * step), wc, co, taps, zx, mask)),
                    _ => {}
                }
                if count - j != 1 {
                    j = count;
                }
            }
            for j in j..count {
                let base = xc.add(j * step);
                let mut acc = _mm512_setzero_si512();
                for &(xo, t) in taps {
                    let v = _mm512_sub_epi32(ld(base.add(xo)), zx);
                    acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(v, ld(wc.add(t * co))));
                }
                store_i8(yc.add((i + j) * co), mask, rq.apply(acc));
            }
        }
    });
}

/// Stack bytes for the zero-point-padded input rows of [`dw_rows`] (host threads have
/// megabytes of stack; this path is x86-64 only).
const DW_PAD_BYTES: usize = 32 * 1024;

/// Largest window (taps) [`dw_rows`] takes.
const DW_ROW_TAPS: usize = 25;

/// Tallest window (kernel rows) the row kernels ([`dw_rows`], [`conv_rows`]) take.
const PAD_ROWS: usize = 16;

/// `qs8_dwconv_3x3s1__avx512` and its 3×3 stride-2 and 5×5 siblings: the output pixels
/// `px0..px0 + y.len() / C` of a depthwise layer row by row over a copy of the input rows they
/// read, padded with the input zero point. Padding then needs no special case: every pixel is
/// an interior one, its padding taps contribute `(z_x - z_x)·w = 0` as in TFLite. The sum is
/// taken as `Σ x·w` with `-z_x·Σ w` folded into each panel's bias (wrapping, so the same 32-bit
/// value as `Σ (x - z_x)·w`). Along a row, four pixels at a time (then two, then one) read
/// each input column of a kernel row once; panels of 16 channels are the outer loop, their
/// weights widened once per chunk of rows. Layers of 1, 2, 4 or 8 channels at stride 1 put
/// `16 / C` pixels in one vector instead. Returns `false` (nothing written) for a layer it does
/// not take: other widths, strides or dilations, windows past [`DW_ROW_TAPS`], or rows too
/// long for [`DW_PAD_BYTES`].
pub(super) fn dw_rows(
    c: &super::Conv<'_, Option<&[i32]>>,
    y: &mut [i8],
    px0: usize,
    pqs: &[PanelQ],
) -> bool {
    let [n, h, wd, ci] = c.s.x;
    let [co, kh, kw, _] = c.s.w;
    let [_, oh, ow, yc] = c.s.y;
    let (sy, sx) = (c.geo.stride[0], c.geo.stride[1]);
    let shape_ok = co >= 1
        && ci == co
        && yc == co
        && c.geo.dilation == [1, 1]
        && matches!((kw, sx), (3, 1) | (3, 2) | (5, 1) | (5, 2))
        && (1..=DW_ROW_TAPS).contains(&(kh * kw))
        && sy >= 1
        && kh <= PAD_ROWS
        && i8::try_from(c.q.input_zp).is_ok()
        && c.q.weight_zp == 0
        && pqs.len() == co.div_ceil(NR)
        && pqs.len() <= DW_PANELS
        && c.w.len() >= kh * kw * co
        && c.x.len() >= n * h * wd * co
        && y.len().is_multiple_of(co)
        && px0 + y.len() / co <= n * oh * ow;
    let Some(plan) = super::PadRows::new(&c.s, &c.geo).filter(|_| shape_ok) else {
        return false;
    };
    let pad = Padded {
        x: c.x,
        plan,
        fill: c.q.input_zp as u8,
        flip: 0,
    };
    if !pad.fits(DW_PAD_BYTES) {
        return false;
    }
    debug_assert!(Isa::Avx512Vnni.supported());
    // SAFETY: shapes checked above; every load of `x` is a copy bounded by the slices, every
    // other load reads the padded buffer within the rows and columns filled, every store is
    // inside `y` (see the impl). Features checked before this function was handed out.
    unsafe { dw_rows_impl(c, y, px0, pqs, &pad) };
    true
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dw_rows_impl(
    c: &super::Conv<'_, Option<&[i32]>>,
    y: &mut [i8],
    px0: usize,
    pqs: &[PanelQ],
    pad: &Padded<'_>,
) {
    let super::Conv {
        w: wt, s, geo, q, ..
    } = *c;
    let [co, _, kw, _] = s.w;
    let sx = geo.stride[1];
    // Only the bytes written are read (zeroing all of it cost small layers a tenth).
    let mut buf = core::mem::MaybeUninit::<[u8; DW_PAD_BYTES]>::uninit();
    let tiled = co < NR && NR.is_multiple_of(co) && sx == 1;
    let yo = y.as_mut_ptr();
    pad.chunks(
        buf.as_mut_ptr() as *mut u8,
        DW_PAD_BYTES,
        px0,
        y.len() / co,
        co,
        |ctx| {
            if tiled {
                let pq = tiled_constants(&pqs[0], co);
                match kw {
                    3 => dw_rows_tiled::<3>(ctx, wt, &pq, q, yo),
                    _ => dw_rows_tiled::<5>(ctx, wt, &pq, q, yo),
                }
            } else {
                for (p, pq) in pqs.iter().enumerate() {
                    match (kw, sx) {
                        (3, 1) => dw_rows_panel::<3, 1, 6, 4, 3>(ctx, wt, p, pq, q, yo),
                        (3, 2) => dw_rows_panel::<3, 2, 9, 5, 3>(ctx, wt, p, pq, q, yo),
                        (5, 1) => dw_rows_panel::<5, 1, 8, 6, 5>(ctx, wt, p, pq, q, yo),
                        _ => dw_rows_panel::<5, 2, 11, 7, 5>(ctx, wt, p, pq, q, yo),
                    }
                }
            }
        },
    );
}

/// Bytes past the last padded row that [`Padded::chunks`] zeroes: reads of whole 4-byte groups
/// past a window's last column stay inside written memory.
const PAD_SLACK: usize = 64;

/// A layer's input as zero-point-padded rows ([`super::PadRows`]), every byte XORed with
/// `flip` (`0x80`: the unsigned bytes `vpdpbusd` takes), `fill` (the input zero point, flipped
/// alike) outside the input.
struct Padded<'a> {
    x: &'a [i8],
    plan: super::PadRows,
    fill: u8,
    flip: u8,
}

impl Padded<'_> {
    /// Whether the rows of one output row fit `cap` bytes with the slack.
    fn fits(&self, cap: usize) -> bool {
        self.plan.kh * self.plan.row_len() + PAD_SLACK <= cap
    }

    /// Walks the output pixels `px0..px0 + total` in chunks of output rows whose input rows fit
    /// `cap` bytes at `bp` ([`Padded::fits`] checked by the caller): copies each chunk's rows
    /// there, then calls `f` with it (outputs of `co` channels).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn chunks(
        &self,
        bp: *mut u8,
        cap: usize,
        px0: usize,
        total: usize,
        co: usize,
        mut f: impl FnMut(&RowCtx),
    ) {
        let plan = &self.plan;
        let (kh, row_bytes) = (plan.kh, plan.row_len());
        debug_assert!(self.fits(cap));
        let c = row_bytes / plan.pw;
        let (left, inside) = (plan.left * c, plan.inside * c);
        let flip = _mm512_set1_epi8(self.flip as i8);
        plan.chunks((cap - PAD_SLACK) / row_bytes, px0, total, |ch| {
            for r in 0..ch.rows {
                let dst = bp.add(r * row_bytes);
                let Some(at) = plan.source(ch, r) else {
                    core::ptr::write_bytes(dst, self.fill, row_bytes);
                    continue;
                };
                let src = &self.x[at..][..inside];
                core::ptr::write_bytes(dst, self.fill, left);
                let d = dst.add(left);
                let mut i = 0;
                while i < src.len() {
                    let n = (src.len() - i).min(64);
                    let m: __mmask64 = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                    let v = _mm512_maskz_loadu_epi8(m, src.as_ptr().add(i));
                    _mm512_mask_storeu_epi8(d.add(i) as *mut i8, m, _mm512_xor_si512(v, flip));
                    i += 64;
                }
                core::ptr::write_bytes(
                    dst.add(left + inside),
                    self.fill,
                    row_bytes - left - inside,
                );
            }
            core::ptr::write_bytes(bp.add(ch.rows * row_bytes), 0, PAD_SLACK);
            f(&RowCtx {
                buf: bp as *const i8,
                row_bytes,
                co,
                kh,
                sy: plan.sy,
                oy0: ch.oy0,
                // The chunk starts in output row `oy0`.
                pix0: ch.first - ch.first % plan.ow,
                first: ch.first,
                stop: ch.stop,
                ow: plan.ow,
                px0,
            });
        });
    }
}

/// One chunk of rows of [`dw_rows_impl`]: the padded buffer and the output pixels
/// `first..stop` (absolute indices) it computes, rows `oy0..` of the image starting at
/// pixel `pix0`.
struct RowCtx {
    buf: *const i8,
    row_bytes: usize,
    co: usize,
    kh: usize,
    sy: usize,
    oy0: usize,
    pix0: usize,
    first: usize,
    stop: usize,
    ow: usize,
    px0: usize,
}

impl RowCtx {
    /// Calls `f(row pointers at column 0, offset in y of pixel ox0, ox0, ox1)` for each output
    /// row, `ox0..ox1` its pixels in this chunk.
    #[inline(always)]
    fn rows(&self, mut f: impl FnMut(&[*const i8], usize, usize, usize)) {
        let mut rows = [core::ptr::null::<i8>(); PAD_ROWS];
        let mut pix = self.first;
        while pix < self.stop {
            let row_pix = self.pix0 + (pix - self.pix0) / self.ow * self.ow;
            let oy = self.oy0 + (row_pix - self.pix0) / self.ow;
            let ox_end = (self.stop - row_pix).min(self.ow);
            let r0 = (oy - self.oy0) * self.sy;
            for (ky, r) in rows.iter_mut().enumerate().take(self.kh) {
                *r = self.buf.wrapping_add((r0 + ky) * self.row_bytes);
            }
            f(
                &rows[..self.kh],
                (pix - self.px0) * self.co,
                pix - row_pix,
                ox_end,
            );
            pix = row_pix + ox_end;
        }
    }
}

/// The constants of a layer of `C < 16` channels tiled across the 16 lanes (lane `l` holds
/// channel `l mod C`).
fn tiled_constants(pq: &PanelQ, co: usize) -> PanelQ {
    let mut t = PanelQ::ZERO;
    for l in 0..NR {
        t.bias[l] = pq.bias[l % co];
        t.mult[l] = pq.mult[l % co];
        t.shift[l] = pq.shift[l % co];
    }
    t
}

/// Panel `p` (channels `16p..`) of every row of a chunk, for a kernel `KW` wide at stride `S`
/// (`N4`, `N2` input columns for 4 and 2 pixels, `N1 = KW`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dw_rows_panel<
    const KW: usize,
    const S: usize,
    const N4: usize,
    const N2: usize,
    const N1: usize,
>(
    ctx: &RowCtx,
    wt: &[i8],
    p: usize,
    pq: &PanelQ,
    q: &QuantParams<'_>,
    yo: *mut i8,
) {
    let co = ctx.co;
    let c0 = p * NR;
    let lanes = (co - c0).min(NR);
    let mask: __mmask16 = lane_mask(lanes);
    let taps = ctx.kh * KW;
    let mut w = [_mm512_setzero_si512(); DW_ROW_TAPS];
    for (t, v) in w.iter_mut().enumerate().take(taps) {
        *v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, wt.as_ptr().add(t * co + c0)));
    }
    let w = &w[..taps];
    let rq = Rq512::new(pq, q).fold_zero_point(w, q.input_zp);
    let step = S * co;
    ctx.rows(|rows, yb, ox0, ox1| {
        let put = |ox: usize, acc: &[__m512i]| {
            for (k, a) in acc.iter().enumerate() {
                store_i8(yo.add(yb + (ox - ox0 + k) * co + c0), mask, rq.apply(*a));
            }
        };
        let at = |ox: usize| c0 + ox * step;
        let mut ox = ox0;
        while ox + 4 <= ox1 {
            put(ox, &dw_cols::<KW, S, N4, 4>(rows, at(ox), co, w, mask));
            ox += 4;
        }
        if ox + 2 <= ox1 {
            put(ox, &dw_cols::<KW, S, N2, 2>(rows, at(ox), co, w, mask));
            ox += 2;
        }
        if ox < ox1 {
            put(ox, &dw_cols::<KW, S, N1, 1>(rows, at(ox), co, w, mask));
        }
    });
}

/// `T` pixels of a row: each kernel row's `NC = (T - 1)·S + KW` input columns (from byte `off`
/// of each padded row, `C` bytes apart) loaded once and multiplied into every pixel reading
/// them.
#[inline(always)]
unsafe fn dw_cols<const KW: usize, const S: usize, const NC: usize, const T: usize>(
    rows: &[*const i8],
    off: usize,
    co: usize,
    w: &[__m512i],
    mask: __mmask16,
) -> [__m512i; T] {
    const { assert!(NC == (T - 1) * S + KW) };
    let mut acc = [_mm512_setzero_si512(); T];
    for (ky, &r) in rows.iter().enumerate() {
        let base = r.add(off);
        let col: [__m512i; NC] = core::array::from_fn(|j| {
            _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, base.add(j * co)))
        });
        let wr = &w[ky * KW..][..KW];
        for (p, a) in acc.iter_mut().enumerate() {
            for (kx, wk) in wr.iter().enumerate() {
                *a = _mm512_add_epi32(*a, _mm512_mullo_epi32(col[p * S + kx], *wk));
            }
        }
    }
    acc
}

/// Every row of a chunk of a layer of `C` = 1, 2, 4 or 8 channels at stride 1: each vector
/// holds `16 / C` consecutive pixels (weights and constants tiled across the lanes), four
/// vectors at a time.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dw_rows_tiled<const KW: usize>(
    ctx: &RowCtx,
    wt: &[i8],
    pq: &PanelQ,
    q: &QuantParams<'_>,
    yo: *mut i8,
) {
    let co = ctx.co;
    let taps = ctx.kh * KW;
    let lanes: [i32; NR] = core::array::from_fn(|l| (l % co) as i32);
    let perm = _mm512_loadu_si512(lanes.as_ptr() as *const _);
    let cmask: __mmask16 = lane_mask(co);
    let mut w = [_mm512_setzero_si512(); DW_ROW_TAPS];
    for (t, v) in w.iter_mut().enumerate().take(taps) {
        let wv = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(cmask, wt.as_ptr().add(t * co)));
        *v = _mm512_permutexvar_epi32(perm, wv);
    }
    let w = &w[..taps];
    let rq = Rq512::new(pq, q).fold_zero_point(w, q.input_zp);
    ctx.rows(|rows, yb, ox0, ox1| {
        // Output bytes of this row from ox0 to ox1, 16 per vector.
        let (b0, b1) = (ox0 * co, ox1 * co);
        let one = |b: usize| {
            let mask: __mmask16 = lane_mask(b1 - b);
            let mut acc = _mm512_setzero_si512();
            for (ky, &r) in rows.iter().enumerate() {
                for kx in 0..KW {
                    let v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, r.add(b + kx * co)));
                    acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(v, w[ky * KW + kx]));
                }
            }
            store_i8(yo.add(yb + b - b0), mask, rq.apply(acc));
        };
        let mut b = b0;
        while b + 4 * NR <= b1 {
            let mut acc = [_mm512_setzero_si512(); 4];
            for (ky, &r) in rows.iter().enumerate() {
                for kx in 0..KW {
                    let wk = w[ky * KW + kx];
                    for (v, a) in acc.iter_mut().enumerate() {
                        let p = r.add(b + v * NR + kx * co) as *const __m128i;
                        let xv = _mm512_cvtepi8_epi32(_mm_loadu_si128(p));
                        *a = _mm512_add_epi32(*a, _mm512_mullo_epi32(xv, wk));
                    }
                }
            }
            for (v, a) in acc.iter().enumerate() {
                store_i8(yo.add(yb + b - b0 + v * NR), 0xFFFF, rq.apply(*a));
            }
            b += 4 * NR;
        }
        while b < b1 {
            one(b);
            b += NR;
        }
    });
}

/// Stack bytes for the padded input rows of [`conv_rows`].
const CONV_PAD_BYTES: usize = 48 * 1024;

/// `qs8_igemm_{8,4,2,1}x{16,32}c4__avx512vnni` over padded rows: the output pixels `px0..px0 +
/// y.len() / O` of an int8 conv (one group, packed weights, folded bias) read from a copy of the
/// input rows they need, flipped to unsigned bytes and padded with the (flipped) input zero
/// point, so every window is `KH` runs of `KW·C` bytes at a fixed stride and none is gathered.
/// Kernel rows that are not whole 4-byte groups read whole groups anyway, over weights
/// repacked (per call, on the stack) with zeros past each row. Panels are taken two at a time
/// (each broadcast input group feeds both), their requantization constants set up once per
/// chunk of rows; along a row, eight pixels per call (then four, two, one) keep their
/// accumulators in registers through the requantization. Returns `false` (nothing written)
/// for layers it does not take: dilation, rows past [`CONV_PAD_BYTES`], windows taller than
/// [`PAD_ROWS`] or repacked weights past `qs8::SEG_WEIGHTS`.
pub(super) fn conv_rows(c: &super::Conv<'_, &[i32]>, y: &mut [i8], px0: usize) -> bool {
    // A pointwise conv (1x1, stride 1, no padding) reads consecutive pixels whatever their
    // row: as one row of every pixel, when that fits, its tiles of eight never stop at a row's
    // end (keyword spotting's rows are five pixels).
    let [n, h, wd, ci] = c.s.x;
    if super::pointwise(&c.s, &c.geo)
        && (n * h * wd * ci) + PAD_SLACK <= CONV_PAD_BYTES
        && (h, n) != (1, 1)
    {
        let flat = super::Conv {
            s: super::ConvShapes {
                x: [1, 1, n * h * wd, ci],
                w: c.s.w,
                y: [1, 1, n * h * wd, c.s.y[3]],
            },
            ..*c
        };
        return conv_rows(&flat, y, px0);
    }
    let [co, kh, kw, wci] = c.s.w;
    let [_, oh, ow, yc] = c.s.y;
    let (run, k) = (kw * ci, kh * kw * ci);
    let runp = run.div_ceil(KR) * KR;
    let shape_ok = co >= 1
        && ci >= 1
        && wci == ci
        && yc == co
        && (1..=PAD_ROWS).contains(&kh)
        && kw >= 1
        && c.geo.dilation == [1, 1]
        && c.geo.stride[0] >= 1
        && c.geo.stride[1] >= 1
        && i8::try_from(c.q.input_zp).is_ok()
        && c.w.len() >= co * k
        && c.bias.len() >= co
        && (c.q.multiplier.len() == 1 || c.q.multiplier.len() >= co)
        && c.x.len() >= n * h * wd * ci
        && y.len().is_multiple_of(co)
        && px0 + y.len() / co <= n * oh * ow
        && (runp == run || co * kh * runp <= super::SEG_WEIGHTS);
    let plan = super::PadRows::new(&c.s, &c.geo);
    let Some(plan) = plan.filter(|_| shape_ok && Isa::Avx512Vnni.supported()) else {
        return false;
    };
    let pad = Padded {
        x: c.x,
        plan,
        fill: (c.q.input_zp as u8) ^ 0x80,
        flip: 0x80,
    };
    if !pad.fits(CONV_PAD_BYTES) {
        return false;
    }
    // SAFETY: shapes checked above: every weight group read is inside its panel of the
    // (repacked) `co·KH·runp` weights, every input read inside the padded rows of the chunk or
    // its zeroed slack (a window's row is `runp <= run + 3` bytes from inside a padded row),
    // every store inside `y`. Features checked above.
    unsafe { conv_rows_impl(c, y, px0, &pad, runp) };
    true
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn conv_rows_impl(
    c: &super::Conv<'_, &[i32]>,
    y: &mut [i8],
    px0: usize,
    pad: &Padded<'_>,
    runp: usize,
) {
    let [co, kh, kw, ci] = c.s.w;
    let mut wq = [0i8; super::SEG_WEIGHTS];
    let w = super::repack_rows(c.w, co, kh, kw * ci, runp, &mut wq);
    let geo = Geo {
        kq: kh * runp,
        groups: runp / KR,
        step: c.geo.stride[1] * ci,
        co,
    };
    let mut buf = core::mem::MaybeUninit::<[u8; CONV_PAD_BYTES]>::uninit();
    let yo = y.as_mut_ptr();
    let (q, bias) = (c.q, c.bias);
    pad.chunks(
        buf.as_mut_ptr() as *mut u8,
        CONV_PAD_BYTES,
        px0,
        y.len() / co,
        co,
        |ctx| {
            let panels = co.div_ceil(NR);
            let mut p = 0;
            while p < panels {
                let two = p + 1 < panels;
                let c0 = p * NR;
                let nr0 = (co - c0).min(NR);
                let rq0 = Rq512::of_channels(q, bias, c0, nr0);
                let (w0, m0) = (w.as_ptr().add(c0 * geo.kq), lane_mask(nr0));
                if two {
                    let nr1 = (co - c0 - NR).min(NR);
                    let rq1 = Rq512::of_channels(q, bias, c0 + NR, nr1);
                    let pn = [
                        (w0, m0, &rq0),
                        (w.as_ptr().add((c0 + NR) * geo.kq), lane_mask(nr1), &rq1),
                    ];
                    conv_row_panels::<2>(ctx, &geo, &pn, c0, yo);
                    p += 2;
                } else {
                    conv_row_panels::<1>(ctx, &geo, &[(w0, m0, &rq0)], c0, yo);
                    p += 1;
                }
            }
        },
    );
}

/// The shape [`conv_row_panels`] reads: `K` as repacked, 4-byte groups per kernel row, bytes
/// between consecutive windows of a row, output channels.
struct Geo {
    kq: usize,
    groups: usize,
    step: usize,
    co: usize,
}

/// `P` panels (first channel `c0`; each `(weights, lane mask, constants)`) of every output row
/// of a chunk.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn conv_row_panels<const P: usize>(
    ctx: &RowCtx,
    g: &Geo,
    pn: &[(*const i8, __mmask16, &Rq512); P],
    c0: usize,
    yo: *mut i8,
) {
    ctx.rows(|rows, yb, ox0, ox1| {
        let mut ox = ox0;
        let tile = |m: usize, ox: usize| {
            let y = yo.add(yb + (ox - ox0) * g.co + c0);
            match m {
                8 => conv_tile::<8, P>(rows, ox * g.step, g, pn, y),
                4 => conv_tile::<4, P>(rows, ox * g.step, g, pn, y),
                2 => conv_tile::<2, P>(rows, ox * g.step, g, pn, y),
                _ => conv_tile::<1, P>(rows, ox * g.step, g, pn, y),
            }
        };
        while ox1 - ox >= 8 {
            tile(8, ox);
            ox += 8;
        }
        for m in [4, 2, 1] {
            if ox1 - ox >= m {
                tile(m, ox);
                ox += m;
            }
        }
    });
}

/// `M` consecutive pixels of a row times `P` panels: the windows start `off` bytes into each
/// padded kernel row (`g.step` apart), outputs written from `y` (`g.co` apart).
#[inline(always)]
unsafe fn conv_tile<const M: usize, const P: usize>(
    rows: &[*const i8],
    off: usize,
    g: &Geo,
    pn: &[(*const i8, __mmask16, &Rq512); P],
    y: *mut i8,
) {
    let mut acc = [[_mm512_setzero_si512(); M]; P];
    for (ky, &r) in rows.iter().enumerate() {
        let base = r.add(off);
        for gi in 0..g.groups {
            let grp = ky * g.groups + gi;
            let w: [__m512i; P] = core::array::from_fn(|j| {
                let (wp, mask, _) = pn[j];
                let nr = (mask as u32).count_ones() as usize;
                _mm512_maskz_loadu_epi32(mask, wp.add(grp * nr * KR) as *const i32)
            });
            for i in 0..M {
                let xv = (base.add(i * g.step + gi * KR) as *const i32).read_unaligned();
                let xb = _mm512_set1_epi32(xv);
                for (a, wj) in acc.iter_mut().zip(&w) {
                    a[i] = _mm512_dpbusd_epi32(a[i], xb, *wj);
                }
            }
        }
    }
    for (j, (a, &(_, mask, rq))) in acc.iter().zip(pn).enumerate() {
        for (i, v) in a.iter().enumerate() {
            store_i8(y.add(i * g.co + j * NR), mask, rq.apply(*v));
        }
    }
}

/// `T` pixels of a run: `(x at the first pixel, weights, C, taps, z_x, mask) -> accumulators`
/// (pointers at the panel's first channel).
type DwTile<const T: usize> =
    unsafe fn(*const i8, *const i8, usize, &[(usize, usize)], __m512i, __mmask16) -> [__m512i; T];

/// [`DwTile`] for a kernel `KW` wide at stride `S`: the `NC = (T - 1)·S + KW` columns of each
/// kernel row are loaded once, and the row's weights once for the `T` pixels.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dw_tile<const KW: usize, const S: usize, const NC: usize, const T: usize>(
    x: *const i8,
    wt: *const i8,
    co: usize,
    taps: &[(usize, usize)],
    zx: __m512i,
    mask: __mmask16,
) -> [__m512i; T] {
    const { assert!(NC == (T - 1) * S + KW) };
    let ld = |p: *const i8| _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, p));
    let mut acc = [_mm512_setzero_si512(); T];
    for r in taps.chunks_exact(KW) {
        let (xo, t0) = r[0];
        let base = x.add(xo);
        let w: [__m512i; KW] = core::array::from_fn(|kx| ld(wt.add((t0 + kx) * co)));
        let col: [__m512i; NC] =
            core::array::from_fn(|j| _mm512_sub_epi32(ld(base.add(j * co)), zx));
        for (p, a) in acc.iter_mut().enumerate() {
            for (kx, wk) in w.iter().enumerate() {
                *a = _mm512_add_epi32(*a, _mm512_mullo_epi32(col[p * S + kx], *wk));
            }
        }
    }
    acc
}

/// Requantizes accumulator rows with one panel's constants and stores row `i`'s `mask` lanes
/// at `y + i·stride` (the caller has checked that range).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn requantize_rows(
    acc: &[__m512i],
    pq: &PanelQ,
    q: &QuantParams<'_>,
    y: *mut i8,
    stride: usize,
    mask: __mmask16,
) {
    let c = Rq512::new(pq, q);
    for (i, a) in acc.iter().enumerate() {
        store_i8(y.add(i * stride), mask, c.apply(*a));
    }
}

/// Stores the low bytes of the 16 lanes of `v` selected by `mask` at `dst`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn store_i8(dst: *mut i8, mask: __mmask16, v: __m512i) {
    _mm_mask_storeu_epi8(dst as *mut _, mask, _mm512_cvtepi32_epi8(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference_i8::add_input;
    use crate::ops::AddQuant;

    /// [`AddInput512`] equals the scalar rescaling of an add's input for every int8 value,
    /// over multipliers of the whole range TFLite produces (and the two ends), every right
    /// shift the 32-bit form takes and every input zero point, ties included: the values its
    /// results are checked against one by one, not through the add's 8-bit output (which
    /// hides a last-bit error of the rescaled input).
    #[test]
    fn add_input_in_32_bit_lanes_is_exact() {
        if !Isa::Avx512Vnni.supported() {
            return;
        }
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed
        };
        let mut checked = 0;
        for case in 0..4000i32 {
            let s = case % 20;
            let m = match case % 4 {
                0 => (1 << 30) + (next() as i32 & 0x3FFF_FFFF),
                1 => (1 << 30) + (1 << (10 + s)) + (next() % 5) as i32 - 2,
                2 => i32::MAX - (next() % 4) as i32,
                _ => (1 << 30) + (next() % 4) as i32,
            };
            let z = (next() >> 24) as i8 as i32;
            let p = AddParams {
                zp: [z, 0, 0],
                q: AddQuant {
                    left_shift: 20,
                    mult: [(m, -s), (1 << 30, 0), (1 << 30, 0)],
                },
                act: [-128, 127],
                subtract: false,
            };
            // SAFETY: AVX-512 checked above.
            let got: [[i32; 16]; 16] = unsafe {
                let c = AddInput512::new(z, m, -s, 20).expect("in the 32-bit form's range");
                core::array::from_fn(|blk| {
                    let v: [i32; 16] = core::array::from_fn(|l| (blk * 16 + l) as u8 as i8 as i32);
                    let r = c.apply(_mm512_loadu_si512(v.as_ptr() as *const _));
                    let mut out = [0i32; 16];
                    _mm512_storeu_si512(out.as_mut_ptr() as *mut _, r);
                    out
                })
            };
            for (i, g) in got.iter().flatten().enumerate() {
                let want = add_input(i as u8 as i8, 0, &p);
                assert_eq!(*g, want, "v {} z {z} m {m} s {}", i as u8 as i8, -s);
                checked += 1;
            }
        }
        assert_eq!(checked, 4000 * 256);
    }
}
