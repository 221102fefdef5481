//! Pruning's properties: dead channels go first and their removal changes nothing; the refit
//! brings the readers' outputs closer to the unpruned ones than removal alone; the weights
//! counted are the weights written; bad requests are refused.

use super::{prune, Criterion, PruneOptions};
use crate::ir::{Graph, Node, TId};
use crate::verify::run_kiln;
use kiln_runtime::ops::{
    Act, BinaryKind, BinaryParams, ConvGeom, ConvParams, DenseParams, OpParams, PoolParams,
    ReshapeParams,
};
use kiln_runtime::DType;

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 37 + seed * 101) % 97) as f32 / 48.5) - 1.0)
        .collect()
}

/// x [1,6,6,2] -> conv 3x3 pad 1, 4 channels, relu -> maxpool 2x2 -> flatten -> dense 5 ->
/// conv2 is absent: one group (the conv) read by the dense through a pool and a flatten.
/// `dead` channels of the conv have zero weights and bias.
fn model(dead: &[usize]) -> Graph {
    let mut g = Graph::default();
    let x = g.add_tensor("x", DType::F32, vec![1, 6, 6, 2]);
    let mut w = values(4 * 3 * 3 * 2, 3);
    let mut b = vec![0.1, -0.05, 0.2, 0.02];
    for &d in dead {
        w[d * 18..(d + 1) * 18].iter_mut().for_each(|v| *v = 0.0);
        b[d] = 0.0;
    }
    let wt = g.add_const_f32("w", vec![4, 3, 3, 2], w);
    let bt = g.add_const_f32("b", vec![4], b);
    let c = g.add_tensor("conv", DType::F32, vec![1, 6, 6, 4]);
    let mut cp = ConvParams::new(ConvGeom {
        pad: [1; 4],
        ..ConvGeom::default()
    });
    cp.act = Act::Float {
        lo: 0.0,
        hi: f32::INFINITY,
    };
    g.push(Node::new(
        "conv",
        OpParams::Conv2d(cp),
        vec![Some(x), Some(wt), Some(bt)],
        vec![c],
    ));
    let p = g.add_op(
        "pool",
        OpParams::MaxPool(PoolParams::new([2, 2], [2, 2])),
        vec![Some(c)],
        vec![1, 3, 3, 4],
    );
    let f = g.add_op(
        "flat",
        OpParams::Reshape(ReshapeParams),
        vec![Some(p)],
        vec![1, 36],
    );
    let dw = g.add_const_f32("dw", vec![5, 36], values(180, 5));
    let y = g.add_op(
        "dense",
        OpParams::Dense(DenseParams::default()),
        vec![Some(f), Some(dw), None],
        vec![1, 5],
    );
    g.inputs = vec![x];
    g.outputs = vec![y];
    g
}

fn samples(g: &Graph, n: usize) -> Vec<Vec<Vec<f32>>> {
    (0..n)
        .map(|s| {
            vec![values(
                g.tensors[g.inputs[0]].shape.iter().product(),
                s + 11,
            )]
        })
        .collect()
}

fn outputs(g: &Graph, s: &[Vec<Vec<f32>>]) -> Vec<f32> {
    let bytes = crate::emit::emit(g).unwrap().0;
    run_kiln(&bytes, s)
        .unwrap()
        .into_iter()
        .flatten()
        .flatten()
        .collect()
}

fn weights(g: &Graph, t: TId) -> usize {
    g.const_f32(t).map_or(0, <[f32]>::len)
}

