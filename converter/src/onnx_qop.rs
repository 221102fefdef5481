//! ONNX "QOperator" models (QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger and
//! onnxruntime's `com.microsoft` QGemm, QLinearAdd, QLinearSoftmax, ...) rewritten, at the
//! protobuf level and before tract reads them, into the equivalent QDQ form:
//!
//! `QLinearConv(x, sx, zx, w, sw, zw, sy, zy, b)` =
//! `QuantizeLinear(Conv(DQ(x, sx, zx), DQ(w, sw, zw), DQ(b, sx·sw, 0)), sy, zy)`
//!
//! which is exactly how the ONNX spec defines these operators and how onnxruntime's own QDQ
//! export writes them. kiln's QDQ lowering then keeps every scale and zero point and runs the
//! ops with int8 kernels (uint8 tensors become int8 with the zero point moved by -128, which
//! represents the same real values).
//!
//! `ConvInteger` / `MatMulInteger` produce the raw int32 accumulator. When their quantized input
//! comes from a `QuantizeLinear` with a constant scale `sx` (static quantization) or is a graph
//! input, the rewrite is `Conv(DQ(x, sx, zx), DQ(w, 1/sx, zw))`: the same integer sum, as f32.
//! Dynamic quantization (`DynamicQuantizeLinear`, scales computed from each input at run time)
//! has no fixed-point form and is rejected with an error that says so.

use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, GraphProto, ModelProto,
    NodeProto, TensorProto,
};

/// Operators this module rewrites.
const REWRITTEN: &[&str] = &[
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
    "QGemm",
    "QLinearSoftmax",
    "QLinearAdd",
    "QLinearMul",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearConcat",
];

/// Whether the model has operators [`rewrite`] handles (or must reject).
pub fn needs_rewrite(m: &ModelProto) -> bool {
    m.graph.as_ref().is_some_and(|g| {
        g.node.iter().any(|n| {
            REWRITTEN.contains(&n.op_type.as_str()) || n.op_type == "DynamicQuantizeLinear"
        })
    })
}

/// Rewrites every QOperator node into its QDQ form; returns how many were rewritten.
pub fn rewrite(m: &mut ModelProto) -> Result<usize> {
    let g = m
        .graph
        .as_mut()
        .ok_or_else(|| anyhow!("the model has no graph"))?;
    let dynamic: Vec<String> = g
        .node
        .iter()
        .filter(|n| n.op_type == "DynamicQuantizeLinear")
        .map(|n| format!("'{}'", n.name))
        .collect();
    if !dynamic.is_empty() {
        bail!(
            "dynamically quantized model: DynamicQuantizeLinear (nodes {}) computes activation scales \
             from each input at run time, which has no fixed-point form for kiln's int8 kernels; \
             convert the float model and quantize it with `kiln quantize` instead",
            dynamic.join(", ")
        );
    }
    let mut rw = Rewriter::new(g);
    let nodes = std::mem::take(&mut rw.g.node);
    let mut out = Vec::with_capacity(nodes.len());
    let mut count = 0;
    for n in nodes {
        let is_ms = n.domain == "com.microsoft";
        let known = REWRITTEN.contains(&n.op_type.as_str())
            && (is_ms || !matches!(n.op_type.as_str(), "QGemm" | "QLinearSoftmax"));
        if !known || (!is_ms && !n.domain.is_empty() && n.domain != "ai.onnx") {
            if n.op_type == "QuantizeLinear" && n.input.len() >= 2 {
                let z = n.input.get(2).cloned().filter(|z| !z.is_empty());
                for o in &n.output {
                    rw.quantized
                        .insert(o.clone(), (n.input[1].clone(), z.clone()));
                }
            }
            // QOperator graphs run layout ops (MaxPool, Reshape, ...) directly on quantized
            // tensors; in QDQ form they sit between a DequantizeLinear and a QuantizeLinear
            // with the same parameters.
            if PASSTHROUGH.contains(&n.op_type.as_str()) && n.domain.is_empty() {
                if let Some((s, z)) = n.input.first().and_then(|x| rw.quantized.get(x)).cloned() {
                    rw.passthrough(n, &s, z.as_deref(), &mut out);
                    continue;
                }
            }
            out.push(n);
            continue;
        }
        let what = format!("{} '{}'", n.op_type, n.name);
        rw.node(&n, &mut out)
            .map_err(|e| anyhow!("{what}: {e:#}"))?;
        count += 1;
    }
    rw.g.node = out;
    let inits = std::mem::take(&mut rw.new_inits);
    rw.g.initializer.extend(inits);
    Ok(count)
}

