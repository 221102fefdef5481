//! Fuses ReLU / ReLU6 / Clip into the clamp of the op that produces their input.

use crate::ir::Graph;
use kiln_runtime::ops::{OpParams, UnaryKind, UnaryParams};
use kiln_runtime::OpKind;

/// Runs the pass.
pub fn run(g: &mut Graph) {
    let mut i = 0;
    while i < g.nodes.len() {
        let n = &g.nodes[i];
        let bounds = match n.op {
            OpParams::Unary(UnaryParams {
                kind: UnaryKind::Relu,
                ..
            }) => Some((0.0, f32::INFINITY)),
            OpParams::Unary(UnaryParams {
                kind: UnaryKind::Clip,
                a,
                b,
            }) => Some((a, b)),
            _ => None,
        };
        let (Some((lo, hi)), Some(x)) = (bounds, n.input(0)) else {
            i += 1;
            continue;
        };
        let y = n.outputs[0];
        let Some(mut p) = g.producer(x) else {
            i += 1;
            continue;
        };
        // An element-wise clamp commutes with a reshape: look through one (a dense computing a
        // 1x1 conv is followed by one) and let the reshape write the clamp's output.
        let mut through = None;
        if g.nodes[p].kind() == OpKind::Reshape
            && g.consumers(x).len() == 1
            && !g.outputs.contains(&x)
        {
            if let Some(r_in) = g.nodes[p].input(0) {
                if let Some(q) = g.producer(r_in) {
                    if g.consumers(r_in).len() == 1 && !g.outputs.contains(&r_in) {
                        through = Some(p);
                        p = q;
                    }
                }
            }
        }
        let x = match through {
            Some(r) => g.nodes[r].input(0).unwrap_or(x),
            None => x,
        };
        let fusable = g.tensors[x].dtype == kiln_runtime::DType::F32
            && matches!(
                g.nodes[p].kind(),
                OpKind::Conv2d
                    | OpKind::Dense
                    | OpKind::MaxPool
                    | OpKind::AvgPool
                    | OpKind::Binary
                    | OpKind::MatMul
            );
        if !fusable || g.consumers(x).len() != 1 || g.outputs.contains(&x) || lo > hi {
            i += 1;
            continue;
        }
        let Some((plo, phi)) = g.nodes[p].act() else {
            i += 1;
            continue;
        };
        g.nodes[p].set_act(plo.max(lo), phi.min(hi));
        match through {
            Some(r) => g.nodes[r].outputs[0] = y,
            None => g.nodes[p].outputs[0] = y,
        }
        g.nodes.remove(i);
        // x is no longer written; y now comes from p, which precedes i.
    }
}
