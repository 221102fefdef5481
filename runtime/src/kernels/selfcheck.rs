//! An edge-case grid for the int8 kernels of [`super::qs8`] (conv, depthwise and dense over
//! packed weights, element-wise add) that runs on
//! the target itself: no heap, every buffer on the stack (about 20 KiB), so the Cortex-M
//! firmware runs it under QEMU (`dsp_check`, `cortex-m-bench`) and the host tests run it for
//! every instruction set the CPU has.
//!
//! Each case builds natural weights, packs them as `kiln convert` does, runs the optimized
//! kernel for `isa` and compares it bit for bit with the specification
//! ([`super::reference_i8`]) on the natural weights. The grid covers the shapes the kernels
//! special-case (pointwise, first convs whose `K` is not a multiple of 4, partial and
//! 8-channel panels, odd channel counts, windows at and past the DSP kernels' buffer limits,
//! depthwise channel blocks and non-multiples of 4), the requantizations (per channel and per
//! tensor, double and single rounding, multipliers `0`, `2^30`, `2^30 + 1`, `i32::MAX`, shifts
//! from -31 to +2, every rounding tie, clamps, extreme zero points) and extreme data (saturating inputs and
//! weights, biases near `±2^30`).

use super::isa::Isa;
use super::qs8::{self, Conv, ConvShapes};
use super::reference_i8::{self as reference, Multipliers, QuantParams, Rounding, Shifts};
use crate::ops::ConvGeom;

/// The first case whose optimized output differs from the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// `"conv2d"`, `"depthwise"`, `"dense"`, `"requantize"` or `"add"`.
    pub kernel: &'static str,
    /// Index of the case within that kernel's grid.
    pub case: u32,
}

const X_MAX: usize = 2048;
const W_MAX: usize = 4096;
const Y_MAX: usize = 2048;
const C_MAX: usize = 96;

/// The LCG of the benchmarks (TFLite Micro's): deterministic on every target.
struct Lcg(u32);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0
    }
    fn byte(&mut self) -> i8 {
        (self.next() >> 24) as u8 as i8
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() >> 8) % n.max(1)
    }
}

/// Requantization parameters of variant `v` for `co` channels (`m`, `s`: their storage).
fn quant<'a>(
    v: u32,
    r: &mut Lcg,
    co: usize,
    m: &'a mut [i32; C_MAX],
    s: &'a mut [i32; C_MAX],
) -> QuantParams<'a> {
    const EDGE_M: [i32; 6] = [
        (1 << 30) + 1,
        i32::MAX,
        0,
        1 << 30,
        1_500_000_000,
        1 << 30 | 12345,
    ];
    const EDGE_S: [i32; 7] = [-1, -31, -24, -25, 0, 2, -7];
    let per_channel = v.is_multiple_of(2);
    let n = if per_channel { co } else { 1 };
    for c in 0..n {
        m[c] = (1 << 30) + (r.next() & 0x3fff_ffff) as i32;
        s[c] = -(r.below(12) as i32) - 3;
        if v % 5 == 2 {
            m[c] = EDGE_M[c % EDGE_M.len()];
            s[c] = EDGE_S[c % EDGE_S.len()];
        }
    }
    let zps = [-128, 127, 0, 13, -5];
    let input_zp = zps[r.below(5) as usize];
    let output_zp = if v % 5 == 4 {
        zps[(v as usize / 5) % 2]
    } else {
        zps[r.below(5) as usize]
    };
    let act = match v % 4 {
        0 => [-128, 127],
        1 => [output_zp.max(-128), 127],
        2 => [-100, 100],
        _ => [output_zp.max(-128), output_zp.clamp(-128, 127).max(20)],
    };
    QuantParams {
        input_zp,
        weight_zp: 0,
        output_zp,
        multiplier: Multipliers::I32(&m[..n]),
        shift: Shifts::I32(&s[..n]),
        act,
        rounding: if v % 3 == 1 {
            Rounding::Single
        } else {
            Rounding::Double
        },
    }
}

/// Fills `x`, `w` and `bias` for data variant `d`: random bytes, saturating ones of either
/// sign, and biases near the accumulator's extremes.
fn data(d: u32, r: &mut Lcg, x: &mut [i8], w: &mut [i8], bias: &mut [i32]) {
    for v in x.iter_mut() {
        *v = match d {
            1 => 127,
            2 => -128,
            _ => r.byte(),
        };
    }
    for v in w.iter_mut() {
        *v = match d {
            1 => 127,
            2 => -127,
            _ => r.byte(),
        };
    }
    for (i, b) in bias.iter_mut().enumerate() {
        *b = match (d, i % 3) {
            (1, 0) => (1 << 30) - 1,
            (2, 0) => -(1 << 30),
            _ => (r.next() as i32) >> 14,
        };
    }
}

