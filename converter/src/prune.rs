//! Structured pruning of a float graph: whole output channels of convolutions and units of dense
//! layers removed, every reader rewritten to match, and the next layer refit by least squares
//! on calibration activations (channel reconstruction).
//!
//! A *group* is one conv (one group of weights) or dense layer, the channel-preserving ops its
//! output flows through (element-wise functions, pooling, padding, depthwise convolutions, whose
//! channels go with it, a flatten of NHWC into a dense layer) and the convs or dense layers that
//! read it at the end. A group whose output reaches anything else (a residual add, a concat, a
//! softmax, a graph output) is not pruned. Channels are ranked by the L1 norm of their filter;
//! the same fraction of channels is taken from every group, chosen so that the fraction of all
//! conv and dense weights removed reaches the sparsity asked for.

use crate::ir::{Data, Graph, TId};
use anyhow::{bail, Result};
use kiln_runtime::ops::OpParams;
use kiln_runtime::OpKind;
use std::collections::HashMap;

/// How channels are ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Criterion {
    /// L1 norm of the channel's filter (weights and bias).
    L1,
    /// L2 norm of the channel's filter.
    L2,
}

/// What to prune and how.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Fraction of all conv and dense weights to remove, in `[0, 1)`.
    pub sparsity: f32,
    /// Channel ranking.
    pub criterion: Criterion,
    /// Refit each group's readers by least squares on the calibration samples.
    pub reconstruct: bool,
}

/// One pruned group, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GroupReport {
    /// The layer whose output channels were removed.
    pub layer: String,
    /// Its channels before and after.
    pub channels: (usize, usize),
    /// Relative error of the readers' outputs with the channels removed, before the refit
    /// (`||y' - y|| / ||y||` on the calibration samples; NaN without samples).
    pub error_removed: f64,
    /// The same after the least-squares refit (NaN when not reconstructed).
    pub error_refit: f64,
    /// The calibration samples gave fewer rows than a reader has unknowns: the refit leaned on
    /// its ridge toward the old weights, and its error on those samples says little.
    pub underdetermined: bool,
}

/// The pruned graph and what changed.
#[derive(Clone, Debug)]
pub struct PruneResult {
    /// The pruned graph.
    pub graph: Graph,
    /// One entry per pruned group.
    pub groups: Vec<GroupReport>,
    /// Conv and dense weights before and after.
    pub weights: (usize, usize),
}

/// One group: the producer, its channel-preserving followers and its readers.
#[derive(Clone, Debug)]
struct Group {
    producer: usize,
    channels: usize,
    /// Nodes the channels pass through (their output's last axis is the channel axis).
    through: Vec<usize>,
    /// Depthwise convs among them (their weights and bias follow the channels).
    depthwise: Vec<usize>,
    /// Readers: (node, positions per channel): a conv reads channel `c` at input channel `c`
    /// (`per_channel` 1); a dense after a flatten reads it at every `pos * channels + c`.
    readers: Vec<(usize, usize)>,
    /// Weights removed per channel taken away.
    weights_per_channel: usize,
}

fn is_weighted(g: &Graph, n: usize) -> bool {
    let node = &g.nodes[n];
    match node.op {
        OpParams::Conv2d(p) => p.geom.groups == 1 && !p.packed,
        OpParams::Dense(p) => !p.packed,
        _ => false,
    }
}

fn weights_of(g: &Graph, n: usize) -> Option<&[f32]> {
    g.nodes[n].input(1).and_then(|w| g.const_f32(w))
}

