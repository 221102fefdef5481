//! The per-op rewrite to int8: each op with an int8 kernel, its requantization computed with
//! `kiln_quantize`; every other op stays in float.

use super::builder::Builder;
use crate::ir::{pool_op, Data, Node, TId};
use anyhow::Result;
use kiln_quantize::calibrate::{
    quantize_bias, quantize_weights_compact, quantize_weights_per_channel,
};
use kiln_quantize::requant::{
    add_params, conv_multipliers, logistic, lut_i8, mean_params, mul_params, softmax_params,
};
use kiln_runtime::ops::{
    AddQuant, BinaryKind, BinaryParams, BinaryQuant, LutParams, MeanQuant, MulQuant, OpParams,
    Reducer, Rounding, SoftmaxQuant, UnaryKind, UnaryParams,
};
use kiln_runtime::{DType, OpKind, Quant};

impl Builder<'_> {
    /// Emits `n` as an int8 op if it has an int8 kernel; returns false to keep it in float.
    pub(super) fn int8_node(&mut self, n: &Node) -> Result<bool> {
        let y = n.outputs[0];
        // Conversions present in the source model (an int8 graph input, an int8 output).
        if n.kind() == OpKind::Dequantize {
            if let Some(&xq) = n.input(0).and_then(|x| self.int8_of.get(&x)) {
                self.int8_of.insert(y, xq);
                return Ok(true);
            }
            return Ok(false);
        }
        if n.kind() == OpKind::Quantize {
            let x = n.input(0).unwrap_or(y);
            if let Some(&xq) = self.int8_of.get(&x) {
                if self.q.tensors[xq].quant == self.g.tensors[y].quant {
                    self.int8_of.insert(y, xq);
                    return Ok(true);
                }
            }
            let xf = self.need_f32(x)?;
            let mut m = n.clone();
            m.inputs = vec![Some(xf)];
            self.q.push(m);
            self.int8_of.insert(y, y);
            return Ok(true);
        }
        if matches!(
            n.kind(),
            OpKind::Reshape | OpKind::Slice | OpKind::Transpose
        ) {
            // Data movement follows its input: int8 in, int8 out, same quantization.
            let Some(&xq) = n.input(0).and_then(|x| self.int8_of.get(&x)) else {
                return Ok(false);
            };
            let (s, z) = self.qparams(xq);
            let yq = if self.g.tensors[y].dtype == DType::I8 {
                self.q.tensors[y].quant = Quant::PerTensor {
                    scale: s,
                    zero_point: z,
                };
                self.int8_of.insert(y, y);
                y
            } else {
                self.new_i8(y, s, z)
            };
            let mut m = n.clone();
            m.inputs = vec![Some(xq)];
            m.outputs = vec![yq];
            self.q.push(m);
            self.int8_nodes.insert(y);
            return Ok(true);
        }
        if n.outputs.len() != 1 || !self.is_act(y) || !self.has_params(y) {
            return Ok(false);
        }
        let acts: Vec<TId> = n
            .inputs
            .iter()
            .flatten()
            .copied()
            .filter(|&t| self.is_act(t))
            .collect();
        if n.kind() != OpKind::Reshape && !acts.iter().all(|&t| self.can_i8(t)) {
            return Ok(false);
        }
        match n.kind() {
            OpKind::Conv2d | OpKind::Dense => {
                let (Some(x), Some(wt)) = (n.input(0), n.input(1)) else {
                    return Ok(false);
                };
                let Some(w) = self.g.const_f32(wt) else {
                    return Ok(false);
                };
                if !self.is_act(x) {
                    return Ok(false);
                }
                let channels = self.g.tensors[wt].shape[0];
                let bias: Vec<f32> = match n.input(2) {
                    Some(b) => match self.g.const_f32(b) {
                        Some(v) => v.to_vec(),
                        None => return Ok(false),
                    },
                    None => vec![0.0; channels],
                };
                let xq = self.need_i8(x)?;
                let (sx, _) = self.qparams(xq);
                let (sy, zy) = self.params(y);
                let yq = self.new_i8(y, sy, zy);
                // Weight scales chosen so the multipliers fit 16 bits (half-size tables); the
                // plain per-channel form when a shift would be out of range.
                let compact = if self.compact {
                    quantize_weights_compact(w, channels, sx, sy)
                } else {
                    None
                };
                let (wq, ws, mult) = match compact {
                    Some(c) => (c.weights, c.scales, Ok((c.multipliers, c.shifts))),
                    None => {
                        let (wq, ws) = quantize_weights_per_channel(w, channels);
                        let ms = conv_multipliers(sx, &ws, sy);
                        (wq, ws, Err(ms))
                    }
                };
                // Symmetric per-channel weights: their scales are folded into the multipliers, so
                // the file carries none (they can be recovered as
                // multiplier * 2^(shift - 31) * output_scale / input_scale).
                let wid = self.q.add_tensor(
                    format!("{}.weights_i8", n.name),
                    DType::I8,
                    self.g.tensors[wt].shape.clone(),
                );
                self.q.tensors[wid].data = Some(Data::I8(wq));
                let bid = self.q.add_const_i32(
                    format!("{}.bias_i32", n.name),
                    quantize_bias(&bias, sx, &ws),
                );
                let (mid, shift) = match mult {
                    Ok((m16, shift)) => {
                        let t = self.q.add_tensor(
                            format!("{}.multiplier", n.name),
                            DType::I16,
                            vec![m16.len()],
                        );
                        self.q.tensors[t].data = Some(Data::Raw(
                            m16.iter().flat_map(|m| m.to_le_bytes()).collect(),
                        ));
                        (t, shift)
                    }
                    Err((mult, shift)) => (
                        self.q.add_const_i32(format!("{}.multiplier", n.name), mult),
                        shift,
                    ),
                };
                // Shifts lie in -31..=30: one byte each.
                let sid =
                    self.q
                        .add_tensor(format!("{}.shift", n.name), DType::I8, vec![shift.len()]);
                self.q.tensors[sid].data = Some(Data::I8(shift.iter().map(|&s| s as i8).collect()));
                let act = Self::int_clamp(n, sy, zy);
                let mut m = n.clone();
                m.inputs = vec![Some(xq), Some(wid), Some(bid), Some(mid), Some(sid)];
                m.outputs = vec![yq];
                match &mut m.op {
                    OpParams::Conv2d(p) => {
                        p.act = act;
                        p.rounding = Rounding::Double;
                    }
                    OpParams::Dense(p) => {
                        p.act = act;
                        p.rounding = Rounding::Double;
                    }
                    _ => return Ok(false),
                }
                self.q.push(m);
            }
            OpKind::MaxPool | OpKind::AvgPool => {
                let Some(x) = n.input(0) else {
                    return Ok(false);
                };
                let (OpParams::MaxPool(mut p) | OpParams::AvgPool(mut p)) = n.op else {
                    return Ok(false);
                };
                let w = &p.window;
                let padded = w.pad.iter().any(|&p| p != 0);
                if n.kind() == OpKind::AvgPool
                    && ((w.count_include_pad && padded) || w.ceil_extra != [0, 0])
                {
                    return Ok(false); // int8 average pooling counts only the valid window
                }
                let xq = self.need_i8(x)?;
                let (s, z) = self.qparams(xq);
                let yq = self.new_i8(y, s, z);
                p.act = Self::int_clamp(n, s, z);
                p.window.count_include_pad = false;
                let mut m = n.clone();
                m.op = pool_op(n.kind() == OpKind::MaxPool, p);
                m.inputs = vec![Some(xq)];
                m.outputs = vec![yq];
                self.q.push(m);
            }
            OpKind::Binary => {
                let OpParams::Binary(BinaryParams { kind, .. }) = n.op else {
                    return Ok(false);
                };
                let (Some(a), Some(b)) = (n.input(0), n.input(1)) else {
                    return Ok(false);
                };
                if !matches!(kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul)
                    || !self.is_act(a)
                    || !self.is_act(b)
                {
                    return Ok(false);
                }
                if kind == BinaryKind::Mul {
                    let aq = self.need_i8(a)?;
                    let bq = self.need_i8(b)?;
                    let (sy, zy) = self.params(y);
                    let yq = self.new_i8(y, sy, zy);
                    let (multiplier, shift) =
                        mul_params(self.qparams(aq).0, self.qparams(bq).0, sy);
                    let mut m = n.clone();
                    m.op = OpParams::Binary(BinaryParams {
                        kind,
                        act: Self::int_clamp(n, sy, zy),
                        quant: BinaryQuant::Mul(MulQuant {
                            multiplier,
                            shift,
                            rounding: Rounding::Double,
                        }),
                    });
                    m.inputs = vec![Some(aq), Some(bq)];
                    m.outputs = vec![yq];
                    self.q.push(m);
                    self.int8_nodes.insert(y);
                    return Ok(true);
                }
                let aq = self.need_i8(a)?;
                let bq = self.need_i8(b)?;
                let (sy, zy) = self.params(y);
                let yq = self.new_i8(y, sy, zy);
                let (left_shift, mult) = add_params(self.qparams(aq).0, self.qparams(bq).0, sy);
                let mut m = n.clone();
                m.op = OpParams::Binary(BinaryParams {
                    kind,
                    act: Self::int_clamp(n, sy, zy),
                    quant: BinaryQuant::Add(AddQuant { left_shift, mult }),
                });
                m.inputs = vec![Some(aq), Some(bq)];
                m.outputs = vec![yq];
                self.q.push(m);
            }
            OpKind::Softmax => {
                let Some(x) = n.input(0) else {
                    return Ok(false);
                };
                let OpParams::Softmax(mut p) = n.op else {
                    return Ok(false);
                };
                let rank = self.g.tensors[x].shape.len();
                if rank == 0 || p.axis != rank - 1 || p.log {
                    return Ok(false);
                }
                let xq = self.need_i8(x)?;
                let (input_multiplier, input_left_shift, diff_min) =
                    softmax_params(p.beta, self.qparams(xq).0);
                p.quant = SoftmaxQuant {
                    input_multiplier,
                    input_left_shift,
                    diff_min,
                };
                let yq = self.new_i8(y, 1.0 / 256.0, -128);
                let mut m = n.clone();
                m.op = OpParams::Softmax(p);
                m.inputs = vec![Some(xq)];
                m.outputs = vec![yq];
                self.q.push(m);
            }
            OpKind::Reshape => {
                let Some(x) = n.input(0) else {
                    return Ok(false);
                };
                let Some(&xq) = self.int8_of.get(&x) else {
                    return Ok(false);
                };
                let (s, z) = self.qparams(xq);
                let yq = self.new_i8(y, s, z);
                let mut m = n.clone();
                m.inputs = vec![Some(xq)];
                m.outputs = vec![yq];
                self.q.push(m);
            }
            OpKind::Unary => {
                // Logistic and tanh run as TFLite does: a 256-entry table, with TFLite's fixed
                // output quantization.
                let Some(x) = n.input(0) else {
                    return Ok(false);
                };
                let (f, sy, zy): (fn(f32) -> f32, f32, i32) = match n.op {
                    OpParams::Unary(UnaryParams {
                        kind: UnaryKind::Sigmoid,
                        ..
                    }) => (logistic, 1.0 / 256.0, -128),
                    OpParams::Unary(UnaryParams {
                        kind: UnaryKind::Tanh,
                        ..
                    }) => (f32::tanh, 1.0 / 128.0, 0),
                    _ => return Ok(false),
                };
                let xq = self.need_i8(x)?;
                let (sx, zx) = self.qparams(xq);
                let table = self
                    .q
                    .add_tensor(format!("{}.table", n.name), DType::I8, vec![256]);
                self.q.tensors[table].data = Some(Data::I8(lut_i8(sx, zx, sy, zy, f)));
                let yq = self.new_i8(y, sy, zy);
                self.q.push(Node::new(
                    n.name.clone(),
                    OpParams::Lut(LutParams),
                    vec![Some(xq), Some(table)],
                    vec![yq],
                ));
            }
            OpKind::Reduce => {
                let OpParams::Reduce(mut p) = n.op else {
                    return Ok(false);
                };
                let Some(x) = n.input(0) else {
                    return Ok(false);
                };
                if p.reducer != Reducer::Mean {
                    return Ok(false);
                }
                let xs = &self.g.tensors[x].shape;
                let count: i64 = (0..xs.len())
                    .filter(|a| p.mask & (1 << a) != 0)
                    .map(|a| xs[a] as i64)
                    .product();
                let xq = self.need_i8(x)?;
                let (sy, zy) = self.params(y);
                let yq = self.new_i8(y, sy, zy);
                let (multiplier, shift) = mean_params(self.qparams(xq).0, sy, count);
                p.quant = MeanQuant { multiplier, shift };
                let mut m = n.clone();
                m.op = OpParams::Reduce(p);
                m.inputs = vec![Some(xq)];
                m.outputs = vec![yq];
                self.q.push(m);
            }
            OpKind::Concat => {
                // TFLite's int8 concat needs one quantization for all inputs and the output.
                let ins: Vec<TId> = n.inputs.iter().flatten().copied().collect();
                let mut qs = Vec::new();
                for &x in &ins {
                    qs.push(self.need_i8(x)?);
                }
                let p0 = self.q.tensors[qs[0]].quant;
                if qs.iter().any(|&q| self.q.tensors[q].quant != p0) {
                    return Ok(false);
                }
                let (s, z) = self.qparams(qs[0]);
                let yq = self.new_i8(y, s, z);
                let mut m = n.clone();
                m.inputs = qs.into_iter().map(Some).collect();
                m.outputs = vec![yq];
                self.q.push(m);
            }
            _ => return Ok(false),
        }
        self.int8_nodes.insert(y);
        Ok(true)
    }
}
