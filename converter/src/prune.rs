//! Structured pruning of a float graph: whole output channels of convolutions and units of dense
//! layers removed, every reader rewritten to match, and the next layer refit by least squares
//! on calibration activations (channel reconstruction).
//!
//! A *group* is a channel space: the tensors tied channel for channel to a conv's or dense
//! layer's output. It is walked forward through the ops that keep channels where they are
//! (element-wise functions, pooling, padding, depthwise convolutions, element-wise ops of two
//! tensors or with a scalar or per-channel constant, a flatten of NHWC into a dense layer) to
//! the convs and dense layers that read it, and backward through element-wise ops of two
//! tensors to every producer tied in: the two branches of a residual add lose the same
//! channels. A space that reaches anything else (a concat, a softmax, a graph input or output)
//! is not pruned. Channels are ranked by the norm of their filters (each producer's norms
//! divided by their mean, summed over a space's producers); the same fraction of channels is
//! taken from every group, chosen so that the fraction of all conv and dense weights removed
//! reaches the sparsity asked for.

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
    /// Kept channels per group rounded up to a multiple of this (1: any count). The f32 and
    /// int8 kernels work on 16 output channels at a time on x86 (8 or 4 elsewhere), so a
    /// multiple of 16 makes the time saved follow the MACs saved.
    pub multiple: usize,
    /// Fixed fractions of channels to remove, by layer name (a producer of the group); the
    /// other groups share the fraction that reaches `sparsity`.
    pub layers: Vec<(String, f32)>,
    /// Choose each group's fraction by sensitivity (needs samples): every group is pruned
    /// alone at 25, 50 and 75% of its channels and the model's output error measured; then
    /// eighths of channels (up to three quarters of a group) are taken, greedily, from the
    /// group whose error grows least per weight removed, until the sparsity is reached.
    /// Groups named in `layers` keep theirs.
    pub sensitivity: bool,
    /// Remove single weights (the smallest magnitudes of every conv and dense layer) instead
    /// of whole channels: the file shrinks once `kiln quantize` stores the mostly-zero int8
    /// layers sparse. `multiple` and `layers` do not apply.
    pub unstructured: bool,
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
    /// One entry per pruned group (unstructured: per layer, `channels` counting its weights).
    pub groups: Vec<GroupReport>,
    /// Conv and dense weights before and after.
    pub weights: (usize, usize),
}