#[test]
fn dead_channels_are_removed_first_and_change_nothing() {
    let g = model(&[1, 3]);
    let s = samples(&g, 6);
    let opts = PruneOptions {
        sparsity: 0.5,
        criterion: Criterion::L1,
        reconstruct: false,
        multiple: 1,
        layers: vec![],
        unstructured: false,
        sensitivity: false,
    };
    let r = prune(&g, &s, &opts).unwrap();
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].channels, (4, 2));
    // Conv 4x18 + dense 5x36 = 252 weights; two channels take 36 + 90.
    assert_eq!(r.weights, (252, 126));
    let conv = &r.graph.nodes[0];
    assert_eq!(
        r.graph.tensors[conv.input(1).unwrap()].shape,
        vec![2, 3, 3, 2]
    );
    let (a, b) = (outputs(&g, &s), outputs(&r.graph, &s));
    let d = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(
        d < 1e-5,
        "removing dead channels changed the outputs by {d}"
    );
    assert!(r.groups[0].error_removed < 1e-6, "{:?}", r.groups[0]);
}

#[test]
fn refit_brings_the_outputs_back_closer_than_removal_alone() {
    let g = model(&[]);
    let s = samples(&g, 24);
    let run = |reconstruct| {
        let opts = PruneOptions {
            sparsity: 0.45,
            criterion: Criterion::L2,
            reconstruct,
            multiple: 1,
            layers: vec![],
            unstructured: false,
            sensitivity: false,
        };
        prune(&g, &s, &opts).unwrap()
    };
    let (plain, refit) = (run(false), run(true));
    let gr = &refit.groups[0];
    assert!(gr.error_removed > 0.01, "{gr:?}");
    assert!(gr.error_refit < 0.8 * gr.error_removed, "{gr:?}");
    let want = outputs(&g, &s);
    let err = |h: &Graph| {
        let got = outputs(h, &s);
        got.iter()
            .zip(&want)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
    };
    assert!(err(&refit.graph) < err(&plain.graph));
    // The refit gave the dense layer a bias it did not have.
    let dense = refit
        .graph
        .nodes
        .iter()
        .find(|n| n.name == "dense")
        .unwrap();
    assert_eq!(weights(&refit.graph, dense.input(2).unwrap()), 5);
}

#[test]
fn bad_requests_are_refused_with_the_reason() {
    let g = model(&[]);
    let opts = |sparsity| PruneOptions {
        sparsity,
        criterion: Criterion::L1,
        reconstruct: false,
        multiple: 1,
        layers: vec![],
        unstructured: false,
        sensitivity: false,
    };
    for bad in [1.0, -0.1, f32::NAN] {
        let e = prune(&g, &[], &opts(bad)).unwrap_err().to_string();
        assert!(e.contains("outside [0, 1)"), "{e}");
    }
    // At most 3 of the 4 channels go: 3 x (18 + 45) of 252 weights.
    let e = prune(&g, &[], &opts(0.9)).unwrap_err().to_string();
    assert!(e.contains("at most 75.0%"), "{e}");
    // A lone dense layer writing the output has nothing prunable.
    let mut h = Graph::default();
    let x = h.add_tensor("x", DType::F32, vec![1, 4]);
    let w = h.add_const_f32("w", vec![3, 4], values(12, 1));
    let y = h.add_op(
        "d",
        OpParams::Dense(DenseParams::default()),
        vec![Some(x), Some(w), None],
        vec![1, 3],
    );
    h.inputs = vec![x];
    h.outputs = vec![y];
    let e = prune(&h, &[], &opts(0.2)).unwrap_err().to_string();
    assert!(e.contains("nothing to prune"), "{e}");
}

