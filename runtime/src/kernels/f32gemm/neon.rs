//! aarch64 `f32_gemm_{1,4}x16__neon` and `f32_dwconv_16__neon` (`fmla`).
#![allow(unsafe_code)]

use core::arch::aarch64::*;

use super::{Panel, NR};

/// `f32_gemm_Mx16__neon`.
pub(super) fn gemm<const M: usize, const SPLIT: bool>(
    rows: &[&[f32]; M],
    p: Panel<'_>,
    bias: &[f32; NR],
) -> [[f32; NR]; M] {
    assert!(
        (1..=NR).contains(&p.nr) && p.w.len() >= p.nr * p.k && rows.iter().all(|r| r.len() >= p.k),
        "f32 microkernel operands out of shape"
    );
    // SAFETY: lengths checked above; NEON is the aarch64 baseline.
    unsafe { gemm_impl::<M, SPLIT>(rows, p, bias) }
}

#[inline(always)]
unsafe fn gemm_impl<const M: usize, const SPLIT: bool>(
    rows: &[&[f32]; M],
    p: Panel<'_>,
    bias: &[f32; NR],
) -> [[f32; NR]; M] {
    let (nr, k) = (p.nr, p.k);
    let b = [
        vld1q_f32(bias.as_ptr()),
        vld1q_f32(bias.as_ptr().add(4)),
        vld1q_f32(bias.as_ptr().add(8)),
        vld1q_f32(bias.as_ptr().add(12)),
    ];
    let mut acc = [b; M];
    let mut col = [0f32; NR];
    let mut k0 = 0;
    if M == 1 && SPLIT {
        // One row (dense): four partial sums over k, combined as the x86 forms do
        // (`bias + ((p0 + p1) + (p2 + p3))`, then the leftover k): equal bits on every ISA.
        let row = rows[0];
        let mut part = [[vdupq_n_f32(0.0); 4]; 4];
        while k0 + 4 <= k {
            for (j, a) in part.iter_mut().enumerate() {
                let src = &p.w[(k0 + j) * nr..][..nr];
                let wp = if nr == NR {
                    src.as_ptr()
                } else {
                    col[..nr].copy_from_slice(src);
                    col.as_ptr()
                };
                let xv = vdupq_n_f32(*row.get_unchecked(k0 + j));
                for (i, ai) in a.iter_mut().enumerate() {
                    *ai = vfmaq_f32(*ai, xv, vld1q_f32(wp.add(4 * i)));
                }
            }
            k0 += 4;
        }
        for i in 0..4 {
            let s = vaddq_f32(
                vaddq_f32(part[0][i], part[1][i]),
                vaddq_f32(part[2][i], part[3][i]),
            );
            acc[0][i] = vaddq_f32(acc[0][i], s);
        }
    }
    for kk in k0..k {
        let src = &p.w[kk * nr..][..nr];
        let wp = if nr == NR {
            src.as_ptr()
        } else {
            col[..nr].copy_from_slice(src);
            col.as_ptr()
        };
        let w = [
            vld1q_f32(wp),
            vld1q_f32(wp.add(4)),
            vld1q_f32(wp.add(8)),
            vld1q_f32(wp.add(12)),
        ];
        for (a, row) in acc.iter_mut().zip(rows) {
            let xv = vdupq_n_f32(*row.get_unchecked(kk));
            for (ai, wi) in a.iter_mut().zip(&w) {
                *ai = vfmaq_f32(*ai, xv, *wi);
            }
        }
    }
    let mut out = [[0f32; NR]; M];
    for (o, a) in out.iter_mut().zip(&acc) {
        for (i, ai) in a.iter().enumerate() {
            vst1q_f32(o.as_mut_ptr().add(4 * i), *ai);
        }
    }
    out
}

/// `f32_dwconv_16__neon`.
pub(super) fn dwconv(
    x: &[f32],
    wt: &[f32],
    co: usize,
    taps: &[(usize, usize)],
    c0: usize,
    bias: &[f32; NR],
) -> [f32; NR] {
    assert!(
        crate::kernels::qs8::taps_fit(x.len(), wt.len(), co, taps, 0, c0, NR),
        "dwconv operands out of shape"
    );
    // SAFETY: every load checked above.
    unsafe {
        let mut acc = [
            vld1q_f32(bias.as_ptr()),
            vld1q_f32(bias.as_ptr().add(4)),
            vld1q_f32(bias.as_ptr().add(8)),
            vld1q_f32(bias.as_ptr().add(12)),
        ];
        for &(xo, t) in taps {
            let xp = x.as_ptr().add(xo + c0);
            let wp = wt.as_ptr().add(t * co + c0);
            for (i, a) in acc.iter_mut().enumerate() {
                *a = vfmaq_f32(*a, vld1q_f32(xp.add(4 * i)), vld1q_f32(wp.add(4 * i)));
            }
        }
        let mut out = [0f32; NR];
        for (i, a) in acc.iter().enumerate() {
            vst1q_f32(out.as_mut_ptr().add(4 * i), *a);
        }
        out
    }
}
