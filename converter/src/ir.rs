//! The converter's graph: kiln ops over named tensors with concrete shapes. Importers build it,
//! passes rewrite it, the planner places it and `emit` writes it as a `.kiln` file.

use anyhow::{bail, Result};
use kiln_runtime::ops::{Act, OpParams, OpShapes};
use kiln_runtime::{DType, OpKind, Quant};

/// Tensor id: index into [`Graph::tensors`].
pub type TId = usize;

/// Constant data of a tensor, little-endian.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// f32 values.
    F32(Vec<f32>),
    /// i32 values.
    I32(Vec<i32>),
    /// i8 values.
    I8(Vec<i8>),
    /// Raw bytes in the tensor's dtype (u8, f16, i16).
    Raw(Vec<u8>),
}

impl Data {
    /// Little-endian bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
            Data::Raw(v) => v.clone(),
        }
    }
    /// The f32 values, if this is f32 data.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }
}

/// A tensor in the graph.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// Name from the source model (made unique by the importer when needed).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Concrete shape.
    pub shape: Vec<usize>,
    /// Constant data, or `None` for activations.
    pub data: Option<Data>,
    /// Quantization parameters.
    pub quant: Quant,
}

impl Tensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True for an empty tensor.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes of data.
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype.size()
    }
}

/// An op in the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// Name from the source model.
    pub name: String,
    /// What it computes, with its typed parameters.
    pub op: OpParams,
    /// Inputs (`None` for an absent optional input).
    pub inputs: Vec<Option<TId>>,
    /// Outputs.
    pub outputs: Vec<TId>,
}

impl Node {
    /// A node computing `op`.
    pub fn new(
        name: impl Into<String>,
        op: OpParams,
        inputs: Vec<Option<TId>>,
        outputs: Vec<TId>,
    ) -> Node {
        Node {
            name: name.into(),
            op,
            inputs,
            outputs,
        }
    }
    /// The op kind.
    pub fn kind(&self) -> OpKind {
        self.op.kind()
    }
    /// The fused activation of a float op (`None` for ops without one or int8 ones).
    pub fn act(&self) -> Option<(f32, f32)> {
        match self.op.act() {
            Some(Act::Float { lo, hi }) => Some((lo, hi)),
            _ => None,
        }
    }
    /// Sets the fused float activation clamp (ops without one are left alone).
    pub fn set_act(&mut self, lo: f32, hi: f32) {
        if let Some(a) = self.op.act_mut() {
            *a = Act::Float { lo, hi };
        }
    }
    /// Input `k`, if present.
    pub fn input(&self, k: usize) -> Option<TId> {
        self.inputs.get(k).copied().flatten()
    }
}

/// How the source file stored its float ops' weights (TFLite's post-training options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceWeights {
    /// f32 (or a model that is int8 throughout).
    #[default]
    Float,
    /// IEEE half floats, widened by `DEQUANTIZE` ops (TFLite float16 quantization): kept as
    /// f16 by the converter, losslessly.
    Fp16,
    /// int8 weights read by float ops (TFLite dynamic-range quantization): kiln runs them in
    /// float with the weights dequantized exactly.
    Int8DynamicRange,
}

/// A whole model.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// All tensors (some may become unused after passes; `emit` drops those).
    pub tensors: Vec<Tensor>,
    /// Ops in execution order.
    pub nodes: Vec<Node>,
    /// Graph inputs.
    pub inputs: Vec<TId>,
    /// Graph outputs.
    pub outputs: Vec<TId>,
    /// Quantization of f32 activations fixed by the source model (the fake-quantize pairs of an
    /// ONNX QDQ model): `tensor -> (scale, zero point)`. A non-empty map makes the importer
    /// lower the graph to int8 with these parameters instead of calibrating.
    pub act_quant: std::collections::HashMap<TId, (f32, i32)>,
    /// How the source stored its float weights.
    pub source_weights: SourceWeights,
    /// Store an int8 conv or dense layer's weights sparse where that makes the file smaller
    /// (`kiln quantize`, unless `--sparse off`; a pruned int8 model). Off by default: `kiln
    /// convert` keeps a source's layers dense, since on a host with SIMD the dense kernels are
    /// faster.
    pub sparse_weights: bool,
}