/// A residual block: x [1,5,5,2] -> conv A 3x3 (4 channels, relu) = a; a -> 1x1 conv B1 (3,
/// relu) -> 1x1 conv B2 (4) = b; relu(a + b) * k (k per channel) -> 1x1 conv C (3) = y.
/// Channel `dead` of A and of B2 has zero weights and bias.
fn residual(dead: usize) -> Graph {
    let mut g = Graph::default();
    let x = g.add_tensor("x", DType::F32, vec![1, 5, 5, 2]);
    let relu = Act::Float {
        lo: 0.0,
        hi: f32::INFINITY,
    };
    let conv = |g: &mut Graph,
                name: &str,
                x: TId,
                k: usize,
                cin: usize,
                cout: usize,
                act: bool,
                seed: usize| {
        let mut w = values(cout * k * k * cin, seed);
        let mut b = values(cout, seed + 1);
        if name == "A" || name == "B2" {
            w[dead * k * k * cin..(dead + 1) * k * k * cin]
                .iter_mut()
                .for_each(|v| *v = 0.0);
            b[dead] = 0.0;
        }
        let wt = g.add_const_f32(format!("{name}.w"), vec![cout, k, k, cin], w);
        let bt = g.add_const_f32(format!("{name}.b"), vec![cout], b);
        let mut cp = ConvParams::new(ConvGeom {
            pad: [k / 2; 4],
            ..ConvGeom::default()
        });
        if act {
            cp.act = relu;
        }
        g.add_op(
            name,
            OpParams::Conv2d(cp),
            vec![Some(x), Some(wt), Some(bt)],
            vec![1, 5, 5, cout],
        )
    };
    let a = conv(&mut g, "A", x, 3, 2, 4, true, 1);
    let h = conv(&mut g, "B1", a, 1, 4, 3, true, 2);
    let b = conv(&mut g, "B2", h, 1, 3, 4, false, 3);
    let mut add = BinaryParams::new(BinaryKind::Add);
    add.act = relu;
    let s = g.add_op(
        "add",
        OpParams::Binary(add),
        vec![Some(a), Some(b)],
        vec![1, 5, 5, 4],
    );
    let k = g.add_const_f32("k", vec![4], vec![0.5, 2.0, -1.0, 1.5]);
    let m = g.add_op(
        "scale",
        OpParams::Binary(BinaryParams::new(BinaryKind::Mul)),
        vec![Some(s), Some(k)],
        vec![1, 5, 5, 4],
    );
    let y = conv(&mut g, "C", m, 1, 4, 3, false, 4);
    g.inputs = vec![x];
    g.outputs = vec![y];
    g
}

#[test]
fn residual_branches_lose_the_same_channels() {
    let g = residual(1);
    let s = samples(&g, 6);
    let opts = PruneOptions {
        sparsity: 0.25,
        criterion: Criterion::L1,
        reconstruct: false,
        multiple: 1,
        layers: vec![],
        unstructured: false,
        sensitivity: false,
    };
    let r = prune(&g, &s, &opts).unwrap();
    // A 72 + B1 12 + B2 12 + C 12 weights; a channel of the residual space takes 18 + 3 + 3 + 3.
    assert_eq!(r.weights, (108, 81));
    let space = r.groups.iter().find(|grp| grp.layer == "A + B2").unwrap();
    assert_eq!(space.channels, (4, 3));
    let q = &r.graph;
    let w = |name: &str| {
        q.const_f32(q.tensors.iter().position(|t| t.name == name).unwrap())
            .unwrap()
            .to_vec()
    };
    let w0 = |name: &str| {
        g.const_f32(g.tensors.iter().position(|t| t.name == name).unwrap())
            .unwrap()
            .to_vec()
    };
    // Channel 1 left both producers, the per-channel scale and both readers' inputs.
    let rows = |v: Vec<f32>, per: usize| -> Vec<f32> {
        [0, 2, 3]
            .iter()
            .flat_map(|&c| v[c * per..(c + 1) * per].to_vec())
            .collect()
    };
    assert_eq!(w("A.w"), rows(w0("A.w"), 18));
    assert_eq!(w("B2.w"), rows(w0("B2.w"), 3));
    assert_eq!(w("k"), vec![0.5, -1.0, 1.5]);
    let cols = |v: Vec<f32>| -> Vec<f32> { v.chunks(4).flat_map(|r| [r[0], r[2], r[3]]).collect() };
    assert_eq!(w("B1.w"), cols(w0("B1.w")));
    assert_eq!(w("C.w"), cols(w0("C.w")));
    let (a, b) = (outputs(&g, &s), outputs(q, &s));
    let d = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(d <= 1e-5, "outputs moved by {d}");
    // The same block whose sum is also a graph output cannot lose the sum's channels: only
    // B1's group is left to prune.
    let mut h = residual(1);
    let sum = h.tensors.iter().position(|t| t.name == "add").unwrap();
    h.outputs.push(sum);
    let few = PruneOptions {
        sparsity: 0.1,
        ..opts
    };
    let r = prune(&h, &s, &few).unwrap();
    assert!(
        r.groups.iter().all(|grp| grp.layer == "B1"),
        "{:?}",
        r.groups
    );
}