/// Ops that onnxruntime's QOperator format applies to quantized tensors as they are: the
/// output keeps the input's scale and zero point.
const PASSTHROUGH: &[&str] = &[
    "MaxPool",
    "GlobalMaxPool",
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Identity",
];

struct Rewriter<'a> {
    g: &'a mut GraphProto,
    /// Quantized tensor -> its scale and zero point (names).
    quantized: HashMap<String, (String, Option<String>)>,
    /// Output name -> (op type, inputs) of the original nodes.
    producers: HashMap<String, (String, Vec<String>)>,
    new_inits: Vec<TensorProto>,
    fresh: usize,
}

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

fn get_i(n: &NodeProto, name: &str) -> Option<i64> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn get_f(n: &NodeProto, name: &str) -> Option<f32> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

fn mk(op: &str, name: String, inputs: Vec<String>, outputs: Vec<String>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name,
        input: inputs,
        output: outputs,
        ..Default::default()
    }
}

impl<'a> Rewriter<'a> {
    fn new(g: &'a mut GraphProto) -> Self {
        let producers = g
            .node
            .iter()
            .flat_map(|n| {
                n.output
                    .iter()
                    .map(move |o| (o.clone(), (n.op_type.clone(), n.input.clone())))
            })
            .collect();
        Rewriter {
            g,
            quantized: HashMap::new(),
            producers,
            new_inits: vec![],
            fresh: 0,
        }
    }

    fn name(&mut self, base: &str, what: &str) -> String {
        self.fresh += 1;
        format!("{base}__kiln_{what}{}", self.fresh)
    }

