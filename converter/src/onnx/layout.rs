//! Layout tracking: each activation carries a physical permutation of its logical (ONNX) axes;
//! a real transpose is emitted only where an op needs a layout that is not there.

use super::lower::tensor_f32;
use super::{Imp, Val};
use crate::ir::{Node, TId};
use anyhow::{anyhow, bail, Result};
use kiln_runtime::ops::{self as kops, OpParams, ReshapeParams, TransposeParams};
use kiln_runtime::DType;
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::PoolSpec;
use tract_onnx::tract_core::ops::nn::DataFormat;

pub(super) fn identity(r: usize) -> Vec<usize> {
    (0..r).collect()
}

/// Permutes row-major `data` of logical shape `shape` so physical axis `i` is logical `perm[i]`.
pub(super) fn permute<T: Copy>(
    shape: &[usize],
    data: &[T],
    perm: &[usize],
) -> (Vec<usize>, Vec<T>) {
    let r = shape.len();
    let phys: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return (phys, data.to_vec());
    }
    let mut st = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; r];
    for _ in 0..data.len() {
        let src: usize = (0..r).map(|i| idx[i] * st[perm[i]]).sum();
        out.push(data[src]);
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < phys[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    (phys, out)
}

impl Imp<'_> {
    pub(super) fn shape(&self, o: OutletId) -> Result<Vec<usize>> {
        let f = self.model.outlet_fact(o).map_err(|e| anyhow!("{e:?}"))?;
        let s = f.shape.as_concrete().map(|s| s.to_vec()).ok_or_else(|| {
            anyhow!(
                "shape of '{}' is not concrete: {:?}",
                self.model.node(o.node).name,
                f.shape
            )
        })?;
        if s.contains(&0) {
            bail!(
                "'{}' has shape {s:?}: zero-sized tensors are not supported",
                self.model.node(o.node).name
            );
        }
        Ok(s)
    }

    pub(super) fn val(&self, o: OutletId) -> Result<Val> {
        if let Some(v) = self.vals.get(&o) {
            return Ok(v.clone());
        }
        let f = self.model.outlet_fact(o).map_err(|e| anyhow!("{e:?}"))?;
        if let Some(k) = &f.konst {
            return Ok(Val::Const(k.clone()));
        }
        bail!(
            "internal: value of '{}' not computed",
            self.model.node(o.node).name
        )
    }

    pub(super) fn const_of(&self, o: OutletId) -> Option<Arc<Tensor>> {
        match self.val(o) {
            Ok(Val::Const(t)) => Some(t),
            _ => None,
        }
    }

    pub(super) fn perm_of(&self, o: OutletId) -> Option<Vec<usize>> {
        match self.val(o) {
            Ok(Val::Act { perm, .. }) => Some(perm),
            _ => None,
        }
    }

    /// Tensor `o` laid out with physical axis `i` = logical axis `want[i]`.
    pub(super) fn act(&mut self, o: OutletId, want: &[usize]) -> Result<TId> {
        if let Some(&t) = self.layouts.get(&(o, want.to_vec())) {
            return Ok(t);
        }
        let shape = self.shape(o)?;
        let name = self.model.node(o.node).name.clone();
        let t = match self.val(o)? {
            Val::QuantOf { .. } => {
                self.any_act(o)?;
                return self.act(o, want);
            }
            v => self.layout_of(v, &shape, &name, want)?,
        };
        self.layouts.insert((o, want.to_vec()), t);
        Ok(t)
    }

    /// A value of logical `shape` (a constant or an activation) laid out with physical axis
    /// `i` = logical axis `want[i]`: the constant's data permuted, or the activation as it is,
    /// reshaped (when only unit axes move) or transposed.
    pub(super) fn layout_of(
        &mut self,
        v: Val,
        shape: &[usize],
        name: &str,
        want: &[usize],
    ) -> Result<TId> {
        Ok(match v {
            Val::QuantOf { .. } => bail!("internal: '{name}' is an unmaterialized quantization"),
            Val::Const(k) => {
                let v = tensor_f32(&k)?;
                let (phys, data) = permute(shape, &v, want);
                // A scalar read by a rank-0 op stays rank 0 (`[1]` would not broadcast to `[]`).
                let phys = if phys.is_empty() && !want.is_empty() {
                    vec![1]
                } else {
                    phys
                };
                self.g.add_const_f32(name, phys, data)
            }
            Val::Act { tid, perm } => {
                if perm == want {
                    return Ok(tid);
                }
                // physical out axis i reads physical in axis j where perm[j] == want[i]
                let tp: Vec<usize> = want
                    .iter()
                    .map(|w| perm.iter().position(|p| p == w).unwrap_or(0))
                    .collect();
                let phys: Vec<usize> = want.iter().map(|&w| shape[w]).collect();
                // Moving only size-1 axes keeps the element order: a free reshape.
                let big = |order: &[usize]| {
                    order
                        .iter()
                        .copied()
                        .filter(|&l| shape[l] != 1)
                        .collect::<Vec<_>>()
                };
                if big(&perm) == big(want) {
                    return Ok(self.reshape(tid, phys, format!("{name}.relayout")));
                }
                // Layout changes keep the dtype (and an int8 tensor's quantization).
                let out = self.g.add_tensor(
                    format!("{name}.transposed"),
                    self.g.tensors[tid].dtype,
                    phys,
                );
                self.g.tensors[out].quant = self.g.tensors[tid].quant;
                self.g.push(Node::new(
                    format!("{name}.transpose"),
                    OpParams::Transpose(TransposeParams::new(&tp)),
                    vec![Some(tid)],
                    vec![out],
                ));
                out
            }
        })
    }

    pub(super) fn set_act(&mut self, node: &TypedNode, tid: TId, perm: Vec<usize>) {
        let o = OutletId::new(node.id, 0);
        self.layouts.insert((o, perm.clone()), tid);
        self.vals.insert(o, Val::Act { tid, perm });
    }

    /// The physical shape of kiln tensor `t`.
    pub(super) fn shape_of(&self, t: TId) -> Vec<usize> {
        self.g.tensors[t].shape.clone()
    }

    /// Appends `op` reading `inputs` into a new activation of physical `shape`, which becomes
    /// `node`'s output with layout `perm`.
    pub(super) fn emit(
        &mut self,
        node: &TypedNode,
        op: OpParams,
        inputs: Vec<Option<TId>>,
        shape: Vec<usize>,
        perm: Vec<usize>,
    ) -> Result<()> {
        let y = self.new_tensor(node.name.clone(), shape);
        self.g
            .push(Node::new(node.name.clone(), op, inputs, vec![y]));
        self.set_act(node, y, perm);
        Ok(())
    }

    pub(super) fn new_tensor(&mut self, name: String, shape: Vec<usize>) -> TId {
        self.g.add_tensor(name, DType::F32, shape)
    }

    /// Adds a reshape `x -> shape` (free: the planner aliases it).
    pub(super) fn reshape(&mut self, x: TId, shape: Vec<usize>, name: String) -> TId {
        if self.g.tensors[x].shape == shape {
            return x;
        }
        let y = self
            .g
            .add_tensor(name.clone(), self.g.tensors[x].dtype, shape);
        self.g.tensors[y].quant = self.g.tensors[x].quant;
        self.g.push(Node::new(
            format!("{name}.reshape"),
            OpParams::Reshape(ReshapeParams),
            vec![Some(x)],
            vec![y],
        ));
        y
    }

    /// The activation input as it is laid out now.
    pub(super) fn any_act(&mut self, o: OutletId) -> Result<(TId, Vec<usize>)> {
        match self.val(o)? {
            Val::Act { tid, perm } => Ok((tid, perm)),
            Val::QuantOf {
                src,
                scale,
                zero_point,
            } => {
                let (x, perm) = self.any_act(src)?;
                let name = format!("{}.quantized", self.g.tensors[x].name);
                let q = self
                    .g
                    .add_tensor(name.clone(), DType::I8, self.g.tensors[x].shape.clone());
                self.g.tensors[q].quant = kiln_runtime::Quant::PerTensor { scale, zero_point };
                self.g.push(Node::new(
                    name,
                    OpParams::Quantize(kops::QuantizeParams),
                    vec![Some(x)],
                    vec![q],
                ));
                self.vals.insert(
                    o,
                    Val::Act {
                        tid: q,
                        perm: perm.clone(),
                    },
                );
                Ok((q, perm))
            }
            Val::Const(_) => {
                let r = self.shape(o)?.len();
                let t = self.act(o, &identity(r))?;
                Ok((t, identity(r)))
            }
        }
    }

    pub(super) fn axis_op(&mut self, node: &TypedNode, a: &AxisOp) -> Result<()> {
        let name = node.name.clone();
        let out_shape = self.shape(OutletId::new(node.id, 0))?;
        let (x, perm) = self.any_act(node.inputs[0])?;
        let r = perm.len();
        let new_perm: Vec<usize> = match a {
            AxisOp::Move(from, to) => {
                // logical: out axis j <- in axis src[j]
                let mut src: Vec<usize> = (0..r).collect();
                let v = src.remove(*from);
                src.insert(*to, v);
                let inv: Vec<usize> = (0..r)
                    .map(|l| src.iter().position(|&s| s == l).unwrap_or(0))
                    .collect();
                let p: Vec<usize> = perm.iter().map(|&l| inv[l]).collect();
                self.set_act(node, x, p);
                return Ok(());
            }
            AxisOp::Add(at) => {
                let mut p: Vec<usize> = perm
                    .iter()
                    .map(|&l| if l >= *at { l + 1 } else { l })
                    .collect();
                let pos = if perm == identity(r) { *at } else { p.len() };
                p.insert(pos, *at);
                p
            }
            AxisOp::Rm(at) => perm
                .iter()
                .filter(|&&l| l != *at)
                .map(|&l| if l > *at { l - 1 } else { l })
                .collect(),
            AxisOp::Reshape(at, from, to) => {
                let from_len = from.len();
                let to_len = to.len();
                // Works in place when the reshaped logical block is contiguous and in order in
                // the physical layout; otherwise go through the logical layout first.
                let start = perm.iter().position(|&l| l == *at);
                let in_place = match start {
                    Some(s) => (0..from_len).all(|k| perm.get(s + k) == Some(&(at + k))),
                    None => from_len == 0,
                };
                let (x, perm) = if in_place {
                    (x, perm.clone())
                } else {
                    (self.act(node.inputs[0], &identity(r))?, identity(r))
                };
                let s = perm.iter().position(|&l| l == *at).unwrap_or(*at);
                let mut p = Vec::new();
                for &l in &perm[..s] {
                    p.push(if l > *at { l + to_len - from_len } else { l });
                }
                p.extend(*at..at + to_len);
                for &l in &perm[s + from_len..] {
                    p.push(if l >= at + from_len {
                        l + to_len - from_len
                    } else {
                        l
                    });
                }
                let phys: Vec<usize> = p.iter().map(|&l| out_shape[l]).collect();
                let y = self.reshape(x, phys, name);
                self.set_act(node, y, p);
                return Ok(());
            }
        };
        let phys: Vec<usize> = new_perm.iter().map(|&l| out_shape[l]).collect();
        let y = self.reshape(x, phys, name);
        self.set_act(node, y, new_perm);
        Ok(())
    }

    /// Physical layout for a conv/pool input: `[N?] + spatial + [C]`, reshaped to 4-D NHWC.
    pub(super) fn nhwc_in(
        &mut self,
        o: OutletId,
        spec: &PoolSpec,
        name: &str,
    ) -> Result<(TId, Vec<usize>, [usize; 4])> {
        let shape = self.shape(o)?;
        let r = shape.len();
        let sp = spec.kernel_shape.len();
        if sp > 2 || sp == 0 {
            bail!("{sp}-D convolution/pooling is not supported (1-D and 2-D are)");
        }
        let fmt = spec.data_format;
        let has_n = fmt.has_n();
        let c_axis = match fmt {
            DataFormat::NCHW => 1,
            DataFormat::CHW => 0,
            _ => r - 1,
        };
        let spatial: Vec<usize> = match fmt {
            DataFormat::NCHW => (2..r).collect(),
            DataFormat::CHW => (1..r).collect(),
            DataFormat::NHWC => (1..r - 1).collect(),
            DataFormat::HWC => (0..r - 1).collect(),
        };
        let mut want = Vec::new();
        if has_n {
            want.push(0);
        }
        want.extend(&spatial);
        want.push(c_axis);
        let x = self.act(o, &want)?;
        let n = if has_n { shape[0] } else { 1 };
        let (h, w) = if sp == 1 {
            (1, shape[spatial[0]])
        } else {
            (shape[spatial[0]], shape[spatial[1]])
        };
        let dims = [n, h, w, shape[c_axis]];
        let x4 = self.reshape(x, dims.to_vec(), format!("{name}.nhwc"));
        Ok((x4, want, dims))
    }
}
