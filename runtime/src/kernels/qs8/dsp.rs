//! Cortex-M4/M7/M33 (DSP extension) int8 kernels.
//!
//! * `qs8_conv_2x2c4__dsp` ([`conv2d`]): a whole conv layer (one group) two output pixels at a
//!   time. The two windows are gathered (flipped to unsigned bytes, as every kernel reads them)
//!   and widened once into one buffer of 16-bit pairs, interleaved per 4-byte group as
//!   `[row 0 even, row 1 even, row 0 odd, row 1 odd]`; then every pair of output channels runs
//!   the inner loop [`pair`]: per group one `ldrd` of the two channels' weight words, two
//!   `ldrd` of the rows, four `sxtb16` and eight `smlad` (16 MACs in 17 instructions with the
//!   loop), written in assembly so the twelve live registers stay registers.
//! * `qs8_dwconv_c4__dsp` ([`depthwise`]): depthwise conv four channels at a time: per tap one
//!   word of input and one of weights, each split into its even and odd channels (`sxtb16`),
//!   the input zero point subtracted from both halves at once (`sadd16`), then one 16×16
//!   multiply-accumulate per channel (`smlabb` / `smlatt`), in assembly.
//! * `qs8_dense_1x4c4__dsp` ([`dense`]): one row times four channels per inner loop, the row
//!   flipped and widened once per call; per group one `ldrd` of the row, two of weights, eight
//!   `sxtb16` and eight `smlad` (16 MACs in 21 instructions with the loop).
//!
//! Requantization ([`Rq`]) is one 64-bit multiply-accumulate per output in the layers it covers.

use super::rq::Rq;
use super::{Conv, KR, NR};
use crate::kernels::reference_i8::QuantParams;
use crate::kernels::simd::dsp::{smlad, sxtb16, sxtb16_ror8, uxtb16, uxtb16_ror8};
use core::arch::asm;

