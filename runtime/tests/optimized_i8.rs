//! The optimized int8 conv / dense kernels (SIMD inner products, hoisted bounds) against the
//! portable reference kernels, bit for bit, over an edge-case grid: odd sizes, padding, strides,
//! dilation, groups and depthwise multipliers, input and weight zero points, per-channel and
//! per-tensor requantization, both roundings, clamps. On aarch64 this exercises NEON (run under
//! qemu-aarch64 by `scripts/firmware.sh`), on x86-64 AVX2 when the CPU has it.

use kiln_runtime::kernels::isa::Isa;
use kiln_runtime::kernels::optimized_i8 as opt;
use kiln_runtime::kernels::qs8::{self, PanelQ, NR};
use kiln_runtime::kernels::reference_i8::{
    self as reference, Multipliers, QuantParams, Rounding, Shifts,
};
use kiln_runtime::kernels::simd;
use kiln_runtime::ops::ConvGeom;

mod common;
use common::Lcg;

/// `w` natural `[o, k]` packed, and the folded bias.
fn packed(w: &[i8], o: usize, k: usize, bias: Option<&[i32]>, zx: i32) -> (Vec<i8>, Vec<i32>) {
    let mut pw = vec![0i8; w.len()];
    qs8::pack(w, o, k, &mut pw);
    let mut back = vec![0i8; w.len()];
    qs8::unpack(&pw, o, k, &mut back);
    assert_eq!(back, w, "unpack(pack(w)) != w for [{o}, {k}]");
    let mut fb = vec![0i32; o];
    qs8::fold_bias(w, o, k, bias, zx, &mut fb);
    (pw, fb)
}

fn quant<'a>(
    r: &mut Lcg,
    co: usize,
    mult: &'a mut Vec<i32>,
    shift: &'a mut Vec<i32>,
) -> QuantParams<'a> {
    let per_channel = r.below(2) == 0;
    let k = if per_channel { co } else { 1 };
    *mult = (0..k)
        .map(|_| (1 << 30) + (r.next() as i32 & 0x3fff_ffff))
        .collect();
    *shift = (0..k).map(|_| -(r.below(12) as i32) - 4).collect();
    let lo = r.pick(&[-128, -128, -100, 0]);
    QuantParams {
        input_zp: r.pick(&[-128, 0, 5, 127, -7]),
        weight_zp: r.pick(&[0, 0, 0, 3, -128]),
        output_zp: r.pick(&[-128, 0, 10]),
        multiplier: Multipliers::I32(mult),
        shift: Shifts::I32(shift),
        act: [lo, r.pick(&[127, 127, 100])],
        rounding: if r.below(2) == 0 {
            Rounding::Double
        } else {
            Rounding::Single
        },
    }
}