/// The prunable groups of `g`, in graph order.
fn groups(g: &Graph) -> Vec<Group> {
    let mut out = Vec::new();
    'producers: for p in 0..g.nodes.len() {
        if !is_weighted(g, p) || weights_of(g, p).is_none() {
            continue;
        }
        let y = g.nodes[p].outputs[0];
        let shape = &g.tensors[y].shape;
        let Some(&channels) = shape.last() else {
            continue;
        };
        if channels < 2 || g.outputs.contains(&y) {
            continue;
        }
        let per_filter = weights_of(g, p).map_or(0, |w| w.len() / channels);
        let mut grp = Group {
            producer: p,
            channels,
            through: Vec::new(),
            depthwise: Vec::new(),
            readers: Vec::new(),
            weights_per_channel: per_filter,
        };
        // Walk the channel-preserving ops from y; `spread` > 1 once a flatten has put every
        // pixel's channels side by side.
        let mut frontier = vec![(y, 1usize)];
        while let Some((t, spread)) = frontier.pop() {
            if g.outputs.contains(&t) {
                continue 'producers;
            }
            for c in g.consumers(t) {
                let node = &g.nodes[c];
                let first = node.input(0) == Some(t)
                    && node.inputs.iter().flatten().filter(|&&i| i == t).count() == 1;
                if !first {
                    continue 'producers;
                }
                let out_t = node.outputs[0];
                match node.op {
                    OpParams::Conv2d(cp)
                        if spread == 1
                            && cp.geom.groups == 1
                            && is_weighted(g, c)
                            && weights_of(g, c).is_some() =>
                    {
                        grp.readers.push((c, 1));
                        grp.weights_per_channel += weights_of(g, c).map_or(0, |w| {
                            w.len() / g.tensors[node.input(1).unwrap_or(0)].shape[3].max(1)
                        });
                    }
                    OpParams::Conv2d(cp)
                        if spread == 1
                            && !cp.packed
                            && cp.geom.groups == channels
                            && g.tensors[node.input(1).unwrap_or(0)].shape[3] == 1
                            && g.tensors[out_t].shape.last() == Some(&channels)
                            && weights_of(g, c).is_some() =>
                    {
                        grp.through.push(c);
                        grp.depthwise.push(c);
                        grp.weights_per_channel +=
                            weights_of(g, c).map_or(0, |w| w.len()) / channels;
                        frontier.push((out_t, 1));
                    }
                    OpParams::Dense(_) if is_weighted(g, c) && weights_of(g, c).is_some() => {
                        let k = *g.tensors[t].shape.last().unwrap_or(&0);
                        if k != channels * spread {
                            continue 'producers;
                        }
                        grp.readers.push((c, spread));
                        let m = g.tensors[node.input(1).unwrap_or(0)].shape[0];
                        grp.weights_per_channel += m * spread;
                    }
                    OpParams::Unary(_) | OpParams::MaxPool(_) | OpParams::AvgPool(_)
                        if spread == 1 && g.tensors[out_t].shape.last() == Some(&channels) =>
                    {
                        grp.through.push(c);
                        frontier.push((out_t, 1));
                    }
                    OpParams::Pad(pp)
                        if spread == 1
                            && g.tensors[out_t].shape.last() == Some(&channels)
                            && pp.pads[g.tensors[out_t].shape.len() - 1] == (0, 0) =>
                    {
                        grp.through.push(c);
                        frontier.push((out_t, 1));
                    }
                    OpParams::Reshape(_) if spread == 1 => {
                        // A flatten of [.., C] into [N, pixels * C] (NHWC order).
                        let (xs, ys) = (&g.tensors[t].shape, &g.tensors[out_t].shape);
                        let n = xs.first().copied().unwrap_or(1);
                        let total: usize = xs.iter().product();
                        if ys.len() != 2 || ys[0] != n || ys[1] * n != total {
                            continue 'producers;
                        }
                        grp.through.push(c);
                        frontier.push((out_t, total / n / channels));
                    }
                    _ => continue 'producers,
                }
            }
        }
        if !grp.readers.is_empty() {
            out.push(grp);
        }
    }
    out
}

/// Saliency of each output channel of node `p`.
fn saliency(g: &Graph, p: usize, channels: usize, c: Criterion) -> Vec<f64> {
    let w = weights_of(g, p).unwrap_or(&[]);
    let per = w.len() / channels.max(1);
    let bias = g.nodes[p].input(2).and_then(|b| g.const_f32(b));
    (0..channels)
        .map(|ch| {
            let mut v: Vec<f64> = w[ch * per..(ch + 1) * per]
                .iter()
                .map(|&x| x as f64)
                .collect();
            if let Some(b) = bias {
                v.push(b[ch] as f64);
            }
            match c {
                Criterion::L1 => v.iter().map(|x| x.abs()).sum(),
                Criterion::L2 => v.iter().map(|x| x * x).sum::<f64>().sqrt(),
            }
        })
        .collect()
}

/// Every conv and dense weight of the graph.
fn total_weights(g: &Graph) -> usize {
    (0..g.nodes.len())
        .filter(|&n| matches!(g.nodes[n].kind(), OpKind::Conv2d | OpKind::Dense))
        .filter_map(|n| weights_of(g, n).map(<[f32]>::len))
        .sum()
}

/// Keeps rows `keep` of a `[rows, per]` constant.
fn keep_rows(g: &mut Graph, t: TId, keep: &[usize]) {
    let shape = g.tensors[t].shape.clone();
    let rows = shape[0];
    let Some(v) = g.const_f32(t) else { return };
    let per = v.len() / rows.max(1);
    let data: Vec<f32> = keep
        .iter()
        .flat_map(|&r| v[r * per..(r + 1) * per].to_vec())
        .collect();
    let mut s = shape;
    s[0] = keep.len();
    g.tensors[t].shape = s;
    g.tensors[t].data = Some(Data::F32(data));
}

