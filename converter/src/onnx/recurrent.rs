//! Recurrent layers, unrolled over their fixed number of time steps into kiln ops: tract's
//! `Scan` (how it reads ONNX LSTM and RNN, and ONNX Scan itself), whose body is imported once
//! per step with the step's slice and the carried state bound to its inputs, and tract's
//! `GruSeq` (ONNX GRU with `linear_before_reset`, PyTorch's), written out cell by cell. Every
//! step starts from the model's initial state: a kiln session carries nothing across
//! invocations (the ONNX contract; tract by default carries the state).

use super::layout::identity;
use super::lower::{tensor_f32, unsupported_reason};
use super::{Imp, Val};
use crate::ir::{Node, TId};
use anyhow::{anyhow, bail, Context, Result};
use kiln_runtime::ops::{
    self as kops, BinaryKind, BinaryParams, DenseParams, OpParams, UnaryKind, UnaryParams,
};
use std::collections::HashMap;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::gru_seq::GruSeq;
use tract_onnx::tract_core::ops::lstm_cell::LstmEpilogue;
use tract_onnx::tract_core::ops::scan::{InputMapping, Scan};
use tract_onnx::tract_core::ops::source::TypedSource;

/// Most time steps kiln unrolls: the same bound as [`crate::rnn::MAX_STEPS`].
const MAX_STEPS: usize = crate::rnn::MAX_STEPS;

/// Whether kiln can unroll a tract `Scan`: scanned inputs of a known length, outputs that are
/// scanned or last values, and a body of ops kiln imports.
pub(super) fn scan_supported(model: &TypedModel, node: &TypedNode) -> bool {
    let Some(s) = node.op.downcast_ref::<Scan>() else {
        return false;
    };
    let steps = scan_steps(model, node, s).is_ok_and(|n| n <= MAX_STEPS);
    let outputs = s
        .output_mapping
        .iter()
        .all(|m| m.scan.is_none_or(|(_, i)| i.chunk.unsigned_abs() == 1));
    let body = s.body.eval_order().is_ok_and(|order| {
        order
            .iter()
            .all(|&n| unsupported_reason(&s.body, &s.body.nodes()[n]).is_none())
    });
    steps && outputs && body
}

/// The number of steps of a Scan: each scanned input's length over its chunk.
fn scan_steps(model: &TypedModel, node: &TypedNode, s: &Scan) -> Result<usize> {
    let mut steps = None;
    for (i, m) in s.input_mapping.iter().enumerate() {
        if let InputMapping::Scan(info) = m {
            let shape = model
                .outlet_fact(node.inputs[i])
                .ok()
                .and_then(|f| f.shape.as_concrete().map(|s| s.to_vec()))
                .ok_or_else(|| anyhow!("scanned input without a concrete shape"))?;
            let c = info.chunk.unsigned_abs();
            let len = shape.get(info.axis).copied().unwrap_or(0);
            if c != 1 {
                bail!("scan chunks of {c} are not supported (1 is)");
            }
            match steps {
                None => steps = Some(len),
                Some(n) if n == len => {}
                Some(n) => bail!("scanned inputs of {n} and {len} steps"),
            }
        }
    }
    steps.ok_or_else(|| anyhow!("Scan without a scanned input"))
}

/// Whether kiln can write out a tract `GruSeq`: constant weights, the whole sequence known.
pub(super) fn gru_supported(model: &TypedModel, node: &TypedNode) -> bool {
    let Some(g) = node.op.downcast_ref::<GruSeq>() else {
        return false;
    };
    let konst = |k: usize| {
        node.inputs
            .get(k)
            .is_some_and(|&o| model.outlet_fact(o).is_ok_and(|f| f.konst.is_some()))
    };
    let r_slot = if g.projected { 1 } else { 2 };
    let steps = model
        .outlet_fact(node.inputs[0])
        .ok()
        .and_then(|f| f.shape.as_concrete().map(|s| s.to_vec()))
        .is_some_and(|s| s.len() == 3 && s[1] <= MAX_STEPS);
    steps && (g.projected || konst(1)) && konst(r_slot) && (!g.has_bias || konst(r_slot + 1))
}

