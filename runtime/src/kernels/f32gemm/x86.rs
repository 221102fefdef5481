//! x86-64 f32 microkernels: `f32_gemm_{1,4}x16__avx512f`, `f32_gemm_{1,4}x16__avx2_fma`,
//! `f32_igemm_{8,4,2,1}x16__avx512f`, `f32_igemm_8x{32,48}__avx512f`, `f32_dwconv_16__avx512f`
//! (runs), `f32_dwconv_{3x3,5x5}s{1,2}__avx512f` (rows), `f32_dwconv_16__avx2_fma`,
//! `f32_pool__avx512f`. Reachable only through the dispatchers of [`super`], which check
//! [`Isa::supported`] first.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::{Panel, NR};
use crate::kernels::isa::Isa;
use crate::kernels::qs8::lane_mask;

#[inline(always)]
fn check<const M: usize>(rows: &[&[f32]; M], p: &Panel<'_>) {
    assert!(
        (1..=NR).contains(&p.nr) && p.w.len() >= p.nr * p.k && rows.iter().all(|r| r.len() >= p.k),
        "f32 microkernel operands out of shape"
    );
}

#[inline(always)]
fn check_dw(x: &[f32], wt: &[f32], co: usize, taps: &[(usize, usize)], c0: usize) {
    assert!(
        crate::kernels::qs8::taps_fit(x.len(), wt.len(), co, taps, 0, c0, NR),
        "dwconv operands out of shape"
    );
}

/// `f32_gemm_Mx16__avx512f`.
pub(super) fn gemm_avx512<const M: usize, const SPLIT: bool>(
    rows: &[&[f32]; M],
    p: Panel<'_>,
    bias: &[f32; NR],
) -> [[f32; NR]; M] {
    check(rows, &p);
    debug_assert!(Isa::Avx512Vnni.supported());
    // SAFETY: lengths checked above; features checked before this was handed out.
    unsafe { gemm_avx512_impl::<M, SPLIT>(rows, p, bias) }
}

#[target_feature(enable = "avx512f")]
unsafe fn gemm_avx512_impl<const M: usize, const SPLIT: bool>(
    rows: &[&[f32]; M],
    p: Panel<'_>,
    bias: &[f32; NR],
) -> [[f32; NR]; M] {
    let (nr, k) = (p.nr, p.k);
    let mask: __mmask16 = lane_mask(nr);
    let mut acc = [_mm512_loadu_ps(bias.as_ptr()); M];
    let wp = p.w.as_ptr();
    let mut k0 = 0;
    if M == 1 && SPLIT {
        // One row (dense): four partial sums over k so consecutive FMAs do not wait for each
        // other (a different summation order, inside the same error bound; dense uses it for
        // every row so equal rows give equal bits; the AVX2 and NEON forms combine the same way).
        let row = rows[0];
        let mut part = [_mm512_setzero_ps(); 4];
        while k0 + 4 <= k {
            for (j, a) in part.iter_mut().enumerate() {
                let w = _mm512_maskz_loadu_ps(mask, wp.add((k0 + j) * nr));
                *a = _mm512_fmadd_ps(_mm512_set1_ps(*row.get_unchecked(k0 + j)), w, *a);
            }
            k0 += 4;
        }
        let s = _mm512_add_ps(
            _mm512_add_ps(part[0], part[1]),
            _mm512_add_ps(part[2], part[3]),
        );
        acc[0] = _mm512_add_ps(acc[0], s);
    }
    for kk in k0..k {
        // Masked-off lanes (a partial panel) are not read.
        let w = _mm512_maskz_loadu_ps(mask, wp.add(kk * nr));
        for (a, row) in acc.iter_mut().zip(rows) {
            *a = _mm512_fmadd_ps(_mm512_set1_ps(*row.get_unchecked(kk)), w, *a);
        }
    }
    let mut out = [[0f32; NR]; M];
    for (o, a) in out.iter_mut().zip(&acc) {
        _mm512_storeu_ps(o.as_mut_ptr(), *a);
    }
    out
}