/// Keeps, of a constant whose last axis is `groups × inner`... in general: keeps the entries of
/// the last axis listed in `cols`.
fn keep_cols(g: &mut Graph, t: TId, cols: &[usize]) {
    let mut shape = g.tensors[t].shape.clone();
    let last = shape.len() - 1;
    let width = shape[last];
    let Some(v) = g.const_f32(t) else { return };
    let data: Vec<f32> = v
        .chunks_exact(width)
        .flat_map(|row| cols.iter().map(|&c| row[c]).collect::<Vec<_>>())
        .collect();
    shape[last] = cols.len();
    g.tensors[t].shape = shape;
    g.tensors[t].data = Some(Data::F32(data));
}

/// Gives tensor `t` (used by one producer) its own copy, so a rewrite does not reach other
/// readers of a shared constant.
fn own(g: &mut Graph, node: usize, k: usize) -> Option<TId> {
    let t = g.nodes[node].input(k)?;
    if g.consumers(t).len() > 1 {
        let mut copy = g.tensors[t].clone();
        copy.name = format!("{}.pruned", copy.name);
        g.tensors.push(copy);
        let id = g.tensors.len() - 1;
        g.nodes[node].inputs[k] = Some(id);
        return Some(id);
    }
    Some(t)
}

/// The positions of the readers' input that `keep` (channels of `channels`) leaves, for a
/// spread of `spread` pixels.
fn reader_cols(keep: &[usize], channels: usize, spread: usize) -> Vec<usize> {
    (0..spread)
        .flat_map(|p| keep.iter().map(move |&c| p * channels + c))
        .collect()
}

/// Removes the channels of `grp` not in `keep` (sorted).
fn apply(g: &mut Graph, grp: &Group, keep: &[usize]) {
    let p = grp.producer;
    if let Some(w) = own(g, p, 1) {
        keep_rows(g, w, keep);
    }
    if let Some(b) = own(g, p, 2) {
        keep_rows(g, b, keep);
    }
    let y = g.nodes[p].outputs[0];
    let last = g.tensors[y].shape.len() - 1;
    g.tensors[y].shape[last] = keep.len();
    for &d in &grp.depthwise {
        if let Some(w) = own(g, d, 1) {
            keep_rows(g, w, keep);
        }
        if let Some(b) = own(g, d, 2) {
            keep_rows(g, b, keep);
        }
        if let OpParams::Conv2d(cp) = &mut g.nodes[d].op {
            cp.geom.groups = keep.len();
        }
    }
    for &t in &grp.through {
        let out = g.nodes[t].outputs[0];
        let shape = &mut g.tensors[out].shape;
        let l = shape.len() - 1;
        if g.nodes[t].kind() == OpKind::Reshape {
            shape[l] = shape[l] / grp.channels * keep.len();
        } else {
            shape[l] = keep.len();
        }
    }
    for &(r, spread) in &grp.readers {
        let cols = reader_cols(keep, grp.channels, spread);
        if let Some(w) = own(g, r, 1) {
            keep_cols(g, w, &cols);
        }
    }
}

/// Channels to keep per group for a channel fraction `frac` removed: the most salient ones,
/// at least one.
fn choose(sal: &[Vec<f64>], frac: f64) -> Vec<Vec<usize>> {
    sal.iter()
        .map(|s| {
            let n = s.len();
            let remove = ((n as f64 * frac).floor() as usize).min(n - 1);
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
            let mut keep: Vec<usize> = order[..n - remove].to_vec();
            keep.sort_unstable();
            keep
        })
        .collect()
}