#[test]
fn unstructured_pruning_zeroes_the_smallest_weights_and_the_refit_helps() {
    let g = model(&[]);
    let s = samples(&g, 24);
    let run = |reconstruct| {
        let opts = PruneOptions {
            sparsity: 0.6,
            criterion: Criterion::L1,
            reconstruct,
            multiple: 1,
            layers: vec![],
            unstructured: true,
            sensitivity: false,
        };
        prune(&g, &s, &opts).unwrap()
    };
    let (plain, refit) = (run(false), run(true));
    // 252 weights, 60% of them zero: at most 100 left, and no shape changed.
    assert!(plain.weights.1 <= 100, "{:?}", plain.weights);
    let w0 = g.const_f32(g.nodes[0].input(1).unwrap()).unwrap();
    let w1 = plain
        .graph
        .const_f32(plain.graph.nodes[0].input(1).unwrap())
        .unwrap();
    assert_eq!(w0.len(), w1.len());
    // What stays is the largest magnitudes, unchanged without the refit.
    let kept_min = w1
        .iter()
        .filter(|v| **v != 0.0)
        .fold(f32::MAX, |m, v| m.min(v.abs()));
    let dropped_max = w0
        .iter()
        .zip(w1)
        .filter(|(_, b)| **b == 0.0)
        .fold(0f32, |m, (a, _)| m.max(a.abs()));
    assert!(dropped_max <= kept_min, "{dropped_max} > {kept_min}");
    assert!(w0.iter().zip(w1).all(|(a, b)| *b == 0.0 || a == b));
    // The refit keeps the zeros and lowers every layer's error, and the model's.
    let w2 = refit
        .graph
        .const_f32(refit.graph.nodes[0].input(1).unwrap())
        .unwrap();
    assert!(w1.iter().zip(w2).all(|(a, b)| (*a == 0.0) == (*b == 0.0)));
    for gr in &refit.groups {
        assert!(gr.error_refit < gr.error_removed, "{gr:?}");
    }
    let dist = |h: &Graph| {
        let (a, b) = (outputs(&g, &s), outputs(h, &s));
        a.iter().zip(&b).map(|(p, q)| (p - q).powi(2)).sum::<f32>()
    };
    assert!(dist(&refit.graph) < dist(&plain.graph));
}

#[test]
fn sensitivity_spends_the_sparsity_where_the_error_stays_low() {
    // The residual space has a dead channel (free to remove); B1's group has none.
    let g = residual(1);
    let s = samples(&g, 8);
    let opts = PruneOptions {
        sparsity: 0.25,
        criterion: Criterion::L1,
        reconstruct: true,
        multiple: 1,
        layers: vec![],
        unstructured: false,
        sensitivity: true,
    };
    let r = prune(&g, &s, &opts).unwrap();
    assert!(r.weights.1 * 4 <= r.weights.0 * 3, "{:?}", r.weights);
    let space = r.groups.iter().find(|grp| grp.layer == "A + B2").unwrap();
    assert_eq!(space.channels, (4, 3));
    assert!(
        r.groups.iter().all(|grp| grp.layer != "B1"),
        "{:?}",
        r.groups
    );
    let (a, b) = (outputs(&g, &s), outputs(&r.graph, &s));
    let d = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(d <= 1e-4, "outputs moved by {d}");
    // It needs samples to measure anything.
    let err = prune(&g, &[], &opts).unwrap_err().to_string();
    assert!(
        err.contains("--sensitivity needs calibration inputs"),
        "{err}"
    );
}
