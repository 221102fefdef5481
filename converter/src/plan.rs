//! Offline arena planning (as TFLite Micro's greedy planner): tensor lifetimes -> offsets -> one
//! arena size known before the device boots.

use crate::ir::{Graph, TId};
use kiln_runtime::format::ALIGN;
use kiln_runtime::OpKind;

/// Where each arena tensor lives.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Arena offset of each tensor (`None` for constants and unused tensors).
    pub offsets: Vec<Option<usize>>,
    /// Total arena bytes.
    pub arena_size: usize,
    /// The largest sum of simultaneously live tensor sizes: no plan can use less.
    pub lower_bound: usize,
    /// Live range `(first op, last op)` of each planned tensor (first = -1 for graph inputs).
    pub lifetimes: Vec<Option<(i64, i64)>>,
}

fn align(v: usize) -> usize {
    v.div_ceil(ALIGN) * ALIGN
}

/// Plans the arena for `g` (nodes in execution order).
pub fn plan(g: &Graph) -> Plan {
    let nt = g.tensors.len();
    let n_ops = g.nodes.len() as i64;
    // Alias groups: a reshape's output shares its input's bytes.
    let mut group: Vec<usize> = (0..nt).collect();
    fn find(group: &mut [usize], mut t: usize) -> usize {
        while group[t] != t {
            group[t] = group[group[t]];
            t = group[t];
        }
        t
    }
    let is_arena = |t: TId| g.tensors[t].data.is_none();
    for n in &g.nodes {
        if n.kind() == OpKind::Reshape {
            if let Some(x) = n.input(0) {
                if is_arena(x) {
                    let (a, b) = (find(&mut group, x), find(&mut group, n.outputs[0]));
                    group[b] = a;
                }
            }
        }
    }
    let mut life: Vec<Option<(i64, i64)>> = vec![None; nt];
    let touch = |t: TId, at: i64, life: &mut Vec<Option<(i64, i64)>>| {
        let e = life[t].get_or_insert((at, at));
        e.0 = e.0.min(at);
        e.1 = e.1.max(at);
    };
    for &t in &g.inputs {
        touch(t, -1, &mut life);
    }
    for (i, n) in g.nodes.iter().enumerate() {
        for &t in n.inputs.iter().flatten() {
            if is_arena(t) {
                touch(t, i as i64, &mut life);
            }
        }
        for &t in &n.outputs {
            touch(t, i as i64, &mut life);
        }
    }
    for &t in &g.outputs {
        touch(t, n_ops, &mut life);
    }
    // Merge into groups.
    let mut glife: Vec<Option<(i64, i64)>> = vec![None; nt];
    let mut gsize = vec![0usize; nt];
    for t in 0..nt {
        if let Some((a, b)) = life[t] {
            let r = find(&mut group, t);
            let e = glife[r].get_or_insert((a, b));
            e.0 = e.0.min(a);
            e.1 = e.1.max(b);
            gsize[r] = gsize[r].max(align(g.tensors[t].byte_len()));
        }
    }
    let mut roots: Vec<usize> = (0..nt)
        .filter(|&r| glife[r].is_some() && find(&mut group, r) == r)
        .collect();
    roots.sort_by(|&a, &b| gsize[b].cmp(&gsize[a]).then(glife[a].cmp(&glife[b])));
    let mut goff: Vec<Option<usize>> = vec![None; nt];
    let mut placed: Vec<usize> = Vec::new();
    let overlaps = |x: (i64, i64), y: (i64, i64)| x.0 <= y.1 && y.0 <= x.1;
    let mut arena_size = 0;
    for &r in &roots {
        let lr = glife[r].unwrap_or((0, 0));
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&p| overlaps(lr, glife[p].unwrap_or((0, 0))))
            .map(|&p| (goff[p].unwrap_or(0), gsize[p]))
            .collect();
        busy.sort();
        let mut off = 0;
        for (bo, bs) in busy {
            if off + gsize[r] <= bo {
                break;
            }
            off = off.max(bo + bs);
        }
        goff[r] = Some(off);
        arena_size = arena_size.max(off + gsize[r]);
        placed.push(r);
    }
    let mut lower_bound = 0;
    for step in -1..=n_ops {
        let live: usize = roots
            .iter()
            .filter(|&&r| glife[r].is_some_and(|(a, b)| a <= step && step <= b))
            .map(|&r| gsize[r])
            .sum();
        lower_bound = lower_bound.max(live);
    }
    let mut offsets = vec![None; nt];
    let mut lifetimes = vec![None; nt];
    for t in 0..nt {
        if life[t].is_some() {
            let r = find(&mut group, t);
            offsets[t] = goff[r];
            lifetimes[t] = glife[r];
        }
    }
    Plan {
        offsets,
        arena_size,
        lower_bound,
        lifetimes,
    }
}