impl Graph {
    /// Adds an activation tensor.
    pub fn add_tensor(&mut self, name: impl Into<String>, dtype: DType, shape: Vec<usize>) -> TId {
        self.tensors.push(Tensor {
            name: name.into(),
            dtype,
            shape,
            data: None,
            quant: Quant::None,
        });
        self.tensors.len() - 1
    }
    /// Adds an f32 constant.
    pub fn add_const_f32(
        &mut self,
        name: impl Into<String>,
        shape: Vec<usize>,
        v: Vec<f32>,
    ) -> TId {
        debug_assert_eq!(shape.iter().product::<usize>(), v.len());
        self.tensors.push(Tensor {
            name: name.into(),
            dtype: DType::F32,
            shape,
            data: Some(Data::F32(v)),
            quant: Quant::None,
        });
        self.tensors.len() - 1
    }
    /// Adds an i32 constant `[v.len()]` (biases, requantization tables).
    pub fn add_const_i32(&mut self, name: impl Into<String>, v: Vec<i32>) -> TId {
        let id = self.add_tensor(name, DType::I32, vec![v.len()]);
        self.tensors[id].data = Some(Data::I32(v));
        id
    }
    /// Appends a node computing `op` from `inputs` into a new f32 activation `name` of `shape`;
    /// returns that tensor.
    pub fn add_op(
        &mut self,
        name: &str,
        op: OpParams,
        inputs: Vec<Option<TId>>,
        shape: Vec<usize>,
    ) -> TId {
        let y = self.add_tensor(name, DType::F32, shape);
        self.push(Node::new(name, op, inputs, vec![y]));
        y
    }
    /// Tiles `x` (`y[i] = x[i mod dims]`, each axis repeated `reps[axis]` times) as one gather
    /// per repeated axis, whose constant indices walk the axis `reps` times; the result keeps
    /// x's dtype and quantization. `name` names the last tensor; `out`, if given, is the tensor
    /// the last gather writes (a reshape copies `x` into it when nothing repeats). How ONNX
    /// `Tile` and TFLite `TILE` (Keras' nearest `UpSampling2D`) import.
    pub fn tile(&mut self, x: TId, reps: &[usize], name: &str, out: Option<TId>) -> TId {
        self.gather_axes(x, reps, name, out, |i, d, _| i % d)
    }

    /// Repeats every element of `x` `reps[axis]` times along each axis (`y[i] = x[i / reps]`):
    /// an integer-factor nearest upsample, as gathers like [`Graph::tile`].
    pub fn repeat(&mut self, x: TId, reps: &[usize], name: &str, out: Option<TId>) -> TId {
        self.gather_axes(x, reps, name, out, |i, _, r| i / r)
    }

    /// One gather per axis with `reps[axis] > 1`, output index `i` of an axis of length `d`
    /// reading `source(i, d, reps)`.
    fn gather_axes(
        &mut self,
        x: TId,
        reps: &[usize],
        name: &str,
        out: Option<TId>,
        source: impl Fn(usize, usize, usize) -> usize,
    ) -> TId {
        let mut cur = x;
        let last = reps.iter().rposition(|&r| r > 1);
        if let (None, Some(y)) = (last, out) {
            let op = OpParams::Reshape(kiln_runtime::ops::ReshapeParams);
            self.push(Node::new(name, op, vec![Some(x)], vec![y]));
            return y;
        }
        for (axis, &r) in reps.iter().enumerate() {
            if r <= 1 {
                continue;
            }
            let mut shape = self.tensors[cur].shape.clone();
            let d = shape[axis];
            shape[axis] = d * r;
            let idx = (0..d * r).map(|i| source(i, d, r) as i32).collect();
            let it = self.add_const_i32(format!("{name}.axis{axis}.indices"), idx);
            let tname = if Some(axis) == last {
                name.to_string()
            } else {
                format!("{name}.axis{axis}")
            };
            let (dtype, quant) = (self.tensors[cur].dtype, self.tensors[cur].quant);
            let y = match out {
                Some(y) if Some(axis) == last => y,
                _ => {
                    let y = self.add_tensor(tname.clone(), dtype, shape);
                    self.tensors[y].quant = quant;
                    y
                }
            };
            let op = OpParams::Gather(kiln_runtime::ops::GatherParams {
                axis,
                elements: false,
            });
            self.push(Node::new(tname, op, vec![Some(cur), Some(it)], vec![y]));
            cur = y;
        }
        cur
    }