impl Imp<'_> {
    /// A value as a kiln tensor in its logical layout.
    fn logical(&mut self, v: Val, shape: &[usize], name: &str) -> Result<TId> {
        self.layout_of(v, shape, name, &identity(shape.len()))
    }

    /// The slice `[.., at, ..]` (length 1 along `axis`) of tensor `x`, logical layout.
    fn step_slice(&mut self, x: TId, axis: usize, at: usize, name: String) -> TId {
        let mut shape = self.g.tensors[x].shape.clone();
        shape[axis] = 1;
        let mut p = kops::SliceParams::default();
        p.begin[axis] = at as i32;
        let y = self.new_tensor(name.clone(), shape);
        self.g
            .push(Node::new(name, OpParams::Slice(p), vec![Some(x)], vec![y]));
        y
    }

    /// `x[.., lo..hi]` along the last axis.
    fn cols(&mut self, x: TId, lo: usize, hi: usize, name: String) -> TId {
        let mut shape = self.g.tensors[x].shape.clone();
        let last = shape.len() - 1;
        shape[last] = hi - lo;
        let mut p = kops::SliceParams::default();
        p.begin[last] = lo as i32;
        let y = self.new_tensor(name.clone(), shape);
        self.g
            .push(Node::new(name, OpParams::Slice(p), vec![Some(x)], vec![y]));
        y
    }

    fn binary_t(&mut self, kind: BinaryKind, a: TId, b: TId, name: String) -> TId {
        let shape = self.g.tensors[a].shape.clone();
        let y = self.new_tensor(name.clone(), shape);
        let op = OpParams::Binary(BinaryParams::new(kind));
        self.g
            .push(Node::new(name, op, vec![Some(a), Some(b)], vec![y]));
        y
    }

    fn unary_t(&mut self, kind: UnaryKind, x: TId, name: String) -> TId {
        let shape = self.g.tensors[x].shape.clone();
        let y = self.new_tensor(name.clone(), shape);
        let op = OpParams::Unary(UnaryParams::new(kind));
        self.g.push(Node::new(name, op, vec![Some(x)], vec![y]));
        y
    }

    fn concat_t(&mut self, parts: Vec<TId>, axis: usize, name: String) -> TId {
        let mut shape = self.g.tensors[parts[0]].shape.clone();
        shape[axis] = parts.iter().map(|&p| self.g.tensors[p].shape[axis]).sum();
        let y = self.new_tensor(name.clone(), shape);
        let op = OpParams::Concat(kops::ConcatParams { axis });
        let ins = parts.into_iter().map(Some).collect();
        self.g.push(Node::new(name, op, ins, vec![y]));
        y
    }

    /// tract's `Scan`, unrolled: per step, the body imported with its inputs bound to the
    /// step's slices, the carried state and the loop-invariant values; scanned outputs
    /// concatenated in step order, last values taken from the final step.
    pub(super) fn scan(&mut self, node: &TypedNode, s: &Scan) -> Result<()> {
        let name = node.name.clone();
        let n = scan_steps(self.model, node, s)?;
        if n > MAX_STEPS {
            bail!(
                "a recurrence over {n} steps is not supported (kiln unrolls at most {MAX_STEPS})"
            );
        }
        let body = &s.body;
        let b_in = body.input_outlets().map_err(|e| anyhow!("{e:?}"))?.to_vec();
        let b_out = body
            .output_outlets()
            .map_err(|e| anyhow!("{e:?}"))?
            .to_vec();
        let order = body.eval_order().map_err(|e| anyhow!("{e:?}"))?;
        let mut state: Vec<Val> = Vec::new();
        let mut scanned: HashMap<usize, TId> = HashMap::new();
        for (i, m) in s.input_mapping.iter().enumerate() {
            match m {
                InputMapping::State => state.push(self.val(node.inputs[i])?),
                InputMapping::Scan(_) => {
                    let shape = self.shape(node.inputs[i])?;
                    let v = self.val(node.inputs[i])?;
                    let t = self.logical(v, &shape, &format!("{name}.in{i}"))?;
                    scanned.insert(i, t);
                }
                InputMapping::Full => {}
            }
        }
        let state_outs: Vec<usize> = (0..b_out.len())
            .filter(|&j| s.output_mapping[j].state)
            .collect();
        if state_outs.len() != state.len() {
            bail!(
                "Scan with {} states but {} state outputs",
                state.len(),
                state_outs.len()
            );
        }
        let mut per_step: HashMap<usize, Vec<TId>> = HashMap::new();
        let mut last: Vec<Val> = Vec::new();
        for t in 0..n {
            let mut vals = HashMap::new();
            let mut si = 0;
            for (i, m) in s.input_mapping.iter().enumerate() {
                let v = match m {
                    InputMapping::Full => self.val(node.inputs[i])?,
                    InputMapping::State => {
                        si += 1;
                        state[si - 1].clone()
                    }
                    InputMapping::Scan(info) => {
                        let at = if info.chunk < 0 { n - 1 - t } else { t };
                        let x = scanned[&i];
                        let y = self.step_slice(x, info.axis, at, format!("{name}.in{i}.t{t}"));
                        let r = self.g.tensors[y].shape.len();
                        Val::Act {
                            tid: y,
                            perm: identity(r),
                        }
                    }
                };
                vals.insert(b_in[i], v);
            }
            // The body shares this graph; its own values and layouts stay in `sub`.
            let mut sub = Imp {
                model: body,
                g: std::mem::take(&mut self.g),
                vals,
                layouts: HashMap::new(),
            };
            let mut run = || -> Result<Vec<Val>> {
                for &k in &order {
                    let bn = &body.nodes()[k];
                    if bn.op.downcast_ref::<TypedSource>().is_some() {
                        continue;
                    }
                    sub.node(bn)
                        .with_context(|| format!("step {t}: converting {}", bn.name))?;
                }
                b_out.iter().map(|&o| sub.val(o)).collect()
            };
            let outs = run();
            self.g = std::mem::take(&mut sub.g);
            let outs = outs?;
            state = state_outs.iter().map(|&j| outs[j].clone()).collect();
            for (j, m) in s.output_mapping.iter().enumerate() {
                if m.scan.is_some() {
                    let shape = body
                        .outlet_fact(b_out[j])
                        .ok()
                        .and_then(|f| f.shape.as_concrete().map(|s| s.to_vec()))
                        .ok_or_else(|| anyhow!("Scan body output without a concrete shape"))?;
                    let tid =
                        self.logical(outs[j].clone(), &shape, &format!("{name}.out{j}.t{t}"))?;
                    per_step.entry(j).or_default().push(tid);
                }
            }
            last = outs;
        }
        for (j, m) in s.output_mapping.iter().enumerate() {
            if let Some((slot, info)) = m.scan {
                let mut parts = per_step.remove(&j).unwrap_or_default();
                if info.chunk < 0 {
                    parts.reverse();
                }
                let y = self.concat_t(parts, info.axis, format!("{name}.{slot}"));
                let r = self.g.tensors[y].shape.len();
                let o = OutletId::new(node.id, slot);
                self.vals.insert(
                    o,
                    Val::Act {
                        tid: y,
                        perm: identity(r),
                    },
                );
            }
            if let Some(slot) = m.last_value_slot {
                self.vals
                    .insert(OutletId::new(node.id, slot), last[j].clone());
            }
        }
        Ok(())
    }

    /// tract's fused LSTM cell (inside the Scan it reads ONNX LSTM as): from the gate
    /// pre-activations `[.., 4h]` (ONNX order i, o, f, c) and the previous cell `[.., h]`,
    /// `C = f ⊙ C' + i ⊙ tanh(c)` and `H = o ⊙ tanh(C)`, as kiln slices, sigmoid, tanh, mul
    /// and add. Outputs 0 and 1 are H and C.
    pub(super) fn lstm_epilogue(&mut self, node: &TypedNode, e: &LstmEpilogue) -> Result<()> {
        let name = node.name.clone();
        let h = e.hidden;
        let (ps, cs) = (self.shape(node.inputs[0])?, self.shape(node.inputs[1])?);
        let mut want = cs.clone();
        if let Some(last) = want.last_mut() {
            *last *= 4;
        }
        if cs.last() != Some(&h) || ps != want {
            bail!("LSTM cell pre-activations {ps:?} do not match a cell state {cs:?}");
        }
        let pv = self.val(node.inputs[0])?;
        let pre = self.logical(pv, &ps, &format!("{name}.preact"))?;
        let cv = self.val(node.inputs[1])?;
        let c_prev = self.logical(cv, &cs, &format!("{name}.c_prev"))?;
        let iof = self.cols(pre, 0, 3 * h, format!("{name}.iof_in"));
        let iof = self.unary_t(UnaryKind::Sigmoid, iof, format!("{name}.iof"));
        let cc = self.cols(pre, 3 * h, 4 * h, format!("{name}.c_in"));
        let cc = self.unary_t(UnaryKind::Tanh, cc, format!("{name}.c_cand"));
        let i = self.cols(iof, 0, h, format!("{name}.i"));
        let o = self.cols(iof, h, 2 * h, format!("{name}.o"));
        let f = self.cols(iof, 2 * h, 3 * h, format!("{name}.f"));
        let fc = self.binary_t(BinaryKind::Mul, f, c_prev, format!("{name}.f_c"));
        let ic = self.binary_t(BinaryKind::Mul, i, cc, format!("{name}.i_c"));
        let c = self.binary_t(BinaryKind::Add, fc, ic, format!("{name}.C"));
        let tc = self.unary_t(UnaryKind::Tanh, c, format!("{name}.tanh_C"));
        let ht = self.binary_t(BinaryKind::Mul, o, tc, format!("{name}.H"));
        let r = cs.len();
        for (slot, t) in [(0, ht), (1, c)] {
            self.vals.insert(
                OutletId::new(node.id, slot),
                Val::Act {
                    tid: t,
                    perm: identity(r),
                },
            );
        }
        Ok(())
    }

    /// tract's `GruSeq` (ONNX GRU, gates z, r, h, `linear_before_reset`), written out step by
    /// step: `z, r = σ(x·Wzrᵀ + Wbzr + h·Rzrᵀ + Rbzr)`, `n = tanh(x·Whᵀ + Wbh + r ⊙ (h·Rhᵀ +
    /// Rbh))`, `h' = n + z ⊙ (h - n)`.
    pub(super) fn gru_seq(&mut self, node: &TypedNode, g: &GruSeq) -> Result<()> {
        let name = node.name.clone();
        let h = g.hidden;
        let xs = self.shape(node.inputs[0])?;
        let [batch, steps, _] = xs[..] else {
            bail!("GRU input of rank {}", xs.len());
        };
        let r_slot = if g.projected { 1 } else { 2 };
        let konst = |imp: &Self, k: usize| -> Result<Vec<f32>> {
            let t = imp
                .const_of(node.inputs[k])
                .ok_or_else(|| anyhow!("GRU with non-constant weights is not supported"))?;
            tensor_f32(&t)
        };
        let rv = konst(self, r_slot)?;
        let bias = if g.has_bias {
            Some(konst(self, r_slot + 1)?)
        } else {
            None
        };
        if rv.len() != 3 * h * h || bias.as_ref().is_some_and(|b| b.len() != 6 * h) {
            bail!("GRU weights do not match hidden size {h}");
        }
        let xv = self.val(node.inputs[0])?;
        let x = self.logical(xv, &xs, &format!("{name}.x"))?;
        // The input side for the whole sequence at once: [batch, T, 3h].
        let xw = if g.projected {
            x
        } else {
            let wv = konst(self, 1)?;
            let k = xs[2];
            if wv.len() != 3 * h * k {
                bail!("GRU input weights do not match hidden size {h}");
            }
            let w = self
                .g
                .add_const_f32(format!("{name}.W"), vec![3 * h, k], wv);
            let wb = bias.as_ref().map(|b| {
                self.g
                    .add_const_f32(format!("{name}.Wb"), vec![3 * h], b[..3 * h].to_vec())
            });
            let y = self.new_tensor(format!("{name}.xw"), vec![batch, steps, 3 * h]);
            let op = OpParams::Dense(DenseParams::default());
            self.g.push(Node::new(
                format!("{name}.xw"),
                op,
                vec![Some(x), Some(w), wb],
                vec![y],
            ));
            y
        };
        let r = self
            .g
            .add_const_f32(format!("{name}.R"), vec![3 * h, h], rv);
        let rb = bias.as_ref().map(|b| {
            self.g
                .add_const_f32(format!("{name}.Rb"), vec![3 * h], b[3 * h..].to_vec())
        });
        let h0s = self.shape(*node.inputs.last().unwrap_or(&node.inputs[0]))?;
        let h0v = self.val(*node.inputs.last().unwrap_or(&node.inputs[0]))?;
        let h0 = self.logical(h0v, &h0s, &format!("{name}.h0"))?;
        let mut ht = self.reshape(h0, vec![batch, h], format!("{name}.h.init"));
        let mut ys = Vec::new();
        for step in 0..steps {
            let t = if g.chunk < 0 { steps - 1 - step } else { step };
            let p = format!("{name}.t{t}");
            let xt = self.step_slice(xw, 1, t, format!("{p}.x"));
            let xt = self.reshape(xt, vec![batch, 3 * h], format!("{p}.x2"));
            let rh = self.new_tensor(format!("{p}.rh"), vec![batch, 3 * h]);
            let op = OpParams::Dense(DenseParams::default());
            self.g.push(Node::new(
                format!("{p}.rh"),
                op,
                vec![Some(ht), Some(r), rb],
                vec![rh],
            ));
            let xzr = self.cols(xt, 0, 2 * h, format!("{p}.xzr"));
            let rzr = self.cols(rh, 0, 2 * h, format!("{p}.rzr"));
            let zr = self.binary_t(BinaryKind::Add, xzr, rzr, format!("{p}.zr_in"));
            let zr = self.unary_t(UnaryKind::Sigmoid, zr, format!("{p}.zr"));
            let z = self.cols(zr, 0, h, format!("{p}.z"));
            let rg = self.cols(zr, h, 2 * h, format!("{p}.r"));
            let xn = self.cols(xt, 2 * h, 3 * h, format!("{p}.xn"));
            let rn = self.cols(rh, 2 * h, 3 * h, format!("{p}.rn"));
            let rn = self.binary_t(BinaryKind::Mul, rg, rn, format!("{p}.r_rn"));
            let n = self.binary_t(BinaryKind::Add, xn, rn, format!("{p}.n_in"));
            let n = self.unary_t(UnaryKind::Tanh, n, format!("{p}.n"));
            let d = self.binary_t(BinaryKind::Sub, ht, n, format!("{p}.h_minus_n"));
            let d = self.binary_t(BinaryKind::Mul, z, d, format!("{p}.z_d"));
            ht = self.binary_t(BinaryKind::Add, n, d, format!("{p}.h"));
            ys.push((t, ht));
        }
        ys.sort_by_key(|&(t, _)| t);
        let parts: Vec<TId> = ys
            .iter()
            .map(|&(t, y)| self.reshape(y, vec![batch, 1, h], format!("{name}.y{t}")))
            .collect();
        let y = if parts.len() == 1 {
            parts[0]
        } else {
            self.concat_t(parts, 1, format!("{name}.Y"))
        };
        self.vals.insert(
            OutletId::new(node.id, 0),
            Val::Act {
                tid: y,
                perm: identity(3),
            },
        );
        let yh = self.reshape(ht, vec![batch, 1, h], format!("{name}.Y_h"));
        self.vals.insert(
            OutletId::new(node.id, 1),
            Val::Act {
                tid: yh,
                perm: identity(3),
            },
        );
        Ok(())
    }
}
