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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Node;
    use kiln_runtime::ops::{
        BinaryKind, BinaryParams, DenseParams, OpParams, ReshapeParams, UnaryKind, UnaryParams,
    };
    use kiln_runtime::DType;
    use proptest::prelude::*;

    /// One step of a generated graph: which op, reading which earlier tensors.
    #[derive(Clone, Debug)]
    enum Step {
        Relu(usize),
        Add(usize, usize),
        Dense(usize, usize),
        Reshape(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            any::<usize>().prop_map(Step::Relu),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Step::Add(a, b)),
            (any::<usize>(), 1usize..48).prop_map(|(a, n)| Step::Dense(a, n)),
            any::<usize>().prop_map(Step::Reshape),
        ]
    }

    /// A graph of f32 `[1, n]` activations built from `steps`; `outs` picks extra graph outputs.
    fn build(inputs: &[usize], steps: &[Step], outs: &[usize]) -> Graph {
        let mut g = Graph::default();
        let mut acts: Vec<TId> = Vec::new();
        for (k, &n) in inputs.iter().enumerate() {
            let t = g.add_tensor(format!("in{k}"), DType::F32, vec![1, n]);
            g.inputs.push(t);
            acts.push(t);
        }
        for (i, s) in steps.iter().enumerate() {
            let pick = |v: usize| acts[v % acts.len()];
            let (op, ins, n) = match *s {
                Step::Relu(a) => {
                    let x = pick(a);
                    let op = OpParams::Unary(UnaryParams::new(UnaryKind::Relu));
                    (op, vec![Some(x)], g.tensors[x].shape[1])
                }
                Step::Add(a, b) => {
                    let (x, y) = (pick(a), pick(b));
                    let n = g.tensors[x].shape[1];
                    // Only same-size operands add; otherwise read x twice.
                    let y = if g.tensors[y].shape[1] == n { y } else { x };
                    let op = OpParams::Binary(BinaryParams::new(BinaryKind::Add));
                    (op, vec![Some(x), Some(y)], n)
                }
                Step::Dense(a, m) => {
                    let x = pick(a);
                    let k = g.tensors[x].shape[1];
                    let w = g.add_const_f32(format!("w{i}"), vec![m, k], vec![0.01; m * k]);
                    let op = OpParams::Dense(DenseParams::default());
                    (op, vec![Some(x), Some(w), None], m)
                }
                Step::Reshape(a) => {
                    let x = pick(a);
                    let op = OpParams::Reshape(ReshapeParams);
                    (op, vec![Some(x)], g.tensors[x].shape[1])
                }
            };
            let y = g.add_tensor(format!("t{i}"), DType::F32, vec![1, n]);
            g.push(Node::new(format!("op{i}"), op, ins, vec![y]));
            acts.push(y);
        }
        let last = *acts.last().unwrap_or(&0);
        let written = &acts[inputs.len()..];
        g.outputs.push(last);
        for &o in outs {
            if !written.is_empty() {
                let t = written[o % written.len()];
                if !g.outputs.contains(&t) {
                    g.outputs.push(t);
                }
            }
        }
        g
    }

    /// Tensors joined by reshapes share bytes; everything else must not while both are live.
    fn alias_roots(g: &Graph) -> Vec<usize> {
        let mut root: Vec<usize> = (0..g.tensors.len()).collect();
        for n in &g.nodes {
            if n.kind() == OpKind::Reshape {
                if let Some(x) = n.input(0) {
                    let (mut a, mut b) = (x, n.outputs[0]);
                    while root[a] != a {
                        a = root[a];
                    }
                    while root[b] != b {
                        b = root[b];
                    }
                    root[b] = a;
                }
            }
        }
        (0..root.len())
            .map(|mut t| {
                while root[t] != t {
                    t = root[t];
                }
                t
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Every plan is valid (aligned slots inside the arena, no two tensors live at the same
        /// time share a byte unless a reshape aliases them), never below the lower bound, and
        /// the file it goes into passes the runtime's own validator.
        #[test]
        fn every_plan_is_valid_and_at_least_the_lower_bound(
            inputs in prop::collection::vec(1usize..40, 1..3),
            steps in prop::collection::vec(step(), 1..24),
            outs in prop::collection::vec(any::<usize>(), 0..3),
        ) {
            let g = build(&inputs, &steps, &outs);
            let p = plan(&g);
            let roots = alias_roots(&g);
            prop_assert!(p.arena_size >= p.lower_bound);
            let planned: Vec<TId> = (0..g.tensors.len()).filter(|&t| p.offsets[t].is_some()).collect();
            let mut biggest = 0;
            for &t in &planned {
                let off = p.offsets[t].unwrap();
                let len = g.tensors[t].byte_len();
                biggest = biggest.max(align(len));
                prop_assert_eq!(off % ALIGN, 0);
                prop_assert!(off + len <= p.arena_size);
                prop_assert!(g.tensors[t].data.is_none(), "a constant got an arena slot");
            }
            prop_assert!(p.lower_bound >= biggest);
            for (i, &a) in planned.iter().enumerate() {
                for &b in &planned[i + 1..] {
                    let (la, lb) = (p.lifetimes[a].unwrap(), p.lifetimes[b].unwrap());
                    let live_together = la.0 <= lb.1 && lb.0 <= la.1;
                    let (oa, ob) = (p.offsets[a].unwrap(), p.offsets[b].unwrap());
                    let bytes_overlap = oa < ob + g.tensors[b].byte_len()
                        && ob < oa + g.tensors[a].byte_len();
                    prop_assert!(
                        !(live_together && bytes_overlap) || roots[a] == roots[b],
                        "tensors {} and {} overlap while both live", a, b
                    );
                }
            }
            let (bytes, _) = crate::emit::emit(&g).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
            prop_assert!(!bytes.is_empty());
        }
    }

    #[test]
    fn a_chain_needs_two_slots_and_a_reshape_none() {
        // in -> relu -> relu -> reshape -> relu: ping-pong between two 64-byte slots.
        let g = build(
            &[16],
            &[
                Step::Relu(0),
                Step::Relu(1),
                Step::Reshape(2),
                Step::Relu(3),
            ],
            &[],
        );
        let p = plan(&g);
        assert_eq!(p.lower_bound, 128);
        assert_eq!(p.arena_size, 128);
        let (t2, t3) = (g.nodes[2].input(0).unwrap(), g.nodes[2].outputs[0]);
        assert_eq!(p.offsets[t2], p.offsets[t3], "the reshape is aliased");
    }
}