#[test]
fn conv2d_matches_reference_on_grid() {
    let mut r = Lcg(0xC0FF_EE11);
    let mut checked = 0;
    let mut packed_checked = 0;
    let mut dw_checked = 0;
    for case in 0..1500 {
        let n = r.pick(&[1, 1, 2]);
        let h = r.pick(&[1, 2, 5, 7, 9]);
        let wd = r.pick(&[1, 3, 6, 8, 13]);
        let depthwise = r.below(3) == 0;
        let ci: usize = r.pick(&[1, 2, 3, 8, 16, 17, 24, 33]);
        let (groups, co, cig) = if depthwise {
            let m = r.pick(&[1, 1, 2]);
            (ci, ci * m, 1)
        } else if ci.is_multiple_of(2) && r.below(4) == 0 {
            (2, 2 * r.pick(&[1, 3, 5]), ci / 2)
        } else {
            (1, r.pick(&[1, 4, 9, 16, 17, 33]), ci)
        };
        let kh = r.pick(&[1, 2, 3, 5]);
        let kw = r.pick(&[1, 3, 4, 5]);
        let stride = [r.pick(&[1, 1, 2, 3]), r.pick(&[1, 2])];
        let dilation = [r.pick(&[1, 1, 2]), r.pick(&[1, 1, 2])];
        let pad = [r.below(3), r.below(3), r.below(3), r.below(3)];
        // One case in five a pointwise conv (1×1, stride 1, no padding): its windows are
        // consecutive input rows, which the kernels gather in one copy.
        let (kh, kw, stride, pad) = if r.below(5) == 0 {
            (1, 1, [1, 1], [0; 4])
        } else {
            (kh, kw, stride, pad)
        };
        let eff_h = (kh - 1) * dilation[0] + 1;
        let eff_w = (kw - 1) * dilation[1] + 1;
        if h + pad[0] + pad[2] < eff_h || wd + pad[1] + pad[3] < eff_w {
            continue;
        }
        let oh = (h + pad[0] + pad[2] - eff_h) / stride[0] + 1;
        let ow = (wd + pad[1] + pad[3] - eff_w) / stride[1] + 1;
        let x = r.i8s(n * h * wd * ci);
        let w = r.i8s(co * kh * kw * cig);
        let bias: Option<Vec<i32>> = (r.below(3) > 0).then(|| {
            (0..co)
                .map(|_| (r.next() as i32 % 40_000) - 20_000)
                .collect()
        });
        let (mut m, mut s) = (Vec::new(), Vec::new());
        let q = quant(&mut r, co, &mut m, &mut s);
        let geo = ConvGeom {
            stride,
            dilation,
            pad,
            groups,
        };
        let ys = [n, oh, ow, co];
        let mut y_ref = vec![0i8; n * oh * ow * co];
        let mut y_opt = vec![1i8; n * oh * ow * co];
        let args = ([n, h, wd, ci], [co, kh, kw, cig]);
        reference::conv2d(
            &x,
            args.0,
            &w,
            args.1,
            bias.as_deref(),
            &mut y_ref,
            ys,
            &geo,
            &q,
        );
        for isa in Isa::available() {
            let what = format!(
                "case {case}: x {:?} w {:?} stride {stride:?} dil {dilation:?} pad {pad:?} groups {groups} zp {} {} isa {}",
                args.0,
                args.1,
                q.input_zp,
                q.weight_zp,
                isa.name()
            );
            y_opt.fill(1);
            opt::conv2d(
                &x,
                args.0,
                &w,
                args.1,
                bias.as_deref(),
                &mut y_opt,
                ys,
                &geo,
                &q,
                isa,
            );
            assert_eq!(y_ref, y_opt, "{what}");
            if cig == 1 && co == ci && groups == ci {
                let taps = kh * kw;
                let mut wt = vec![0i8; w.len()];
                qs8::pack_depthwise(&w, co, taps, &mut wt);
                let s = qs8::ConvShapes {
                    x: args.0,
                    w: args.1,
                    y: ys,
                };
                y_opt.fill(1);
                let c = qs8::Conv {
                    x: &x,
                    w: &wt,
                    bias: bias.as_deref(),
                    s,
                    geo,
                    q: &q,
                };
                qs8::reference_depthwise(&c, &mut y_opt);
                assert_eq!(y_ref, y_opt, "tap-major reference, {what}");
                y_opt.fill(1);
                qs8::depthwise(&c, &mut y_opt, isa);
                assert_eq!(y_ref, y_opt, "tap-major depthwise, {what}");
                // Split as the thread pool splits a layer: at a pixel inside a row too.
                let pixels = n * oh * ow;
                let cut = (pixels * 2).div_ceil(5) * co;
                y_opt.fill(1);
                let (lo, hi) = y_opt.split_at_mut(cut);
                qs8::depthwise_part(&c, lo, isa, 0);
                qs8::depthwise_part(&c, hi, isa, cut / co.max(1));
                assert_eq!(y_ref, y_opt, "tap-major depthwise in two parts, {what}");
                dw_checked += 1;
            }
            if groups == 1 && q.weight_zp == 0 {
                let k = kh * kw * cig;
                let (pw, fb) = packed(&w, co, k, bias.as_deref(), q.input_zp);
                let s = qs8::ConvShapes {
                    x: args.0,
                    w: args.1,
                    y: ys,
                };
                y_opt.fill(1);
                let c = qs8::Conv {
                    x: &x,
                    w: &pw,
                    bias: &fb[..],
                    s,
                    geo,
                    q: &q,
                };
                qs8::reference_conv2d(&c, &mut y_opt);
                assert_eq!(y_ref, y_opt, "packed reference, {what}");
                y_opt.fill(1);
                qs8::conv2d(&c, &mut y_opt, isa);
                assert_eq!(y_ref, y_opt, "packed, {what}");
                // Split as the thread pool splits a layer: at a pixel inside a row too.
                let cut = (n * oh * ow * 3).div_ceil(7) * co;
                y_opt.fill(1);
                let (lo, hi) = y_opt.split_at_mut(cut);
                qs8::conv2d_part(&c, lo, isa, 0);
                qs8::conv2d_part(&c, hi, isa, cut / co);
                assert_eq!(y_ref, y_opt, "packed in two parts, {what}");
                packed_checked += 1;
            }
        }
        checked += 1;
    }
    assert!(checked > 1000, "only {checked} valid cases");
    assert!(packed_checked > 400, "only {packed_checked} packed cases");
    assert!(
        dw_checked > 200,
        "only {dw_checked} tap-major depthwise cases"
    );
}

