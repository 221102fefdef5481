//! Folds per-channel affine ops (what batch norm becomes) into the preceding conv/dense:
//! `conv(x) * s + b` becomes a conv with scaled weights and bias.

use crate::ir::{Graph, TId};
use kiln_runtime::ops::{BinaryKind, BinaryParams, OpParams};
use kiln_runtime::OpKind;

/// Runs the pass until nothing changes.
pub fn run(g: &mut Graph) {
    while fold_once(g) {}
}

/// Per-output-channel values of a constant that broadcasts along the last axis only, or a scalar.
fn per_channel(g: &Graph, c: TId, channels: usize, out_shape: &[usize]) -> Option<Vec<f32>> {
    let out_rank = out_shape.len();
    let t = &g.tensors[c];
    let v = g.const_f32(c)?;
    if t.shape.len() > out_rank {
        return None;
    }
    if v.len() == 1 {
        return Some(vec![v[0]; channels]);
    }
    // The constant's channel axis must be the output's last non-unit axis (right-aligned).
    let trailing = |s: &[usize]| s.iter().rev().take_while(|&&d| d == 1).count();
    if last_non_unit(&t.shape) == Some(channels)
        && t.len() == channels
        && trailing(&t.shape) == trailing(out_shape)
    {
        return Some(v.to_vec());
    }
    None
}

/// The last dimension that is not 1 (trailing unit axes do not change the element order).
fn last_non_unit(shape: &[usize]) -> Option<usize> {
    shape.iter().rev().copied().find(|&d| d != 1)
}

fn fold_once(g: &mut Graph) -> bool {
    for i in 0..g.nodes.len() {
        let n = &g.nodes[i];
        let OpParams::Binary(BinaryParams { kind, .. }) = n.op else {
            continue;
        };
        if !matches!(kind, BinaryKind::Mul | BinaryKind::Add | BinaryKind::Sub) {
            continue;
        }
        let (Some(a), Some(b)) = (n.input(0), n.input(1)) else {
            continue;
        };
        let (y, c, y_first) = match (g.const_f32(a).is_some(), g.const_f32(b).is_some()) {
            (false, true) => (a, b, true),
            (true, false) if kind != BinaryKind::Sub => (b, a, false),
            _ => continue,
        };
        let Some(mut p) = g.producer(y) else { continue };
        // Look through a reshape that keeps the channel (last) axis, as a dense that computes
        // a 1x1 conv is followed by one.
        let mut through: Option<usize> = None;
        if g.nodes[p].kind() == OpKind::Reshape {
            let Some(src) = g.nodes[p].input(0) else {
                continue;
            };
            let same_last =
                last_non_unit(&g.tensors[src].shape) == last_non_unit(&g.tensors[y].shape);
            match g.producer(src) {
                Some(q)
                    if same_last && g.consumers(src).len() == 1 && !g.outputs.contains(&src) =>
                {
                    through = Some(p);
                    p = q;
                }
                _ => continue,
            }
        }
        let pn = &g.nodes[p];
        if !matches!(pn.kind(), OpKind::Conv2d | OpKind::Dense)
            || pn.act() != Some((f32::NEG_INFINITY, f32::INFINITY))
            || g.consumers(y).len() != 1
            || g.outputs.contains(&y)
        {
            continue;
        }
        let out = n.outputs[0];
        if g.tensors[out].shape != g.tensors[y].shape {
            continue; // the constant broadcasts the result to a bigger shape
        }
        let Some(wt) = pn.input(1) else { continue };
        let Some(w) = g.const_f32(wt).map(|w| w.to_vec()) else {
            continue;
        };
        let channels = g.tensors[wt].shape[0];
        if last_non_unit(&g.tensors[y].shape) != Some(channels) {
            continue;
        }
        let Some(cv) = per_channel(g, c, channels, &g.tensors[y].shape) else {
            continue;
        };
        let bias: Vec<f32> = match pn.input(2) {
            Some(bt) => match g.const_f32(bt) {
                Some(b) => b.to_vec(),
                None => continue,
            },
            None => vec![0.0; channels],
        };
        let (w, bias) = match kind {
            BinaryKind::Mul => {
                let per = w.len() / channels;
                let w: Vec<f32> = w.iter().enumerate().map(|(k, v)| v * cv[k / per]).collect();
                let bias: Vec<f32> = bias.iter().zip(&cv).map(|(b, s)| b * s).collect();
                (w, bias)
            }
            BinaryKind::Add => (w, bias.iter().zip(&cv).map(|(b, s)| b + s).collect()),
            _ => {
                debug_assert!(y_first);
                (w, bias.iter().zip(&cv).map(|(b, s)| b - s).collect())
            }
        };
        let wshape = g.tensors[wt].shape.clone();
        let wname = format!("{}.folded_w", g.nodes[p].name);
        let bname = format!("{}.folded_b", g.nodes[p].name);
        let new_w = g.add_const_f32(wname, wshape, w);
        let new_b = g.add_const_f32(bname, vec![channels], bias);
        let pn = &mut g.nodes[p];
        pn.inputs = vec![pn.inputs[0], Some(new_w), Some(new_b)];
        match through {
            // conv -> reshape -> (affine): the reshape now writes the affine's output.
            Some(r) => g.nodes[r].outputs[0] = out,
            None => pn.outputs[0] = out,
        }
        g.nodes.remove(i);
        return true;
    }
    false
}
