//! Collapses reshape chains and removes reshapes that change nothing.

use crate::ir::Graph;
use kiln_runtime::OpKind;

/// Runs the pass.
pub fn run(g: &mut Graph) {
    let mut i = 0;
    while i < g.nodes.len() {
        let n = &g.nodes[i];
        if n.kind() != OpKind::Reshape {
            i += 1;
            continue;
        }
        let (x, y) = (n.input(0).unwrap_or(usize::MAX), n.outputs[0]);
        if x == usize::MAX {
            i += 1;
            continue;
        }
        // reshape(reshape(a)) -> reshape(a), when the inner result has no other reader.
        if let Some(p) = g.producer(x) {
            if g.nodes[p].kind() == OpKind::Reshape
                && g.consumers(x).len() == 1
                && !g.outputs.contains(&x)
            {
                let a = g.nodes[p].input(0);
                g.nodes[i].inputs[0] = a;
                g.nodes.remove(p);
                i = 0;
                continue;
            }
        }
        // Same shape: forward.
        if g.tensors[x].shape == g.tensors[y].shape && !g.outputs.contains(&y) {
            g.nodes.remove(i);
            g.replace_uses(y, x);
            continue;
        }
        i += 1;
    }
}