#[test]
fn dense_matches_reference_on_grid() {
    let mut r = Lcg(0x5EED_0001);
    for case in 0..600 {
        let rows = r.pick(&[1, 2, 3]);
        let k = r.pick(&[1, 2, 7, 15, 16, 17, 31, 32, 33, 64, 100, 257, 640]);
        let m = r.pick(&[1, 3, 10, 12, 16, 33, 40]);
        let x = r.i8s(rows * k);
        let w = r.i8s(m * k);
        let bias: Option<Vec<i32>> =
            (r.below(2) == 0).then(|| (0..m).map(|_| r.next() as i32 % 9_999).collect());
        let (mut mu, mut s) = (Vec::new(), Vec::new());
        let q = quant(&mut r, m, &mut mu, &mut s);
        // Half the cases with kiln's compact requantization arrays (i16 multipliers, i8 shifts).
        let (mu16, s8): (Vec<i16>, Vec<i8>) = (
            (0..q.multiplier.len())
                .map(|c| (q.multiplier.get(c) >> 16) as i16)
                .collect(),
            (0..q.multiplier.len())
                .map(|c| q.shift_of(c) as i8)
                .collect(),
        );
        let q = if r.below(2) == 0 {
            QuantParams {
                multiplier: Multipliers::I16(&mu16),
                shift: Shifts::I8(&s8),
                ..q
            }
        } else {
            q
        };
        let mut y_ref = vec![0i8; rows * m];
        let mut y_opt = vec![1i8; rows * m];
        reference::dense(&x, k, &w, m, bias.as_deref(), &mut y_ref, &q);
        opt::dense(&x, k, &w, m, bias.as_deref(), &mut y_opt, &q);
        assert_eq!(y_ref, y_opt, "case {case}: rows {rows} k {k} m {m}");
        if q.weight_zp == 0 {
            let (pw, fb) = packed(&w, m, k, bias.as_deref(), q.input_zp);
            y_opt.fill(1);
            qs8::reference_dense(&x, k, &pw, m, &fb, &mut y_opt, &q);
            assert_eq!(
                y_ref, y_opt,
                "packed reference, case {case}: rows {rows} k {k} m {m}"
            );
            for isa in Isa::available() {
                y_opt.fill(1);
                qs8::dense(&x, k, &pw, m, &fb, &mut y_opt, &q, isa);
                assert_eq!(
                    y_ref,
                    y_opt,
                    "packed, case {case}: rows {rows} k {k} m {m} isa {}",
                    isa.name()
                );
            }
        }
    }
}

/// Windows too large for the stack patch (one row per call, or the packed reference) and
/// wide layers (many panels, past the cached requantization constants).
#[test]
fn packed_conv_with_large_windows_and_many_channels() {
    let mut r = Lcg(0xB16_0001);
    for &(ci, kh, co) in &[(512, 3, 20), (2048, 3, 5), (20000, 1, 3), (8, 1, 1100)] {
        let (h, wd) = (3, 3);
        let x = r.i8s(h * wd * ci);
        let w = r.i8s(co * kh * kh * ci);
        let bias: Vec<i32> = (0..co).map(|_| r.next() as i32 % 50_000).collect();
        let (mut m, mut s) = (Vec::new(), Vec::new());
        let mut q = quant(&mut r, co, &mut m, &mut s);
        q.weight_zp = 0;
        let geo = ConvGeom {
            pad: [kh / 2; 4],
            ..ConvGeom::default()
        };
        let (xs, ws, ys) = ([1, h, wd, ci], [co, kh, kh, ci], [1, h, wd, co]);
        let mut y_ref = vec![0i8; h * wd * co];
        reference::conv2d(&x, xs, &w, ws, Some(&bias), &mut y_ref, ys, &geo, &q);
        let (pw, fb) = packed(&w, co, kh * kh * ci, Some(&bias), q.input_zp);
        let sh = qs8::ConvShapes {
            x: xs,
            w: ws,
            y: ys,
        };
        for isa in Isa::available() {
            let mut y = vec![1i8; h * wd * co];
            let c = qs8::Conv {
                x: &x,
                w: &pw,
                bias: &fb[..],
                s: sh,
                geo,
                q: &q,
            };
            qs8::conv2d(&c, &mut y, isa);
            assert_eq!(y_ref, y, "ci {ci} k {kh} co {co} isa {}", isa.name());
        }
    }
}

