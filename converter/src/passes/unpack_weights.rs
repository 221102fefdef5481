//! The inverse of [`super::pack_weights`] for float models: packed f32 conv and dense weights
//! (`pack16x1`) and tap-major depthwise weights back to the natural `[O, ..]` layout every pass,
//! the pruner and the quantizer read. For a float `.kiln` file read back into a graph
//! (`kiln prune model.kiln`, `kiln quantize pruned.kiln`). Int8 conv and dense weights, packed
//! or sparse, come back natural with their bias unfolded (`kiln prune model_int8.kiln
//! --unstructured`).

use crate::ir::{Data, Graph};
use anyhow::{bail, Result};
use kiln_runtime::kernels::f32gemm;
use kiln_runtime::ops::OpParams;
use kiln_runtime::{DType, Quant};

/// Runs the pass; returns how many ops it unpacked.
pub fn run(g: &mut Graph) -> Result<usize> {
    let mut unpacked = 0;
    for i in 0..g.nodes.len() {
        if unpack_int8(g, i)? {
            unpacked += 1;
            continue;
        }
        let packed = match g.nodes[i].op {
            OpParams::Conv2d(p) => p.packed.then_some(p.geom.groups),
            OpParams::Dense(p) => p.packed.then_some(1),
            _ => None,
        };
        let (Some(groups), Some(wt)) = (packed, g.nodes[i].input(1)) else {
            continue;
        };
        let w = &g.tensors[wt];
        let Some(Data::F32(v)) = &w.data else {
            bail!(
                "'{}' has packed weights kiln cannot read back",
                g.nodes[i].name
            );
        };
        let o = w.shape[0];
        let k: usize = w.shape[1..].iter().product();
        let mut nat = vec![0f32; v.len()];
        if groups == 1 {
            for c in 0..o {
                for kk in 0..k {
                    nat[c * k + kk] = v[f32gemm::packed_offset(o, k, c, kk)];
                }
            }
        } else {
            // Depthwise: tap-major [taps, C] back to [C, taps].
            for c in 0..o {
                for t in 0..k {
                    nat[c * k + t] = v[t * o + c];
                }
            }
        }
        let mut t = g.tensors[wt].clone();
        t.name = format!("{}.weights", g.nodes[i].name);
        t.data = Some(Data::F32(nat));
        g.tensors.push(t);
        let id = g.tensors.len() - 1;
        g.nodes[i].inputs[1] = Some(id);
        match &mut g.nodes[i].op {
            OpParams::Conv2d(p) => p.packed = false,
            OpParams::Dense(p) => p.packed = false,
            _ => {}
        }
        unpacked += 1;
    }
    Ok(unpacked)
}

