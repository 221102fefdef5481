//! Packs conv and dense weights into the layouts the runtime's microkernels read: int8 conv
//! (one group) and dense into `pack16x4` with the input zero point folded into the bias
//! (`kiln_runtime::kernels::qs8`), f32 into `pack16x1` (`kiln_runtime::kernels::f32gemm`),
//! depthwise (int8 and f32) tap-major. Weights with a non-zero zero point and f16 weights stay
//! natural. Run by [`crate::emit`] on the graph it writes, so every other pass and the
//! quantizer see natural `[O, ..]` weights.

use crate::ir::{Data, Graph};
use kiln_runtime::kernels::{f32gemm, qs8};
use kiln_runtime::ops::OpParams;
use kiln_runtime::{DType, Quant};

/// Runs the pass; returns how many ops it packed.
pub fn run(g: &mut Graph) -> usize {
    let mut packed = 0;
    for i in 0..g.nodes.len() {
        let n = &g.nodes[i];
        let (Some(x), Some(wt)) = (n.input(0), n.input(1)) else {
            continue;
        };
        let ok = match &n.op {
            OpParams::Conv2d(p) if !p.packed && p.geom.groups > 1 => {
                packed += pack_depthwise(g, i, x, wt) as usize;
                continue;
            }
            OpParams::Conv2d(p) => !p.packed && !p.sparse && p.geom.groups == 1,
            OpParams::Dense(p) => !p.packed && !p.sparse,
            _ => false,
        };
        if !ok {
            continue;
        }
        if g.tensors[x].dtype == DType::F32 {
            packed += pack_f32(g, i, wt) as usize;
            continue;
        }
        if g.tensors[x].dtype != DType::I8 {
            continue;
        }
        let Quant::PerTensor { zero_point: zx, .. } = g.tensors[x].quant else {
            continue;
        };
        {
            let w = &g.tensors[wt];
            if !matches!(w.data, Some(Data::I8(_)))
                || w.dtype != DType::I8
                || w.shape.is_empty()
                || matches!(w.quant, Quant::PerTensor { zero_point, .. } if zero_point != 0)
            {
                continue;
            }
        }
        if g.sparse_weights && sparsify(g, i, zx) {
            packed += 1;
            continue;
        }
        let w = &g.tensors[wt];
        let Some(Data::I8(wv)) = &w.data else {
            continue;
        };
        let o = w.shape[0];
        let k: usize = w.shape[1..].iter().product();
        let Some(bias) = int32_bias(g, i, o) else {
            continue;
        };
        let mut folded = vec![0i32; o];
        qs8::fold_bias(wv, o, k, bias, zx, &mut folded);
        let mut pw = vec![0i8; wv.len()];
        qs8::pack(wv, o, k, &mut pw);
        let (shape, quant) = (w.shape.clone(), w.quant);
        let name = g.nodes[i].name.clone();
        let nw = g.add_tensor(format!("{name}.weights_packed"), DType::I8, shape);
        g.tensors[nw].data = Some(Data::I8(pw));
        g.tensors[nw].quant = quant;
        rewire(g, i, nw, folded, false);
        packed += 1;
    }
    packed
}

/// The int32 bias of node `i` with `o` outputs: `Some(None)` without one, `None` when it is not
/// a constant int32 `[o]`.
fn int32_bias(g: &Graph, i: usize, o: usize) -> Option<Option<&[i32]>> {
    match g.nodes[i].input(2).map(|b| &g.tensors[b]) {
        None => Some(None),
        Some(b) => match &b.data {
            Some(Data::I32(v)) if b.dtype == DType::I32 && v.len() == o => Some(Some(v.as_slice())),
            _ => None,
        },
    }
}

