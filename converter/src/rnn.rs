//! A recurrent layer written out step by step in kiln ops, on the graph directly: how TFLite's
//! fused `UNIDIRECTIONAL_SEQUENCE_LSTM` imports (the ONNX importer unrolls tract's own forms,
//! in `onnx::recurrent`). The input side of every step is one dense layer over the whole
//! sequence; each step adds the recurrent side and runs the cell.

use crate::ir::{Graph, Node, TId};
use kiln_runtime::ops::{
    BinaryKind, BinaryParams, ConcatParams, DenseParams, OpParams, ReshapeParams, SliceParams,
    UnaryKind, UnaryParams,
};

/// Most time steps kiln unrolls (each step is a copy of the cell's ops in the file).
pub const MAX_STEPS: usize = 512;

/// An LSTM cell's constants, gates stacked in the order input, forget, cell, output (input
/// absent for a coupled input-forget gate, "CIFG": then `i = 1 - f`).
pub struct Lstm {
    /// Cells.
    pub cells: usize,
    /// Input weights `[gates·cells, in]`.
    pub w: Vec<f32>,
    /// Recurrent weights `[gates·cells, cells]`.
    pub r: Vec<f32>,
    /// Gate biases `[gates·cells]`.
    pub b: Vec<f32>,
    /// Whether the input gate is coupled to the forget gate (three gates stacked).
    pub cifg: bool,
    /// The cell and output activation (tanh in Keras; ReLU-style clamps also occur).
    pub act: UnaryParams,
    /// Clip the cell state to `[-clip, clip]` (0: no clip).
    pub cell_clip: f32,
}

struct B<'g> {
    g: &'g mut Graph,
    name: String,
}

impl B<'_> {
    fn t(&mut self, what: &str, shape: Vec<usize>) -> TId {
        let n = format!("{}.{what}", self.name);
        self.g.add_tensor(n, kiln_runtime::DType::F32, shape)
    }
    fn push(&mut self, what: &str, op: OpParams, ins: Vec<Option<TId>>, shape: Vec<usize>) -> TId {
        let y = self.t(what, shape);
        let n = format!("{}.{what}", self.name);
        self.g.push(Node::new(n, op, ins, vec![y]));
        y
    }
    fn shape(&self, t: TId) -> Vec<usize> {
        self.g.tensors[t].shape.clone()
    }
    fn slice(&mut self, what: &str, x: TId, axis: usize, lo: usize, len: usize) -> TId {
        let mut shape = self.shape(x);
        shape[axis] = len;
        let mut p = SliceParams::default();
        p.begin[axis] = lo as i32;
        self.push(what, OpParams::Slice(p), vec![Some(x)], shape)
    }
    fn reshape(&mut self, what: &str, x: TId, shape: Vec<usize>) -> TId {
        self.push(what, OpParams::Reshape(ReshapeParams), vec![Some(x)], shape)
    }
    fn bin(&mut self, what: &str, kind: BinaryKind, a: TId, b: TId) -> TId {
        let shape = self.shape(a);
        let op = OpParams::Binary(BinaryParams::new(kind));
        self.push(what, op, vec![Some(a), Some(b)], shape)
    }
    fn un(&mut self, what: &str, u: UnaryParams, x: TId) -> TId {
        let shape = self.shape(x);
        self.push(what, OpParams::Unary(u), vec![Some(x)], shape)
    }
}

/// Writes `l` over `x` (`[batch, T, in]`, or `[T, batch, in]` when `time_major`), from zero
/// state, into `y` (`[batch, T, cells]` or time-major): the whole output sequence.
pub fn lstm(g: &mut Graph, name: &str, x: TId, time_major: bool, l: &Lstm, y: TId) {
    let n = l.cells;
    let gates = if l.cifg { 3 } else { 4 };
    let xs = g.tensors[x].shape.clone();
    let (t_axis, b_axis) = if time_major { (0, 1) } else { (1, 0) };
    let (steps, batch, k) = (xs[t_axis], xs[b_axis], xs[2]);
    let w = g.add_const_f32(format!("{name}.W"), vec![gates * n, k], l.w.clone());
    let r = g.add_const_f32(format!("{name}.R"), vec![gates * n, n], l.r.clone());
    let bias = g.add_const_f32(format!("{name}.b"), vec![gates * n], l.b.clone());
    let zeros = g.add_const_f32(
        format!("{name}.zero_state"),
        vec![batch, n],
        vec![0.0; batch * n],
    );
    let one = g.add_const_f32(format!("{name}.one"), vec![1], vec![1.0]);
    let mut b = B {
        g,
        name: name.to_string(),
    };
    let mut xw_shape = xs.clone();
    xw_shape[2] = gates * n;
    let dense = OpParams::Dense(DenseParams::default());
    let xw = b.push("xw", dense, vec![Some(x), Some(w), Some(bias)], xw_shape);
    let sigmoid = UnaryParams::new(UnaryKind::Sigmoid);
    let (mut h, mut c) = (zeros, zeros);
    let mut outs = Vec::new();
    for t in 0..steps {
        let p = format!("t{t}");
        let xt = b.slice(&format!("{p}.x"), xw, t_axis, t, 1);
        let xt = b.reshape(&format!("{p}.x2"), xt, vec![batch, gates * n]);
        let rh = b.push(
            &format!("{p}.rh"),
            OpParams::Dense(DenseParams::default()),
            vec![Some(h), Some(r)],
            vec![batch, gates * n],
        );
        let pre = b.bin(&format!("{p}.pre"), BinaryKind::Add, xt, rh);
        // Gate blocks: [i,] f, c, o.
        let at = |k: usize| if l.cifg { k - 1 } else { k } * n;
        let f = b.slice(&format!("{p}.f_in"), pre, 1, at(1), n);
        let f = b.un(&format!("{p}.f"), sigmoid, f);
        let i = if l.cifg {
            b.bin(&format!("{p}.i"), BinaryKind::Sub, one, f)
        } else {
            let i = b.slice(&format!("{p}.i_in"), pre, 1, 0, n);
            b.un(&format!("{p}.i"), sigmoid, i)
        };
        let cg = b.slice(&format!("{p}.c_in"), pre, 1, at(2), n);
        let cg = b.un(&format!("{p}.c_cand"), l.act, cg);
        let o = b.slice(&format!("{p}.o_in"), pre, 1, at(3), n);
        let o = b.un(&format!("{p}.o"), sigmoid, o);
        let fc = b.bin(&format!("{p}.f_c"), BinaryKind::Mul, f, c);
        let ic = b.bin(&format!("{p}.i_c"), BinaryKind::Mul, i, cg);
        c = b.bin(&format!("{p}.C"), BinaryKind::Add, fc, ic);
        if l.cell_clip > 0.0 {
            let clip = UnaryParams {
                kind: UnaryKind::Clip,
                a: -l.cell_clip,
                b: l.cell_clip,
            };
            c = b.un(&format!("{p}.C_clip"), clip, c);
        }
        let ac = b.un(&format!("{p}.act_C"), l.act, c);
        h = b.bin(&format!("{p}.H"), BinaryKind::Mul, o, ac);
        let mut hs = vec![batch, n];
        hs.insert(t_axis, 1);
        outs.push(b.reshape(&format!("{p}.y"), h, hs));
    }
    let ys = b.g.tensors[y].shape.clone();
    let op = OpParams::Concat(ConcatParams { axis: t_axis });
    b.g.push(Node::new(
        name,
        op,
        outs.into_iter().map(Some).collect(),
        vec![y],
    ));
    debug_assert_eq!(ys[t_axis], steps);
}
