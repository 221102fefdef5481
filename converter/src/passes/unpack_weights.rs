//! The inverse of [`super::pack_weights`] for float models: packed f32 conv and dense weights
//! (`pack16x1`) and tap-major depthwise weights back to the natural `[O, ..]` layout every pass,
//! the pruner and the quantizer read. For a float `.kiln` file read back into a graph
//! (`kiln prune model.kiln`, `kiln quantize pruned.kiln`); packed int8 weights (their bias holds
//! folded zero-point terms) are refused: pruning and quantizing start from a float model.

use crate::ir::{Data, Graph};
use anyhow::{bail, Result};
use kiln_runtime::kernels::f32gemm;
use kiln_runtime::ops::OpParams;

/// Runs the pass; returns how many ops it unpacked.
pub fn run(g: &mut Graph) -> Result<usize> {
    let mut unpacked = 0;
    for i in 0..g.nodes.len() {
        let sparse = match g.nodes[i].op {
            OpParams::Conv2d(p) => p.sparse,
            OpParams::Dense(p) => p.sparse,
            _ => false,
        };
        if sparse {
            bail!(
                "'{}' has sparse int8 weights: start from the float model",
                g.nodes[i].name
            );
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
                "'{}' has packed int8 weights: start from the float model",
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