/// `f32_igemm_Mx16__avx512f`: [`gemm_avx512`] (not split) with each of the `M` rows given as
/// `kh` segments of `run` floats, segment `j` of row `i` at `offs[i·kh + j]` in `x` followed by
/// `patch` (an offset past `x.len()` is in `patch`). Bias first, then `k` ascending: the same
/// multiply-adds in the same order as the row kernels, so the same bits.
#[allow(clippy::too_many_arguments)]
pub(super) fn igemm_avx512<const M: usize>(
    x: &[f32],
    patch: &[f32],
    offs: &[usize],
    kh: usize,
    run: usize,
    p: Panel<'_>,
    bias: &[f32; NR],
    out: Out<'_>,
) {
    let fits = |o: usize| match o.checked_sub(x.len()) {
        None => x.len() - o >= run,
        Some(q) => q <= patch.len() && patch.len() - q >= run,
    };
    assert!(
        offs.len() == M * kh
            && kh * run == p.k
            && (1..=NR).contains(&p.nr)
            && p.w.len() >= p.nr * p.k
            && offs.iter().all(|&o| fits(o))
            && out.base + (M - 1) * out.stride + p.nr <= out.y.len(),
        "f32 igemm operands out of shape"
    );
    debug_assert!(Isa::Avx512Vnni.supported());
    // SAFETY: every segment holds `run` floats of `x` or `patch` and the panel `nr·K` weights,
    // the output rows `nr` floats of `y` (checked above); features checked before this was
    // handed out.
    unsafe { igemm_avx512_impl::<M>(x, patch, offs, kh, run, p, bias, out) }
}

/// Where an f32 tile's rows go: row `i` to `y[base + i·stride..][..nr]`, clamped to `act`.
pub(super) struct Out<'y> {
    pub y: &'y mut [f32],
    pub base: usize,
    pub stride: usize,
    pub act: [f32; 2],
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn igemm_avx512_impl<const M: usize>(
    x: &[f32],
    patch: &[f32],
    offs: &[usize],
    kh: usize,
    run: usize,
    p: Panel<'_>,
    bias: &[f32; NR],
    out: Out<'_>,
) {
    let nr = p.nr;
    let mask: __mmask16 = lane_mask(nr);
    let mut acc = [_mm512_loadu_ps(bias.as_ptr()); M];
    let mut wp = p.w.as_ptr();
    let at = |o: usize| match o.checked_sub(x.len()) {
        None => x.as_ptr().add(o),
        Some(q) => patch.as_ptr().add(q),
    };
    for ky in 0..kh {
        let r: [*const f32; M] = core::array::from_fn(|i| at(offs[i * kh + ky]));
        for j in 0..run {
            let w = _mm512_maskz_loadu_ps(mask, wp);
            for (a, row) in acc.iter_mut().zip(&r) {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(*row.add(j)), w, *a);
            }
            wp = wp.add(nr);
        }
    }
    // max then min, as the scalar clamp (`v.max(lo).min(hi)`), as the depthwise kernel does.
    let (lo, hi) = (_mm512_set1_ps(out.act[0]), _mm512_set1_ps(out.act[1]));
    for (i, a) in acc.iter().enumerate() {
        let v = _mm512_min_ps(_mm512_max_ps(*a, lo), hi);
        _mm512_mask_storeu_ps(out.y.as_mut_ptr().add(out.base + i * out.stride), mask, v);
    }
}

