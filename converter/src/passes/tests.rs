//! One test per pass: the rewrite happens (the graph changes as the pass promises) and the model
//! computes the same outputs before and after (exactly, or within f32 rounding where the pass
//! reorders arithmetic, or f16 rounding for `fp16_weights`).

use crate::ir::{Graph, Node, TId};
use crate::verify::run_kiln;
use kiln_runtime::ops::{
    Act, BinaryKind, BinaryParams, ConcatParams, ConvGeom, ConvParams, DenseParams, OpParams,
    ReshapeParams, TransposeParams, UnaryKind, UnaryParams,
};
use kiln_runtime::{DType, OpKind};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 37 + seed * 101) % 97) as f32 / 48.5) - 1.0)
        .collect()
}

fn outputs(g: &Graph) -> Vec<f32> {
    let (bytes, _) = crate::emit::emit(g).unwrap();
    let samples: Vec<Vec<Vec<f32>>> = (0..3)
        .map(|s| {
            g.inputs
                .iter()
                .map(|&t| values(g.tensors[t].len(), s))
                .collect()
        })
        .collect();
    run_kiln(&bytes, &samples)
        .unwrap()
        .into_iter()
        .flatten()
        .flatten()
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn kinds(g: &Graph) -> Vec<OpKind> {
    g.nodes.iter().map(|n| n.kind()).collect()
}

fn unary(k: UnaryKind) -> OpParams {
    OpParams::Unary(UnaryParams::new(k))
}

/// `x [1,4,4,2] -> conv 3x3 pad 1 (3 channels) -> y`.
pub(crate) fn conv(g: &mut Graph, x: TId) -> TId {
    let w = g.add_const_f32("w", vec![3, 3, 3, 2], values(54, 7));
    let b = g.add_const_f32("b", vec![3], vec![0.1, -0.2, 0.3]);
    let y = g.add_tensor("conv", DType::F32, vec![1, 4, 4, 3]);
    let geom = ConvGeom {
        pad: [1; 4],
        ..ConvGeom::default()
    };
    g.push(Node::new(
        "conv",
        OpParams::Conv2d(ConvParams::new(geom)),
        vec![Some(x), Some(w), Some(b)],
        vec![y],
    ));
    y
}

fn input(g: &mut Graph, shape: Vec<usize>) -> TId {
    let x = g.add_tensor("x", DType::F32, shape);
    g.inputs.push(x);
    x
}

#[test]
fn dce_drops_dead_nodes_and_identities() {
    let mut g = Graph::default();
    let x = input(&mut g, vec![1, 8]);
    let a = g.add_op("a", unary(UnaryKind::Identity), vec![Some(x)], vec![1, 8]);
    let y = g.add_op("y", unary(UnaryKind::Relu), vec![Some(a)], vec![1, 8]);
    g.add_op("dead", unary(UnaryKind::Sigmoid), vec![Some(x)], vec![1, 8]);
    g.outputs.push(y);
    let before = outputs(&g);
    super::dce::run(&mut g);
    assert_eq!(kinds(&g), [OpKind::Unary]);
    assert_eq!(g.nodes[0].input(0), Some(x));
    assert_eq!(outputs(&g), before);
}

#[test]
fn simplify_reshape_collapses_chains_and_drops_no_ops() {
    let mut g = Graph::default();
    let x = input(&mut g, vec![1, 6]);
    let reshape = |g: &mut Graph, x: TId, shape: Vec<usize>, name: &str| {
        let y = g.add_tensor(name, DType::F32, shape);
        g.push(Node::new(
            name,
            OpParams::Reshape(ReshapeParams),
            vec![Some(x)],
            vec![y],
        ));
        y
    };
    let a = reshape(&mut g, x, vec![2, 3], "a");
    let b = reshape(&mut g, a, vec![3, 2], "b");
    let c = reshape(&mut g, b, vec![3, 2], "c");
    let y = g.add_op("y", unary(UnaryKind::Relu), vec![Some(c)], vec![3, 2]);
    g.outputs.push(y);
    let before = outputs(&g);
    super::simplify_reshape::run(&mut g);
    assert_eq!(kinds(&g), [OpKind::Reshape, OpKind::Unary]);
    assert_eq!(g.nodes[0].input(0), Some(x));
    assert_eq!(outputs(&g), before);
}

#[test]
fn fold_affine_folds_a_batch_norm_into_the_conv() {
    let mut g = Graph::default();
    let x = input(&mut g, vec![1, 4, 4, 2]);
    let c = conv(&mut g, x);
    let s = g.add_const_f32("scale", vec![3], vec![0.5, 2.0, -1.5]);
    let m = g.add_tensor("scaled", DType::F32, vec![1, 4, 4, 3]);
    let mul = OpParams::Binary(BinaryParams::new(BinaryKind::Mul));
    g.push(Node::new("mul", mul, vec![Some(c), Some(s)], vec![m]));
    let sh = g.add_const_f32("shift", vec![3], vec![0.25, -0.5, 1.0]);
    let y = g.add_tensor("y", DType::F32, vec![1, 4, 4, 3]);
    let add = OpParams::Binary(BinaryParams::new(BinaryKind::Add));
    g.push(Node::new("add", add, vec![Some(m), Some(sh)], vec![y]));
    g.outputs.push(y);
    let before = outputs(&g);
    super::fold_affine::run(&mut g);
    super::dce::run(&mut g);
    assert_eq!(kinds(&g), [OpKind::Conv2d]);
    let d = max_diff(&outputs(&g), &before);
    assert!(d < 1e-5, "outputs moved by {d}");
}

#[test]
fn fold_transpose_dense_moves_an_nchw_flatten_into_the_weights() {
    let mut g = Graph::default();
    let x = input(&mut g, vec![1, 2, 3, 4]);
    let t = g.add_op(
        "nchw",
        OpParams::Transpose(TransposeParams::new(&[0, 3, 1, 2])),
        vec![Some(x)],
        vec![1, 4, 2, 3],
    );
    let f = g.add_op(
        "flat",
        OpParams::Reshape(ReshapeParams),
        vec![Some(t)],
        vec![1, 24],
    );
    let w = g.add_const_f32("w", vec![5, 24], values(120, 3));
    let y = g.add_op(
        "y",
        OpParams::Dense(DenseParams::default()),
        vec![Some(f), Some(w), None],
        vec![1, 5],
    );
    g.outputs.push(y);
    let before = outputs(&g);
    super::fold_transpose_dense::run(&mut g);
    super::dce::run(&mut g);
    assert!(!kinds(&g).contains(&OpKind::Transpose), "{:?}", kinds(&g));
    let d = max_diff(&outputs(&g), &before);
    assert!(d < 1e-5, "outputs moved by {d}");
}

#[test]
fn fuse_activation_fuses_into_ops_with_a_clamp_only() {
    // conv -> relu6 fuses into the conv's clamp.
    let mut g = Graph::default();
    let x = input(&mut g, vec![1, 4, 4, 2]);
    let c = conv(&mut g, x);
    let y = g.add_tensor("y", DType::F32, vec![1, 4, 4, 3]);
    let relu6 = OpParams::Unary(UnaryParams {
        kind: UnaryKind::Clip,
        a: 0.0,
        b: 6.0,
    });
    g.push(Node::new("relu6", relu6, vec![Some(c)], vec![y]));
    g.outputs.push(y);
    let before = outputs(&g);
    super::fuse_activation::run(&mut g);
    assert_eq!(kinds(&g), [OpKind::Conv2d]);
    assert_eq!(g.nodes[0].op.act(), Some(Act::Float { lo: 0.0, hi: 6.0 }));
    assert_eq!(outputs(&g), before);

    // concat has no clamp: the relu stays.
    let mut g = Graph::default();
    let x = input(&mut g, vec![1, 4]);
    let c = g.add_tensor("cat", DType::F32, vec![1, 8]);
    let cat = OpParams::Concat(ConcatParams { axis: 1 });
    g.push(Node::new("cat", cat, vec![Some(x), Some(x)], vec![c]));
    let y = g.add_op("y", unary(UnaryKind::Relu), vec![Some(c)], vec![1, 8]);
    g.outputs.push(y);
    super::fuse_activation::run(&mut g);
    assert_eq!(kinds(&g), [OpKind::Concat, OpKind::Unary]);
}

#[test]
fn fp16_weights_halves_conv_weights_within_half_precision() {
    let mut g = Graph::default();
    let x = input(&mut g, vec![1, 4, 4, 2]);
    let c = conv(&mut g, x);
    g.outputs.push(c);
    let before = outputs(&g);
    assert_eq!(super::fp16_weights::run(&mut g), 1);
    let w = g.nodes[0].input(1).unwrap();
    assert_eq!(g.tensors[w].dtype, DType::F16);
    // 18 products of |x|, |w| <= 1, each weight off by at most 2^-11 relative.
    let d = max_diff(&outputs(&g), &before);
    assert!(d < 18.0 / 2048.0 && d > 0.0, "outputs moved by {d}");
}