#[inline(always)]
fn word(b: &[i8]) -> u32 {
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

#[inline(always)]
fn uword(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Words of stack for first-conv weights [`conv2d`] repacks (`O·K` bytes, `K` padded to 4).
const REPACK_WORDS: usize = 256;

/// Largest `K` (window bytes) [`conv2d`] takes: its buffers (`3·K` bytes rounded up to
/// groups) live on the stack.
pub(super) const CONV_K: usize = 576;

/// Widens the first `groups` 4-byte groups of two unsigned rows into `wide`, interleaved per
/// group as `[row 0 even, row 1 even, row 0 odd, row 1 odd]` (16-bit lanes).
#[inline(always)]
fn widen(r0: &[u8], r1: &[u8], groups: usize, wide: &mut [u32]) {
    for ((d, a), b) in wide[..4 * groups]
        .chunks_exact_mut(4)
        .zip(r0.chunks_exact(KR))
        .zip(r1.chunks_exact(KR))
    {
        let (a, b) = (uword(a), uword(b));
        d[0] = uxtb16(a);
        d[1] = uxtb16(b);
        d[2] = uxtb16_ror8(a);
        d[3] = uxtb16_ror8(b);
    }
}

/// `qs8_conv_2x2c4__dsp` inner loop for a panel of `S / 4` channels (one group of the panel is
/// `S` bytes: 64 for a full panel): channels `c, c + 1` (their group-0 words at `w`) times the
/// two widened rows at `xp`, over `groups ≥ 1` groups;
/// `[row 0 · c, row 0 · c+1, row 1 · c, row 1 · c+1]`.
///
/// # Safety
/// `xp` must be valid for reading `16·groups` bytes; `w` word-aligned (as `ldrd` requires)
/// and valid for reading 8 bytes at each of `w + S·g`, `g < groups`; `groups ≥ 1`.
#[inline(always)]
unsafe fn pair<const S: usize>(xp: *const u32, w: *const i8, groups: usize) -> [i32; 4] {
    let (mut a00, mut a01, mut a10, mut a11) = (0i32, 0i32, 0i32, 0i32);
    // SAFETY: the caller's contract; registers only otherwise. Every instruction is ARMv7E-M
    // DSP / Thumb-2.
    unsafe {
        let end = xp.add(4 * groups);
        asm!(
            "2:",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "ldrd {w0}, {w1}, [{wp}], #{s}",
            "sxtb16 {t}, {w0}",
            "smlad {a00}, {x0}, {t}, {a00}",
            "smlad {a10}, {x1}, {t}, {a10}",
            "sxtb16 {t}, {w1}",
            "smlad {a01}, {x0}, {t}, {a01}",
            "smlad {a11}, {x1}, {t}, {a11}",
            "ldrd {x0}, {x1}, [{xp}], #8",
            "sxtb16 {t}, {w0}, ror #8",
            "smlad {a00}, {x0}, {t}, {a00}",
            "smlad {a10}, {x1}, {t}, {a10}",
            "sxtb16 {t}, {w1}, ror #8",
            "smlad {a01}, {x0}, {t}, {a01}",
            "smlad {a11}, {x1}, {t}, {a11}",
            "cmp {xp}, {end}",
            "bne 2b",
            a00 = inout(reg) a00,
            a01 = inout(reg) a01,
            a10 = inout(reg) a10,
            a11 = inout(reg) a11,
            xp = inout(reg) xp => _,
            wp = inout(reg) w => _,
            end = in(reg) end,
            x0 = out(reg) _,
            x1 = out(reg) _,
            w0 = out(reg) _,
            w1 = out(reg) _,
            t = out(reg) _,
            s = const S,
            options(nostack, readonly),
        );
    }
    [a00, a01, a10, a11]
}

/// [`pair`] for any panel width (`stride` = bytes per group of the panel) and for one
/// channel (`two == false`: the second channel's results are 0), in Rust.
#[inline(always)]
fn pair_any(wide: &[u32], w: &[i8], groups: usize, stride: usize, two: bool) -> [i32; 4] {
    let mut a = [0i32; 4];
    for (g, x) in wide[..4 * groups].chunks_exact(4).enumerate() {
        let w0 = word(&w[g * stride..]);
        let (e, o) = (sxtb16(w0), sxtb16_ror8(w0));
        a[0] = smlad(x[2], o, smlad(x[0], e, a[0]));
        a[2] = smlad(x[3], o, smlad(x[1], e, a[2]));
        if two {
            let w1 = word(&w[g * stride + KR..]);
            let (e, o) = (sxtb16(w1), sxtb16_ror8(w1));
            a[1] = smlad(x[2], o, smlad(x[0], e, a[1]));
            a[3] = smlad(x[3], o, smlad(x[1], e, a[3]));
        }
    }
    a
}

/// [`Rq::scale`] of two accumulators of one channel (two pixels), the constants loaded
/// once, in assembly (two `smlal` and one shift each).
#[inline(always)]
fn scale2(rq: &Rq, a0: i32, a1: i32) -> [i32; 2] {
    let (clo, chi) = (rq.c as u32, (rq.c >> 32) as u32);
    let (r0, r1): (i32, i32);
    // SAFETY: register-only Thumb-2 / DSP arithmetic.
    unsafe {
        asm!(
            "mov {l0}, {clo}",
            "mov {h0}, {chi}",
            "lsr {s}, {a0}, #31",
            "smlal {l0}, {h0}, {a0}, {m}",
            "smlal {l0}, {h0}, {s}, {k}",
            "asr {h0}, {h0}, {r}",
            "mov {l0}, {clo}",
            "mov {h1}, {chi}",
            "lsr {s}, {a1}, #31",
            "smlal {l0}, {h1}, {a1}, {m}",
            "smlal {l0}, {h1}, {s}, {k}",
            "asr {h1}, {h1}, {r}",
            clo = in(reg) clo,
            chi = in(reg) chi,
            a0 = in(reg) a0,
            a1 = in(reg) a1,
            m = in(reg) rq.mult,
            r = in(reg) rq.rsh,
            k = in(reg) 1u32 << 31,
            s = out(reg) _,
            l0 = out(reg) _,
            h0 = out(reg) r0,
            h1 = out(reg) r1,
            options(pure, nomem, nostack),
        );
    }
    [r0, r1]
}

/// The output zero point and clamp.
#[derive(Clone, Copy)]
struct Out {
    zp: i32,
    lo: i32,
    hi: i32,
    /// The clamp's bounds in each byte.
    lo4: u32,
    hi4: u32,
}

impl Out {
    #[inline(always)]
    fn of(q: &QuantParams<'_>) -> Out {
        let b = |v: i32| (v.clamp(-128, 127) as u8 as u32).wrapping_mul(0x0101_0101);
        Out {
            zp: q.output_zp,
            lo: q.act[0],
            hi: q.act[1],
            lo4: b(q.act[0]),
            hi4: b(q.act[1]),
        }
    }

    /// `clamp(v + zp)` for one output; `|v| < 2^30` (so the add cannot overflow).
    #[inline(always)]
    fn put(&self, v: i32) -> i8 {
        (v + self.zp).max(self.lo).min(self.hi) as i8
    }

    /// `clamp(v[i] + zp)` for two outputs (`|v[i]| < 2^30`) as two bytes, as [`Out::put4`].
    #[inline(always)]
    fn put2(&self, v0: i32, v1: i32) -> [i8; 2] {
        let r: u32;
        // SAFETY: register-only DSP arithmetic, as `put4`.
        unsafe {
            asm!(
                "ssat {r}, #8, {a}",
                "ssat {b}, #8, {b}",
                "bfi {r}, {b}, #8, #8",
                "ssub8 {b}, {r}, {lo}",
                "sel {r}, {r}, {lo}",
                "ssub8 {b}, {hi}, {r}",
                "sel {r}, {r}, {hi}",
                r = out(reg) r,
                a = in(reg) v0 + self.zp,
                b = inout(reg) v1 + self.zp => _,
                lo = in(reg) self.lo4,
                hi = in(reg) self.hi4,
                options(pure, nomem, nostack),
            );
        }
        let [b0, b1, _, _] = r.to_le_bytes();
        [b0 as i8, b1 as i8]
    }

    /// `clamp(v[i] + zp)` for four outputs (`|v[i]| < 2^30`), as four bytes: each saturated to
    /// int8 (`ssat`), packed (`bfi`), then clamped four at a time (`ssub8` + `sel` for the
    /// lower bound, again for the upper).
    #[inline(always)]
    fn put4(&self, v: [i32; 4]) -> [u8; 4] {
        let r: u32;
        // SAFETY: register-only DSP arithmetic (`ssat` may set Q and `ssub8` sets the GE
        // flags, which only the following `sel` reads).
        unsafe {
            asm!(
                "ssat {r}, #8, {a}",
                "ssat {b}, #8, {b}",
                "bfi {r}, {b}, #8, #8",
                "ssat {c}, #8, {c}",
                "bfi {r}, {c}, #16, #8",
                "ssat {d}, #8, {d}",
                "bfi {r}, {d}, #24, #8",
                "ssub8 {b}, {r}, {lo}",
                "sel {r}, {r}, {lo}",
                "ssub8 {b}, {hi}, {r}",
                "sel {r}, {r}, {hi}",
                r = out(reg) r,
                a = in(reg) v[0] + self.zp,
                b = inout(reg) v[1] + self.zp => _,
                c = inout(reg) v[2] + self.zp => _,
                d = inout(reg) v[3] + self.zp => _,
                lo = in(reg) self.lo4,
                hi = in(reg) self.hi4,
                options(pure, nomem, nostack),
            );
        }
        r.to_le_bytes()
    }
}

/// `qs8_conv_2x2c4__dsp`: int8 conv (one group) over packed weights and a folded bias, output
/// pixels `px0..px0 + y.len() / O`, bit-exact with [`super::reference_conv2d`]. Returns false
/// (writing nothing) when the window is larger than [`CONV_K`] bytes.
///
/// Pixels go in tiles of as many pairs as the buffers hold (`CONV_K / K`, at least one), so each
/// channel's requantization constants are read once per tile, not once per pair.
pub(super) fn conv2d(c: &Conv<'_, &[i32]>, y: &mut [i8], px0: usize) -> bool {
    let Conv {
        x,
        w,
        bias,
        s,
        geo,
        q,
    } = *c;
    let [co, kh, kw, ci] = s.w;
    let k = kh * kw * ci;
    let kp = super::padded(k);
    if k == 0 || kp > CONV_K || co == 0 {
        return false;
    }
    // First convs (few input channels) whose `K` is not a multiple of 4: their few weights
    // repacked with `K` padded to `kp` by zeros (the rows' padding is zero too), so the
    // leftover columns run in the assembly loop as one more group.
    let mut repacked = [0u32; REPACK_WORDS];
    let (w, k) = if k != kp && co * kp <= 4 * REPACK_WORDS {
        let rw: &mut [i8] = bytemuck::cast_slice_mut(&mut repacked[..]);
        for c in 0..co {
            for kk in 0..k {
                rw[super::packed_offset(co, kp, c, kk)] = w[super::packed_offset(co, k, c, kk)];
            }
        }
        (&rw[..co * kp], kp)
    } else {
        (w, k)
    };
    let (groups, kf) = (k / KR, k - k % KR);
    let rem = k - kf;
    let pixels = y.len() / co;
    let per_tensor = q.multiplier.len() == 1;
    let fast = Rq::covers(q, co);
    let out = Out::of(q);
    let zx = q.input_zp as i8;
    let tile = 2 * (CONV_K / kp);
    // Zeroed once: the gather writes the first `k` bytes of each row, the padding stays 0.
    let mut patch = [0u8; 2 * CONV_K];
    let mut wide = [0u32; CONV_K];
    let aligned = (w.as_ptr() as usize).is_multiple_of(4);
    let mut i = 0;
    while i < pixels {
        let n = tile.min(pixels - i);
        let pairs = n.div_ceil(2);
        super::gather_tile_u8(x, &s, &geo, px0 + i, n, zx, &mut patch, kp);
        for j in 0..pairs {
            let r0 = &patch[2 * j * kp..][..kp];
            let r1 = if 2 * j + 1 < n {
                &patch[(2 * j + 1) * kp..][..kp]
            } else {
                r0
            };
            widen(r0, r1, groups, &mut wide[4 * groups * j..]);
        }
        for p in 0..co.div_ceil(NR) {
            let nr = (co - p * NR).min(NR);
            let pw = &w[p * NR * k..][..nr * k];
            let mut cc = 0;
            while cc < nr {
                let two = nr - cc >= 2;
                let ch = p * NR + cc;
                let t = if per_tensor { 0 } else { ch };
                let rq = [
                    Rq::of(q, t),
                    Rq::of(q, if per_tensor { 0 } else { t + two as usize }),
                ];
                for j in 0..pairs {
                    let wj = &wide[4 * groups * j..][..4 * groups];
                    let mut a = if groups == 0 {
                        [0; 4]
                    } else if two && (nr == NR || nr == 8) && aligned {
                        // SAFETY: `wj` holds this pair's `4·groups` words (the widening wrote
                        // them); channel `cc + 1 < nr` of a panel of `nr` reads 8 bytes at
                        // `4·nr·g + 4·cc`, `g < groups`, inside the panel's `nr·k` bytes;
                        // `aligned`: the weights, and so every group, are word-aligned.
                        let (xp, wp) = (wj.as_ptr(), pw[cc * KR..].as_ptr());
                        unsafe {
                            match nr {
                                NR => pair::<64>(xp, wp, groups),
                                _ => pair::<32>(xp, wp, groups),
                            }
                        }
                    } else {
                        pair_any(wj, &pw[cc * KR..], groups, nr * KR, two)
                    };
                    // The `k % 4` leftover columns, channel by channel after the groups.
                    for jj in 0..rem {
                        let u0 = patch[2 * j * kp + kf + jj] as i32;
                        let u1 = patch[(2 * j + 1) * kp + kf + jj] as i32;
                        let w0 = pw[kf * nr + cc * rem + jj] as i32;
                        a[0] = a[0].wrapping_add(u0 * w0);
                        a[2] = a[2].wrapping_add(u1 * w0);
                        if two {
                            let w1 = pw[kf * nr + (cc + 1) * rem + jj] as i32;
                            a[1] = a[1].wrapping_add(u0 * w1);
                            a[3] = a[3].wrapping_add(u1 * w1);
                        }
                    }
                    let o = (i + 2 * j) * co + ch;
                    if fast && two && n - 2 * j >= 2 {
                        let (b0, b1) = (bias[ch], bias[ch + 1]);
                        let v0 = scale2(&rq[0], a[0].wrapping_add(b0), a[2].wrapping_add(b0));
                        let v1 = scale2(&rq[1], a[1].wrapping_add(b1), a[3].wrapping_add(b1));
                        let yo = &mut y[o..o + co + 2];
                        yo[..2].copy_from_slice(&out.put2(v0[0], v1[0]));
                        yo[co..].copy_from_slice(&out.put2(v0[1], v1[1]));
                        continue;
                    }
                    let rows = (n - 2 * j).min(2);
                    for d in 0..1 + two as usize {
                        let b = bias[ch + d];
                        for r in 0..rows {
                            let acc = a[2 * r + d].wrapping_add(b);
                            y[o + r * co + d] = if fast {
                                out.put(rq[d].scale(acc))
                            } else {
                                q.requantize(acc, ch + d)
                            };
                        }
                    }
                }
                cc += 1 + two as usize;
            }
        }
        i += n;
    }
    true
}

/// Output channels per block of [`depthwise`]: their requantization constants are prepared once
/// per block (on the stack, 16 bytes each), each pixel's taps once per block.
const DW_BLOCK: usize = 64;

/// `qs8_dwconv_c4__dsp`: int8 depthwise conv (channel multiplier 1, weights tap-major with
/// zero point 0), output pixels `px0..px0 + y.len() / C`, bit-exact with
/// [`super::reference_depthwise`]. Returns false (writing nothing) when the channels are not a
/// multiple of 4 or the requantization is not of the fast form ([`Rq::covers`]).
pub(super) fn depthwise(c: &super::Conv<'_, Option<&[i32]>>, y: &mut [i8], px0: usize) -> bool {
    let super::Conv {
        x,
        w: wt,
        bias,
        s,
        geo,
        q,
    } = *c;
    let [co, kh, kw, _] = s.w;
    if co == 0
        || !co.is_multiple_of(4)
        || s.x[3] != co
        || q.weight_zp != 0
        || kh * kw > super::DW_TAPS
        || !Rq::covers(q, co)
        || x.len() < s.x.iter().product::<usize>()
        || wt.len() < kh * kw * co
    {
        return false;
    }
    let total = y.len() / co;
    let per_tensor = q.multiplier.len() == 1;
    let out = Out::of(q);
    // `-z_x` in both 16-bit halves (`|x - z_x| ≤ 255` fits).
    let nz = (q.input_zp.wrapping_neg() as u16 as u32).wrapping_mul(0x0001_0001);
    // The taps of the current pixel as addresses (filled per pixel; zeroed once).
    let mut addr = [[0usize; 2]; super::DW_TAPS];
    let mut b0 = 0;
    while b0 < co {
        let nb = (co - b0).min(DW_BLOCK);
        let mut rq = [Rq {
            mult: 0,
            rsh: 0,
            c: 0,
        }; DW_BLOCK];
        for (j, r) in rq.iter_mut().enumerate().take(nb) {
            *r = Rq::of(q, if per_tensor { 0 } else { b0 + j });
        }
        let bb = bias.map(|b| &b[b0..b0 + nb]);
        let step = geo.stride[1] * co;
        super::dw_runs(&s, &geo, px0, total, true, |i, count, taps| {
            // The taps as addresses: each tap's input pixel and weight row, channel 0. The
            // taps come from the window geometry: pixels inside the input (checked against
            // `x`'s length above), tap indices below `KH·KW`; each next pixel of a run reads
            // `stride·C` bytes further.
            let (xb, wb) = (x.as_ptr() as usize, wt.as_ptr() as usize);
            for (a, &(xo, t)) in addr.iter_mut().zip(taps) {
                debug_assert!(xo + (count - 1) * step + co <= x.len() && (t + 1) * co <= wt.len());
                *a = [xb + xo, wb + t * co];
            }
            let addr = &mut addr[..taps.len()];
            for px in i..i + count {
                let yo = &mut y[px * co + b0..][..nb];
                for (g, (yg, rg)) in yo.chunks_exact_mut(4).zip(rq.chunks_exact(4)).enumerate() {
                    let c0 = b0 + 4 * g;
                    let a = match bb {
                        Some(b) => {
                            let b: &[i32; 4] = b[4 * g..][..4].try_into().unwrap();
                            *b
                        }
                        None => [0; 4],
                    };
                    // SAFETY: every tap's input pixel lies inside `x` (whose length covers
                    // every pixel of the input shape, checked on entry) and its weight row
                    // inside `wt` (`KH·KW·C` bytes, checked on entry); `c0 + 4 ≤ C` bytes past
                    // either start stay inside.
                    let a = unsafe { dw_taps(addr, c0, nz, a) };
                    let v = [
                        rg[0].scale(a[0]),
                        rg[1].scale(a[1]),
                        rg[2].scale(a[2]),
                        rg[3].scale(a[3]),
                    ];
                    yg.copy_from_slice(bytemuck::cast_slice(&out.put4(v)));
                }
                for a in addr.iter_mut() {
                    a[0] += step;
                }
            }
        });
        b0 += nb;
    }
    true
}

/// `qs8_dwconv_c4__dsp` inner loop: channels `c0..c0 + 4` of one output pixel over its taps
/// (`[input address, weight address]` of channel 0 each), `a` the starting accumulators
/// (bias); `nz` is `-z_x` in both 16-bit halves. Per tap: one word of input and of weights,
/// split into even and odd channels, the zero point subtracted from the input's, one
/// `smlabb` / `smlatt` per channel.
///
/// # Safety
/// For every tap, 4 bytes at `input + c0` and at `weight + c0` must be readable.
#[inline(always)]
unsafe fn dw_taps(taps: &[[usize; 2]], c0: usize, nz: u32, a: [i32; 4]) -> [i32; 4] {
    let [mut a0, mut a1, mut a2, mut a3] = a;
    if taps.is_empty() {
        return a;
    }
    let tp = taps.as_ptr();
    // SAFETY: reads the `taps` pairs (in bounds: the loop ends at their end) and, per the
    // caller's contract, 4 bytes at each tap's addresses plus `c0`; registers otherwise.
    unsafe {
        let end = tp.add(taps.len());
        asm!(
            "2:",
            "ldrd {xw}, {ww}, [{tp}], #8",
            "ldr {xw}, [{xw}, {c0}]",
            "ldr {ww}, [{ww}, {c0}]",
            "sxtb16 {xe}, {xw}",
            "sadd16 {xe}, {xe}, {nz}",
            "sxtb16 {we}, {ww}",
            "smlabb {a0}, {xe}, {we}, {a0}",
            "smlatt {a2}, {xe}, {we}, {a2}",
            "sxtb16 {xe}, {xw}, ror #8",
            "sadd16 {xe}, {xe}, {nz}",
            "sxtb16 {we}, {ww}, ror #8",
            "smlabb {a1}, {xe}, {we}, {a1}",
            "smlatt {a3}, {xe}, {we}, {a3}",
            "cmp {tp}, {end}",
            "bne 2b",
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            a3 = inout(reg) a3,
            tp = inout(reg) tp => _,
            end = in(reg) end,
            c0 = in(reg) c0,
            nz = in(reg) nz,
            xw = out(reg) _,
            ww = out(reg) _,
            xe = out(reg) _,
            we = out(reg) _,
            options(nostack, readonly),
        );
    }
    [a0, a1, a2, a3]
}

/// `qs8_dense_1x4c4__dsp` inner loop for a full panel (16 channels, 64 bytes per group):
/// channels `c..c + 4` (their group-0 words at `w`) times the widened row at `xp` (`[even, odd]`
/// per group), over `groups ≥ 1` groups.
///
/// # Safety
/// `xp` must be valid for reading `8·groups` bytes; `w` word-aligned and valid for reading 16
/// bytes at each of `w + 64·g`, `g < groups`; `groups ≥ 1`.
#[inline(always)]
unsafe fn quad16(xp: *const u32, w: *const i8, groups: usize) -> [i32; 4] {
    let (mut a0, mut a1, mut a2, mut a3) = (0i32, 0i32, 0i32, 0i32);
    // SAFETY: the caller's contract; registers only otherwise.
    unsafe {
        let end = xp.add(2 * groups);
        asm!(
            "2:",
            "ldrd {xe}, {xo}, [{xp}], #8",
            "ldrd {w0}, {w1}, [{wp}, #8]",
            "sxtb16 {t}, {w0}",
            "smlad {a2}, {xe}, {t}, {a2}",
            "sxtb16 {t}, {w0}, ror #8",
            "smlad {a2}, {xo}, {t}, {a2}",
            "sxtb16 {t}, {w1}",
            "smlad {a3}, {xe}, {t}, {a3}",
            "sxtb16 {t}, {w1}, ror #8",
            "smlad {a3}, {xo}, {t}, {a3}",
            "ldrd {w0}, {w1}, [{wp}], #64",
            "sxtb16 {t}, {w0}",
            "smlad {a0}, {xe}, {t}, {a0}",
            "sxtb16 {t}, {w0}, ror #8",
            "smlad {a0}, {xo}, {t}, {a0}",
            "sxtb16 {t}, {w1}",
            "smlad {a1}, {xe}, {t}, {a1}",
            "sxtb16 {t}, {w1}, ror #8",
            "smlad {a1}, {xo}, {t}, {a1}",
            "cmp {xp}, {end}",
            "bne 2b",
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            a2 = inout(reg) a2,
            a3 = inout(reg) a3,
            xp = inout(reg) xp => _,
            wp = inout(reg) w => _,
            end = in(reg) end,
            xe = out(reg) _,
            xo = out(reg) _,
            w0 = out(reg) _,
            w1 = out(reg) _,
            t = out(reg) _,
            options(nostack, readonly),
        );
    }
    [a0, a1, a2, a3]
}

/// `qs8_dense_1x4c4__dsp`: int8 dense over packed weights and a folded bias, every row of `x`
/// (`[.., k]`), bit-exact with [`super::reference_dense`]. Returns false (writing nothing) when
/// a row is longer than the widening buffer holds (`2·CONV_K` bytes) or the requantization is
/// not of a fast form (double or single rounding).
#[allow(clippy::too_many_arguments)]
pub(super) fn dense(
    x: &[i8],
    k: usize,
    w: &[i8],
    m: usize,
    bias: &[i32],
    y: &mut [i8],
    q: &QuantParams<'_>,
) -> bool {
    let single = Rq::covers_single(q, m);
    if k == 0 || k > 2 * CONV_K || m == 0 || !(single || Rq::covers(q, m)) {
        return false;
    }
    let (groups, kf) = (k / KR, k - k % KR);
    let rem = k - kf;
    let per_tensor = q.multiplier.len() == 1;
    let out = Out::of(q);
    let aligned = (w.as_ptr() as usize).is_multiple_of(4);
    let mut wide = [0u32; CONV_K];
    for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(m)) {
        // The row as unsigned bytes (`x + 128`, what the folded bias expects), widened.
        for (d, xs) in wide[..2 * groups]
            .chunks_exact_mut(2)
            .zip(xr.chunks_exact(KR))
        {
            let u = word(xs) ^ 0x8080_8080;
            d[0] = uxtb16(u);
            d[1] = uxtb16_ror8(u);
        }
        let xw = &wide[..2 * groups];
        for p in 0..m.div_ceil(NR) {
            let nr = (m - p * NR).min(NR);
            let pw = &w[p * NR * k..][..nr * k];
            let mut c = 0;
            while c < nr {
                let n = (nr - c).min(4);
                let mut a = [0i32; 4];
                if n == 4 && nr == NR && aligned && groups > 0 {
                    // SAFETY: `xw` holds `2·groups` words; channels `c..c + 4 ≤ 16` of a full
                    // panel read 16 bytes at `64·g + 4·c`, `g < groups`, inside the panel's
                    // `16·k` bytes, word-aligned (`aligned`).
                    a = unsafe { quad16(xw.as_ptr(), pw[c * KR..].as_ptr(), groups) };
                } else {
                    for (g, xg) in xw.chunks_exact(2).enumerate() {
                        for (j, aj) in a.iter_mut().enumerate().take(n) {
                            let ww = word(&pw[(g * nr + c + j) * KR..][..KR]);
                            *aj = smlad(xg[1], sxtb16_ror8(ww), smlad(xg[0], sxtb16(ww), *aj));
                        }
                    }
                }
                for jj in 0..rem {
                    let u = (xr[kf + jj] as u8 ^ 0x80) as i32;
                    for (j, aj) in a.iter_mut().enumerate().take(n) {
                        *aj = aj.wrapping_add(u * pw[kf * nr + (c + j) * rem + jj] as i32);
                    }
                }
                for (j, &v) in a.iter().enumerate().take(n) {
                    let ch = p * NR + c + j;
                    let (t, acc) = (if per_tensor { 0 } else { ch }, v.wrapping_add(bias[ch]));
                    yr[ch] = out.put(match single {
                        true => Rq::single(q, t).scale_single(acc),
                        false => Rq::of(q, t).scale(acc),
                    });
                }
                c += n;
            }
        }
    }
    true
}
