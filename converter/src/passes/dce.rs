//! Dead-code elimination: drops nodes whose outputs nobody reads, and identity ops.

use crate::ir::Graph;
use kiln_runtime::ops::{OpParams, UnaryKind};

/// Runs the pass.
pub fn run(g: &mut Graph) {
    // Identity ops: forward their input, unless that would make a graph input a graph output
    // directly (the runtime needs one op writing each output).
    let mut i = 0;
    while i < g.nodes.len() {
        let n = &g.nodes[i];
        let is_identity = matches!(n.op, OpParams::Unary(u) if u.kind == UnaryKind::Identity);
        if is_identity {
            let (x, y) = (n.input(0), n.outputs[0]);
            if let Some(x) = x {
                let x_is_input = g.inputs.contains(&x) || g.tensors[x].data.is_some();
                if !(g.outputs.contains(&y) && x_is_input) {
                    g.nodes.remove(i);
                    if g.outputs.contains(&y) {
                        // Make the producer of x write y instead.
                        if let Some(p) = g.producer(x) {
                            for o in g.nodes[p].outputs.iter_mut() {
                                if *o == x {
                                    *o = y;
                                }
                            }
                            g.replace_uses(x, y);
                        }
                    } else {
                        g.replace_uses(y, x);
                    }
                    continue;
                }
            }
        }
        i += 1;
    }
    // Backward liveness.
    let mut live = vec![false; g.tensors.len()];
    for &o in &g.outputs {
        live[o] = true;
    }
    let mut keep = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|&o| live[o]) {
            keep[i] = true;
            for t in n.inputs.iter().flatten() {
                live[*t] = true;
            }
        }
    }
    let mut k = keep.iter();
    g.nodes.retain(|_| *k.next().unwrap_or(&true));
}
