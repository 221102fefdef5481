//! aarch64 `qs8_gemm_{1,4}x16c4__neon`: each 4-byte group widened to 16 bits, multiplied by the
//! unsigned input (products fit 16 bits: 255·128 < 2^15) and pairwise accumulated with `sadalp`;
//! adjacent pair sums are added at the end. The panel is done in two halves of 8 channels so the
//! 4-row tile's accumulators stay in registers.
#![allow(unsafe_code)]

use core::arch::aarch64::*;

use super::{Panel, KR, NR};

/// `qs8_gemm_Mx16c4__neon`.
pub(super) fn gemm<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    assert!(
        (1..=NR).contains(&p.nr) && p.w.len() >= p.nr * p.k && rows.iter().all(|r| r.len() >= p.k),
        "qs8 microkernel operands out of shape"
    );
    // SAFETY: lengths checked above; NEON is part of the aarch64 baseline.
    unsafe { gemm_impl(rows, p) }
}

#[inline(always)]
unsafe fn gemm_impl<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    let (nr, k) = (p.nr, p.k);
    let mut out = [[0i32; NR]; M];
    let mut grp = [0i8; NR * KR];
    for h in 0..2 {
        if h * 8 >= nr {
            break;
        }
        let mut acc = [[vdupq_n_s32(0); 4]; M];
        for g in 0..k / KR {
            let src = &p.w[g * nr * KR..][..nr * KR];
            let gp = if nr == NR {
                src.as_ptr()
            } else {
                // A partial panel: its group padded with zero weights.
                grp[..nr * KR].copy_from_slice(src);
                grp.as_ptr()
            };
            let wa = vld1q_s8(gp.add(h * 32));
            let wb = vld1q_s8(gp.add(h * 32 + 16));
            let w = [
                vmovl_s8(vget_low_s8(wa)),
                vmovl_s8(vget_high_s8(wa)),
                vmovl_s8(vget_low_s8(wb)),
                vmovl_s8(vget_high_s8(wb)),
            ];
            for (a, row) in acc.iter_mut().zip(rows) {
                let xv = (row.as_ptr().add(g * KR) as *const u32).read_unaligned();
                let xb = vreinterpret_u8_u32(vdup_n_u32(xv));
                let xw = vreinterpretq_s16_u16(vmovl_u8(xb));
                for (ai, wi) in a.iter_mut().zip(&w) {
                    *ai = vpadalq_s16(*ai, vmulq_s16(xw, *wi));
                }
            }
        }
        for (o, a) in out.iter_mut().zip(&acc) {
            vst1q_s32(o.as_mut_ptr().add(h * 8), vpaddq_s32(a[0], a[1]));
            vst1q_s32(o.as_mut_ptr().add(h * 8 + 4), vpaddq_s32(a[2], a[3]));
        }
    }
    // Channels past `nr` summed zero weights: already 0.
    super::tail(rows, p, &mut out);
    out
}