/// The vector requantization against the scalar one over extreme accumulators, multipliers,
/// shifts, zero points, clamps and both roundings.
#[test]
fn requantization_paths_match_scalar() {
    let mut r = Lcg(0x0DD_BA11);
    let accs = [
        i32::MIN,
        i32::MIN + 1,
        -(1 << 30),
        -65_537,
        -1,
        0,
        1,
        2,
        3,
        65_535,
        1 << 30,
        i32::MAX - 1,
        i32::MAX,
    ];
    let mults = [
        0,
        1,
        1 << 14,
        (1 << 30) - 1,
        1 << 30,
        1_518_500_250,
        i32::MAX,
        // Not from TFLite's quantizer, but legal in a file: negative, and the one multiplier
        // whose high product saturates (the step-by-step vector path).
        -(1 << 30),
        i32::MIN,
    ];
    let mut total = 0;
    for rounding in [Rounding::Double, Rounding::Single] {
        for shift in -31..=30 {
            for round in 0..40 {
                let mut acc = [0i32; NR];
                let mut pq = PanelQ::ZERO;
                #[allow(clippy::needless_range_loop)] // five parallel arrays
                for i in 0..NR {
                    acc[i] = if round % 2 == 0 {
                        r.pick(&accs)
                    } else {
                        (r.next() as i32) << r.below(9)
                    };
                    pq.bias[i] = r.pick(&[0, 0, 1, -1, i32::MIN, i32::MAX, 12_345]);
                    pq.mult[i] = if round % 3 == 0 {
                        r.pick(&mults)
                    } else {
                        (r.next() as i32) << 7 & i32::MAX
                    };
                    pq.shift[i] = if round % 5 == 0 {
                        r.pick(&[-31, 0, 30])
                    } else {
                        shift
                    };
                }
                let m = [1i32];
                let s = [0i32];
                let lo = r.pick(&[-128, -128, -50, 0]);
                let q = QuantParams {
                    input_zp: 0,
                    weight_zp: 0,
                    output_zp: r.pick(&[-128, 0, 127, 9]),
                    multiplier: Multipliers::I32(&m),
                    shift: Shifts::I32(&s),
                    act: [lo, r.pick(&[127, 127, 60])],
                    rounding,
                };
                let nr = if round % 7 == 0 { 1 + r.below(NR) } else { NR };
                let mut want = vec![0i8; nr];
                qs8::requantize_portable(&acc, &pq, &q, &mut want);
                for isa in Isa::available() {
                    let mut got = vec![0x55i8; nr];
                    qs8::requantize(isa)(&acc, &pq, &q, &mut got);
                    assert_eq!(
                        want,
                        got,
                        "isa {} {rounding:?} acc {acc:?} pq {:?} {:?} {:?}",
                        isa.name(),
                        pq.bias,
                        pq.mult,
                        pq.shift
                    );
                }
                total += 1;
            }
        }
    }
    assert!(total > 4000);
}

#[test]
fn every_dot_product_path_matches_portable() {
    let mut r = Lcg(7);
    let dot = simd::best();
    for n in 0..=300usize {
        let a = r.i8s(n);
        let b = r.i8s(n);
        for (za, zb) in [(0, 0), (-128, 0), (127, -128), (-128, 127), (13, 3)] {
            assert_eq!(
                dot(&a, &b, za, zb),
                simd::dot_portable(&a, &b, za, zb),
                "n {n} zp {za} {zb} isa {}",
                simd::isa()
            );
        }
    }
}

