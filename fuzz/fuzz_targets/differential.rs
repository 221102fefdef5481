//! Differential: a small valid int8 graph built from the fuzz input (conv or depthwise conv,
//! then dense, with fuzzed shapes, strides, padding, zero points, per-channel multipliers,
//! roundings and weights) run by the optimized and by the portable reference kernels: the
//! outputs must agree bit for bit.
#![no_main]
use kiln_runtime::kernels::qs8;
use kiln_runtime::ops::{Act, ConvGeom, ConvParams, DenseParams, OpDef, ReshapeParams, Rounding};
use kiln_runtime::writer::{write, AlignedBuf, ModelSpec, OpSpec, TensorData, TensorSpec};
use kiln_runtime::{DType, Kernels, Model, OpKind, Quant, Session};
use libfuzzer_sys::fuzz_target;

struct Bytes<'a>(&'a [u8], usize);
impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let v = self.0.get(self.1).copied().unwrap_or(0);
        self.1 += 1;
        v
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.u8() as usize % (hi - lo + 1)
    }
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.u8() as i8).collect()
    }
}

fn q(scale: f32, zero_point: i32) -> Quant {
    Quant::PerTensor { scale, zero_point }
}

fn tensor(
    name: &str,
    dtype: DType,
    shape: Vec<usize>,
    data: TensorData,
    quant: Quant,
) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype,
        shape,
        data,
        quant,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Bytes(data, 0);
    let (h, w, ci) = (r.range(1, 9), r.range(1, 9), r.range(1, 8));
    let depthwise = r.u8() % 2 == 0;
    let (kh, kw) = (r.range(1, 4), r.range(1, 4));
    let (sh, sw) = (r.range(1, 3), r.range(1, 3));
    let pad = [
        r.range(0, kh - 1),
        r.range(0, kw - 1),
        r.range(0, kh - 1),
        r.range(0, kw - 1),
    ];
    let co = if depthwise {
        ci * r.range(1, 2)
    } else {
        r.range(1, 9)
    };
    let groups = if depthwise { ci } else { 1 };
    let (oh, ow) = (
        (h + pad[0] + pad[2]).saturating_sub(kh) / sh + 1,
        (w + pad[1] + pad[3]).saturating_sub(kw) / sw + 1,
    );
    if h + pad[0] + pad[2] < kh || w + pad[1] + pad[3] < kw {
        return;
    }
    let cig = ci / groups;
    let zx = r.u8() as i8 as i32;
    let zy = r.u8() as i8 as i32;
    let rounding = (r.u8() % 2) as i32;
    let per_channel = r.u8() % 2 == 0;
    let nm = if per_channel { co } else { 1 };
    let mult: Vec<i32> = (0..nm)
        .map(|_| (1 << 30) + ((r.u8() as i32) << 20))
        .collect();
    let shift: Vec<i32> = (0..nm).map(|_| -(r.range(0, 12) as i32)).collect();
    let wts = r.i8s(co * kh * kw * cig);
    let bias: Vec<i32> = (0..co).map(|_| (r.u8() as i8 as i32) * 37).collect();
    // Half the one-group convs in the packed layout with a folded bias (what `kiln convert`
    // writes), the rest natural.
    let packed = groups == 1 && r.u8() % 2 == 0;
    let (wts, bias) = if packed {
        let k = kh * kw * cig;
        let mut pw = vec![0i8; wts.len()];
        qs8::pack(&wts, co, k, &mut pw);
        let mut fb = vec![0i32; co];
        qs8::fold_bias(&wts, co, k, Some(&bias), zx, &mut fb);
        (pw, fb)
    } else {
        (wts, bias)
    };
    let m = r.range(1, 6);
    let wd = r.i8s(m * oh * ow * co);
    let x = r.i8s(h * w * ci);
    let i32b = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let i8b = |v: &[i8]| v.iter().map(|&x| x as u8).collect::<Vec<u8>>();
    let c = TensorData::Constant;
    let conv_out = h * w * ci; // arena bytes of x, rounded below
    let align = |v: usize| v.div_ceil(16) * 16;
    let y1 = align(conv_out);
    let y2 = align(y1 + oh * ow * co).max(0);
    let tensors = vec![
        tensor(
            "x",
            DType::I8,
            vec![1, h, w, ci],
            TensorData::Arena { offset: 0 },
            q(0.5, zx),
        ),
        tensor(
            "w",
            DType::I8,
            vec![co, kh, kw, cig],
            c(i8b(&wts)),
            q(0.25, 0),
        ),
        tensor("b", DType::I32, vec![co], c(i32b(&bias)), Quant::None),
        tensor("m", DType::I32, vec![nm], c(i32b(&mult)), Quant::None),
        tensor("s", DType::I32, vec![nm], c(i32b(&shift)), Quant::None),
        tensor(
            "y",
            DType::I8,
            vec![1, oh, ow, co],
            TensorData::Arena { offset: y1 },
            q(0.125, zy),
        ),
        tensor(
            "flat",
            DType::I8,
            vec![1, oh * ow * co],
            TensorData::Arena { offset: y1 },
            q(0.125, zy),
        ),
        tensor(
            "wd",
            DType::I8,
            vec![m, oh * ow * co],
            c(i8b(&wd)),
            q(0.25, 0),
        ),
        tensor("md", DType::I32, vec![1], c(i32b(&mult[..1])), Quant::None),
        tensor("sd", DType::I32, vec![1], c(i32b(&shift[..1])), Quant::None),
        tensor(
            "z",
            DType::I8,
            vec![1, m],
            TensorData::Arena { offset: 0 },
            q(0.5, zx),
        ),
    ];
    let _ = y2;
    let rounding = if rounding == 1 {
        Rounding::Single
    } else {
        Rounding::Double
    };
    let geom = ConvGeom {
        stride: [sh, sw],
        dilation: [1, 1],
        pad,
        groups,
    };
    let conv = ConvParams {
        geom,
        act: Act::INT8_NONE,
        rounding,
        packed,
        sparse: false,
    }
    .encode();
    let dense = DenseParams {
        act: Act::INT8_NONE,
        rounding,
        packed: false,
        sparse: false,
    }
    .encode();
    let spec = ModelSpec {
        tensors,
        ops: vec![
            OpSpec {
                kind: OpKind::Conv2d,
                name: "conv".into(),
                inputs: vec![Some(0), Some(1), Some(2), Some(3), Some(4)],
                outputs: vec![5],
                params: conv,
            },
            OpSpec {
                kind: OpKind::Reshape,
                name: "flat".into(),
                inputs: vec![Some(5)],
                outputs: vec![6],
                params: ReshapeParams.encode(),
            },
            OpSpec {
                kind: OpKind::Dense,
                name: "fc".into(),
                inputs: vec![Some(6), Some(7), None, Some(8), Some(9)],
                outputs: vec![10],
                params: dense,
            },
        ],
        inputs: vec![0],
        outputs: vec![10, 5],
    };
    let Ok(bytes) = write(&spec) else { return };
    let buf = AlignedBuf::new(&bytes);
    // Parameter combinations the runtime does not take are refused at load; the point here is
    // what happens to the ones it takes.
    let Ok(model) = Model::from_bytes(buf.as_slice()) else {
        return;
    };
    let run = |kernels: Kernels| {
        let mut arena = AlignedBuf::zeroed(model.arena_size());
        let mut s = Session::new(&model, arena.as_mut_slice()).expect("arena");
        s.set_kernels(kernels);
        s.input_bytes_mut(0)
            .expect("input")
            .copy_from_slice(&i8b(&x));
        s.invoke().expect("a validated model invokes");
        (
            s.output_bytes(0).expect("out").to_vec(),
            s.output_bytes(1).expect("out").to_vec(),
        )
    };
    let (a, b) = (run(Kernels::Optimized), run(Kernels::Reference));
    assert_eq!(a, b, "optimized and reference kernels disagree");
});
