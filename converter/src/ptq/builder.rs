//! The int8 graph builder: which tensors exist in int8 and in float, and the conversions between
//! them; `int8` holds the per-op rewrite.

use super::PtqOptions;
use crate::ir::{Graph, Node, TId};
use anyhow::{anyhow, bail, Result};
use kiln_quantize::calibrate::{asymmetric, Observer};
use kiln_runtime::ops::{Act, DequantizeParams, OpParams, QuantizeParams};
use kiln_runtime::{DType, Quant};
use std::collections::{HashMap, HashSet};

pub(super) struct Builder<'g> {
    pub(super) g: &'g Graph,
    pub(super) obs: &'g HashMap<TId, Observer>,
    pub(super) opts: &'g PtqOptions,
    pub(super) q: Graph,
    /// float tensor -> its int8 counterpart
    pub(super) int8_of: HashMap<TId, TId>,
    /// float tensors whose f32 values exist in the new graph
    pub(super) have_f32: HashSet<TId>,
    /// outputs of ops that run in int8
    pub(super) int8_nodes: HashSet<TId>,
    /// f32 copies of tensors that are int8 in the source
    pub(super) f32_twin: HashMap<TId, TId>,
    /// Nudge weight scales so requantization multipliers fit 16 bits (kiln's own quantization);
    /// off when the source model fixed the quantization (QDQ import), to stay closest to it.
    pub(super) compact: bool,
    /// Why the op writing each float tensor stayed in float.
    pub(super) why_float: HashMap<TId, &'static str>,
}

impl<'g> Builder<'g> {
    pub(super) fn new(g: &'g Graph, obs: &'g HashMap<TId, Observer>, opts: &'g PtqOptions) -> Self {
        let q = Graph {
            tensors: g.tensors.clone(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            act_quant: Default::default(),
            source_weights: Default::default(),
            sparse_weights: g.sparse_weights,
        };
        Builder {
            g,
            obs,
            opts,
            q,
            int8_of: HashMap::new(),
            have_f32: HashSet::new(),
            int8_nodes: HashSet::new(),
            f32_twin: HashMap::new(),
            compact: true,
            why_float: HashMap::new(),
        }
    }

    pub(super) fn params(&self, t: TId) -> (f32, i32) {
        if let Some(&p) = self.g.act_quant.get(&t) {
            return p;
        }
        let (lo, hi) = self
            .obs
            .get(&t)
            .map_or((0.0, 0.0), |o| o.range(self.opts.method));
        asymmetric(lo, hi)
    }

    /// Whether tensor `t` can be had in int8: it is, or its f32 value exists and its
    /// quantization is known (calibrated, or fixed by the source model).
    pub(super) fn can_i8(&self, t: TId) -> bool {
        self.int8_of.contains_key(&t)
            || (self.have_f32.contains(&t)
                && (self.g.act_quant.contains_key(&t) || self.obs.contains_key(&t)))
    }

    pub(super) fn has_params(&self, t: TId) -> bool {
        self.g.act_quant.contains_key(&t) || self.obs.contains_key(&t)
    }

    pub(super) fn new_i8(&mut self, t: TId, scale: f32, zero_point: i32) -> TId {
        let name = self.g.tensors[t].name.clone();
        let id = self
            .q
            .add_tensor(name, DType::I8, self.g.tensors[t].shape.clone());
        self.q.tensors[id].quant = Quant::PerTensor { scale, zero_point };
        self.int8_of.insert(t, id);
        id
    }

    pub(super) fn qparams(&self, qt: TId) -> (f32, i32) {
        match self.q.tensors[qt].quant {
            Quant::PerTensor { scale, zero_point } => (scale, zero_point),
            _ => (1.0, 0),
        }
    }

    /// The int8 version of activation `t`, quantizing it if it only exists in float.
    pub(super) fn need_i8(&mut self, t: TId) -> Result<TId> {
        if let Some(&q) = self.int8_of.get(&t) {
            return Ok(q);
        }
        if !self.have_f32.contains(&t) {
            bail!("internal: tensor '{}' has no value", self.g.tensors[t].name);
        }
        let (s, z) = self.params(t);
        let q = self.new_i8(t, s, z);
        let name = format!("{}.quantize", self.g.tensors[t].name);
        self.q.push(Node::new(
            name,
            OpParams::Quantize(QuantizeParams),
            vec![Some(t)],
            vec![q],
        ));
        Ok(q)
    }

    /// The float version of tensor `t`, dequantizing it if it only exists in int8.
    pub(super) fn need_f32(&mut self, t: TId) -> Result<TId> {
        if self.have_f32.contains(&t) || self.g.tensors[t].data.is_some() {
            return Ok(t);
        }
        let q = *self
            .int8_of
            .get(&t)
            .ok_or_else(|| anyhow!("internal: tensor has no value"))?;
        let name = format!("{}.dequantize", self.g.tensors[t].name);
        // A tensor that is int8 in the source (an int8 graph input) gets a new f32 twin.
        let f = if self.g.tensors[t].dtype == DType::F32 {
            t
        } else {
            if let Some(&f) = self.f32_twin.get(&t) {
                return Ok(f);
            }
            let f = self
                .q
                .add_tensor(name.clone(), DType::F32, self.g.tensors[t].shape.clone());
            self.f32_twin.insert(t, f);
            f
        };
        self.q.push(Node::new(
            name,
            OpParams::Dequantize(DequantizeParams),
            vec![Some(q)],
            vec![f],
        ));
        self.have_f32.insert(t);
        Ok(f)
    }

    pub(super) fn is_act(&self, t: TId) -> bool {
        self.g.tensors[t].data.is_none() && self.g.tensors[t].dtype == DType::F32
    }

    /// The fused float clamp of `n` in the quantized domain of `(scale, zp)`.
    pub(super) fn int_clamp(n: &Node, scale: f32, zp: i32) -> Act {
        let (lo, hi) = n.act().unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let lo = if lo.is_finite() {
            zp.saturating_add((lo / scale).round() as i32).max(-128)
        } else {
            -128
        };
        let hi = if hi.is_finite() {
            zp.saturating_add((hi / scale).round() as i32).min(127)
        } else {
            127
        };
        Act::Int8 { lo: lo.min(hi), hi }
    }

    pub(super) fn build(mut self) -> Result<Self> {
        for &t in &self.g.inputs {
            if self.g.tensors[t].dtype == DType::I8 {
                // Already int8 in the source model.
                self.int8_of.insert(t, t);
            } else if self.opts.int8_io {
                let (s, z) = self.params(t);
                self.q.tensors[t].dtype = DType::I8;
                self.q.tensors[t].quant = Quant::PerTensor {
                    scale: s,
                    zero_point: z,
                };
                self.int8_of.insert(t, t);
            } else {
                self.have_f32.insert(t);
            }
            self.q.inputs.push(t);
        }
        let g = self.g;
        for n in &g.nodes {
            if !self.int8_node(n)? {
                let mut m = n.clone();
                for i in m.inputs.iter_mut().flatten() {
                    *i = self.need_f32(*i)?;
                }
                self.q.push(m);
                for &o in &n.outputs {
                    self.have_f32.insert(o);
                }
            }
        }
        for &t in &self.g.outputs {
            let o = if self.g.tensors[t].dtype == DType::I8 {
                *self
                    .int8_of
                    .get(&t)
                    .ok_or_else(|| anyhow!("internal: int8 output has no value"))?
            } else if self.opts.int8_io {
                self.need_i8(t)?
            } else {
                self.need_f32(t)?
            };
            self.q.outputs.push(o);
        }
        Ok(self)
    }
}