/// `f32_gemm_Mx16__avx2_fma`.
pub(super) fn gemm_avx2<const M: usize, const SPLIT: bool>(
    rows: &[&[f32]; M],
    p: Panel<'_>,
    bias: &[f32; NR],
) -> [[f32; NR]; M] {
    check(rows, &p);
    debug_assert!(Isa::Avx2.supported());
    // SAFETY: as `gemm_avx512`.
    unsafe { gemm_avx2_impl::<M, SPLIT>(rows, p, bias) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_avx2_impl<const M: usize, const SPLIT: bool>(
    rows: &[&[f32]; M],
    p: Panel<'_>,
    bias: &[f32; NR],
) -> [[f32; NR]; M] {
    let (nr, k) = (p.nr, p.k);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let n = _mm256_set1_epi32(nr as i32);
    let mlo = _mm256_cmpgt_epi32(n, lanes);
    let mhi = _mm256_cmpgt_epi32(n, _mm256_add_epi32(lanes, _mm256_set1_epi32(8)));
    let full = nr == NR;
    let b = [
        _mm256_loadu_ps(bias.as_ptr()),
        _mm256_loadu_ps(bias.as_ptr().add(8)),
    ];
    let mut acc = [b; M];
    let wp = p.w.as_ptr();
    let mut k0 = 0;
    if M == 1 && SPLIT {
        // One row (dense): four partial sums over k, combined as in the AVX-512 and NEON forms
        // (`bias + ((p0 + p1) + (p2 + p3))`, then the leftover k), so all three give equal bits.
        let row = rows[0];
        let mut part = [[_mm256_setzero_ps(); 2]; 4];
        while k0 + 4 <= k {
            for (j, a) in part.iter_mut().enumerate() {
                let ptr = wp.wrapping_add((k0 + j) * nr);
                let (w0, w1) = if full {
                    (_mm256_loadu_ps(ptr), _mm256_loadu_ps(ptr.wrapping_add(8)))
                } else {
                    (
                        _mm256_maskload_ps(ptr, mlo),
                        _mm256_maskload_ps(ptr.wrapping_add(8), mhi),
                    )
                };
                let xv = _mm256_set1_ps(*row.get_unchecked(k0 + j));
                a[0] = _mm256_fmadd_ps(xv, w0, a[0]);
                a[1] = _mm256_fmadd_ps(xv, w1, a[1]);
            }
            k0 += 4;
        }
        for h in 0..2 {
            let s = _mm256_add_ps(
                _mm256_add_ps(part[0][h], part[1][h]),
                _mm256_add_ps(part[2][h], part[3][h]),
            );
            acc[0][h] = _mm256_add_ps(acc[0][h], s);
        }
    }
    for kk in k0..k {
        let ptr = wp.wrapping_add(kk * nr);
        let (w0, w1) = if full {
            (_mm256_loadu_ps(ptr), _mm256_loadu_ps(ptr.wrapping_add(8)))
        } else {
            (
                _mm256_maskload_ps(ptr, mlo),
                _mm256_maskload_ps(ptr.wrapping_add(8), mhi),
            )
        };
        for (a, row) in acc.iter_mut().zip(rows) {
            let xv = _mm256_set1_ps(*row.get_unchecked(kk));
            a[0] = _mm256_fmadd_ps(xv, w0, a[0]);
            a[1] = _mm256_fmadd_ps(xv, w1, a[1]);
        }
    }
    let mut out = [[0f32; NR]; M];
    for (o, a) in out.iter_mut().zip(&acc) {
        _mm256_storeu_ps(o.as_mut_ptr(), a[0]);
        _mm256_storeu_ps(o.as_mut_ptr().add(8), a[1]);
    }
    out
}

/// `f32_dwconv_16__avx2_fma`.
pub(super) fn dwconv_avx2(
    x: &[f32],
    wt: &[f32],
    co: usize,
    taps: &[(usize, usize)],
    c0: usize,
    bias: &[f32; NR],
) -> [f32; NR] {
    check_dw(x, wt, co, taps, c0);
    debug_assert!(Isa::Avx2.supported());
    // SAFETY: every load checked above; features checked before this was handed out.
    unsafe { dwconv_avx2_impl(x, wt, co, taps, c0, bias) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dwconv_avx2_impl(
    x: &[f32],
    wt: &[f32],
    co: usize,
    taps: &[(usize, usize)],
    c0: usize,
    bias: &[f32; NR],
) -> [f32; NR] {
    let mut lo = _mm256_loadu_ps(bias.as_ptr());
    let mut hi = _mm256_loadu_ps(bias.as_ptr().add(8));
    for &(xo, t) in taps {
        let xp = x.as_ptr().add(xo + c0);
        let wp = wt.as_ptr().add(t * co + c0);
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(xp), _mm256_loadu_ps(wp), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(8)), _mm256_loadu_ps(wp.add(8)), hi);
    }
    let mut out = [0f32; NR];
    _mm256_storeu_ps(out.as_mut_ptr(), lo);
    _mm256_storeu_ps(out.as_mut_ptr().add(8), hi);
    out
}

/// `f32_dwconv_16__avx512f` over a run of `count` output pixels of one row (see
/// `qs8::x86::dwconv_rq_run_avx512`), every channel: 16 at a time (the last group masked), the
/// bias (or zero) first, then one fused multiply-add per tap in tap order, clamped, pixel `i`
/// written to `y[i·co..][..co]`. One call per run keeps the per-call checks off the inner
/// loops.
#[allow(clippy::too_many_arguments)]
pub(super) fn dwconv_run_avx512(
    x: &[f32],
    wt: &[f32],
    co: usize,
    taps: &[(usize, usize)],
    step: usize,
    count: usize,
    bias: Option<&[f32]>,
    act: [f32; 2],
    y: &mut [f32],
) {
    let last = count.saturating_sub(1) * step;
    assert!(
        count >= 1
            && co >= 1
            && count * co <= y.len()
            && bias.is_none_or(|b| b.len() >= co)
            && taps
                .iter()
                .all(|&(xo, t)| xo + last + co <= x.len() && (t + 1) * co <= wt.len()),
        "dwconv run operands out of shape"
    );
    debug_assert!(Isa::Avx512Vnni.supported());
    // SAFETY: every masked load and store stays inside the ranges checked above; features
    // checked before this function was handed out.
    unsafe { dwconv_run_impl(x, wt, co, taps, step, count, bias, act, y) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn dwconv_run_impl(
    x: &[f32],
    wt: &[f32],
    co: usize,
    taps: &[(usize, usize)],
    step: usize,
    count: usize,
    bias: Option<&[f32]>,
    act: [f32; 2],
    y: &mut [f32],
) {
    // Up to four groups of 16 channels per pass: four independent chains of fused
    // multiply-adds hide the instruction's latency (each output still sums its taps in order).
    // Layers of at most 32 channels take two pixels of the run per pass for the same reason.
    let groups = co.div_ceil(16);
    let mut i = 0;
    while i < count {
        let pair = groups <= 2 && i + 1 < count;
        let xb = [
            x.as_ptr().add(i * step),
            x.as_ptr().add((i + pair as usize) * step),
        ];
        let yb = [
            y.as_mut_ptr().add(i * co),
            y.as_mut_ptr().add((i + pair as usize) * co),
        ];
        if pair {
            match groups {
                2 => dw_pass::<2, 2>(xb, wt, co, taps, 0, bias, act, yb),
                _ => dw_pass::<1, 2>(xb, wt, co, taps, 0, bias, act, yb),
            }
            i += 2;
            continue;
        }
        let mut g = 0;
        while g < groups {
            let k = (groups - g).min(4);
            let c0 = g * 16;
            let (xb, yb) = ([xb[0]], [yb[0]]);
            match k {
                4 => dw_pass::<4, 1>(xb, wt, co, taps, c0, bias, act, yb),
                3 => dw_pass::<3, 1>(xb, wt, co, taps, c0, bias, act, yb),
                2 => dw_pass::<2, 1>(xb, wt, co, taps, c0, bias, act, yb),
                _ => dw_pass::<1, 1>(xb, wt, co, taps, c0, bias, act, yb),
            }
            g += k;
        }
        i += 1;
    }
}

/// `K` groups of 16 channels from `c0` of `P` output pixels (`xb` their input bases, `yb`
/// their output rows); the last group of the layer is masked.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn dw_pass<const K: usize, const P: usize>(
    xb: [*const f32; P],
    wt: &[f32],
    co: usize,
    taps: &[(usize, usize)],
    c0: usize,
    bias: Option<&[f32]>,
    act: [f32; 2],
    yb: [*mut f32; P],
) {
    let mut mask = [0 as __mmask16; K];
    let mut acc = [[_mm512_setzero_ps(); K]; P];
    for j in 0..K {
        let c = c0 + 16 * j;
        mask[j] = lane_mask((co - c).min(16));
        if let Some(bb) = bias {
            let b = _mm512_maskz_loadu_ps(mask[j], bb.as_ptr().add(c));
            for a in acc.iter_mut() {
                a[j] = b;
            }
        }
    }
    for &(xo, t) in taps {
        let wp = wt.as_ptr().add(t * co + c0);
        for j in 0..K {
            let wv = _mm512_maskz_loadu_ps(mask[j], wp.add(16 * j));
            for (a, &xbp) in acc.iter_mut().zip(&xb) {
                let xv = _mm512_maskz_loadu_ps(mask[j], xbp.add(xo + c0 + 16 * j));
                a[j] = _mm512_fmadd_ps(xv, wv, a[j]);
            }
        }
    }
    let (lo, hi) = (_mm512_set1_ps(act[0]), _mm512_set1_ps(act[1]));
    for (a, &ybp) in acc.iter().zip(&yb) {
        for j in 0..K {
            // max then min, as the scalar clamp (`v.max(lo).min(hi)`; NaN-free inputs).
            let v = _mm512_min_ps(_mm512_max_ps(a[j], lo), hi);
            _mm512_mask_storeu_ps(ybp.add(c0 + 16 * j), mask[j], v);
        }
    }
}

/// `f32_dwconv_{3x3,5x5}s{1,2}__avx512f`: the output pixels `px0..px0 + y.len() / C` of an f32
/// depthwise layer row by row, reading the input where it lies. Per output row the kernel rows
/// inside the input are walked; along the row four pixels (then two, then one) share each
/// input column they read, the columns left or right of the input masked off: a masked load
/// touches no memory and a masked fused multiply-add leaves its accumulator as it was, so each
/// output is the bias then one fused multiply-add per tap inside the input, in tap order, as
/// the run kernel and every other SIMD path compute it (the same bits). Channels go in panels
/// of 16 (the last masked), the outer loop, with their weights held in registers. Returns
/// `false` (nothing written) for layers it does not take: other widths, strides, dilation.
pub(super) fn dw_rows_f32(c: &super::ConvF32<'_>, y: &mut [f32], px0: usize) -> bool {
    let [n, h, wd, ci] = c.s.x;
    let [co, kh, kw, _] = c.s.w;
    let [_, oh, ow, yc] = c.s.y;
    let sx = c.geo.stride[1];
    let ok = co >= 1
        && ci == co
        && yc == co
        && c.geo.dilation == [1, 1]
        && matches!((kw, sx), (3, 1) | (3, 2) | (5, 1) | (5, 2))
        && (1..=DW_ROW_TAPS / kw).contains(&kh)
        && c.geo.stride[0] >= 1
        && c.w.len() >= kh * kw * co
        && c.bias.is_none_or(|b| b.len() >= co)
        && c.x.len() >= n * h * wd * co
        && y.len().is_multiple_of(co)
        && px0 + y.len() / co <= n * oh * ow
        && Isa::Avx512Vnni.supported();
    if !ok {
        return false;
    }
    // SAFETY: shapes checked above; every load is masked to the input columns and kernel rows
    // inside the input and to the layer's channels, every store to `y`'s pixels and channels.
    unsafe {
        match (kw, sx) {
            (3, 1) => dw_rows_f32_impl::<3, 1, 6, 4, 3>(c, y, px0),
            (3, 2) => dw_rows_f32_impl::<3, 2, 9, 5, 3>(c, y, px0),
            (5, 1) => dw_rows_f32_impl::<5, 1, 8, 6, 5>(c, y, px0),
            _ => dw_rows_f32_impl::<5, 2, 11, 7, 5>(c, y, px0),
        }
    }
    true
}

/// Largest window (taps) [`dw_rows_f32`] takes.
const DW_ROW_TAPS: usize = 25;

#[target_feature(enable = "avx512f")]
unsafe fn dw_rows_f32_impl<
    const KW: usize,
    const S: usize,
    const N4: usize,
    const N2: usize,
    const N1: usize,
>(
    c: &super::ConvF32<'_>,
    y: &mut [f32],
    px0: usize,
) {
    let [_, h, wd, co] = c.s.x;
    let kh = c.s.w[1];
    let [_, oh, ow, _] = c.s.y;
    let (sy, pt, pl) = (c.geo.stride[0], c.geo.pad[0], c.geo.pad[1]);
    let (lo, hi) = (_mm512_set1_ps(c.act[0]), _mm512_set1_ps(c.act[1]));
    let end = px0 + y.len() / co;
    for p in 0..co.div_ceil(16) {
        let c0 = p * 16;
        let lanes: __mmask16 = lane_mask(co - c0);
        let mut w = [_mm512_setzero_ps(); DW_ROW_TAPS];
        for (t, v) in w.iter_mut().enumerate().take(kh * KW) {
            *v = _mm512_maskz_loadu_ps(lanes, c.w.as_ptr().add(t * co + c0));
        }
        let bias = match c.bias {
            Some(b) => _mm512_maskz_loadu_ps(lanes, b.as_ptr().add(c0)),
            None => _mm512_setzero_ps(),
        };
        let mut pix = px0;
        while pix < end {
            // Output row (b, oy), its pixels ox0..ox1 in this call.
            let (b, oy, ox0) = (pix / (oh * ow), pix / ow % oh, pix % ow);
            let ox1 = ow.min(ox0 + (end - pix));
            // The kernel rows inside the input, and their input rows.
            let iy0 = (oy * sy) as isize - pt as isize;
            let ky0 = (-iy0).clamp(0, kh as isize) as usize;
            let ky1 = (h as isize - iy0).clamp(ky0 as isize, kh as isize) as usize;
            let row = |ky: usize| {
                let iy = (iy0 + ky as isize) as usize;
                c.x.as_ptr().add((b * h + iy) * wd * co + c0)
            };
            let rows = RowsF32 {
                ky0,
                ky1,
                row: &row,
                lanes,
                co,
                wd,
                pl,
            };
            let yb = y.as_mut_ptr().add((pix - px0) * co + c0);
            let put = |ox: usize, acc: &[__m512]| {
                for (k, a) in acc.iter().enumerate() {
                    let v = _mm512_min_ps(_mm512_max_ps(*a, lo), hi);
                    _mm512_mask_storeu_ps(yb.add((ox - ox0 + k) * co), lanes, v);
                }
            };
            let mut ox = ox0;
            while ox + 4 <= ox1 {
                put(ox, &rows.tile::<KW, S, N4, 4>(ox, &w, bias));
                ox += 4;
            }
            if ox + 2 <= ox1 {
                put(ox, &rows.tile::<KW, S, N2, 2>(ox, &w, bias));
                ox += 2;
            }
            if ox < ox1 {
                put(ox, &rows.tile::<KW, S, N1, 1>(ox, &w, bias));
            }
            pix += ox1 - ox0;
        }
    }
}

/// The kernel rows `ky0..ky1` of one output row that lie inside the input (`row(ky)`: the
/// input row's first pixel at the panel's first channel), for [`dw_rows_f32_impl`].
struct RowsF32<'a, F: Fn(usize) -> *const f32> {
    ky0: usize,
    ky1: usize,
    row: &'a F,
    lanes: __mmask16,
    co: usize,
    wd: usize,
    pl: usize,
}

impl<F: Fn(usize) -> *const f32> RowsF32<'_, F> {
    /// `T` pixels from `ox`: bias, then per kernel row inside the input the `NC = (T - 1)·S +
    /// KW` input columns loaded once (those outside the input masked off) and multiplied into
    /// every pixel that reads them, kernel column by kernel column.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const KW: usize, const S: usize, const NC: usize, const T: usize>(
        &self,
        ox: usize,
        w: &[__m512; DW_ROW_TAPS],
        bias: __m512,
    ) -> [__m512; T] {
        const { assert!(NC == (T - 1) * S + KW) };
        let ix0 = (ox * S) as isize - self.pl as isize;
        let m: [__mmask16; NC] = core::array::from_fn(|j| {
            let ix = ix0 + j as isize;
            if ix >= 0 && (ix as usize) < self.wd {
                self.lanes
            } else {
                0
            }
        });
        let mut acc = [bias; T];
        for ky in self.ky0..self.ky1 {
            let base = (self.row)(ky);
            let col: [__m512; NC] = core::array::from_fn(|j| {
                let at = base.wrapping_offset((ix0 + j as isize) * self.co as isize);
                _mm512_maskz_loadu_ps(m[j], at)
            });
            for (p, a) in acc.iter_mut().enumerate() {
                for kx in 0..KW {
                    let j = p * S + kx;
                    *a = _mm512_mask3_fmadd_ps(col[j], w[ky * KW + kx], *a, m[j]);
                }
            }
        }
        acc
    }
}

