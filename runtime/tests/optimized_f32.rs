//! The f32 microkernels (packed conv and dense, depthwise) against the portable reference
//! kernels over an edge-case grid, on every instruction set this CPU has (natively, and under
//! qemu-aarch64 in `scripts/firmware.sh`). FMA paths round once per multiply-add where the
//! reference rounds twice, so the bound is the one summation error analysis gives for two sums
//! of the same `K` products: `|a - b| ≤ 2·(K + 1)·2^-24·(Σ|x·w| + |bias|)`.

use kiln_runtime::kernels::f32gemm::{self, ConvF32};
use kiln_runtime::kernels::isa::Isa;
use kiln_runtime::kernels::qs8::ConvShapes;
use kiln_runtime::kernels::reference_f32 as reference;
use kiln_runtime::ops::ConvGeom;

mod common;
use common::Lcg;

/// Checks `got` against `want` with the bound above; `mag[i]` is `Σ|x·w| + |bias|` of output `i`.
fn close(want: &[f32], got: &[f32], mag: &[f32], k: usize, what: &str) {
    for (i, ((&a, &b), &m)) in want.iter().zip(got).zip(mag).enumerate() {
        let bound = 2.0 * (k as f32 + 1.0) * f32::EPSILON / 2.0 * m + f32::MIN_POSITIVE;
        assert!(
            (a - b).abs() <= bound,
            "{what}: output {i}: reference {a} vs {b} (bound {bound})"
        );
    }
}

/// Every SIMD path (AVX-512, AVX2, NEON) fuses the same multiply-adds in the same order, so
/// they give the same bits: checked here between the paths this CPU has (and between the host
/// and the NEON build by `scripts/firmware.sh`'s Raspberry Pi comparison). The portable twin
/// rounds twice and is held to the bound only.
fn same_bits(first: &mut Option<Vec<f32>>, got: &[f32], isa: Isa, what: &str) {
    if isa == Isa::Portable {
        return;
    }
    match first {
        None => *first = Some(got.to_vec()),
        Some(f) => {
            let a: Vec<u32> = f.iter().map(|v| v.to_bits()).collect();
            let b: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(a, b, "SIMD paths differ: {what}");
        }
    }
}

