//! Folds a per-feature affine op on a dense layer's input into the layer:
//! `dense(x · s)` has weights `W·diag(s)`, `dense(x + c)` and `dense(x - c)` have bias
//! `b ± W·c`. This is what input scaling becomes (scikit-learn's `StandardScaler` /
//! `MinMaxScaler`, exported as a `Scaler` and rewritten to `Sub` and `Mul`).

use crate::ir::Graph;
use kiln_runtime::ops::{Act, BinaryKind, OpParams};
use kiln_runtime::DType;

/// Runs the pass until nothing changes; returns how many ops it folded.
pub fn run(g: &mut Graph) -> usize {
    let mut n = 0;
    while fold_once(g) {
        n += 1;
    }
    n
}

fn fold_once(g: &mut Graph) -> bool {
    for i in 0..g.nodes.len() {
        let OpParams::Binary(p) = g.nodes[i].op else {
            continue;
        };
        if p.act != Act::NONE
            || !matches!(p.kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul)
        {
            continue;
        }
        let (Some(a), Some(b)) = (g.nodes[i].input(0), g.nodes[i].input(1)) else {
            continue;
        };
        // x ∘ c with c constant (for add and mul either side; for sub only x - c).
        let (x, c) = match (g.const_f32(a).is_some(), g.const_f32(b).is_some()) {
            (false, true) => (a, b),
            (true, false) if p.kind != BinaryKind::Sub => (b, a),
            _ => continue,
        };
        let y = g.nodes[i].outputs[0];
        if g.outputs.contains(&y) || g.tensors[x].dtype != DType::F32 {
            continue;
        }
        let users = g.consumers(y);
        let [d] = users[..] else {
            continue;
        };
        if g.nodes[d].kind() != kiln_runtime::OpKind::Dense
            || g.nodes[d].input(0) != Some(y)
            || g.tensors[x].shape != g.tensors[y].shape
        {
            continue;
        }
        let Some(wt) = g.nodes[d].input(1) else {
            continue;
        };
        let [m, k] = g.tensors[wt].shape[..] else {
            continue;
        };
        let Some(w) = g.const_f32(wt) else {
            continue;
        };
        let cv = g.const_f32(c).unwrap_or(&[]);
        let per = match cv.len() {
            1 => vec![cv[0]; k],
            n if n == k && g.tensors[c].shape.iter().rev().skip(1).all(|&d| d == 1) => cv.to_vec(),
            _ => continue,
        };
        let mut w = w.to_vec();
        let mut bias = match g.nodes[d].input(2).map(|t| g.const_f32(t)) {
            None => vec![0f32; m],
            Some(Some(b)) if b.len() == m => b.to_vec(),
            Some(_) => continue,
        };
        match p.kind {
            BinaryKind::Mul => {
                for r in 0..m {
                    for (wv, s) in w[r * k..(r + 1) * k].iter_mut().zip(&per) {
                        *wv *= s;
                    }
                }
            }
            _ => {
                let sign = if p.kind == BinaryKind::Sub { -1.0 } else { 1.0 };
                for (r, bv) in bias.iter_mut().enumerate() {
                    let dot: f64 = w[r * k..(r + 1) * k]
                        .iter()
                        .zip(&per)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    *bv = (*bv as f64 + sign * dot) as f32;
                }
            }
        }
        let name = g.nodes[d].name.clone();
        let nw = g.add_const_f32(format!("{name}.weights_folded"), vec![m, k], w);
        let nb = g.add_const_f32(format!("{name}.bias_folded"), vec![m], bias);
        let node = &mut g.nodes[d];
        node.inputs.resize(3, None);
        node.inputs[0] = Some(x);
        node.inputs[1] = Some(nw);
        node.inputs[2] = Some(nb);
        g.nodes.remove(i);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_runtime::ops::{BinaryParams, DenseParams};
    use kiln_runtime::OpKind;

    /// x [1, 3] -> (x - c) -> (· s) -> (+ d) -> dense 3 -> 2 (with and without bias).
    fn graph(bias: bool) -> Graph {
        let mut g = Graph::default();
        let x = g.add_tensor("x", DType::F32, vec![1, 3]);
        let c = g.add_const_f32("c", vec![3], vec![0.5, -1.0, 2.0]);
        let s = g.add_const_f32("s", vec![1, 3], vec![2.0, 0.25, -3.0]);
        let d = g.add_const_f32("d", vec![1], vec![0.125]);
        let bin = |k| OpParams::Binary(BinaryParams::new(k));
        let a = g.add_op(
            "sub",
            bin(BinaryKind::Sub),
            vec![Some(x), Some(c)],
            vec![1, 3],
        );
        let m = g.add_op(
            "mul",
            bin(BinaryKind::Mul),
            vec![Some(s), Some(a)],
            vec![1, 3],
        );
        let p = g.add_op(
            "add",
            bin(BinaryKind::Add),
            vec![Some(m), Some(d)],
            vec![1, 3],
        );
        let w = g.add_const_f32("w", vec![2, 3], vec![1.0, -2.0, 0.5, 0.25, 3.0, -1.5]);
        let b = bias.then(|| g.add_const_f32("b", vec![2], vec![0.75, -0.5]));
        let y = g.add_op(
            "fc",
            OpParams::Dense(DenseParams::default()),
            vec![Some(p), Some(w), b],
            vec![1, 2],
        );
        g.inputs = vec![x];
        g.outputs = vec![y];
        g
    }

    #[test]
    fn input_scaling_folds_into_the_dense_layer_with_the_same_outputs() {
        for bias in [false, true] {
            let g = graph(bias);
            let mut f = g.clone();
            assert_eq!(run(&mut f), 3);
            assert_eq!(
                f.nodes.iter().map(|n| n.kind()).collect::<Vec<_>>(),
                [OpKind::Dense]
            );
            let xs = vec![vec![vec![0.3f32, -0.7, 1.9]], vec![vec![-2.0, 4.0, 0.0]]];
            let a = crate::verify::run_kiln(&crate::emit::emit(&g).unwrap().0, &xs).unwrap();
            let b = crate::verify::run_kiln(&crate::emit::emit(&f).unwrap().0, &xs).unwrap();
            for (p, q) in a.iter().zip(&b) {
                for (u, v) in p[0].iter().zip(&q[0]) {
                    assert!((u - v).abs() <= 1e-5 * u.abs().max(1.0), "{u} vs {v}");
                }
            }
        }
        // c - x is not x - c: left alone.
        let mut g = graph(true);
        g.nodes[0].inputs.swap(0, 1);
        let mut f = g.clone();
        run(&mut f);
        assert_eq!(f.nodes[0].kind(), OpKind::Binary);
    }
}