/// Stores the int8 weights of conv or dense `i` (input zero point `zx`) in the sparse layout
/// (`kiln_runtime::kernels::sparse`) when that is smaller than the dense matrix, the bias
/// folded to `bias - zx·Σw`; whether it did.
fn sparsify(g: &mut Graph, i: usize, zx: i32) -> bool {
    use kiln_runtime::kernels::sparse;
    let n = &g.nodes[i];
    let Some(wt) = n.input(1) else { return false };
    let w = &g.tensors[wt];
    let Some(Data::I8(wv)) = &w.data else {
        return false;
    };
    let o = w.shape[0];
    let k: usize = w.shape[1..].iter().product();
    if k == 0 || k > sparse::MAX_K {
        return false;
    }
    let Some(mut blob) = sparse::encode(wv, o, k) else {
        return false;
    };
    // A conv's blob is `[1, KH, KW, L]` (the window in the shape), a dense one's `[1, L]`.
    let shape = match w.shape.as_slice() {
        [_, kh, kw, _] => {
            let l = blob.len().div_ceil(kh * kw);
            blob.resize(l * kh * kw, 0);
            vec![1, *kh, *kw, l]
        }
        [_, _] => vec![1, blob.len()],
        _ => return false,
    };
    if blob.len() >= wv.len() {
        return false;
    }
    let Some(bias) = int32_bias(g, i, o) else {
        return false;
    };
    // Sparse weights fold the input zero point itself (no +128: their kernels read x signed).
    let mut folded = vec![0i32; o];
    kiln_runtime::kernels::qs8::fold_zero_point(wv, o, k, bias, zx, &mut folded);
    let name = g.nodes[i].name.clone();
    let nw = g.add_tensor(format!("{name}.weights_sparse"), DType::U8, shape);
    g.tensors[nw].data = Some(Data::Raw(blob));
    rewire(g, i, nw, folded, true);
    true
}

/// Points int8 conv or dense `i` at its new weights `nw` and folded bias, flagged packed or
/// sparse.
fn rewire(g: &mut Graph, i: usize, nw: usize, folded: Vec<i32>, sparse: bool) {
    let nb = g.add_const_i32(format!("{}.bias_folded", g.nodes[i].name), folded);
    let node = &mut g.nodes[i];
    node.inputs[1] = Some(nw);
    if node.inputs.len() < 3 {
        node.inputs.resize(3, None);
    }
    node.inputs[2] = Some(nb);
    let (packed, sp) = match &mut node.op {
        OpParams::Conv2d(p) => (&mut p.packed, &mut p.sparse),
        OpParams::Dense(p) => (&mut p.packed, &mut p.sparse),
        _ => return,
    };
    *packed = !sparse;
    *sp = sparse;
}

/// Packs the f32 weights of node `i` (weights `wt`); whether it did.
fn pack_f32(g: &mut Graph, i: usize, wt: usize) -> bool {
    let w = &g.tensors[wt];
    let Some(Data::F32(wv)) = &w.data else {
        return false;
    };
    if w.dtype != DType::F32 || w.shape.is_empty() {
        return false;
    }
    let o = w.shape[0];
    let k: usize = w.shape[1..].iter().product();
    let mut pw = vec![0f32; wv.len()];
    f32gemm::pack(wv, o, k, &mut pw);
    let shape = w.shape.clone();
    let name = format!("{}.weights_packed", g.nodes[i].name);
    let nw = g.add_const_f32(name, shape, pw);
    let node = &mut g.nodes[i];
    node.inputs[1] = Some(nw);
    match &mut node.op {
        OpParams::Conv2d(p) => p.packed = true,
        OpParams::Dense(p) => p.packed = true,
        _ => {}
    }
    true
}

