//! `transpose -> flatten -> dense` becomes `flatten -> dense` with the weight columns permuted:
//! the NCHW flatten of an ONNX classifier head costs nothing at run time.

use crate::ir::Graph;
use kiln_runtime::ops::OpParams;
use kiln_runtime::OpKind;

/// Runs the pass.
pub fn run(g: &mut Graph) {
    while fold_once(g) {}
}

fn fold_once(g: &mut Graph) -> bool {
    for d in 0..g.nodes.len() {
        if g.nodes[d].kind() != OpKind::Dense {
            continue;
        }
        let (Some(r), Some(wt)) = (g.nodes[d].input(0), g.nodes[d].input(1)) else {
            continue;
        };
        let Some(w) = g.const_f32(wt).map(|w| w.to_vec()) else {
            continue;
        };
        let Some(ri) = g.producer(r) else { continue };
        if g.nodes[ri].kind() != OpKind::Reshape
            || g.consumers(r).len() != 1
            || g.outputs.contains(&r)
        {
            continue;
        }
        let Some(t) = g.nodes[ri].input(0) else {
            continue;
        };
        let Some(ti) = g.producer(t) else { continue };
        if g.nodes[ti].kind() != OpKind::Transpose
            || g.consumers(t).len() != 1
            || g.outputs.contains(&t)
        {
            continue;
        }
        let Some(x) = g.nodes[ti].input(0) else {
            continue;
        };
        let xs = g.tensors[x].shape.clone();
        let rs = &g.tensors[r].shape;
        let (m, k) = (g.tensors[wt].shape[0], g.tensors[wt].shape[1]);
        // One row: the flatten must cover every axis but a leading batch of 1.
        if rs.len() != 2 || rs[0] != 1 || rs[1] != k || xs.iter().product::<usize>() != k {
            continue;
        }
        let rank = xs.len();
        let OpParams::Transpose(tp) = g.nodes[ti].op else {
            continue;
        };
        let perm: Vec<usize> = tp.perm[..rank].to_vec();
        // Transposed tensor t has dims ts[i] = xs[perm[i]]; column j of W indexes t flattened.
        let ts: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
        let mut tst = vec![1usize; rank];
        for i in (0..rank.saturating_sub(1)).rev() {
            tst[i] = tst[i + 1] * ts[i + 1];
        }
        // For each element of x (row-major), its column in the transposed flatten.
        let mut col_of_x = vec![0usize; k];
        let mut idx = vec![0usize; rank];
        for c in col_of_x.iter_mut() {
            *c = (0..rank).map(|i| idx[perm[i]] * tst[i]).sum();
            for a in (0..rank).rev() {
                idx[a] += 1;
                if idx[a] < xs[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        let mut nw = vec![0.0; w.len()];
        for row in 0..m {
            for (xi, &col) in col_of_x.iter().enumerate() {
                nw[row * k + xi] = w[row * k + col];
            }
        }
        let name = format!("{}.weights_permuted", g.nodes[d].name);
        let nwt = g.add_const_f32(name, vec![m, k], nw);
        g.nodes[d].inputs[1] = Some(nwt);
        g.nodes[ri].inputs[0] = Some(x);
        g.nodes.remove(ti);
        return true;
    }
    false
}