/// The vector int8 add/sub against TFLite's scalar arithmetic (`add_one`): every length up to
/// 40 (vector body and tail), zero points, multipliers and shifts at their corners.
#[test]
fn int8_add_paths_match_scalar() {
    use kiln_runtime::kernels::reference_i8::{add_one, AddParams};
    use kiln_runtime::ops::AddQuant;
    let mut r = Lcg(0xADD_0001);
    let mut vector_runs = 0;
    for case in 0..600 {
        let n = r.below(41);
        let a = r.i8s(n);
        let b = r.i8s(n);
        let mult = |r: &mut Lcg| {
            let odd = 1_073_741_824 + (r.next() as i32 & 0xFFFF);
            (r.pick(&[0, 1 << 30, i32::MAX, odd]), -(r.below(32) as i32))
        };
        let p = AddParams {
            zp: [
                r.pick(&[-128, 0, 127, 3]),
                r.pick(&[-128, 0, 127, -9]),
                r.pick(&[-128, 0, 127]),
            ],
            q: AddQuant {
                left_shift: r.pick(&[20, 20, 0, 7]),
                mult: [mult(&mut r), mult(&mut r), mult(&mut r)],
            },
            act: [r.pick(&[-128, -128, -20]), r.pick(&[127, 127, 50])],
            subtract: r.below(2) == 0,
        };
        let want: Vec<i8> = a.iter().zip(&b).map(|(&x, &z)| add_one(x, z, &p)).collect();
        for isa in Isa::available() {
            let mut got = vec![0x55i8; n];
            if qs8::add_same_shape(&a, &b, &mut got, &p, isa) {
                assert_eq!(want, got, "case {case}: n {n} {p:?} isa {}", isa.name());
                vector_runs += 1;
            }
        }
    }
    if Isa::detect() != Isa::Portable && cfg!(target_arch = "x86_64") {
        assert!(vector_runs >= 600, "the vector add ran {vector_runs} times");
    }
    // Every input value of both inputs, against multipliers drawn from the whole range TFLite
    // produces ([2^30, 2^31)) and the shifts its adds use, left shift 20 (the 32-bit path).
    for case in 0..300 {
        let a: Vec<i8> = (0..256).map(|v| (v as u8) as i8).collect();
        let mut b = a.clone();
        b.rotate_left(r.below(256));
        // Half with ties: `(v - z)·m·2^20` exactly halfway between two outputs of the right
        // shift `s` for odd `v - z` when `m = 2^30 + 2^(10 + s)`, or just beside it.
        let mult = |r: &mut Lcg| {
            let s = r.below(22) as i32;
            let m = if r.below(2) == 0 {
                (1 << 30) + (r.next() as i32 & 0x3FFF_FFFF)
            } else {
                // (+1, +2: one and two steps of `d` off the tie.)
                (1 << 30) + (1 << (10 + s).min(29)) + r.below(3) as i32
            };
            (m, -s)
        };
        let p = AddParams {
            zp: [r.i8s(1)[0] as i32, r.i8s(1)[0] as i32, r.i8s(1)[0] as i32],
            q: AddQuant {
                left_shift: 20,
                mult: [mult(&mut r), mult(&mut r), mult(&mut r)],
            },
            act: [-128, 127],
            subtract: r.below(2) == 0,
        };
        let want: Vec<i8> = a.iter().zip(&b).map(|(&x, &z)| add_one(x, z, &p)).collect();
        for isa in Isa::available() {
            let mut got = vec![0x55i8; 256];
            if qs8::add_same_shape(&a, &b, &mut got, &p, isa) {
                assert_eq!(
                    want,
                    got,
                    "all-values case {case}: {p:?} isa {}",
                    isa.name()
                );
            }
        }
    }
}

/// Zeroes about `density` of... keeps about `density` of `w` (the rest set to zero), with
/// some rows all zero, some long zero runs (past the 4-bit gaps), some rows full.
fn sparse_weights(r: &mut Lcg, w: &mut [i8], k: usize) {
    let density = r.pick(&[0.0, 0.02, 0.1, 0.2, 0.5, 1.0]);
    for row in w.chunks_mut(k.max(1)) {
        let row_density = match r.below(8) {
            0 => 0.0,
            1 => 1.0,
            _ => density,
        };
        for v in row.iter_mut() {
            if (r.next() % 1000) as f64 >= row_density * 1000.0 || *v == 0 {
                *v = 0;
            }
        }
    }
}

/// `bias - zx·Σw`: the bias sparse weights carry.
fn sparse_bias(w: &[i8], o: usize, k: usize, bias: Option<&[i32]>, zx: i32) -> Vec<i32> {
    (0..o)
        .map(|c| {
            let s = w[c * k..][..k]
                .iter()
                .fold(0i32, |a, &v| a.wrapping_add(v as i32));
            bias.map_or(0, |b| b[c]).wrapping_sub(zx.wrapping_mul(s))
        })
        .collect()
}