/// Transposes the weights of depthwise conv `i` (`[C, KH, KW, 1]`, one output per input
/// channel) to the tap-major layout its kernels read; whether it did.
fn pack_depthwise(g: &mut Graph, i: usize, x: usize, wt: usize) -> bool {
    let OpParams::Conv2d(p) = &g.nodes[i].op else {
        return false;
    };
    let (xs, w) = (&g.tensors[x].shape, &g.tensors[wt]);
    if w.shape.len() != 4 || xs.len() != 4 {
        return false;
    }
    let (c, taps) = (w.shape[0], w.shape[1] * w.shape[2]);
    if w.shape[3] != 1 || xs[3] != c || p.geom.groups != c {
        return false;
    }
    let data = match (&w.data, g.tensors[x].dtype) {
        (Some(Data::I8(v)), DType::I8) if w.dtype == DType::I8 => {
            let mut t = vec![0i8; v.len()];
            qs8::pack_depthwise(v, c, taps, &mut t);
            Data::I8(t)
        }
        (Some(Data::F32(v)), DType::F32) if w.dtype == DType::F32 => {
            let mut t = vec![0f32; v.len()];
            qs8::pack_depthwise(v, c, taps, &mut t);
            Data::F32(t)
        }
        _ => return false,
    };
    let (shape, dtype, quant) = (w.shape.clone(), w.dtype, w.quant);
    let name = format!("{}.weights_packed", g.nodes[i].name);
    let nw = g.add_tensor(name, dtype, shape);
    g.tensors[nw].data = Some(data);
    g.tensors[nw].quant = quant;
    let node = &mut g.nodes[i];
    node.inputs[1] = Some(nw);
    if let OpParams::Conv2d(p) = &mut node.op {
        p.packed = true;
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::ir::Graph;
    use crate::ptq::{quantize, PtqOptions};
    use crate::verify::run_kiln;
    use kiln_quantize::calibrate::Method;
    use kiln_runtime::ops::{ConvGeom, ConvParams, DenseParams, OpParams, ReshapeParams};
    use kiln_runtime::DType;

    /// x [1,6,6,5] -> conv 3x3 (7) -> depthwise 3x3 -> flatten -> dense (9): every packed layout,
    /// partial panels and `K mod 4 != 0` included.
    fn graph() -> Graph {
        let mut g = Graph::default();
        let x = g.add_tensor("x", DType::F32, vec![1, 6, 6, 5]);
        g.inputs.push(x);
        let v = |n: usize, s: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 37 + s * 11) % 53) as f32 / 26.5) - 1.0)
                .collect()
        };
        let pad = ConvGeom {
            pad: [1; 4],
            ..ConvGeom::default()
        };
        let w = g.add_const_f32("w", vec![7, 3, 3, 5], v(315, 1));
        let b = g.add_const_f32("b", vec![7], v(7, 2));
        let c = g.add_op(
            "conv",
            OpParams::Conv2d(ConvParams::new(pad)),
            vec![Some(x), Some(w), Some(b)],
            vec![1, 6, 6, 7],
        );
        let dw = g.add_const_f32("dw", vec![7, 3, 3, 1], v(63, 3));
        let d = g.add_op(
            "dw",
            OpParams::Conv2d(ConvParams::new(ConvGeom { groups: 7, ..pad })),
            vec![Some(c), Some(dw), None],
            vec![1, 6, 6, 7],
        );
        let f = g.add_op(
            "flat",
            OpParams::Reshape(ReshapeParams),
            vec![Some(d)],
            vec![1, 252],
        );
        let fw = g.add_const_f32("fw", vec![9, 252], v(9 * 252, 4));
        let y = g.add_op(
            "fc",
            OpParams::Dense(DenseParams::default()),
            vec![Some(f), Some(fw), None],
            vec![1, 9],
        );
        g.outputs.push(y);
        g
    }

    fn samples() -> Vec<Vec<Vec<f32>>> {
        (0..4)
            .map(|s| {
                vec![(0..180)
                    .map(|i| (((i * 13 + s * 7) % 31) as f32 - 15.0) / 8.0)
                    .collect()]
            })
            .collect()
    }

    /// Output 0 of every sample.
    fn run(g: &Graph, pack: bool) -> Vec<Vec<f32>> {
        let bytes = crate::emit::emit_with(g, pack).unwrap().0;
        let out = run_kiln(&bytes, &samples()).unwrap();
        out.into_iter().map(|mut o| o.swap_remove(0)).collect()
    }

    #[test]
    fn packing_changes_the_file_not_the_answers() {
        // f32: every layer packed, outputs within f32 rounding of the natural layout's.
        let g = graph();
        let mut p = g.clone();
        assert_eq!(
            super::run(&mut p),
            3,
            "conv, depthwise and dense are packed"
        );
        let (a, b) = (run(&g, false), run(&g, true));
        for (x, y) in a.iter().zip(&b) {
            let scale = x.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let d = x.iter().zip(y).fold(0f32, |m, (u, v)| m.max((u - v).abs()));
            assert!(
                d <= 1e-5 * scale,
                "f32 packed vs natural: {d} (scale {scale})"
            );
        }
        // int8 (kiln's PTQ): the same bytes with and without packing.
        let opts = PtqOptions {
            method: Method::MinMax,
            int8_io: false,
        };
        let q = quantize(&g, &samples(), &opts, &mut |_, _, _| {})
            .unwrap()
            .graph;
        let mut p = q.clone();
        assert_eq!(
            super::run(&mut p),
            3,
            "int8 conv, depthwise and dense are packed"
        );
        assert_eq!(run(&q, false), run(&q, true), "int8 packed vs natural");
    }
}