#[test]
fn f32_conv_and_depthwise_match_reference_on_grid() {
    let mut r = Lcg(0xF32C_0001);
    let (mut packed_n, mut dw_n) = (0, 0);
    for case in 0..700 {
        let n = r.pick(&[1, 1, 2]);
        let h = r.pick(&[1, 3, 5, 8]);
        let wd = r.pick(&[1, 2, 6, 7]);
        let depthwise = r.below(3) == 0;
        let ci: usize = r.pick(&[1, 3, 8, 16, 17, 32, 40, 64, 81]);
        let (groups, co) = if depthwise {
            (ci, ci)
        } else {
            (1, r.pick(&[1, 5, 16, 17, 40]))
        };
        let cig = ci / groups;
        let (kh, kw) = (r.pick(&[1, 2, 3]), r.pick(&[1, 3, 4]));
        let stride = [r.pick(&[1, 2]), r.pick(&[1, 2])];
        let dilation = [r.pick(&[1, 1, 2]), r.pick(&[1, 1, 2])];
        let pad = [r.below(2), r.below(3), r.below(2), r.below(2)];
        let (eh, ew) = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1);
        if h + pad[0] + pad[2] < eh || wd + pad[1] + pad[3] < ew {
            continue;
        }
        let oh = (h + pad[0] + pad[2] - eh) / stride[0] + 1;
        let ow = (wd + pad[1] + pad[3] - ew) / stride[1] + 1;
        let x = r.f32s(n * h * wd * ci);
        let w = r.f32s(co * kh * kw * cig);
        let bias = (r.below(3) > 0).then(|| r.f32s(co));
        let act = r.pick(&[[f32::NEG_INFINITY, f32::INFINITY], [0.0, 6.0], [-1.0, 1.0]]);
        let geo = ConvGeom {
            stride,
            dilation,
            pad,
            groups,
        };
        let (xs, ws, ys) = ([n, h, wd, ci], [co, kh, kw, cig], [n, oh, ow, co]);
        let len = n * oh * ow * co;
        let mut want = vec![0f32; len];
        reference::conv2d(&x, xs, &w, ws, bias.as_deref(), &mut want, ys, &geo, act);
        // Σ|x·w| + |bias| per output: the reference on absolute values, unclamped.
        let (xa, wa): (Vec<f32>, Vec<f32>) = (
            x.iter().map(|v| v.abs()).collect(),
            w.iter().map(|v| v.abs()).collect(),
        );
        let ba = bias
            .as_ref()
            .map(|b| b.iter().map(|v| v.abs()).collect::<Vec<_>>());
        let mut mag = vec![0f32; len];
        let open = [f32::NEG_INFINITY, f32::INFINITY];
        reference::conv2d(&xa, xs, &wa, ws, ba.as_deref(), &mut mag, ys, &geo, open);
        let s = ConvShapes {
            x: xs,
            w: ws,
            y: ys,
        };
        let k = kh * kw * cig;
        // The weights packed once (tap-major for depthwise, `pack16x1` otherwise); the packed
        // reference reads them to exactly the natural reference's outputs.
        let mut pw = vec![0f32; w.len()];
        if depthwise {
            kiln_runtime::kernels::qs8::pack_depthwise(&w, co, kh * kw, &mut pw);
        } else {
            f32gemm::pack(&w, co, k, &mut pw);
        }
        let c = ConvF32 {
            x: &x,
            w: &pw,
            bias: bias.as_deref(),
            s,
            geo,
            act,
        };
        let case_what = format!(
            "case {case}: x {xs:?} w {ws:?} stride {stride:?} dil {dilation:?} pad {pad:?}"
        );
        let mut got = vec![f32::NAN; len];
        if depthwise {
            f32gemm::reference_depthwise(&c, &mut got);
            assert_eq!(want, got, "tap-major reference, {case_what}");
        } else {
            f32gemm::reference_conv2d(&c, &mut got);
            assert_eq!(want, got, "packed reference, {case_what}");
        }
        let mut simd: Option<Vec<f32>> = None;
        for isa in Isa::available() {
            let what = format!("{case_what} isa {}", isa.name());
            got.fill(f32::NAN);
            if depthwise {
                f32gemm::depthwise(&c, &mut got, isa);
                dw_n += 1;
            } else {
                f32gemm::conv2d(&c, &mut got, isa);
                packed_n += 1;
            }
            close(&want, &got, &mag, k, &what);
            same_bits(&mut simd, &got, isa, &what);
            // Split as the thread pool splits a layer (at a pixel inside a row too): the same
            // bits.
            let co = ws[0];
            let cut = (len / co.max(1) * 3).div_ceil(7) * co;
            let mut parts = vec![f32::NAN; len];
            let (lo, hi) = parts.split_at_mut(cut);
            if depthwise {
                f32gemm::depthwise_part(&c, lo, isa, 0);
                f32gemm::depthwise_part(&c, hi, isa, cut / co.max(1));
            } else {
                f32gemm::conv2d_part(&c, lo, isa, 0);
                f32gemm::conv2d_part(&c, hi, isa, cut / co.max(1));
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
            assert_eq!(bits(&got), bits(&parts), "in two parts: {what}");
        }
    }
    assert!(
        packed_n > 400 && dw_n > 200,
        "{packed_n} packed, {dw_n} depthwise"
    );
}

#[test]
fn f32_dense_matches_reference_on_grid() {
    let mut r = Lcg(0xF32D_0002);
    for case in 0..400 {
        let rows = r.pick(&[1, 2, 4, 5, 9]);
        let k = r.pick(&[1, 2, 7, 16, 33, 128, 640]);
        let m = r.pick(&[1, 2, 10, 16, 17, 128]);
        let x = r.f32s(rows * k);
        let w = r.f32s(m * k);
        let bias = (r.below(2) == 0).then(|| r.f32s(m));
        let act = r.pick(&[[f32::NEG_INFINITY, f32::INFINITY], [0.0, f32::INFINITY]]);
        let mut want = vec![0f32; rows * m];
        reference::dense(&x, k, &w, m, bias.as_deref(), &mut want, act);
        let (xa, wa): (Vec<f32>, Vec<f32>) = (
            x.iter().map(|v| v.abs()).collect(),
            w.iter().map(|v| v.abs()).collect(),
        );
        let ba = bias
            .as_ref()
            .map(|b| b.iter().map(|v| v.abs()).collect::<Vec<_>>());
        let mut mag = vec![0f32; rows * m];
        let open = [f32::NEG_INFINITY, f32::INFINITY];
        reference::dense(&xa, k, &wa, m, ba.as_deref(), &mut mag, open);
        let mut pw = vec![0f32; w.len()];
        f32gemm::pack(&w, m, k, &mut pw);
        let mut got = vec![f32::NAN; rows * m];
        f32gemm::reference_dense(&x, k, &pw, m, bias.as_deref(), &mut got, act);
        assert_eq!(want, got, "packed reference, case {case}");
        let mut simd: Option<Vec<f32>> = None;
        for isa in Isa::available() {
            got.fill(f32::NAN);
            f32gemm::dense(&x, k, &pw, m, bias.as_deref(), &mut got, act, isa);
            let what = format!("case {case}: rows {rows} k {k} m {m} isa {}", isa.name());
            close(&want, &got, &mag, k, &what);
            same_bits(&mut simd, &got, isa, &what);
        }
    }
}