#[test]
fn sparse_conv_and_dense_match_reference_on_grid() {
    use kiln_runtime::kernels::sparse;
    let mut r = Lcg(0x5BA5_5E01);
    let (mut convs, mut denses, mut wide) = (0, 0, 0);
    for case in 0..600 {
        let n = r.pick(&[1, 2]);
        let h = r.pick(&[1, 3, 6]);
        let wd = r.pick(&[1, 4, 7]);
        let ci: usize = r.pick(&[1, 3, 16, 33, 300]);
        let co = r.pick(&[1, 5, 16, 17]);
        let (kh, kw) = (r.pick(&[1, 3]), r.pick(&[1, 2, 3]));
        let stride = [r.pick(&[1, 2]), r.pick(&[1, 2])];
        let dilation = [r.pick(&[1, 1, 2]), 1];
        let pad = [r.below(2), r.below(3), r.below(2), r.below(2)];
        let k = kh * kw * ci;
        let eff_h = (kh - 1) * dilation[0] + 1;
        if k > sparse::MAX_K || h + pad[0] + pad[2] < eff_h || wd + pad[1] + pad[3] < kw {
            continue;
        }
        let oh = (h + pad[0] + pad[2] - eff_h) / stride[0] + 1;
        let ow = (wd + pad[1] + pad[3] - kw) / stride[1] + 1;
        let x = r.i8s(n * h * wd * ci);
        let mut w = r.i8s(co * k);
        sparse_weights(&mut r, &mut w, k);
        let bias: Option<Vec<i32>> = (r.below(3) > 0).then(|| {
            (0..co)
                .map(|_| (r.next() as i32 % 40_000) - 20_000)
                .collect()
        });
        let (mut m, mut s) = (Vec::new(), Vec::new());
        let mut q = quant(&mut r, co, &mut m, &mut s);
        q.weight_zp = 0;
        let blob = sparse::encode(&w, co, k).expect("rows fit");
        assert!(sparse::validate(&blob, co, k), "case {case}: blob refused");
        assert_eq!(sparse::decode(&blob, co, k), w, "case {case}: round trip");
        wide += (blob[0] == 2) as usize;
        let fb = sparse_bias(&w, co, k, bias.as_deref(), q.input_zp);
        let geo = ConvGeom {
            stride,
            dilation,
            pad,
            groups: 1,
        };
        let (xs, ys) = ([n, h, wd, ci], [n, oh, ow, co]);
        let mut y_ref = vec![0i8; n * oh * ow * co];
        reference::conv2d(
            &x,
            xs,
            &w,
            [co, kh, kw, ci],
            bias.as_deref(),
            &mut y_ref,
            ys,
            &geo,
            &q,
        );
        // Every instruction set; whole, and in two parts as the thread pool splits a layer.
        let sc = sparse::SparseConv {
            x: &x,
            xs,
            blob: &blob,
            kernel: (kh, kw),
            bias: &fb,
            ys,
            geo: &geo,
            q: &q,
        };
        for isa in Isa::available() {
            let what = format!(
                "case {case}: sparse conv x {xs:?} w [{co}, {kh}, {kw}, {ci}] isa {}",
                isa.name()
            );
            let mut y = vec![1i8; y_ref.len()];
            sparse::conv2d_part(&sc, &mut y, 0, isa);
            assert_eq!(y, y_ref, "{what}");
            let split = (n * oh * ow / 2) * co;
            let (a, b) = y.split_at_mut(split);
            a.fill(1);
            b.fill(1);
            sparse::conv2d_part(&sc, a, 0, isa);
            sparse::conv2d_part(&sc, b, split / co, isa);
            assert_eq!(y, y_ref, "{what}, in two parts");
        }
        convs += 1;
        // The same matrix as a dense layer over `n` rows of `k`.
        let xd = r.i8s(n * k);
        let mut d_ref = vec![0i8; n * co];
        reference::dense(&xd, k, &w, co, bias.as_deref(), &mut d_ref, &q);
        let mut d = vec![1i8; n * co];
        sparse::dense(&xd, k, &blob, co, &fb, &mut d, &q);
        assert_eq!(d, d_ref, "case {case}: sparse dense [{co}, {k}]");
        denses += 1;
    }
    assert!(
        convs > 200 && denses > 200 && wide > 0,
        "{convs} convs, {denses} denses, {wide} with 2-byte counts"
    );
}
