//! Packs conv (one group) and dense weights into the layouts the runtime's microkernels read:
//! int8 into `pack16x4` with the input zero point folded into the bias
//! (`kiln_runtime::kernels::qs8`), f32 into `pack16x1` (`kiln_runtime::kernels::f32gemm`).
//! f16 weights stay natural. Run by [`crate::emit`] on the graph it writes, so every other pass and the
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
            OpParams::Conv2d(p) => !p.packed && p.geom.groups == 1,
            OpParams::Dense(p) => !p.packed,
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
        let w = &g.tensors[wt];
        let Some(Data::I8(wv)) = &w.data else {
            continue;
        };
        if w.dtype != DType::I8
            || w.shape.is_empty()
            || matches!(w.quant, Quant::PerTensor { zero_point, .. } if zero_point != 0)
        {
            continue;
        }
        let o = w.shape[0];
        let k: usize = w.shape[1..].iter().product();
        let bias = match n.input(2).map(|b| &g.tensors[b]) {
            None => None,
            Some(b) => match &b.data {
                Some(Data::I32(v)) if b.dtype == DType::I32 && v.len() == o => Some(v.as_slice()),
                _ => continue,
            },
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
        let nb = g.add_const_i32(format!("{name}.bias_folded"), folded);
        let node = &mut g.nodes[i];
        node.inputs[1] = Some(nw);
        if node.inputs.len() < 3 {
            node.inputs.resize(3, None);
        }
        node.inputs[2] = Some(nb);
        match &mut node.op {
            OpParams::Conv2d(p) => p.packed = true,
            OpParams::Dense(p) => p.packed = true,
            _ => {}
        }
        packed += 1;
    }
    packed
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