    fn input<'n>(&self, n: &'n NodeProto, i: usize) -> Option<&'n str> {
        n.input.get(i).map(|s| s.as_str()).filter(|s| !s.is_empty())
    }

    fn required<'n>(&self, n: &'n NodeProto, i: usize, what: &str) -> Result<&'n str> {
        self.input(n, i)
            .ok_or_else(|| anyhow!("input {i} ({what}) is missing"))
    }

    /// The f32 values of initializer `name` (a scale).
    fn floats(&self, name: &str) -> Result<(Vec<f32>, Vec<i64>)> {
        let t = self
            .g
            .initializer
            .iter()
            .chain(&self.new_inits)
            .find(|t| t.name == name)
            .ok_or_else(|| anyhow!("scale '{name}' must be a constant initializer"))?;
        if t.data_type != DataType::Float as i32 {
            bail!("scale '{name}' must be float32");
        }
        let v = if !t.float_data.is_empty() {
            t.float_data.clone()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        Ok((v, t.dims.clone()))
    }

    fn const_f32(&mut self, base: &str, what: &str, v: Vec<f32>, dims: Vec<i64>) -> String {
        let name = self.name(base, what);
        self.new_inits.push(TensorProto {
            name: name.clone(),
            data_type: DataType::Float as i32,
            dims,
            float_data: v,
            ..Default::default()
        });
        name
    }

    /// Appends `DequantizeLinear(x, s, z)` (per-axis when `axis` is given) and returns its output.
    fn dq(
        &mut self,
        out: &mut Vec<NodeProto>,
        x: &str,
        s: &str,
        z: Option<&str>,
        axis: Option<i64>,
    ) -> String {
        let y = self.name(x, "dq");
        let mut inputs = vec![x.to_string(), s.to_string()];
        if let Some(z) = z {
            inputs.push(z.to_string());
        }
        let mut n = mk("DequantizeLinear", y.clone(), inputs, vec![y.clone()]);
        if let Some(a) = axis {
            n.attribute.push(attr_i("axis", a));
        }
        out.push(n);
        y
    }

    /// `DQ(x) -> op -> Q` with `x`'s parameters, for a layout op on a quantized tensor.
    fn passthrough(&mut self, n: NodeProto, s: &str, z: Option<&str>, out: &mut Vec<NodeProto>) {
        let fx = self.dq(out, &n.input[0], s, z, None);
        let y = n.output.first().cloned().unwrap_or_default();
        let fy = self.name(&y, "f");
        let mut node = n;
        node.input[0] = fx;
        node.output = vec![fy.clone()];
        out.push(node);
        self.q(out, fy, s, z, &y);
    }

    /// Appends `QuantizeLinear(x, s, z) -> y`.
    fn q(&mut self, out: &mut Vec<NodeProto>, x: String, s: &str, z: Option<&str>, y: &str) {
        self.quantized
            .insert(y.to_string(), (s.to_string(), z.map(str::to_string)));
        let mut inputs = vec![x, s.to_string()];
        if let Some(z) = z {
            inputs.push(z.to_string());
        }
        out.push(mk(
            "QuantizeLinear",
            self.name(y, "q"),
            inputs,
            vec![y.to_string()],
        ));
    }

    /// Per-axis `axis` when `scale` holds more than one value.
    fn axis_of(&self, scale: &str, axis: i64) -> Result<Option<i64>> {
        let (v, _) = self.floats(scale)?;
        Ok((v.len() > 1).then_some(axis))
    }

    /// `DQ(a, sa, za)` and `DQ(b, sb, zb)` for the usual (a, sa, za, b, sb, zb, ...) inputs.
    fn two_operands(
        &mut self,
        n: &NodeProto,
        out: &mut Vec<NodeProto>,
        b_axis: i64,
    ) -> Result<(String, String)> {
        let (a, sa) = (self.required(n, 0, "A")?, self.required(n, 1, "A scale")?);
        let (b, sb) = (self.required(n, 3, "B")?, self.required(n, 4, "B scale")?);
        if self.floats(sa)?.0.len() > 1 {
            bail!("per-row scales of the first operand are not supported");
        }
        let fa = self.dq(out, a, sa, self.input(n, 2), None);
        let axis = self.axis_of(sb, b_axis)?;
        let fb = self.dq(out, b, sb, self.input(n, 5), axis);
        Ok((fa, fb))
    }

    /// Bias `b` (int32, scale `sa * sb`, zero point 0) dequantized.
    fn bias(
        &mut self,
        out: &mut Vec<NodeProto>,
        b: &str,
        sa: &str,
        sb: &str,
        alpha: f32,
    ) -> Result<String> {
        let (va, _) = self.floats(sa)?;
        let (vb, db) = self.floats(sb)?;
        let a = *va.first().ok_or_else(|| anyhow!("empty scale '{sa}'"))?;
        let v: Vec<f32> = vb.iter().map(|&s| a * s * alpha).collect();
        let per_axis = v.len() > 1;
        let s = self.const_f32(b, "bias_scale", v, if per_axis { db } else { vec![] });
        Ok(self.dq(out, b, &s, None, per_axis.then_some(0)))
    }

    /// The scale of the static quantization that produced integer tensor `x`: the constant scale
    /// of its `QuantizeLinear`, or 1 for a graph input.
    fn producer_scale(&self, x: &str) -> Result<f32> {
        match self.producers.get(x) {
            Some((op, inputs)) if op == "QuantizeLinear" => {
                let s = inputs
                    .get(1)
                    .ok_or_else(|| anyhow!("QuantizeLinear producing '{x}' has no scale"))?;
                let (v, _) = self.floats(s)?;
                match v.as_slice() {
                    [s] if *s > 0.0 && s.is_finite() => Ok(*s),
                    _ => bail!("'{x}' is quantized per axis or with a bad scale"),
                }
            }
            None if self.g.input.iter().any(|i| i.name == x) => Ok(1.0),
            Some((op, _)) => bail!(
                "its input '{x}' comes from {op}; kiln needs a static QuantizeLinear (or a graph input)"
            ),
            None => bail!("its input '{x}' is not produced by any node"),
        }
    }

    /// `ConvInteger` / `MatMulInteger`: the integer sum, as f32.
    fn integer(&mut self, n: &NodeProto, out: &mut Vec<NodeProto>, op: &str) -> Result<()> {
        let x = self.required(n, 0, "A")?;
        let w = self.required(n, 1, "B")?;
        let sx = self.producer_scale(x)?;
        let s = self.const_f32(x, "scale", vec![sx], vec![]);
        let fx = self.dq(out, x, &s, self.input(n, 2), None);
        // The weights' zero point may be per channel: its scale must then have the same length.
        let wz = self.input(n, 3);
        let len = match wz {
            Some(z) => self
                .g
                .initializer
                .iter()
                .find(|t| t.name == z)
                .map(|t| {
                    t.dims
                        .iter()
                        .try_fold(1i64, |a, &d| a.checked_mul(d.max(1)))
                        .filter(|&n| n <= 1 << 20)
                        .ok_or_else(|| anyhow!("zero point '{z}' has absurd dims {:?}", t.dims))
                })
                .transpose()?
                .unwrap_or(1),
            None => 1,
        };
        let inv = self.const_f32(
            w,
            "inv_scale",
            vec![1.0 / sx; len as usize],
            if len > 1 { vec![len] } else { vec![] },
        );
        let axis = if op == "Conv" { 0 } else { 1 };
        let fw = self.dq(out, w, &inv, wz, (len > 1).then_some(axis));
        let mut node = mk(op, n.name.clone(), vec![fx, fw], n.output.clone());
        node.attribute = n.attribute.clone();
        out.push(node);
        Ok(())
    }

    /// `f(DQ(x), attrs) -> Q(sy, zy)` for the single-input QLinear ops with inputs
    /// (x, sx, zx, sy, zy).
    fn unary(
        &mut self,
        n: &NodeProto,
        out: &mut Vec<NodeProto>,
        op: &str,
        attrs: Vec<AttributeProto>,
    ) -> Result<()> {
        let x = self.required(n, 0, "X")?;
        let sx = self.required(n, 1, "X scale")?;
        let sy = self.required(n, 3, "Y scale")?;
        let y = n.output.first().ok_or_else(|| anyhow!("no output"))?;
        let fx = self.dq(out, x, sx, self.input(n, 2), None);
        let fy = self.name(y, "f");
        let mut node = mk(op, n.name.clone(), vec![fx], vec![fy.clone()]);
        node.attribute = attrs;
        out.push(node);
        self.q(out, fy, sy, self.input(n, 4), y);
        Ok(())
    }

    fn node(&mut self, n: &NodeProto, out: &mut Vec<NodeProto>) -> Result<()> {
        let y = n
            .output
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("no output"))?;
        match n.op_type.as_str() {
            "QLinearConv" => {
                let x = self.required(n, 0, "x")?;
                let sx = self.required(n, 1, "x scale")?;
                let w = self.required(n, 3, "w")?;
                let sw = self.required(n, 4, "w scale")?;
                let sy = self.required(n, 6, "y scale")?;
                let fx = self.dq(out, x, sx, self.input(n, 2), None);
                let axis = self.axis_of(sw, 0)?;
                let fw = self.dq(out, w, sw, self.input(n, 5), axis);
                let mut inputs = vec![fx, fw];
                if let Some(b) = self.input(n, 8) {
                    inputs.push(self.bias(out, b, sx, sw, 1.0)?);
                }
                let fy = self.name(&y, "f");
                let mut node = mk("Conv", n.name.clone(), inputs, vec![fy.clone()]);
                node.attribute = n.attribute.clone();
                out.push(node);
                self.q(out, fy, sy, self.input(n, 7), &y);
            }
            "QLinearMatMul" => {
                let (fa, fb) = self.two_operands(n, out, -1)?;
                let sy = self.required(n, 6, "y scale")?;
                let fy = self.name(&y, "f");
                out.push(mk("MatMul", n.name.clone(), vec![fa, fb], vec![fy.clone()]));
                self.q(out, fy, sy, self.input(n, 7), &y);
            }
            "QGemm" => {
                let trans_b = get_i(n, "transB").unwrap_or(0);
                let alpha = get_f(n, "alpha").unwrap_or(1.0);
                let (fa, fb) = self.two_operands(n, out, if trans_b != 0 { 0 } else { 1 })?;
                let mut inputs = vec![fa, fb];
                if let Some(c) = self.input(n, 6) {
                    let (sa, sb) = (
                        self.required(n, 1, "A scale")?,
                        self.required(n, 4, "B scale")?,
                    );
                    inputs.push(self.bias(out, c, sa, sb, alpha)?);
                }
                let mut attrs = vec![
                    attr_f("alpha", alpha),
                    attr_i("transA", get_i(n, "transA").unwrap_or(0)),
                    attr_i("transB", trans_b),
                ];
                attrs.push(attr_f("beta", 1.0));
                match self.input(n, 7) {
                    Some(sy) => {
                        let fy = self.name(&y, "f");
                        let mut node = mk("Gemm", n.name.clone(), inputs, vec![fy.clone()]);
                        node.attribute = attrs;
                        out.push(node);
                        self.q(out, fy, sy, self.input(n, 8), &y);
                    }
                    None => {
                        let mut node = mk("Gemm", n.name.clone(), inputs, vec![y.clone()]);
                        node.attribute = attrs;
                        out.push(node);
                    }
                }
            }
            "ConvInteger" => self.integer(n, out, "Conv")?,
            "MatMulInteger" => self.integer(n, out, "MatMul")?,
            "QLinearAdd" | "QLinearMul" => {
                let (fa, fb) = self.two_operands(n, out, 0)?;
                let sy = self.required(n, 6, "C scale")?;
                let fy = self.name(&y, "f");
                let op = if n.op_type == "QLinearAdd" {
                    "Add"
                } else {
                    "Mul"
                };
                out.push(mk(op, n.name.clone(), vec![fa, fb], vec![fy.clone()]));
                self.q(out, fy, sy, self.input(n, 7), &y);
            }
            "QLinearSoftmax" => {
                let axis = get_i(n, "axis").unwrap_or(-1);
                self.unary(n, out, "Softmax", vec![attr_i("axis", axis)])?;
            }
            "QLinearSigmoid" => self.unary(n, out, "Sigmoid", vec![])?,
            "QLinearLeakyRelu" => {
                let alpha = get_f(n, "alpha").unwrap_or(0.01);
                self.unary(n, out, "LeakyRelu", vec![attr_f("alpha", alpha)])?;
            }
            "QLinearAveragePool" | "QLinearGlobalAveragePool" => {
                if get_i(n, "channels_last").unwrap_or(0) != 0 {
                    bail!("channels_last layout is not supported");
                }
                let attrs = n
                    .attribute
                    .iter()
                    .filter(|a| a.name != "channels_last")
                    .cloned()
                    .collect();
                let op = if n.op_type == "QLinearAveragePool" {
                    "AveragePool"
                } else {
                    "GlobalAveragePool"
                };
                self.unary(n, out, op, attrs)?;
            }
            "QLinearConcat" => {
                let sy = self.required(n, 0, "Y scale")?;
                let zy = self.input(n, 1);
                if n.input.len() < 5 || !(n.input.len() - 2).is_multiple_of(3) {
                    bail!("expects (Y scale, Y zero point, then X, scale, zero point triples)");
                }
                let mut parts = vec![];
                for k in 0..(n.input.len() - 2) / 3 {
                    let x = self.required(n, 2 + 3 * k, "X")?;
                    let s = self.required(n, 3 + 3 * k, "X scale")?;
                    parts.push(self.dq(out, x, s, self.input(n, 4 + 3 * k), None));
                }
                let fy = self.name(&y, "f");
                let mut node = mk("Concat", n.name.clone(), parts, vec![fy.clone()]);
                node.attribute = vec![attr_i("axis", get_i(n, "axis").unwrap_or(0))];
                out.push(node);
                self.q(out, fy, sy, zy, &y);
            }
            other => bail!("{other} is not rewritten"),
        }
        Ok(())
    }
}
