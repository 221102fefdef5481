//! Cortex-M0/M0+ (ARMv6-M: no DSP extension, eight low registers) `qs8_gemm_1x1c4__v6m`: one
//! row times one channel per inner loop, in assembly so the seven live values stay in
//! registers (the compiler's version of the portable loop spilled its sums: 7.7 instructions
//! per MAC on the anomaly-detection model's dense layers). Per 4-byte group: per byte one
//! `ldrb` of the input, one of the weight, `sxtb`, `muls`, `adds`.

use super::{Panel, KR, NR};
use core::arch::asm;

/// One row times channel `c` of the panel: `Σ_g Σ_j row[4g + j] · w[(g·nr + c)·4 + j]` over
/// `groups ≥ 1` groups.
///
/// # Safety
/// `row` must be valid for reading `4·groups` bytes; `w` (channel `c`'s group-0 word) for
/// reading 4 bytes at each of `w + stride·g`, `g < groups`.
#[inline(always)]
unsafe fn dot1(row: *const u8, w: *const i8, groups: usize, stride: usize) -> i32 {
    let mut acc = 0i32;
    // SAFETY: the caller's contract; registers only otherwise (ARMv6-M Thumb instructions).
    unsafe {
        let end = row.add(KR * groups);
        asm!(
            "2:",
            "ldrb {x}, [{xp}, #0]",
            "ldrb {t}, [{wp}, #0]",
            "sxtb {t}, {t}",
            "muls {t}, {x}, {t}",
            "adds {acc}, {acc}, {t}",
            "ldrb {x}, [{xp}, #1]",
            "ldrb {t}, [{wp}, #1]",
            "sxtb {t}, {t}",
            "muls {t}, {x}, {t}",
            "adds {acc}, {acc}, {t}",
            "ldrb {x}, [{xp}, #2]",
            "ldrb {t}, [{wp}, #2]",
            "sxtb {t}, {t}",
            "muls {t}, {x}, {t}",
            "adds {acc}, {acc}, {t}",
            "ldrb {x}, [{xp}, #3]",
            "ldrb {t}, [{wp}, #3]",
            "sxtb {t}, {t}",
            "muls {t}, {x}, {t}",
            "adds {acc}, {acc}, {t}",
            "adds {xp}, #4",
            "add {wp}, {stride}",
            "cmp {xp}, {end}",
            "bne 2b",
            acc = inout(reg) acc,
            xp = inout(reg) row => _,
            wp = inout(reg) w => _,
            end = in(reg) end,
            stride = in(reg) stride,
            x = out(reg) _,
            t = out(reg) _,
            options(nostack, readonly),
        );
    }
    acc
}

/// `qs8_gemm_1x1c4__v6m`: the one-row microkernel (`M` must be 1; other `M` take the portable
/// one), bit-exact with [`super::gemm_portable`].
pub(super) fn gemm<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    if M != 1 {
        return super::gemm_portable(rows, p);
    }
    let (nr, k) = (p.nr, p.k);
    let groups = k / KR;
    let mut out = [[0i32; NR]; M];
    let row = &rows[0][..groups * KR];
    if groups > 0 {
        // Channel `c`'s group `g` lies at `(g·nr + c)·4` inside the panel's `nr·k` bytes.
        assert!(p.w.len() >= nr * groups * KR);
        for (c, o) in out[0].iter_mut().enumerate().take(nr) {
            // SAFETY: `row` holds `4·groups` bytes; channel `c < nr` reads 4 bytes at
            // `(g·nr + c)·4 < nr·4·groups ≤ w.len()` for every `g < groups`.
            *o = unsafe { dot1(row.as_ptr(), p.w[c * KR..].as_ptr(), groups, nr * KR) };
        }
    }
    super::tail(rows, p, &mut out);
    out
}