/// Prunes `g` to `opts.sparsity` (see the module docs); `samples` (model inputs) drive the
/// least-squares refit and the error report.
pub fn prune(g: &Graph, samples: &[Vec<Vec<f32>>], opts: &PruneOptions) -> Result<PruneResult> {
    if !(0.0..1.0).contains(&opts.sparsity) {
        bail!("--sparsity {} is outside [0, 1)", opts.sparsity);
    }
    if g.nodes.iter().any(|n| {
        n.inputs
            .iter()
            .flatten()
            .chain(&n.outputs)
            .any(|&t| g.tensors[t].dtype != kiln_runtime::DType::F32 && g.tensors[t].data.is_none())
    }) {
        bail!("the model has int8 activations: prune the float model, then quantize it");
    }
    let grps = groups(g);
    if grps.is_empty() {
        bail!(
            "nothing to prune: no conv or dense layer has channels whose every reader kiln can \
             rewrite (another conv or dense, through element-wise ops, pooling, depthwise convs \
             or a flatten)"
        );
    }
    let total = total_weights(g);
    let sal: Vec<Vec<f64>> = grps
        .iter()
        .map(|grp| saliency(g, grp.producer, grp.channels, opts.criterion))
        .collect();
    // Weights removed for a channel fraction: counted on the graph with the channels taken
    // away (groups overlap where one layer reads one group and feeds the next).
    let removed = |frac: f64| -> usize {
        let mut h = g.clone();
        for (grp, keep) in grps.iter().zip(choose(&sal, frac)) {
            apply(&mut h, grp, &keep);
        }
        total - total_weights(&h)
    };
    let target = (opts.sparsity as f64 * total as f64).ceil() as usize;
    // The smallest channel fraction that removes enough weights (bisection; removal grows with
    // the fraction in steps).
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        if removed(mid) >= target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if removed(hi) < target {
        bail!(
            "at most {:.1}% of the weights can be removed by whole channels here \
             (every prunable layer keeps one); asked for {:.1}%",
            100.0 * removed(1.0) as f64 / total as f64,
            100.0 * opts.sparsity
        );
    }
    let keeps = choose(&sal, hi);
    let mut q = g.clone();
    let mut reports = Vec::new();
    // Readers' original outputs (pre-activation), for the refit and the report.
    let originals = if samples.is_empty() {
        HashMap::new()
    } else {
        reader_io(g, &grps, samples)?
    };
    for (grp, keep) in grps.iter().zip(&keeps) {
        if keep.len() == grp.channels {
            continue;
        }
        apply(&mut q, grp, keep);
        let (mut before, mut after) = (f64::NAN, f64::NAN);
        let mut underdetermined = false;
        if !samples.is_empty() {
            // Inputs of the readers as the pruned model now computes them.
            let now = reader_io(&q, std::slice::from_ref(grp), samples)?;
            for &(r, _) in &grp.readers {
                let (Some((_, y_orig)), Some((x_now, _))) = (originals.get(&r), now.get(&r)) else {
                    continue;
                };
                let e0 = crate::prune_ls::relative_error(&q, r, x_now, y_orig)?;
                before = before.max(e0);
                if opts.reconstruct {
                    // The refit rewrites the reader's weights and bias: its own copies.
                    own(&mut q, r, 1);
                    own(&mut q, r, 2);
                    let (rows, unknowns) = crate::prune_ls::refit(&mut q, r, x_now, y_orig)?;
                    if rows < unknowns {
                        underdetermined = true;
                    }
                    let e1 = crate::prune_ls::relative_error(&q, r, x_now, y_orig)?;
                    after = after.max(e1);
                }
            }
        }
        reports.push(GroupReport {
            layer: g.nodes[grp.producer].name.clone(),
            channels: (grp.channels, keep.len()),
            error_removed: before,
            error_refit: after,
            underdetermined,
        });
    }
    crate::passes::dce::run(&mut q);
    q.check()?;
    Ok(PruneResult {
        weights: (total, total_weights(&q)),
        graph: q,
        groups: reports,
    })
}

/// Per reader node: its input values and its pre-activation outputs, one row per sample.
type ReaderIo = HashMap<usize, (Vec<Vec<f32>>, Vec<Vec<f32>>)>;

/// For each reader of `grps`: its input values (per sample, flattened) and its pre-activation
/// output computed from them with its current weights.
fn reader_io(g: &Graph, grps: &[Group], samples: &[Vec<Vec<f32>>]) -> Result<ReaderIo> {
    let mut want: HashMap<TId, Vec<usize>> = HashMap::new();
    for grp in grps {
        for &(r, _) in &grp.readers {
            if let Some(x) = g.nodes[r].input(0) {
                want.entry(x).or_default().push(r);
            }
        }
    }
    let (bytes, _, remap) = crate::emit::emit_with(g, false)?;
    let file_to_graph = crate::ptq::calibrate_inverse(&remap);
    let mut xs: HashMap<TId, Vec<Vec<f32>>> = HashMap::new();
    crate::ptq::observe_values(&bytes, &file_to_graph, samples, |_, t, v| {
        if want.contains_key(&t) {
            xs.entry(t).or_default().push(v.to_vec());
        }
    })?;
    let mut out = HashMap::new();
    for (t, readers) in want {
        let x = xs.remove(&t).unwrap_or_default();
        for r in readers {
            let y = x
                .iter()
                .map(|xi| crate::prune_ls::pre_activation(g, r, xi))
                .collect::<Result<Vec<_>>>()?;
            out.insert(r, (x.clone(), y));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