/// Conv shapes: `(h, w, ci, co, kh, kw, stride, pad [t, l, b, r])`.
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, [usize; 4]);

const CONV: &[ConvCase] = &[
    (5, 5, 8, 16, 1, 1, 1, [0; 4]),
    (4, 3, 16, 32, 1, 1, 1, [0; 4]),
    (3, 3, 12, 12, 1, 1, 1, [0; 4]),
    (7, 6, 3, 8, 3, 3, 2, [0, 0, 1, 1]),
    (12, 6, 1, 8, 10, 4, 2, [4, 1, 5, 1]),
    (6, 6, 3, 16, 3, 3, 1, [1, 1, 1, 1]),
    (3, 3, 64, 4, 3, 3, 1, [1, 1, 1, 1]),
    (3, 3, 65, 3, 3, 3, 1, [1, 1, 1, 1]),
    (3, 4, 7, 5, 2, 2, 1, [0; 4]),
    (2, 2, 4, 3, 1, 1, 1, [0; 4]),
    (6, 6, 2, 33, 3, 3, 2, [1, 1, 1, 1]),
    (5, 4, 16, 16, 3, 3, 2, [0, 0, 1, 1]),
    (4, 4, 32, 16, 1, 1, 2, [0; 4]),
];

/// Depthwise shapes: `(h, w, c, kh, kw, stride, pad)`.
type DwCase = (usize, usize, usize, usize, usize, usize, [usize; 4]);

const DW: &[DwCase] = &[
    (5, 5, 8, 3, 3, 1, [1, 1, 1, 1]),
    (6, 7, 16, 3, 3, 2, [0, 0, 1, 1]),
    (4, 4, 68, 3, 3, 1, [1, 1, 1, 1]),
    (5, 5, 6, 3, 3, 1, [1, 1, 1, 1]),
    (7, 7, 4, 5, 5, 1, [2, 2, 2, 2]),
    (3, 3, 64, 3, 3, 1, [1, 1, 1, 1]),
    (6, 2, 12, 3, 3, 1, [1, 1, 1, 1]),
];

/// Dense shapes: `(k, m, rows)`.
const DENSE: &[(usize, usize, usize)] = &[
    (640, 4, 1),
    (64, 12, 1),
    (1, 4, 1),
    (27, 8, 2),
    (1153, 3, 1),
    (128, 16, 1),
    (5, 3, 3),
    (40, 33, 1),
];

/// Quantization variants per shape, data variants per (shape, quantization).
const QUANTS: u32 = 10;
const DATAS: u32 = 3;