/// One group: a channel space. Its producers (convs or dense layers whose outputs are tied by
/// element-wise ops, such as the two branches of a residual add) lose the same channels; the
/// ops the channels pass through and the readers at the end are rewritten to match.
#[derive(Clone, Debug)]
struct Group {
    producers: Vec<usize>,
    channels: usize,
    /// Tensors of the space (channels on their last axis).
    tensors: Vec<TId>,
    /// Flattens of a space tensor into `[N, pixels * channels]` (NHWC order).
    flattens: Vec<TId>,
    /// Depthwise convs in the space (their weights and bias follow the channels).
    depthwise: Vec<usize>,
    /// Per-channel constants of element-wise ops in the space: (node, input).
    channel_consts: Vec<(usize, usize)>,
    /// Readers: (node, positions per channel): a conv reads channel `c` at input channel `c`
    /// (`per_channel` 1); a dense after a flatten reads it at every `pos * channels + c`.
    readers: Vec<(usize, usize)>,
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

/// A conv or dense layer whose output channels can be removed (constant f32 weights, one
/// group).
fn is_producer(g: &Graph, n: usize) -> bool {
    is_weighted(g, n) && weights_of(g, n).is_some()
}

/// How node `n` relates to a channel space with `channels` channels that tensor `t` belongs to.
enum Role {
    /// Reads `t` at input 0 as a conv or dense layer (its input channels shrink).
    Reader,
    /// A depthwise conv: its output is in the space, its weights follow the channels.
    Depthwise,
    /// Keeps the channels where they are: its output (and, for an element-wise op of two
    /// tensors, its other input) is in the space. `Some(k)`: input `k` is a per-channel
    /// constant to slice.
    Preserving(Option<usize>),
    /// A flatten of `[.., C]` into `[N, pixels * C]`.
    Flatten,
    /// Anything else: the space cannot be pruned.
    Blocking,
}

fn role(g: &Graph, n: usize, t: TId, channels: usize) -> Role {
    let node = &g.nodes[n];
    let reads: Vec<usize> = (0..node.inputs.len())
        .filter(|&k| node.input(k) == Some(t))
        .collect();
    let Some(&out) = node.outputs.first() else {
        return Role::Blocking;
    };
    let out_shape = &g.tensors[out].shape;
    let keeps = out_shape.last() == Some(&channels);
    match node.op {
        OpParams::Binary(_) => {
            let full = &g.tensors[t].shape;
            if !keeps || full != out_shape {
                return Role::Blocking;
            }
            let other = (0..2).find(|&k| node.input(k) != Some(t));
            match other {
                None => Role::Preserving(None),
                Some(k) => {
                    let Some(o) = node.input(k) else {
                        return Role::Blocking;
                    };
                    let os = &g.tensors[o].shape;
                    let n_el: usize = os.iter().product();
                    if g.tensors[o].data.is_some() {
                        if n_el == 1 {
                            Role::Preserving(None)
                        } else if os.last() == Some(&channels)
                            && n_el == channels
                            && g.const_f32(o).is_some()
                        {
                            Role::Preserving(Some(k))
                        } else {
                            Role::Blocking
                        }
                    } else if os == out_shape {
                        Role::Preserving(None)
                    } else {
                        Role::Blocking
                    }
                }
            }
        }
        _ if reads != [0] => Role::Blocking,
        OpParams::Conv2d(cp) if cp.geom.groups == 1 && is_producer(g, n) => Role::Reader,
        OpParams::Conv2d(cp)
            if !cp.packed
                && cp.geom.groups == channels
                && g.tensors[node.input(1).unwrap_or(0)].shape[3] == 1
                && keeps
                && weights_of(g, n).is_some() =>
        {
            Role::Depthwise
        }
        OpParams::Dense(_) if is_producer(g, n) => Role::Reader,
        OpParams::Unary(_) | OpParams::MaxPool(_) | OpParams::AvgPool(_) if keeps => {
            Role::Preserving(None)
        }
        OpParams::Pad(pp) if keeps && pp.pads[out_shape.len() - 1] == (0, 0) => {
            Role::Preserving(None)
        }
        OpParams::Reshape(_) => Role::Flatten,
        _ => Role::Blocking,
    }
}

/// The channel space of producer `p`'s output: every tensor tied to it channel for channel,
/// walked forward through consumers and backward through element-wise ops to the other
/// producers; `None` when something in it cannot be rewritten.
fn space(g: &Graph, p: usize) -> Option<Group> {
    let y = g.nodes[p].outputs[0];
    let channels = *g.tensors[y].shape.last()?;
    if channels < 2 {
        return None;
    }
    let mut grp = Group {
        producers: Vec::new(),
        channels,
        tensors: Vec::new(),
        flattens: Vec::new(),
        depthwise: Vec::new(),
        channel_consts: Vec::new(),
        readers: Vec::new(),
    };
    let mut seen_nodes = std::collections::HashSet::new();
    let mut work = vec![y];
    while let Some(t) = work.pop() {
        if grp.tensors.contains(&t) {
            continue;
        }
        if g.outputs.contains(&t) || g.tensors[t].shape.last() != Some(&channels) {
            return None;
        }
        grp.tensors.push(t);
        // Backward: who writes t.
        let w = g.producer(t)?;
        if is_producer(g, w) {
            if !grp.producers.contains(&w) {
                grp.producers.push(w);
            }
        } else if seen_nodes.insert(w) {
            // Reached from its output: its channel inputs join the space.
            for k in 0..g.nodes[w].inputs.len() {
                let Some(i) = g.nodes[w].input(k) else {
                    continue;
                };
                if g.tensors[i].data.is_some() {
                    continue;
                }
                match role(g, w, i, channels) {
                    Role::Preserving(k) => {
                        if let Some(k) = k {
                            if !grp.channel_consts.contains(&(w, k)) {
                                grp.channel_consts.push((w, k));
                            }
                        }
                        work.push(i);
                    }
                    Role::Depthwise => {
                        if !grp.depthwise.contains(&w) {
                            grp.depthwise.push(w);
                        }
                        work.push(i);
                    }
                    _ => return None,
                }
            }
        }
        // Forward: who reads t.
        for c in g.consumers(t) {
            match role(g, c, t, channels) {
                Role::Reader => {
                    if !grp.readers.iter().any(|&(r, _)| r == c) {
                        grp.readers.push((c, 1));
                    }
                }
                Role::Depthwise => {
                    if !grp.depthwise.contains(&c) {
                        grp.depthwise.push(c);
                    }
                    work.push(g.nodes[c].outputs[0]);
                }
                Role::Preserving(k) => {
                    if let Some(k) = k {
                        if !grp.channel_consts.contains(&(c, k)) {
                            grp.channel_consts.push((c, k));
                        }
                    }
                    work.push(g.nodes[c].outputs[0]);
                    for i in g.nodes[c].inputs.iter().flatten() {
                        if g.tensors[*i].data.is_none() {
                            work.push(*i);
                        }
                    }
                }
                Role::Flatten => {
                    let out = g.nodes[c].outputs[0];
                    let (xs, ys) = (&g.tensors[t].shape, &g.tensors[out].shape);
                    let n = xs.first().copied().unwrap_or(1);
                    let total: usize = xs.iter().product();
                    if ys.len() != 2 || ys[0] != n || ys[1] * n != total || g.outputs.contains(&out)
                    {
                        return None;
                    }
                    let spread = total / n / channels;
                    for d in g.consumers(out) {
                        let node = &g.nodes[d];
                        let once = node.inputs.iter().flatten().filter(|&&i| i == out).count() == 1;
                        if !(matches!(node.op, OpParams::Dense(_))
                            && is_producer(g, d)
                            && once
                            && node.input(0) == Some(out))
                        {
                            return None;
                        }
                        if !grp.readers.iter().any(|&(r, _)| r == d) {
                            grp.readers.push((d, spread));
                        }
                    }
                    if !grp.flattens.contains(&out) {
                        grp.flattens.push(out);
                    }
                }
                Role::Blocking => return None,
            }
        }
    }
    if grp.readers.is_empty() {
        return None;
    }
    // A layer both writing and reading the space would need its rows and columns cut alike.
    if grp.readers.iter().any(|(r, _)| grp.producers.contains(r)) {
        return None;
    }
    grp.producers.sort_unstable();
    Some(grp)
}

/// The prunable groups of `g`, in graph order of their first producer.
fn groups(g: &Graph) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for p in 0..g.nodes.len() {
        if !is_producer(g, p) || out.iter().any(|grp| grp.producers.contains(&p)) {
            continue;
        }
        if let Some(grp) = space(g, p) {
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

/// Saliency of a group's channels: each producer's saliencies divided by their mean (so that
/// no layer outweighs another by the scale of its weights), summed over the producers.
fn group_saliency(g: &Graph, grp: &Group, c: Criterion) -> Vec<f64> {
    let mut total = vec![0.0f64; grp.channels];
    for &p in &grp.producers {
        let s = saliency(g, p, grp.channels, c);
        let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
        for (t, v) in total.iter_mut().zip(&s) {
            *t += if mean > 0.0 { v / mean } else { 0.0 };
        }
    }
    total
}

/// Every conv and dense weight of the graph (what `--sparsity` is a fraction of).
pub fn conv_dense_weights(g: &Graph) -> usize {
    total_weights(g)
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
    for &p in grp.producers.iter().chain(&grp.depthwise) {
        if let Some(w) = own(g, p, 1) {
            keep_rows(g, w, keep);
        }
        if let Some(b) = own(g, p, 2) {
            keep_rows(g, b, keep);
        }
    }
    for &d in &grp.depthwise {
        if let OpParams::Conv2d(cp) = &mut g.nodes[d].op {
            cp.geom.groups = keep.len();
        }
    }
    for &(n, k) in &grp.channel_consts {
        if let Some(c) = own(g, n, k) {
            keep_cols(g, c, keep);
        }
    }
    for &t in &grp.tensors {
        let shape = &mut g.tensors[t].shape;
        let l = shape.len() - 1;
        shape[l] = keep.len();
    }
    for &t in &grp.flattens {
        let shape = &mut g.tensors[t].shape;
        shape[1] = shape[1] / grp.channels * keep.len();
    }
    for &(r, spread) in &grp.readers {
        let cols = reader_cols(keep, grp.channels, spread);
        if let Some(w) = own(g, r, 1) {
            keep_cols(g, w, &cols);
        }
    }
}

/// Channels to keep per group for a channel fraction removed (`fixed[g]` where given, `frac`
/// elsewhere): the most salient ones, at least one, their count rounded up to a multiple of
/// `multiple` (a group of at most `multiple` channels keeps them all).
fn choose(sal: &[Vec<f64>], frac: f64, fixed: &[Option<f64>], multiple: usize) -> Vec<Vec<usize>> {
    sal.iter()
        .zip(fixed)
        .map(|(s, f)| {
            let n = s.len();
            let frac = f.unwrap_or(frac);
            let mut kept = n - ((n as f64 * frac).floor() as usize).min(n - 1);
            if multiple > 1 {
                kept = (kept.div_ceil(multiple) * multiple).min(n);
            }
            let remove = n - kept;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
            let mut keep: Vec<usize> = order[..n - remove].to_vec();
            keep.sort_unstable();
            keep
        })
        .collect()
}

/// Conv and dense weights `keeps` (channels kept per group) removes from `g` (`total` of them).
fn removed_weights(g: &Graph, grps: &[Group], keeps: &[Vec<usize>], total: usize) -> usize {
    let mut h = g.clone();
    for (grp, keep) in grps.iter().zip(keeps) {
        apply(&mut h, grp, keep);
    }
    total - total_weights(&h)
}

/// `||y' - y|| / ||y||` between two runs' outputs.
fn output_error(a: &[Vec<Vec<f32>>], b: &[Vec<Vec<f32>>]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a
        .iter()
        .flatten()
        .flatten()
        .zip(b.iter().flatten().flatten())
    {
        num += (*x as f64 - *y as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// Per group, the fraction of channels to remove chosen by sensitivity (see
/// [`PruneOptions::sensitivity`]); groups already in `fixed` keep theirs.
fn sensitivity_fractions(
    g: &Graph,
    samples: &[Vec<Vec<f32>>],
    opts: &PruneOptions,
    grps: &[Group],
    sal: &[Vec<f64>],
    fixed: Vec<Option<f64>>,
    target: usize,
) -> Result<Vec<Option<f64>>> {
    const LEVELS: usize = 8;
    let total = total_weights(g);
    let base = crate::verify::run_kiln(&crate::emit::emit(g)?.0, samples)?;
    // The model's output error with group k alone pruned to 1/4, 2/4, 3/4 of its channels.
    let mut err = vec![[0f64; 4]; grps.len()];
    for (k, e) in err.iter_mut().enumerate() {
        if fixed[k].is_some() {
            continue;
        }
        // The readers' unpruned outputs, the refit's targets at every fraction.
        let orig = if opts.reconstruct {
            reader_io(g, std::slice::from_ref(&grps[k]), samples)?
        } else {
            HashMap::new()
        };
        for q in 1..4 {
            let mut only = vec![Some(0.0); grps.len()];
            only[k] = Some(q as f64 / 4.0);
            let keeps = choose(sal, 0.0, &only, opts.multiple);
            let mut h = g.clone();
            apply(&mut h, &grps[k], &keeps[k]);
            if opts.reconstruct {
                let now = reader_io(&h, std::slice::from_ref(&grps[k]), samples)?;
                for &(r, _) in &grps[k].readers {
                    if let (Some((_, y)), Some((x, _))) = (orig.get(&r), now.get(&r)) {
                        own(&mut h, r, 1);
                        own(&mut h, r, 2);
                        crate::prune_ls::refit(&mut h, r, x, y)?;
                    }
                }
            }
            let out = crate::verify::run_kiln(&crate::emit::emit(&h)?.0, samples)?;
            e[q] = output_error(&out, &base);
        }
    }
    // Error at level l (l eighths of the channels), linear between the measured quarters.
    let at = |k: usize, l: usize| -> f64 {
        let x = l as f64 / 2.0;
        let i = (x.floor() as usize).min(2);
        err[k][i] + (err[k][i + 1] - err[k][i]) * (x - i as f64)
    };
    let mut level = vec![0usize; grps.len()];
    let frac = |level: &[usize]| -> Vec<Option<f64>> {
        level
            .iter()
            .zip(&fixed)
            .map(|(&l, f)| f.or(Some(l as f64 / LEVELS as f64)))
            .collect()
    };
    // Weights group k removes alone at each level, counted once.
    let max_level = 3 * LEVELS / 4;
    let alone: Vec<Vec<usize>> = (0..grps.len())
        .map(|k| {
            (0..=max_level)
                .map(|l| {
                    let mut only = vec![Some(0.0); grps.len()];
                    only[k] = Some(l as f64 / LEVELS as f64);
                    removed_weights(g, grps, &choose(sal, 0.0, &only, opts.multiple), total)
                })
                .collect()
        })
        .collect();
    while removed_weights(
        g,
        grps,
        &choose(sal, 0.0, &frac(&level), opts.multiple),
        total,
    ) < target
    {
        let mut best: Option<(f64, usize)> = None;
        for k in 0..grps.len() {
            // At most 3/4 of a group's channels: the last measured point.
            if fixed[k].is_some() || level[k] + 1 > max_level {
                continue;
            }
            let dw = alone[k][level[k] + 1]
                .saturating_sub(alone[k][level[k]])
                .max(1);
            let cost = (at(k, level[k] + 1) - at(k, level[k])).max(0.0) / dw as f64;
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, k));
            }
        }
        let Some((_, k)) = best else { break };
        level[k] += 1;
    }
    Ok(frac(&level))
}

/// The fixed channel fraction of each group from `layers` (name, fraction); refuses names that
/// are not a layer, layers that cannot be pruned, and fractions outside `[0, 1)`.
fn fixed_fractions(
    g: &Graph,
    grps: &[Group],
    layers: &[(String, f32)],
) -> Result<Vec<Option<f64>>> {
    let mut fixed = vec![None; grps.len()];
    for (name, f) in layers {
        if !(0.0..1.0).contains(f) {
            bail!("--layer {name}={f}: the fraction of channels to remove is outside [0, 1)");
        }
        let Some(n) = g.nodes.iter().position(|n| &n.name == name) else {
            let mut names: Vec<&str> = grps
                .iter()
                .flat_map(|grp| grp.producers.iter().map(|&p| g.nodes[p].name.as_str()))
                .collect();
            names.sort_unstable();
            bail!(
                "--layer {name}: no layer of that name; the prunable layers are: {}",
                names.join(", ")
            );
        };
        let Some(k) = grps.iter().position(|grp| grp.producers.contains(&n)) else {
            bail!(
                "--layer {name}: its channels cannot be pruned (it is not a conv or dense layer \
                 with constant weights, or its output reaches an op kiln cannot rewrite: a \
                 concat, a softmax, a graph output)"
            );
        };
        fixed[k] = Some(*f as f64);
    }
    Ok(fixed)
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
        if opts.unstructured {
            return prune_int8_unstructured(g, opts);
        }
        bail!(
            "the model has int8 activations: whole channels are pruned from the float model \
             (then quantize it); an int8 model can lose single weights (--unstructured), which \
             keeps them on their quantization grid"
        );
    }
    if opts.unstructured {
        return prune_unstructured(g, samples, opts);
    }
    let grps = groups(g);
    if grps.is_empty() {
        bail!(
            "nothing to prune: no conv or dense layer has channels whose every reader kiln can \
             rewrite (another conv or dense, through element-wise ops, residual adds, pooling, \
             depthwise convs or a flatten)"
        );
    }
    let mut fixed = fixed_fractions(g, &grps, &opts.layers)?;
    let total = total_weights(g);
    let sal: Vec<Vec<f64>> = grps
        .iter()
        .map(|grp| group_saliency(g, grp, opts.criterion))
        .collect();
    // Weights removed by a choice of channels: counted on the graph with the channels taken
    // away (groups overlap where one layer reads one group and feeds the next).
    let removed_by = |keeps: &[Vec<usize>]| -> usize { removed_weights(g, &grps, keeps, total) };
    let target = (opts.sparsity as f64 * total as f64).ceil() as usize;
    if opts.sensitivity {
        if samples.is_empty() {
            bail!("--sensitivity needs calibration inputs (--calib) to measure the model's error");
        }
        fixed = sensitivity_fractions(g, samples, opts, &grps, &sal, fixed, target)?;
    }
    let removed = |frac: f64| removed_by(&choose(&sal, frac, &fixed, opts.multiple));
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
    let mut keeps = choose(&sal, hi, &fixed, opts.multiple);
    // One fraction for every group overshoots by up to a step of each; give back the most
    // salient removed channels (a multiple's worth at a time, of groups without a fixed
    // fraction) while enough weights stay removed.
    loop {
        let mut best: Option<(f64, usize, Vec<usize>)> = None;
        for (k, keep) in keeps.iter().enumerate() {
            let n = sal[k].len();
            if fixed[k].is_some() || keep.len() == n {
                continue;
            }
            let mut gone: Vec<usize> = (0..n).filter(|c| !keep.contains(c)).collect();
            gone.sort_by(|&a, &b| sal[k][b].total_cmp(&sal[k][a]).then(a.cmp(&b)));
            let back = opts.multiple.max(1).min(gone.len());
            let mut more = keep.clone();
            more.extend_from_slice(&gone[..back]);
            more.sort_unstable();
            let value: f64 = gone[..back].iter().map(|&c| sal[k][c]).sum::<f64>() / back as f64;
            let mut trial = keeps.clone();
            trial[k] = more.clone();
            if removed_by(&trial) >= target && best.as_ref().is_none_or(|b| value > b.0) {
                best = Some((value, k, more));
            }
        }
        let Some((_, k, more)) = best else { break };
        keeps[k] = more;
    }
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
            layer: grp
                .producers
                .iter()
                .map(|&p| g.nodes[p].name.as_str())
                .collect::<Vec<_>>()
                .join(" + "),
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
    let readers: Vec<usize> = grps
        .iter()
        .flat_map(|grp| grp.readers.iter().map(|&(r, _)| r))
        .collect();
    node_io(g, &readers, samples)
}

/// For each conv or dense node of `nodes`: its input values (per sample, flattened) and its
/// pre-activation output computed from them with its current weights.
fn node_io(g: &Graph, nodes: &[usize], samples: &[Vec<Vec<f32>>]) -> Result<ReaderIo> {
    let mut want: HashMap<TId, Vec<usize>> = HashMap::new();
    for &r in nodes {
        if let Some(x) = g.nodes[r].input(0) {
            let list = want.entry(x).or_default();
            if !list.contains(&r) {
                list.push(r);
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

/// The indices of the `ceil(frac · n)` smallest of `mag` (ties by index): the weights
/// unstructured pruning zeroes.
fn smallest(mag: &[f32], frac: f64) -> Vec<usize> {
    let n = mag.len();
    let drop = ((frac * n as f64).ceil() as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| mag[a].total_cmp(&mag[b]).then(a.cmp(&b)));
    order.truncate(drop);
    order
}

/// The real magnitude of each int8 weight of conv or dense `n` (`|q|·scale` of its output
/// channel), if it has constant int8 weights with zero point 0 (or per-channel scales).
fn int8_magnitudes(g: &Graph, n: usize) -> Option<Vec<f32>> {
    let wt = g.nodes[n].input(1)?;
    let t = &g.tensors[wt];
    let Some(Data::I8(q)) = &t.data else {
        return None;
    };
    let rows = *t.shape.first()?;
    let per = q.len() / rows.max(1);
    let scale: Vec<f32> = match t.quant {
        kiln_runtime::Quant::PerTensor {
            scale,
            zero_point: 0,
        } => vec![scale; rows],
        kiln_runtime::Quant::None => vec![1.0; rows],
        kiln_runtime::Quant::PerAxis { scales, axis: 0 } => {
            let s = g.const_f32(scales as usize)?;
            (s.len() == rows).then(|| s.to_vec())?
        }
        _ => return None,
    };
    Some(
        q.iter()
            .enumerate()
            .map(|(i, &v)| (v as f32).abs() * scale[i / per.max(1)])
            .collect(),
    )
}

/// Unstructured pruning of an int8 model: the same fraction of every one-group conv's and
/// dense layer's int8 weights, the smallest real magnitudes, set to zero, so that
/// `opts.sparsity` of all of them are zero. The weights that stay keep their values (they stay
/// on their quantization grid; no refit), as do the scales and requantization.
fn prune_int8_unstructured(g: &Graph, opts: &PruneOptions) -> Result<PruneResult> {
    let int8_layer = |n: usize| match g.nodes[n].op {
        OpParams::Conv2d(p) => p.geom.groups == 1 && !p.packed && !p.sparse,
        OpParams::Dense(p) => !p.packed && !p.sparse,
        _ => false,
    };
    let weight_count = |h: &Graph, n: usize| -> usize {
        h.nodes[n]
            .input(1)
            .and_then(|w| match &h.tensors[w].data {
                Some(Data::I8(v)) => Some(v.len()),
                Some(Data::F32(v)) => Some(v.len()),
                _ => None,
            })
            .unwrap_or(0)
    };
    let all: Vec<usize> = (0..g.nodes.len())
        .filter(|&n| matches!(g.nodes[n].kind(), OpKind::Conv2d | OpKind::Dense))
        .collect();
    let layers: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&n| int8_layer(n) && int8_magnitudes(g, n).is_some())
        .collect();
    if layers.is_empty() {
        bail!(
            "nothing to prune: no int8 conv (one group) or dense layer with constant int8 \
             weights (zero point 0)"
        );
    }
    let total: usize = all.iter().map(|&n| weight_count(g, n)).sum();
    let prunable: usize = layers.iter().map(|&n| weight_count(g, n)).sum();
    let target = (opts.sparsity as f64 * total as f64).ceil() as usize;
    let frac = target as f64 / prunable.max(1) as f64;
    if frac >= 1.0 {
        bail!(
            "at most {:.1}% of the weights are in int8 conv (one group) and dense layers; asked \
             for {:.1}%",
            100.0 * prunable as f64 / total.max(1) as f64,
            100.0 * opts.sparsity
        );
    }
    let mut q = g.clone();
    let mut reports = Vec::new();
    let mut zeros = 0;
    for &r in &layers {
        let mag = int8_magnitudes(&q, r).unwrap_or_default();
        let Some(wt) = own(&mut q, r, 1) else {
            continue;
        };
        let Some(Data::I8(w)) = &q.tensors[wt].data else {
            continue;
        };
        let n = w.len();
        let mut w = w.clone();
        for i in smallest(&mag, frac) {
            w[i] = 0;
        }
        let kept = w.iter().filter(|v| **v != 0).count();
        zeros += n - kept;
        q.tensors[wt].data = Some(Data::I8(w));
        reports.push(GroupReport {
            layer: g.nodes[r].name.clone(),
            channels: (n, kept),
            error_removed: f64::NAN,
            error_refit: f64::NAN,
            underdetermined: false,
        });
    }
    q.check()?;
    // The int8 file keeps the mostly-zero layers as their non-zero entries.
    q.sparse_weights = true;
    Ok(PruneResult {
        weights: (total, total - zeros),
        graph: q,
        groups: reports,
    })
}

/// Unstructured (magnitude) pruning: the same fraction of every one-group conv's and dense
/// layer's weights, the smallest magnitudes, set to zero, so that `opts.sparsity` of all conv
/// and dense weights are zero; then, layer by layer in graph order, the weights that stay (and
/// the bias) refit by least squares to the unpruned layer's outputs on the inputs the pruned
/// model now gives it.
fn prune_unstructured(
    g: &Graph,
    samples: &[Vec<Vec<f32>>],
    opts: &PruneOptions,
) -> Result<PruneResult> {
    let layers: Vec<usize> = (0..g.nodes.len()).filter(|&n| is_producer(g, n)).collect();
    if layers.is_empty() {
        bail!("nothing to prune: no conv (one group) or dense layer with constant f32 weights");
    }
    let total = total_weights(g);
    let prunable: usize = layers
        .iter()
        .map(|&n| weights_of(g, n).map_or(0, <[f32]>::len))
        .sum();
    let target = (opts.sparsity as f64 * total as f64).ceil() as usize;
    let frac = target as f64 / prunable.max(1) as f64;
    if frac >= 1.0 {
        bail!(
            "at most {:.1}% of the weights are in conv (one group) and dense layers; asked for \
             {:.1}%",
            100.0 * prunable as f64 / total.max(1) as f64,
            100.0 * opts.sparsity
        );
    }
    let originals = if samples.is_empty() {
        HashMap::new()
    } else {
        node_io(g, &layers, samples)?
    };
    let mut q = g.clone();
    let mut reports = Vec::new();
    for &r in &layers {
        let Some(wt) = own(&mut q, r, 1) else {
            continue;
        };
        let Some(w) = q.const_f32(wt) else { continue };
        let n = w.len();
        let mag: Vec<f32> = w.iter().map(|v| v.abs()).collect();
        let mut w = w.to_vec();
        for i in smallest(&mag, frac) {
            w[i] = 0.0;
        }
        let kept = w.iter().filter(|v| **v != 0.0).count();
        q.tensors[wt].data = Some(Data::F32(w));
        let (mut before, mut after) = (f64::NAN, f64::NAN);
        if let (Some((_, y_orig)), false) = (originals.get(&r), samples.is_empty()) {
            let now = node_io(&q, &[r], samples)?;
            if let Some((x_now, _)) = now.get(&r) {
                before = crate::prune_ls::relative_error(&q, r, x_now, y_orig)?;
                if opts.reconstruct {
                    own(&mut q, r, 2);
                    crate::prune_ls::refit_masked(&mut q, r, x_now, y_orig)?;
                    after = crate::prune_ls::relative_error(&q, r, x_now, y_orig)?;
                }
            }
        }
        reports.push(GroupReport {
            layer: g.nodes[r].name.clone(),
            channels: (n, kept),
            error_removed: before,
            error_refit: after,
            underdetermined: false,
        });
    }
    q.check()?;
    let zeros: usize = layers
        .iter()
        .map(|&n| weights_of(&q, n).map_or(0, |w| w.iter().filter(|v| **v == 0.0).count()))
        .sum();
    Ok(PruneResult {
        weights: (total, total - zeros),
        graph: q,
        groups: reports,
    })
}

#[cfg(test)]
mod tests;