/// `f32_igemm_Mx32__avx512f` and `f32_igemm_Mx48__avx512f`: [`igemm_avx512`] over `P` panels
/// at once (all full but the last, which may be any width), each broadcast input value feeding
/// every panel: `1/P` of the loads per multiply-add, so the fused multiply-adds, not the loads,
/// set the pace. Same multiply-adds in the same order per output (bias, then `k` ascending):
/// the same bits. Panel `j`'s outputs go `j·NR` floats after the first's.
#[allow(clippy::too_many_arguments)]
pub(super) fn igemmp_avx512<const M: usize, const P: usize>(
    x: &[f32],
    patch: &[f32],
    offs: &[usize],
    kh: usize,
    run: usize,
    p: [Panel<'_>; P],
    bias: [&[f32; NR]; P],
    out: Out<'_>,
) {
    let fits = |o: usize| match o.checked_sub(x.len()) {
        None => x.len() - o >= run,
        Some(q) => q <= patch.len() && patch.len() - q >= run,
    };
    let last = p[P - 1].nr;
    assert!(
        offs.len() == M * kh
            && p[..P - 1].iter().all(|p| p.nr == NR)
            && (1..=NR).contains(&last)
            && p.iter().all(|p| kh * run == p.k && p.w.len() >= p.nr * p.k)
            && offs.iter().all(|&o| fits(o))
            && out.base + (M - 1) * out.stride + (P - 1) * NR + last <= out.y.len(),
        "f32 igemm operands out of shape"
    );
    debug_assert!(Isa::Avx512Vnni.supported());
    // SAFETY: as in `igemm_avx512`, for every panel.
    unsafe { igemmp_avx512_impl::<M, P>(x, patch, offs, kh, run, p, bias, out) }
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn igemmp_avx512_impl<const M: usize, const P: usize>(
    x: &[f32],
    patch: &[f32],
    offs: &[usize],
    kh: usize,
    run: usize,
    p: [Panel<'_>; P],
    bias: [&[f32; NR]; P],
    out: Out<'_>,
) {
    let nr: [usize; P] = core::array::from_fn(|j| p[j].nr);
    let mask: [__mmask16; P] = core::array::from_fn(|j| lane_mask(nr[j]));
    let mut acc: [[__m512; M]; P] =
        core::array::from_fn(|j| [_mm512_loadu_ps(bias[j].as_ptr()); M]);
    let mut wp: [*const f32; P] = core::array::from_fn(|j| p[j].w.as_ptr());
    let at = |o: usize| match o.checked_sub(x.len()) {
        None => x.as_ptr().add(o),
        Some(q) => patch.as_ptr().add(q),
    };
    for ky in 0..kh {
        let r: [*const f32; M] = core::array::from_fn(|i| at(offs[i * kh + ky]));
        for j in 0..run {
            let v: [__m512; P] = core::array::from_fn(|q| _mm512_maskz_loadu_ps(mask[q], wp[q]));
            for i in 0..M {
                let xb = _mm512_set1_ps(*r[i].add(j));
                for (a, vq) in acc.iter_mut().zip(&v) {
                    a[i] = _mm512_fmadd_ps(xb, *vq, a[i]);
                }
            }
            for (w, n) in wp.iter_mut().zip(&nr) {
                *w = w.add(*n);
            }
        }
    }
    let (lo, hi) = (_mm512_set1_ps(out.act[0]), _mm512_set1_ps(out.act[1]));
    for (q, a) in acc.iter().enumerate() {
        for (i, v) in a.iter().enumerate() {
            let y = out.y.as_mut_ptr().add(out.base + i * out.stride + q * NR);
            _mm512_mask_storeu_ps(y, mask[q], _mm512_min_ps(_mm512_max_ps(*v, lo), hi));
        }
    }
}

/// `f32_pool__avx512f`: max or average pooling over NHWC, 64 channels (four registers, the
/// last masked) per pass over each window: per channel the same operations in the same order
/// as [`crate::kernels::reference_f32::pool2d`] (the window's rows then columns, `max(acc, v)`
/// keeping the accumulator against a NaN input as `f32::max` does; the sum divided by the
/// count; the clamp as `v.max(lo).min(hi)`), so the same bits.
#[allow(clippy::too_many_arguments)]
pub(super) fn pool2d_avx512(
    x: &[f32],
    xs: [usize; 4],
    y: &mut [f32],
    ys: [usize; 4],
    p: &crate::ops::PoolWindow,
    act: [f32; 2],
    is_max: bool,
) {
    let [n, h, w, c] = xs;
    let [yn, oh, ow, yc] = ys;
    assert!(
        x.len() >= n * h * w * c && y.len() >= n * oh * ow * c && yn == n && yc == c,
        "pool operands out of shape"
    );
    debug_assert!(Isa::Avx512Vnni.supported());
    // SAFETY: every load is inside `x` (rows and columns from `p.span`, inside the input;
    // channels masked to `c`), every store inside `y` (checked above); features checked
    // before this function was handed out.
    unsafe { pool2d_avx512_impl(x, xs, y, ys, p, act, is_max) }
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn pool2d_avx512_impl(
    x: &[f32],
    xs: [usize; 4],
    y: &mut [f32],
    ys: [usize; 4],
    p: &crate::ops::PoolWindow,
    act: [f32; 2],
    is_max: bool,
) {
    let [n, h, w, c] = xs;
    let [_, oh, ow, _] = ys;
    let (lo, hi) = (_mm512_set1_ps(act[0]), _mm512_set1_ps(act[1]));
    let init = _mm512_set1_ps(if is_max { f32::NEG_INFINITY } else { 0.0 });
    for b in 0..n {
        for oy in 0..oh {
            let (y0, rows) = p.span(0, oy, h);
            for ox in 0..ow {
                let (x0, cols) = p.span(1, ox, w);
                let count = p.count((y0, x0), (rows.len(), cols.len()), h, w);
                let out = y.as_mut_ptr().add(((b * oh + oy) * ow + ox) * c);
                let mut c0 = 0;
                while c0 < c {
                    let m: [__mmask16; 4] =
                        core::array::from_fn(|j| lane_mask(c.saturating_sub(c0 + 16 * j)));
                    let mut acc = [init; 4];
                    for iy in rows.clone() {
                        for ix in cols.clone() {
                            let src = x.as_ptr().add(((b * h + iy) * w + ix) * c + c0);
                            for (j, a) in acc.iter_mut().enumerate() {
                                let v = _mm512_maskz_loadu_ps(m[j], src.add(16 * j));
                                *a = if is_max {
                                    // `maxps` returns its second operand when one is NaN:
                                    // the accumulator, as `acc.max(v)` does.
                                    _mm512_max_ps(v, *a)
                                } else {
                                    _mm512_add_ps(*a, v)
                                };
                            }
                        }
                    }
                    for (j, a) in acc.iter().enumerate() {
                        let v = match (is_max, count > 0) {
                            (true, _) => *a,
                            (false, true) => _mm512_div_ps(*a, _mm512_set1_ps(count as f32)),
                            (false, false) => _mm512_setzero_ps(),
                        };
                        let v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
                        _mm512_mask_storeu_ps(out.add(c0 + 16 * j), m[j], v);
                    }
                    c0 += 64;
                }
            }
        }
    }
}