/// Int8 conv (one group) or dense `i` with packed (`pack16x4`) or sparse weights back to natural
/// `[O, ..]` int8 weights and the bias before the zero-point fold; whether it was one.
fn unpack_int8(g: &mut Graph, i: usize) -> Result<bool> {
    use kiln_runtime::kernels::{qs8, sparse};
    let (packed, sparse_w, groups) = match g.nodes[i].op {
        OpParams::Conv2d(p) => (p.packed, p.sparse, p.geom.groups),
        OpParams::Dense(p) => (p.packed, p.sparse, 1),
        _ => return Ok(false),
    };
    let (Some(x), Some(wt), Some(y)) = (
        g.nodes[i].input(0),
        g.nodes[i].input(1),
        g.nodes[i].outputs.first().copied(),
    ) else {
        return Ok(false);
    };
    if g.tensors[x].dtype != DType::I8 || !(packed || sparse_w) || groups != 1 {
        return Ok(false);
    }
    let name = g.nodes[i].name.clone();
    let Quant::PerTensor { zero_point: zx, .. } = g.tensors[x].quant else {
        bail!("'{name}': int8 input without a zero point");
    };
    let o = *g.tensors[y].shape.last().unwrap_or(&0);
    let w = &g.tensors[wt];
    let (nat, shape, k) = if sparse_w {
        let Some(Data::Raw(blob)) = &w.data else {
            bail!("'{name}': sparse weights are not a constant blob");
        };
        let (shape, k) = match w.shape.as_slice() {
            [_, kh, kw, _] => {
                let ci = *g.tensors[x].shape.last().unwrap_or(&0);
                (vec![o, *kh, *kw, ci], kh * kw * ci)
            }
            _ => {
                let k = *g.tensors[x].shape.last().unwrap_or(&0);
                (vec![o, k], k)
            }
        };
        if !sparse::validate(blob, o, k) {
            bail!("'{name}': malformed sparse weights");
        }
        (sparse::decode(blob, o, k), shape, k)
    } else {
        let Some(Data::I8(v)) = &w.data else {
            bail!("'{name}': packed int8 weights are not constant");
        };
        let k: usize = w.shape[1..].iter().product();
        let mut nat = vec![0i8; v.len()];
        qs8::unpack(v, o, k, &mut nat);
        (nat, w.shape.clone(), k)
    };
    // The fold subtracted (zx + 128)·Σw (packed) or zx·Σw (sparse): add it back.
    let zfold = if sparse_w { zx } else { zx.wrapping_add(128) };
    let folded = match g.nodes[i].input(2).map(|b| &g.tensors[b].data) {
        Some(Some(Data::I32(b))) if b.len() == o => b.clone(),
        _ => bail!("'{name}': packed or sparse weights without their folded bias"),
    };
    let mut bias = vec![0i32; o];
    qs8::fold_zero_point(&nat, o, k, Some(&folded), zfold.wrapping_neg(), &mut bias);
    let quant = if sparse_w {
        Quant::None
    } else {
        g.tensors[wt].quant
    };
    let nw = g.add_tensor(format!("{name}.weights"), DType::I8, shape);
    g.tensors[nw].data = Some(Data::I8(nat));
    g.tensors[nw].quant = quant;
    let nb = g.add_const_i32(format!("{name}.bias"), bias);
    g.nodes[i].inputs[1] = Some(nw);
    g.nodes[i].inputs[2] = Some(nb);
    match &mut g.nodes[i].op {
        OpParams::Conv2d(p) => (p.packed, p.sparse) = (false, false),
        OpParams::Dense(p) => (p.packed, p.sparse) = (false, false),
        _ => {}
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use crate::ir::{Graph, Node};
    use kiln_runtime::ops::{ConvGeom, ConvParams, DenseParams, OpParams};
    use kiln_runtime::DType;

    /// Packing then unpacking gives back every conv, depthwise and dense weight as it was.
    #[test]
    fn unpacking_inverts_packing() {
        let mut g = Graph::default();
        let vals = |n: usize| (0..n).map(|i| i as f32 * 0.25 - 3.0).collect::<Vec<_>>();
        let x = g.add_tensor("x", DType::F32, vec![1, 5, 5, 3]);
        let w = g.add_const_f32("w", vec![19, 3, 3, 3], vals(19 * 27));
        let c = g.add_tensor("c", DType::F32, vec![1, 3, 3, 19]);
        g.push(Node::new(
            "conv",
            OpParams::Conv2d(ConvParams::new(ConvGeom::default())),
            vec![Some(x), Some(w), None],
            vec![c],
        ));
        let dw = g.add_const_f32("dw", vec![19, 3, 3, 1], vals(19 * 9));
        let d = g.add_tensor("d", DType::F32, vec![1, 1, 1, 19]);
        let geom = ConvGeom {
            groups: 19,
            ..ConvGeom::default()
        };
        g.push(Node::new(
            "dw",
            OpParams::Conv2d(ConvParams::new(geom)),
            vec![Some(c), Some(dw), None],
            vec![d],
        ));
        let f = g.add_tensor("f", DType::F32, vec![1, 19]);
        g.push(Node::new(
            "flat",
            OpParams::Reshape(kiln_runtime::ops::ReshapeParams),
            vec![Some(d)],
            vec![f],
        ));
        let fw = g.add_const_f32("fw", vec![7, 19], vals(7 * 19));
        let y = g.add_op(
            "fc",
            OpParams::Dense(DenseParams::default()),
            vec![Some(f), Some(fw), None],
            vec![1, 7],
        );
        g.inputs = vec![x];
        g.outputs = vec![y];
        let mut p = g.clone();
        assert_eq!(super::super::pack_weights::run(&mut p), 3);
        assert_eq!(super::run(&mut p).unwrap(), 3);
        for (a, b) in g.nodes.iter().zip(&p.nodes) {
            if let (Some(wa), Some(wb)) = (a.input(1), b.input(1)) {
                assert_eq!(g.const_f32(wa), p.const_f32(wb), "{}", a.name);
                assert_eq!(g.tensors[wa].shape, p.tensors[wb].shape);
            }
            assert_eq!(a.op, b.op, "{}", a.name);
        }
    }
}