/// Runs the grid on `isa`; returns the number of cases (every one bit-exact) or the first
/// mismatch.
pub fn qs8_grid(isa: Isa) -> Result<u32, Mismatch> {
    let mut r = Lcg(0x1234_5678);
    let mut cases = 0;
    let (mut m, mut s) = ([0i32; C_MAX], [0i32; C_MAX]);
    let mut x = [0i8; X_MAX];
    let mut w = [0i8; W_MAX];
    // Packed weights word-aligned (as `kiln convert` stores them), or one byte off in every
    // other variant (a hand-built file): the kernels' aligned and unaligned paths.
    let mut pw_words = [0u32; W_MAX / 4 + 1];
    let pw_all: &mut [i8] = bytemuck::cast_slice_mut(&mut pw_words[..]);
    let mut bias = [0i32; C_MAX];
    let mut fb = [0i32; C_MAX];
    let mut y_ref = [0i8; Y_MAX];
    let mut y_opt = [0i8; Y_MAX];

    for (i, &(h, wd, ci, co, kh, kw, st, pad)) in CONV.iter().enumerate() {
        let oh = (h + pad[0] + pad[2] - kh) / st + 1;
        let ow = (wd + pad[1] + pad[3] - kw) / st + 1;
        let (k, nx, ny) = (kh * kw * ci, h * wd * ci, oh * ow * co);
        for v in 0..QUANTS * DATAS {
            let q = quant(v / DATAS, &mut r, co, &mut m, &mut s);
            data(
                v % DATAS,
                &mut r,
                &mut x[..nx],
                &mut w[..co * k],
                &mut bias[..co],
            );
            let geo = ConvGeom {
                stride: [st, st],
                pad,
                ..ConvGeom::default()
            };
            let (xs, ws, ys) = ([1, h, wd, ci], [co, kh, kw, ci], [1, oh, ow, co]);
            let (x, w, bias) = (&x[..nx], &w[..co * k], Some(&bias[..co]));
            reference::conv2d(x, xs, w, ws, bias, &mut y_ref[..ny], ys, &geo, &q);
            let pw = &mut pw_all[(v % 2) as usize..];
            qs8::pack(w, co, k, &mut pw[..co * k]);
            qs8::fold_bias(w, co, k, bias, q.input_zp, &mut fb[..co]);
            let c = Conv {
                x,
                w: &pw[..co * k],
                bias: &fb[..co],
                s: ConvShapes {
                    x: xs,
                    w: ws,
                    y: ys,
                },
                geo,
                q: &q,
            };
            y_opt[..ny].fill(0x55);
            qs8::conv2d(&c, &mut y_opt[..ny], isa);
            if y_opt[..ny] != y_ref[..ny] {
                return Err(Mismatch {
                    kernel: "conv2d",
                    case: (i as u32) * QUANTS * DATAS + v,
                });
            }
            cases += 1;
        }
    }

    for (i, &(h, wd, c, kh, kw, st, pad)) in DW.iter().enumerate() {
        let oh = (h + pad[0] + pad[2] - kh) / st + 1;
        let ow = (wd + pad[1] + pad[3] - kw) / st + 1;
        let (taps, nx, ny) = (kh * kw, h * wd * c, oh * ow * c);
        for v in 0..QUANTS * DATAS {
            let q = quant(v / DATAS, &mut r, c, &mut m, &mut s);
            data(
                v % DATAS,
                &mut r,
                &mut x[..nx],
                &mut w[..c * taps],
                &mut bias[..c],
            );
            let geo = ConvGeom {
                stride: [st, st],
                pad,
                groups: c,
                ..ConvGeom::default()
            };
            let (xs, ws, ys) = ([1, h, wd, c], [c, kh, kw, 1], [1, oh, ow, c]);
            let (x, w) = (&x[..nx], &w[..c * taps]);
            let bias = (v % 4 != 3).then_some(&bias[..c]);
            reference::conv2d(x, xs, w, ws, bias, &mut y_ref[..ny], ys, &geo, &q);
            let pw = &mut pw_all[(v % 2) as usize..];
            qs8::pack_depthwise(w, c, taps, &mut pw[..c * taps]);
            let cv = Conv {
                x,
                w: &pw[..c * taps],
                bias,
                s: ConvShapes {
                    x: xs,
                    w: ws,
                    y: ys,
                },
                geo,
                q: &q,
            };
            y_opt[..ny].fill(0x55);
            qs8::depthwise(&cv, &mut y_opt[..ny], isa);
            if y_opt[..ny] != y_ref[..ny] {
                return Err(Mismatch {
                    kernel: "depthwise",
                    case: (i as u32) * QUANTS * DATAS + v,
                });
            }
            cases += 1;
        }
    }

    for (i, &(k, mo, rows)) in DENSE.iter().enumerate() {
        let (nx, ny) = (rows * k, rows * mo);
        for v in 0..QUANTS * DATAS {
            let q = quant(v / DATAS, &mut r, mo, &mut m, &mut s);
            data(
                v % DATAS,
                &mut r,
                &mut x[..nx],
                &mut w[..mo * k],
                &mut bias[..mo],
            );
            let (x, w, bias) = (&x[..nx], &w[..mo * k], Some(&bias[..mo]));
            reference::dense(x, k, w, mo, bias, &mut y_ref[..ny], &q);
            let pw = &mut pw_all[(v % 2) as usize..];
            qs8::pack(w, mo, k, &mut pw[..mo * k]);
            qs8::fold_bias(w, mo, k, bias, q.input_zp, &mut fb[..mo]);
            y_opt[..ny].fill(0x55);
            qs8::dense(
                x,
                k,
                &pw[..mo * k],
                mo,
                &fb[..mo],
                &mut y_opt[..ny],
                &q,
                isa,
            );
            if y_opt[..ny] != y_ref[..ny] {
                return Err(Mismatch {
                    kernel: "dense",
                    case: (i as u32) * QUANTS * DATAS + v,
                });
            }
            cases += 1;
        }
    }
    // Requantization on its own, through a one-column dense whose weights are 0 (so each
    // channel's accumulator is its bias): accumulators `t·2^j + d` (`|t| ≤ 3`, `|d| ≤ 1`) meet
    // every rounding tie of the multipliers below (odd multiples of a power of two) at every
    // shift, both roundings.
    const MULTS: [i32; 5] = [3 << 29, 5 << 28, 7 << 28, (1 << 30) + 1, i32::MAX];
    let mut accs = [0i32; 32 * 7 * 3];
    for (n, a) in accs.iter_mut().enumerate() {
        let (j, t, d) = (n / 21, (n / 3 % 7) as i32 - 3, (n % 3) as i32 - 1);
        *a = t.wrapping_mul(1i32.wrapping_shl(j as u32)).wrapping_add(d);
    }
    let mut case = 0;
    for &mult in &MULTS {
        for shift in -31..=2 {
            for rounding in [Rounding::Double, Rounding::Single] {
                for chunk in accs.chunks(C_MAX) {
                    let mo = chunk.len();
                    m[..mo].fill(mult);
                    s[..mo].fill(shift);
                    let zp = [-128, 0, 127][case % 3];
                    let q = QuantParams {
                        input_zp: 0,
                        weight_zp: 0,
                        output_zp: zp,
                        multiplier: Multipliers::I32(&m[..mo]),
                        shift: Shifts::I32(&s[..mo]),
                        act: [-128, 127],
                        rounding,
                    };
                    w[..mo].fill(0);
                    bias[..mo].copy_from_slice(chunk);
                    let (x, w, bias) = (&[5i8][..], &w[..mo], Some(&bias[..mo]));
                    reference::dense(x, 1, w, mo, bias, &mut y_ref[..mo], &q);
                    let pw = &mut pw_all[..];
                    qs8::pack(w, mo, 1, &mut pw[..mo]);
                    qs8::fold_bias(w, mo, 1, bias, 0, &mut fb[..mo]);
                    y_opt[..mo].fill(0x55);
                    qs8::dense(x, 1, &pw[..mo], mo, &fb[..mo], &mut y_opt[..mo], &q, isa);
                    if y_opt[..mo] != y_ref[..mo] {
                        return Err(Mismatch {
                            kernel: "requantize",
                            case: case as u32,
                        });
                    }
                    case += 1;
                    cases += 1;
                }
            }
        }
    }

    for (i, &n) in [300usize, 256, 1000, 64].iter().enumerate() {
        for v in 0..QUANTS * DATAS {
            let zps = [-128, 127, 0, 13, -5];
            let mut zp = [0; 3];
            for z in zp.iter_mut() {
                *z = zps[r.below(5) as usize];
            }
            let mut mult = [(0, 0); 3];
            for (j, m) in mult.iter_mut().enumerate() {
                *m = (
                    (1 << 30) + (r.next() & 0x3fff_ffff) as i32,
                    -(r.below(32) as i32),
                );
                if v % 5 == 2 && j == 2 {
                    const EDGE: [(i32, i32); 5] = [
                        (0, 0),
                        (1 << 30, -3),
                        ((1 << 30) + 1, -31),
                        (i32::MAX, -1),
                        (1 << 30, 0),
                    ];
                    *m = EDGE[(v as usize / 5) % EDGE.len()];
                }
            }
            let p = reference::AddParams {
                zp,
                q: crate::ops::AddQuant {
                    left_shift: 20,
                    mult,
                },
                act: [[-128, 127], [zp[2], 127], [-100, 100]][v as usize % 3],
                subtract: v % 2 == 1,
            };
            let mut bias = [0i32; 0];
            data(v % DATAS, &mut r, &mut x[..n], &mut w[..n], &mut bias);
            if v % DATAS == 2 {
                // Opposite extremes: the largest differences.
                w[..n].fill(127);
            }
            let (a, b) = (&x[..n], &w[..n]);
            for ((o, &a), &b) in y_ref[..n].iter_mut().zip(a).zip(b) {
                *o = reference::add_one(a, b, &p);
            }
            y_opt[..n].fill(0x55);
            if !qs8::add_same_shape(a, b, &mut y_opt[..n], &p, isa) {
                // No vector add on this ISA (or for this case): the scalar loop, as the op runs.
                for ((o, &a), &b) in y_opt[..n].iter_mut().zip(a).zip(b) {
                    *o = reference::add_one(a, b, &p);
                }
            }
            if y_opt[..n] != y_ref[..n] {
                return Err(Mismatch {
                    kernel: "add",
                    case: (i as u32) * QUANTS * DATAS + v,
                });
            }
            cases += 1;
        }
    }
    Ok(cases)
}
