//! The optimized int8 conv / dense kernels (SIMD inner products, hoisted bounds) against the
//! portable reference kernels, bit for bit, over an edge-case grid: odd sizes, padding, strides,
//! dilation, groups and depthwise multipliers, input and weight zero points, per-channel and
//! per-tensor requantization, both roundings, clamps. On aarch64 this exercises NEON (run under
//! qemu-aarch64 by `scripts/firmware.sh`), on x86-64 AVX2 when the CPU has it.

use kiln_runtime::kernels::optimized_i8 as opt;
use kiln_runtime::kernels::reference_i8::{
    self as reference, Multipliers, QuantParams, Rounding, Shifts,
};
use kiln_runtime::kernels::simd;
use kiln_runtime::ops::ConvGeom;

struct Lcg(u32);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0 >> 8
    }
    fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| (self.next() >> 16) as u8 as i8).collect()
    }
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
    for case in 0..1500 {
        let n = r.pick(&[1, 1, 2]);
        let h = r.pick(&[1, 2, 5, 7, 9]);
        let wd = r.pick(&[1, 3, 6, 8]);
        let depthwise = r.below(3) == 0;
        let ci: usize = r.pick(&[1, 2, 3, 8, 16, 17, 33]);
        let (groups, co, cig) = if depthwise {
            let m = r.pick(&[1, 1, 2]);
            (ci, ci * m, 1)
        } else if ci.is_multiple_of(2) && r.below(4) == 0 {
            (2, 2 * r.pick(&[1, 3, 5]), ci / 2)
        } else {
            (1, r.pick(&[1, 4, 9, 16]), ci)
        };
        let kh = r.pick(&[1, 2, 3, 5]);
        let kw = r.pick(&[1, 3, 4]);
        let stride = [r.pick(&[1, 1, 2, 3]), r.pick(&[1, 2])];
        let dilation = [r.pick(&[1, 1, 2]), r.pick(&[1, 1, 2])];
        let pad = [r.below(3), r.below(3), r.below(3), r.below(3)];
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
        );
        assert_eq!(
            y_ref,
            y_opt,
            "case {case}: x {:?} w {:?} stride {stride:?} dil {dilation:?} pad {pad:?} groups {groups} zp {} {} isa {}",
            args.0,
            args.1,
            q.input_zp,
            q.weight_zp,
            simd::isa()
        );
        checked += 1;
    }
    assert!(checked > 1000, "only {checked} valid cases");
}

#[test]
fn dense_matches_reference_on_grid() {
    let mut r = Lcg(0x5EED_0001);
    for case in 0..600 {
        let rows = r.pick(&[1, 2, 3]);
        let k = r.pick(&[1, 2, 7, 15, 16, 17, 31, 32, 33, 64, 100, 257]);
        let m = r.pick(&[1, 3, 10, 12, 16]);
        let x = r.i8s(rows * k);
        let w = r.i8s(m * k);
        let bias: Option<Vec<i32>> =
            (r.below(2) == 0).then(|| (0..m).map(|_| r.next() as i32 % 9_999).collect());
        let (mut mu, mut s) = (Vec::new(), Vec::new());
        let q = quant(&mut r, m, &mut mu, &mut s);
        let mut y_ref = vec![0i8; rows * m];
        let mut y_opt = vec![1i8; rows * m];
        reference::dense(&x, k, &w, m, bias.as_deref(), &mut y_ref, &q);
        opt::dense(&x, k, &w, m, bias.as_deref(), &mut y_opt, &q);
        assert_eq!(
            y_ref,
            y_opt,
            "case {case}: rows {rows} k {k} m {m} isa {}",
            simd::isa()
        );
    }
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