    /// Appends a node.
    pub fn push(&mut self, node: Node) {
        self.nodes.push(node);
    }
    /// The constant f32 data of tensor `t`, if it is one.
    pub fn const_f32(&self, t: TId) -> Option<&[f32]> {
        self.tensors[t].data.as_ref().and_then(|d| d.as_f32())
    }
    /// Indices of the nodes that read tensor `t`.
    pub fn consumers(&self, t: TId) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.contains(&Some(t)))
            .map(|(i, _)| i)
            .collect()
    }
    /// Index of the node that writes tensor `t`.
    pub fn producer(&self, t: TId) -> Option<usize> {
        self.nodes.iter().position(|n| n.outputs.contains(&t))
    }
    /// Replaces every read of `from` by `to` (nodes and graph outputs).
    pub fn replace_uses(&mut self, from: TId, to: TId) {
        for n in &mut self.nodes {
            for i in n.inputs.iter_mut().flatten() {
                if *i == from {
                    *i = to;
                }
            }
        }
        for o in &mut self.outputs {
            if *o == from {
                *o = to;
            }
        }
    }
    /// Checks the graph is in execution order and every tensor read is defined.
    pub fn check(&self) -> Result<()> {
        // A NaN constant makes every value it touches NaN, and an infinite weight of a conv,
        // dense or matmul makes its outputs infinite or NaN: refuse both, naming the op. (An
        // infinite constant elsewhere is legitimate: attention masks add -inf.)
        for n in &self.nodes {
            let weighted = matches!(n.kind(), OpKind::Conv2d | OpKind::Dense | OpKind::MatMul);
            for &t in n.inputs.iter().flatten() {
                if let Some(Data::F32(v)) = &self.tensors[t].data {
                    // (No element index: after lowering, weights may be stored transposed,
                    // and an index into kiln's layout would mislead about the source's.)
                    let bad = v
                        .iter()
                        .find(|x| x.is_nan() || (weighted && x.is_infinite()));
                    if let Some(x) = bad {
                        let what = if x.is_nan() {
                            "NaN"
                        } else {
                            "an infinite weight"
                        };
                        bail!(
                            "node '{}' ({}): constant '{}' holds {what}",
                            n.name,
                            n.kind().name(),
                            self.tensors[t].name
                        );
                    }
                }
            }
        }
        let mut defined = vec![false; self.tensors.len()];
        for &i in &self.inputs {
            defined[i] = true;
        }
        for (t, tensor) in self.tensors.iter().enumerate() {
            if tensor.data.is_some() {
                defined[t] = true;
            }
        }
        for n in &self.nodes {
            for i in n.inputs.iter().flatten() {
                if !defined[*i] {
                    bail!(
                        "internal: node '{}' reads tensor '{}' before it is written",
                        n.name,
                        self.tensors[*i].name
                    );
                }
            }
            for &o in &n.outputs {
                defined[o] = true;
            }
        }
        for &o in &self.outputs {
            if !defined[o] {
                bail!(
                    "internal: graph output '{}' is never written",
                    self.tensors[o].name
                );
            }
        }
        Ok(())
    }
    /// Multiply-accumulates of node `i` (for `inspect` and reports).
    pub fn macs(&self, i: usize) -> u64 {
        let n = &self.nodes[i];
        let shape = |t: Option<TId>| t.map_or(&[][..], |t| &self.tensors[t].shape[..]);
        n.op.macs(&OpShapes {
            x: shape(n.input(0)),
            w: shape(n.input(1)),
            y: shape(n.outputs.first().copied()),
        })
    }
}

/// A text dump of the graph (and its plan), for debugging the converter.
pub fn dump(g: &Graph, plan: Option<&crate::plan::Plan>) -> String {
    let mut s = String::new();
    let t = |id: TId| {
        let tt = &g.tensors[id];
        let place = match (&tt.data, plan) {
            (Some(_), _) => "const".to_string(),
            (None, Some(p)) => format!("@{:?} life {:?}", p.offsets[id], p.lifetimes[id]),
            (None, None) => String::new(),
        };
        format!("t{id}'{}'{:?} {place}", tt.name, tt.shape)
    };
    s.push_str(&format!(
        "inputs: {:?}\n",
        g.inputs.iter().map(|&i| t(i)).collect::<Vec<_>>()
    ));
    for (i, n) in g.nodes.iter().enumerate() {
        let ins: Vec<String> = n.inputs.iter().map(|x| x.map_or("-".into(), t)).collect();
        let outs: Vec<String> = n.outputs.iter().map(|&x| t(x)).collect();
        s.push_str(&format!(
            "#{i} {:?} '{}' {:?}\n   in: {}\n   out: {}\n",
            n.kind(),
            n.name,
            n.op,
            ins.join(", "),
            outs.join(", ")
        ));
    }
    s.push_str(&format!(
        "outputs: {:?}\n",
        g.outputs.iter().map(|&i| t(i)).collect::<Vec<_>>()
    ));
    s
}

/// Max (`max`) or average pooling with parameters `p`.
pub fn pool_op(max: bool, p: kiln_runtime::ops::PoolParams) -> OpParams {
    if max {
        OpParams::MaxPool(p)
    } else {
        OpParams::AvgPool(p)
    }
}
