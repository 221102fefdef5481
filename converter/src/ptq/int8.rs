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
    Reducer, Rounding, SoftmaxQuant, UnaryKind,
};
use kiln_runtime::{DType, OpKind, Quant};

/// A table computed with TFLite's integer arithmetic from `(s_x, z_x, s_y, z_y)`, when the
/// function has one.
type ExactTable = dyn Fn(f32, i32, f32, i32) -> Option<Vec<i8>>;

impl Builder<'_> {
    /// Keeps the op writing `y` in float, for the reason `why` (reported by `kiln quantize`).
    fn float(&mut self, y: TId, why: &'static str) -> Result<bool> {
        self.why_float.insert(y, why);
        Ok(false)
    }

    /// Emits `n` (writing `y`) as a 256-entry table of `f` over its int8 input `x`: the output
    /// quantization `out` or the calibrated one; the table from `exact` (TFLite's integer
    /// arithmetic for the functions it defines) or from `f` on each dequantized input byte. A
    /// function that is NaN for some input byte stays float: its table would hold a made-up
    /// byte there.
    fn table_op(
        &mut self,
        n: &Node,
        x: TId,
        y: TId,
        out: Option<(f32, i32)>,
        f: &dyn Fn(f32) -> f32,
        exact: Option<&ExactTable>,
    ) -> Result<bool> {
        let xq = self.need_i8(x)?;
        let (sx, zx) = self.qparams(xq);
        if (-128..=127).any(|q| f(sx * (q - zx) as f32).is_nan()) {
            return self.float(
                y,
                "the function is undefined (NaN) on part of its input's int8 range",
            );
        }
        let (sy, zy) = out.unwrap_or_else(|| self.params(y));
        let data = exact
            .and_then(|e| e(sx, zx, sy, zy))
            .unwrap_or_else(|| lut_i8(sx, zx, sy, zy, f));
        let table = self
            .q
            .add_tensor(format!("{}.table", n.name), DType::I8, vec![256]);
        self.q.tensors[table].data = Some(Data::I8(data));
        let yq = self.new_i8(y, sy, zy);
        self.q.push(Node::new(
            n.name.clone(),
            OpParams::Lut(LutParams),
            vec![Some(xq), Some(table)],
            vec![yq],
        ));
        self.int8_nodes.insert(y);
        Ok(true)
    }

    /// Emits `n` as an int8 op if it has an int8 kernel; returns false to keep it in float.
    pub(super) fn int8_node(&mut self, n: &Node) -> Result<bool> {
        let y = n.outputs[0];
        // Conversions present in the source model (an int8 graph input, an int8 output).
        if n.kind() == OpKind::Dequantize {
            if let Some(&xq) = n.input(0).and_then(|x| self.int8_of.get(&x)) {
                self.int8_of.insert(y, xq);
                return Ok(true);
            }
            return self.float(y, "its input is float");
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
            OpKind::Reshape | OpKind::Slice | OpKind::Transpose | OpKind::Resize
        ) {
            // Data movement (and resize, whose bilinear blend stays inside its input's range)
            // follows its input: int8 in, int8 out, same quantization. A float
            // input with a calibrated range (a graph input sliced into time steps) is quantized
            // once, here, rather than each piece after.
            let Some(x) = n.input(0) else {
                return self.float(y, "malformed");
            };
            let xq = match self.int8_of.get(&x) {
                Some(&xq) => xq,
                None if self.can_i8(x) && self.is_act(x) => self.need_i8(x)?,
                None => return self.float(y, "its input is float"),
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
            return self.float(y, "its output has no calibrated range");
        }
        let acts: Vec<TId> = n
            .inputs
            .iter()
            .flatten()
            .copied()
            .filter(|&t| self.is_act(t))
            .collect();
        if n.kind() != OpKind::Reshape && !acts.iter().all(|&t| self.can_i8(t)) {
            return self.float(y, "an input has no int8 form");
        }
        match n.kind() {
            OpKind::Conv2d | OpKind::Dense | OpKind::TransposeConv => {
                let (Some(x), Some(wt)) = (n.input(0), n.input(1)) else {
                    return self.float(y, "malformed (no input or weights)");
                };
                let Some(w) = self.g.const_f32(wt) else {
                    return self.float(y, "its weights are not constant");
                };
                if !self.is_act(x) {
                    return self.float(y, "its input is not an activation");
                }
                let channels = self.g.tensors[wt].shape[0];
                let bias: Vec<f32> = match n.input(2) {
                    Some(b) => match self.g.const_f32(b) {
                        Some(v) => v.to_vec(),
                        None => return self.float(y, "its bias is not constant"),
                    },
                    None => vec![0.0; channels],
                };
                let xq = self.need_i8(x)?;
                let (sx, _) = self.qparams(xq);
                let (sy, zy) = self.params(y);
                let yq = self.new_i8(y, sy, zy);
                // Weight scales chosen so the multipliers fit 16 bits (half-size tables); the
                // plain per-channel form when a shift would be out of range.
                // Weights several ops read (an unrolled recurrent layer's time steps) take the
                // plain per-channel form, which does not depend on the op's activation scales:
                // every step then has the same bytes, stored once.
                let shared = self.g.consumers(wt).len() > 1;
                let compact = if self.compact && !shared {
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
                    OpParams::TransposeConv(p) => {
                        p.act = act;
                        p.rounding = Rounding::Double;
                    }
                    _ => return self.float(y, "no int8 kernel"),
                }
                self.q.push(m);
            }
            OpKind::MaxPool | OpKind::AvgPool => {
                let Some(x) = n.input(0) else {
                    return self.float(y, "malformed");
                };
                let (OpParams::MaxPool(mut p) | OpParams::AvgPool(mut p)) = n.op else {
                    return self.float(y, "malformed");
                };
                let w = &p.window;
                let padded = w.pad.iter().any(|&p| p != 0);
                if n.kind() == OpKind::AvgPool
                    && ((w.count_include_pad && padded) || w.ceil_extra != [0, 0])
                {
                    return self.float(y, "int8 average pooling counts only the valid window, this one counts padding");
                    // int8 average pooling counts only the valid window
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
                    return self.float(y, "malformed");
                };
                let (Some(a), Some(b)) = (n.input(0), n.input(1)) else {
                    return self.float(y, "malformed");
                };
                // One operand a single constant value: a function of the other, as a table
                // (any binary op, the fused clamp included). Keras' hard-sigmoid is `x + 3`,
                // a clamp and `/ 6` this way.
                let scalar = |t: TId| {
                    self.g
                        .const_f32(t)
                        .filter(|v| {
                            !v.is_empty() && v.iter().all(|&e| e.to_bits() == v[0].to_bits())
                        })
                        .map(|v| v[0])
                };
                let (sa, sb) = (scalar(a), scalar(b));
                if let Some(c) = sb.or(sa) {
                    let (x, const_first) = if sb.is_some() { (a, false) } else { (b, true) };
                    if self.is_act(x) && self.g.tensors[x].shape == self.g.tensors[y].shape {
                        let (lo, hi) = n.act().unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
                        let f = move |v: f32| {
                            let r = if const_first {
                                kiln_runtime::kernels::reference_f32::binary_op(kind, c, v)
                            } else {
                                kiln_runtime::kernels::reference_f32::binary_op(kind, v, c)
                            };
                            r.max(lo).min(hi)
                        };
                        return self.table_op(n, x, y, None, &f, None);
                    }
                }
                // Division by constants: multiplication by their reciprocals.
                let mut kind = kind;
                let mut b_const: Option<Vec<f32>> = self.g.const_f32(b).map(<[f32]>::to_vec);
                if kind == BinaryKind::Div {
                    match &mut b_const {
                        Some(v) if v.iter().all(|&e| e != 0.0) => {
                            v.iter_mut().for_each(|e| *e = 1.0 / *e);
                            kind = BinaryKind::Mul;
                        }
                        _ => return self.float(y, "int8 division is by non-zero constants only"),
                    }
                }
                if !matches!(kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul) {
                    return self.float(
                        y,
                        "int8 binary ops are add, sub, mul and division by constants",
                    );
                }
                if !self.is_act(a) || !(self.is_act(b) || b_const.is_some()) {
                    return self.float(y, "int8 binary ops take an activation first");
                }
                // A constant tensor operand (per-channel scales and shifts, BatchNormalization
                // after an activation): int8 per tensor over its own range, as TFLite keeps it.
                let bq_const = b_const.map(|v| {
                    let (lo, hi) = v
                        .iter()
                        .fold((0f32, 0f32), |(l, h), &e| (l.min(e), h.max(e)));
                    let (s, z) = kiln_quantize::calibrate::asymmetric(lo, hi);
                    let q: Vec<i8> = v
                        .iter()
                        .map(|&e| ((e / s).round() as i32 + z).clamp(-128, 127) as i8)
                        .collect();
                    let t = self.q.add_tensor(
                        format!("{}.operand_i8", n.name),
                        DType::I8,
                        self.g.tensors[b].shape.clone(),
                    );
                    self.q.tensors[t].data = Some(Data::I8(q));
                    self.q.tensors[t].quant = Quant::PerTensor {
                        scale: s,
                        zero_point: z,
                    };
                    t
                });
                if kind == BinaryKind::Mul {
                    let aq = self.need_i8(a)?;
                    let bq = match bq_const {
                        Some(t) => t,
                        None => self.need_i8(b)?,
                    };
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
                let bq = match bq_const {
                    Some(t) => t,
                    None => self.need_i8(b)?,
                };
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
                    return self.float(y, "malformed");
                };
                let OpParams::Softmax(mut p) = n.op else {
                    return self.float(y, "malformed");
                };
                let rank = self.g.tensors[x].shape.len();
                if rank == 0 || p.axis != rank - 1 || p.log {
                    return self.float(y, "int8 softmax is over the last axis and not log-softmax");
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
                    return self.float(y, "malformed");
                };
                let Some(&xq) = self.int8_of.get(&x) else {
                    return self.float(y, "its input is float");
                };
                let (s, z) = self.qparams(xq);
                let yq = self.new_i8(y, s, z);
                let mut m = n.clone();
                m.inputs = vec![Some(xq)];
                m.outputs = vec![yq];
                self.q.push(m);
            }
            OpKind::Unary => {
                // Every element-wise function runs as a 256-entry table. Logistic and tanh have
                // TFLite's fixed output quantization; the ReLUs, leaky ReLU and hard-swish use
                // TFLite's integer arithmetic (`crate::lut`); the rest the float function on
                // each input byte, with the calibrated output range.
                let (Some(x), OpParams::Unary(u)) = (n.input(0), n.op) else {
                    return self.float(y, "malformed");
                };
                if u.kind == UnaryKind::Identity {
                    return self.float(y, "a copy");
                }
                let out = match u.kind {
                    UnaryKind::Sigmoid => Some((1.0 / 256.0, -128)),
                    UnaryKind::Tanh => Some((1.0 / 128.0, 0)),
                    _ => None,
                };
                let f = move |v: f32| match u.kind {
                    UnaryKind::Sigmoid => logistic(v),
                    UnaryKind::Tanh => v.tanh(),
                    kind => kiln_runtime::kernels::reference_f32::unary_op(kind, v, u.a, u.b),
                };
                let exact = move |sx: f32, zx: i32, sy: f32, zy: i32| match u.kind {
                    UnaryKind::Relu => {
                        Some(crate::lut::relu_i8(sx, zx, sy, zy, 0.0, f32::INFINITY))
                    }
                    UnaryKind::Clip => Some(crate::lut::relu_i8(sx, zx, sy, zy, u.a, u.b)),
                    UnaryKind::LeakyRelu => Some(crate::lut::leaky_relu_i8(sx, zx, sy, zy, u.a)),
                    UnaryKind::HardSwish => crate::lut::hard_swish_i8(sx, zx, sy, zy)
                        .or_else(|| Some(lut_i8(sx, zx, sy, zy, f))),
                    _ => None,
                };
                return self.table_op(n, x, y, out, &f, Some(&exact));
            }
            OpKind::Reduce => {
                let OpParams::Reduce(mut p) = n.op else {
                    return self.float(y, "malformed");
                };
                let Some(x) = n.input(0) else {
                    return self.float(y, "malformed");
                };
                if p.reducer != Reducer::Mean {
                    return self.float(y, "the int8 reduce is the mean");
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
                // int8 concat copies bytes: every input must have the output's quantization
                // (the calibrated range of the output, which holds every input's values). An
                // input quantized otherwise is requantized first, by a 256-entry table.
                let ins: Vec<TId> = n.inputs.iter().flatten().copied().collect();
                let (sy, zy) = self.params(y);
                let want = Quant::PerTensor {
                    scale: sy,
                    zero_point: zy,
                };
                let mut qs = Vec::new();
                for (k, &x) in ins.iter().enumerate() {
                    let xq = self.need_i8(x)?;
                    if self.q.tensors[xq].quant == want {
                        qs.push(xq);
                        continue;
                    }
                    let (sx, zx) = self.qparams(xq);
                    let name = format!("{}.requant{k}", n.name);
                    let table = self
                        .q
                        .add_tensor(format!("{name}.table"), DType::I8, vec![256]);
                    self.q.tensors[table].data = Some(Data::I8(lut_i8(sx, zx, sy, zy, |v| v)));
                    let shape = self.q.tensors[xq].shape.clone();
                    let r = self.q.add_tensor(name.clone(), DType::I8, shape);
                    self.q.tensors[r].quant = want;
                    self.q.push(Node::new(
                        name,
                        OpParams::Lut(LutParams),
                        vec![Some(xq), Some(table)],
                        vec![r],
                    ));
                    qs.push(r);
                }
                let yq = self.new_i8(y, sy, zy);
                let mut m = n.clone();
                m.inputs = qs.into_iter().map(Some).collect();
                m.outputs = vec![yq];
                self.q.push(m);
            }
            OpKind::Gather => {
                // Data movement with constant indices: int8 in, int8 out.
                let (Some(x), Some(idx)) = (n.input(0), n.input(1)) else {
                    return self.float(y, "malformed");
                };
                let xq = self.need_i8(x)?;
                let (s, z) = self.qparams(xq);
                let yq = self.new_i8(y, s, z);
                let mut m = n.clone();
                m.inputs = vec![Some(xq), Some(idx)];
                m.outputs = vec![yq];
                self.q.push(m);
            }
            _ => return self.float(y, "no int8 kernel"),
        }
        self.int8_nodes.insert(y);
        Ok(true)
    }
}
