//! aarch64 `qs8_gemm_{1,4}x16c4__neon`: each 4-byte group widened to 16 bits, multiplied by the
//! unsigned input (products fit 16 bits: 255·128 < 2^15) and pairwise accumulated with `sadalp`;
//! adjacent pair sums are added at the end. The panel is done in two halves of 8 channels so the
//! 4-row tile's accumulators stay in registers. `qs8_gemm_{1,4}x16c4__neonsdot`: one `sdot`
//! per 4 channels of a group (the packed group is four registers of four channels' four
//! bytes each, as `sdot` reads them).
#![allow(unsafe_code)]

use core::arch::aarch64::*;

use super::{Panel, KR, NR};

/// Group `g` of panel `p` as 16 channels' 4 bytes: in place for a full panel, else copied
/// into `grp` after the channels past `nr` (zero weights).
#[inline(always)]
fn group(p: Panel<'_>, g: usize, grp: &mut [i8; NR * KR]) -> *const i8 {
    let src = &p.w[g * p.nr * KR..][..p.nr * KR];
    if p.nr == NR {
        src.as_ptr()
    } else {
        grp[..p.nr * KR].copy_from_slice(src);
        grp.as_ptr()
    }
}

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
            let gp = group(p, g, &mut grp);
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

/// `qs8_gemm_Mx16c4__neonsdot` (ARMv8.2 DotProd): the same sums as [`gemm`]. `sdot` multiplies
/// signed bytes, so each input group is flipped back to signed (`u - 128 = x`) and the panel's
/// `-128·Σw` (one more `sdot` per group, of the weights with `-128`s, shared by the tile's rows)
/// taken off: `Σ (x + 128)·w = Σ x·w - Σ (-128)·w`, exactly, in wrapping 32-bit arithmetic.
pub(super) fn gemm_sdot<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    assert!(
        (1..=NR).contains(&p.nr) && p.w.len() >= p.nr * p.k && rows.iter().all(|r| r.len() >= p.k),
        "qs8 microkernel operands out of shape"
    );
    debug_assert!(crate::kernels::isa::Isa::NeonDot.supported());
    // SAFETY: lengths checked above; the dot-product extension was checked before this
    // function was handed out (`super::ukernel` only returns it where `Isa::NeonDot` is
    // supported).
    unsafe { gemm_sdot_impl(rows, p) }
}

/// `acc + Σ` of the four products of each lane's four bytes of `a` and `b` (`sdot`; the
/// intrinsic is not stable Rust yet).
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut r = acc;
    core::arch::asm!(
        "sdot {r:v}.4s, {a:v}.16b, {b:v}.16b",
        r = inout(vreg) r,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack)
    );
    r
}

#[target_feature(enable = "dotprod")]
unsafe fn gemm_sdot_impl<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    let k = p.k;
    let mut acc = [[vdupq_n_s32(0); 4]; M];
    let mut corr = [vdupq_n_s32(0); 4];
    let minus128 = vdupq_n_s8(i8::MIN);
    let mut grp = [0i8; NR * KR];
    for g in 0..k / KR {
        let gp = group(p, g, &mut grp);
        let w: [int8x16_t; 4] = core::array::from_fn(|j| vld1q_s8(gp.add(16 * j)));
        for (c, wj) in corr.iter_mut().zip(&w) {
            *c = sdot(*c, *wj, minus128);
        }
        for (a, row) in acc.iter_mut().zip(rows) {
            let u = (row.as_ptr().add(g * KR) as *const u32).read_unaligned();
            let xb = vreinterpretq_s8_u32(vdupq_n_u32(u ^ 0x8080_8080));
            for (aj, wj) in a.iter_mut().zip(&w) {
                *aj = sdot(*aj, *wj, xb);
            }
        }
    }
    let mut out = [[0i32; NR]; M];
    for (o, a) in out.iter_mut().zip(&acc) {
        for (j, (aj, cj)) in a.iter().zip(&corr).enumerate() {
            vst1q_s32(o.as_mut_ptr().add(4 * j), vsubq_s32(*aj, *cj));
        }
    }
    // Channels past `nr` summed zero weights: already 0.
    super::tail(rows, p, &mut out);
    out
}

/// `qs8_requantize_16__neon`: [`super::requantize_portable`] four lanes at a time with
/// TFLite's double rounding as its NEON kernels compute it: `sqrdmulh` is gemmlowp's
/// saturating rounding doubling high product exactly (both are `⌊(a·b + 2^30) / 2^31⌋`,
/// saturated), and the rounding right shift is `srshl` after taking 1 off negative values, which
/// turns its round-half-up into gemmlowp's round-half-away-from-zero. The single rounding takes
/// the portable form.
pub(super) fn requantize(
    acc: &[i32; NR],
    pq: &super::PanelQ,
    q: &crate::kernels::reference_i8::QuantParams<'_>,
    out: &mut [i8],
) {
    if q.rounding != crate::kernels::reference_i8::Rounding::Double {
        return super::requantize_portable(acc, pq, q, out);
    }
    let mut v = [0i8; NR];
    // SAFETY: every load reads 4 lanes of a 16-element array, at 0, 4, 8, 12; NEON is part of
    // the aarch64 baseline.
    unsafe {
        let (zp, lo, hi) = (
            vdupq_n_s32(q.output_zp),
            vdupq_n_s32(q.act[0]),
            vdupq_n_s32(q.act[1]),
        );
        let zero = vdupq_n_s32(0);
        let mut lanes = [vdupq_n_s32(0); 4];
        for (j, l) in lanes.iter_mut().enumerate() {
            let a = vaddq_s32(
                vld1q_s32(acc.as_ptr().add(4 * j)),
                vld1q_s32(pq.bias.as_ptr().add(4 * j)),
            );
            let sh = vld1q_s32(pq.shift.as_ptr().add(4 * j));
            // `x << left` wrapping, as the scalar form's `wrapping_mul(1 << left)`.
            let x = vshlq_s32(a, vmaxq_s32(sh, zero));
            let x = vqrdmulhq_s32(x, vld1q_s32(pq.mult.as_ptr().add(4 * j)));
            let right = vminq_s32(sh, zero);
            let fixup = vshrq_n_s32::<31>(vandq_s32(x, right));
            let r = vrshlq_s32(vqaddq_s32(x, fixup), right);
            *l = vmaxq_s32(vminq_s32(vqaddq_s32(r, zp), hi), lo);
        }
        let h0 = vcombine_s16(vmovn_s32(lanes[0]), vmovn_s32(lanes[1]));
        let h1 = vcombine_s16(vmovn_s32(lanes[2]), vmovn_s32(lanes[3]));
        vst1q_s8(v.as_mut_ptr(), vcombine_s8(vmovn_s16(h0), vmovn_s16(h1)));
    }
    let n = out.len().min(NR);
    out[..n].copy_from_slice(&v[..n]);
}