/// Every row of a batched dense goes through the same code: equal rows give equal bits,
/// wherever they sit in the batch (a summation order must not depend on the tile).
#[test]
fn f32_dense_rows_do_not_depend_on_their_batch_position() {
    let mut r = Lcg(0xF32D_0003);
    for &(k, m) in &[(640, 128), (33, 17), (128, 8)] {
        let row = r.f32s(k);
        let w = r.f32s(m * k);
        let mut pw = vec![0f32; w.len()];
        f32gemm::pack(&w, m, k, &mut pw);
        let rows = 7;
        let x: Vec<f32> = (0..rows).flat_map(|_| row.iter().copied()).collect();
        for isa in Isa::available() {
            let mut y = vec![0f32; rows * m];
            let open = [f32::NEG_INFINITY, f32::INFINITY];
            f32gemm::dense(&x, k, &pw, m, None, &mut y, open, isa);
            for i in 1..rows {
                assert_eq!(
                    y[..m],
                    y[i * m..(i + 1) * m],
                    "row {i}, k {k} m {m} isa {}",
                    isa.name()
                );
            }
        }
    }
}

#[test]
fn f32_pooling_paths_match_reference_bit_for_bit() {
    use kiln_runtime::ops::PoolWindow;
    let mut r = Lcg(0xF32B_0003);
    let mut vector_runs = 0;
    for case in 0..400 {
        let (n, h, w) = (
            r.pick(&[1, 2]),
            r.pick(&[1, 3, 5, 8]),
            r.pick(&[1, 4, 5, 9]),
        );
        let c = r.pick(&[1, 3, 16, 17, 48, 64, 70]);
        let kernel = [r.pick(&[1, 2, 3]).min(h), r.pick(&[1, 2, 3, 5]).min(w)];
        let stride = [r.pick(&[1, 2]), r.pick(&[1, 2])];
        let pad = [r.below(2), r.below(2), r.below(2), r.below(2)];
        let p = PoolWindow {
            kernel,
            stride,
            pad,
            ceil_extra: [0, 0],
            count_include_pad: r.below(2) == 0,
        };
        let oh = (h + pad[0] + pad[2] - kernel[0]) / stride[0] + 1;
        let ow = (w + pad[1] + pad[3] - kernel[1]) / stride[1] + 1;
        let mut x = r.f32s(n * h * w * c);
        if case % 5 == 0 {
            // Max keeps the accumulator against a NaN, as f32::max does (the last pixel: the
            // last one its window reads).
            let last = x.len() - 1;
            x[last] = f32::NAN;
        }
        let act = r.pick(&[[f32::NEG_INFINITY, f32::INFINITY], [0.0, 6.0]]);
        let is_max = r.below(2) == 0;
        let (xs, ys) = ([n, h, w, c], [n, oh, ow, c]);
        let mut want = vec![0f32; n * oh * ow * c];
        reference::pool2d(&x, xs, &mut want, ys, &p, act, is_max);
        for isa in Isa::available() {
            let mut got = vec![1f32; want.len()];
            f32gemm::pool2d(&x, xs, &mut got, ys, &p, act, is_max, isa);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
            assert_eq!(
                bits(&want),
                bits(&got),
                "case {case}: x {xs:?} {p:?} max {is_max} isa {}",
                isa.name()
            );
            vector_runs += 1;
        }
    }
    assert!(vector_runs >= 400);
}
