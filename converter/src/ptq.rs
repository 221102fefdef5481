//! Post-training quantization of a float graph to int8: calibrate activation ranges on sample
//! inputs, quantize weights per channel (symmetric) and activations per tensor (asymmetric),
//! rewrite every op that has an int8 kernel to it, keep the rest in float behind
//! quantize/dequantize ops, and report per-layer error (SQNR) against the float model.

use crate::emit::emit_mapped;
use crate::ir::{pool_op, Data, Graph, Node, TId};
use anyhow::{anyhow, bail, Result};
use kiln_quantize::calibrate::{
    asymmetric, quantize_bias, quantize_weights_compact, quantize_weights_per_channel, sqnr_db,
    Method, Observer,
};
use kiln_quantize::requant::{
    add_params, conv_multipliers, logistic, lut_i8, mean_params, mul_params, softmax_params,
};
use kiln_runtime::cast::{bytes_as_f32, bytes_as_i8};
use kiln_runtime::ops::{
    Act, AddQuant, BinaryKind, BinaryParams, BinaryQuant, DequantizeParams, LutParams, MeanQuant,
    MulQuant, OpParams, QuantizeParams, Reducer, Rounding, SoftmaxQuant, UnaryKind, UnaryParams,
};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{DType, Model, OpKind, Quant, Session};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// Options of [`quantize`].
#[derive(Clone, Copy, Debug)]
pub struct PtqOptions {
    /// How activation ranges are chosen.
    pub method: Method,
    /// Make the graph inputs and outputs int8 too (the caller quantizes its data); otherwise
    /// they stay f32 and the model quantizes on entry and dequantizes on exit.
    pub int8_io: bool,
}

/// Error of one layer's output, int8 against float.
#[derive(Clone, Debug, Serialize)]
pub struct LayerError {
    /// Op name.
    pub name: String,
    /// Op kind.
    pub op: String,
    /// Whether the op runs in int8 (false: kept in float).
    pub int8: bool,
    /// Signal-to-quantization-noise ratio of its output, in dB (higher is better).
    pub sqnr_db: f64,
}

/// The quantized graph and what was measured on the way.
#[derive(Clone, Debug)]
pub struct PtqResult {
    /// The int8 graph.
    pub graph: Graph,
    /// Per-layer error, in execution order of the float graph.
    pub layers: Vec<LayerError>,
}

/// Runs a serialized model on each sample and calls `f(graph_tensor, values)` for every f32 or
/// int8 op output (int8 values are dequantized), plus the graph inputs.
fn observe(
    bytes: &[u8],
    file_to_graph: &HashMap<usize, TId>,
    samples: &[Vec<Vec<f32>>],
    mut f: impl FnMut(usize, TId, &[f32]),
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let buf = AlignedBuf::new(bytes);
    let m = Model::from_bytes(buf.as_slice())?;
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let mut s = Session::new(&m, arena.as_mut_slice())?;
    for (i, sample) in samples.iter().enumerate() {
        for (k, x) in sample.iter().enumerate() {
            let t = m.input_tensor(k)?;
            crate::verify::set_input(&mut s, k, x)?;
            if let Some(&gid) = file_to_graph.get(&t) {
                f(i, gid, x);
            }
        }
        let mut scratch = Vec::new();
        s.invoke_observe(|_, t, out| {
            let Some(&gid) = file_to_graph.get(&t) else {
                return;
            };
            let ti = m.tensor(t);
            match (ti.dtype, ti.quant) {
                (DType::F32, _) => f(i, gid, bytes_as_f32(out)),
                (DType::I8, Quant::PerTensor { scale, zero_point }) => {
                    scratch.clear();
                    scratch.extend(
                        bytes_as_i8(out)
                            .iter()
                            .map(|&q| scale * (q as i32 - zero_point) as f32),
                    );
                    f(i, gid, &scratch);
                }
                _ => {}
            }
        })?;
        progress(i + 1, samples.len());
    }
    Ok(())
}

fn inverse(remap: &[u32]) -> HashMap<usize, TId> {
    remap
        .iter()
        .enumerate()
        .filter(|(_, &f)| f != u32::MAX)
        .map(|(g, &f)| (f as usize, g))
        .collect()
}

/// Lowers a graph whose activation quantization is fixed by the source model (an ONNX QDQ model:
/// `g.act_quant`) to int8, without calibration. Ops whose tensors carry no quantization stay
/// in float.
pub fn lower_with_hints(g: &Graph) -> Result<Graph> {
    let mut g = g.clone();
    propagate_through_reshapes(&mut g);
    let obs = HashMap::new();
    let opts = PtqOptions {
        method: Method::MinMax,
        int8_io: false,
    };
    let mut b = Builder::new(&g, &obs, &opts);
    b.compact = false;
    let mut graph = b.build()?.q;
    crate::passes::simplify_reshape::run(&mut graph);
    crate::passes::dce::run(&mut graph);
    graph.check()?;
    Ok(graph)
}

/// A reshape keeps values: its input and output share quantization (hints of f32 tensors, and
/// the parameters of int8 tensors), in both directions.
fn propagate_through_reshapes(g: &mut Graph) {
    loop {
        let mut changed = false;
        for i in 0..g.nodes.len() {
            let n = &g.nodes[i];
            // A quantize to an int8 tensor fixes its input's quantization.
            if n.kind() == OpKind::Quantize {
                if let (Some(x), Quant::PerTensor { scale, zero_point }) =
                    (n.input(0), g.tensors[n.outputs[0]].quant)
                {
                    if let std::collections::hash_map::Entry::Vacant(e) = g.act_quant.entry(x) {
                        e.insert((scale, zero_point));
                        changed = true;
                    }
                }
                continue;
            }
            if !matches!(
                n.kind(),
                OpKind::Reshape | OpKind::Slice | OpKind::Transpose
            ) {
                continue;
            }
            let (Some(x), y) = (n.input(0), n.outputs[0]) else {
                continue;
            };
            for (a, b) in [(x, y), (y, x)] {
                if let Some(&p) = g.act_quant.get(&a) {
                    if !g.act_quant.contains_key(&b) && g.tensors[b].dtype == DType::F32 {
                        g.act_quant.insert(b, p);
                        changed = true;
                    }
                }
                if g.tensors[a].dtype == DType::I8
                    && g.tensors[b].dtype == DType::I8
                    && g.tensors[b].quant == Quant::None
                {
                    if let Quant::PerTensor { .. } = g.tensors[a].quant {
                        g.tensors[b].quant = g.tensors[a].quant;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            return;
        }
    }
}

/// Calibrates `g` on `samples` and returns its int8 version with a per-layer error report.
/// `progress(stage, done, total)` is called as samples are processed.
pub fn quantize(
    g: &Graph,
    samples: &[Vec<Vec<f32>>],
    opts: &PtqOptions,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<PtqResult> {
    if samples.is_empty() {
        bail!("calibration needs at least one sample");
    }
    let (bytes, _, remap) = emit_mapped(g)?;
    let file_to_graph = inverse(&remap);
    let mut obs: HashMap<TId, Observer> = HashMap::new();
    observe(
        &bytes,
        &file_to_graph,
        samples,
        |_, t, v| obs.entry(t).or_default().observe_range(v),
        &mut |d, n| progress("calibrating ranges", d, n),
    )?;
    if opts.method.needs_histogram() {
        observe(
            &bytes,
            &file_to_graph,
            samples,
            |_, t, v| obs.entry(t).or_default().observe_hist(v),
            &mut |d, n| progress("calibrating histograms", d, n),
        )?;
    }
    let q = Builder::new(g, &obs, opts).build()?;
    let mut graph = q.q;
    crate::passes::dce::run(&mut graph);
    graph.check()?;

    // Per-layer error: the same samples through both models.
    let (qbytes, _, qremap) = emit_mapped(&graph)?;
    let qfile_to_graph = inverse(&qremap);
    let report_samples = &samples[..samples.len().min(64)];
    let mut float_vals: HashMap<(usize, TId), Vec<f32>> = HashMap::new();
    let wanted: HashSet<TId> = q.int8_of.keys().copied().collect();
    observe(
        &bytes,
        &file_to_graph,
        report_samples,
        |i, t, v| {
            if wanted.contains(&t) {
                float_vals.insert((i, t), v.to_vec());
            }
        },
        &mut |d, n| progress("measuring error", d, 2 * n),
    )?;
    let back: HashMap<TId, TId> = q.int8_of.iter().map(|(&f, &i)| (i, f)).collect();
    let mut acc: HashMap<TId, (Vec<f32>, Vec<f32>)> = HashMap::new();
    let n = report_samples.len();
    observe(
        &qbytes,
        &qfile_to_graph,
        report_samples,
        |i, t, v| {
            if let Some(&orig) = back.get(&t) {
                if let Some(fv) = float_vals.get(&(i, orig)) {
                    let e = acc.entry(orig).or_default();
                    e.0.extend_from_slice(fv);
                    e.1.extend_from_slice(v);
                }
            }
        },
        &mut |d, _| progress("measuring error", n + d, 2 * n),
    )?;
    let mut layers = Vec::new();
    for node in &g.nodes {
        let t = node.outputs[0];
        let int8 = q.int8_nodes.contains(&t);
        let sqnr = acc.get(&t).map_or(f64::NAN, |(r, x)| sqnr_db(r, x));
        layers.push(LayerError {
            name: node.name.clone(),
            op: node.kind().name().into(),
            int8,
            sqnr_db: sqnr,
        });
    }
    Ok(PtqResult { graph, layers })
}

struct Builder<'g> {
    g: &'g Graph,
    obs: &'g HashMap<TId, Observer>,
    opts: &'g PtqOptions,
    q: Graph,
    /// float tensor -> its int8 counterpart
    int8_of: HashMap<TId, TId>,
    /// float tensors whose f32 values exist in the new graph
    have_f32: HashSet<TId>,
    /// outputs of ops that run in int8
    int8_nodes: HashSet<TId>,
    /// f32 copies of tensors that are int8 in the source
    f32_twin: HashMap<TId, TId>,
    /// Nudge weight scales so requantization multipliers fit 16 bits (kiln's own quantization);
    /// off when the source model fixed the quantization (QDQ import), to stay closest to it.
    compact: bool,
}

impl<'g> Builder<'g> {
    fn new(g: &'g Graph, obs: &'g HashMap<TId, Observer>, opts: &'g PtqOptions) -> Self {
        let q = Graph {
            tensors: g.tensors.clone(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            act_quant: Default::default(),
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
        }
    }

    fn params(&self, t: TId) -> (f32, i32) {
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
    fn can_i8(&self, t: TId) -> bool {
        self.int8_of.contains_key(&t)
            || (self.have_f32.contains(&t)
                && (self.g.act_quant.contains_key(&t) || self.obs.contains_key(&t)))
    }

    fn has_params(&self, t: TId) -> bool {
        self.g.act_quant.contains_key(&t) || self.obs.contains_key(&t)
    }

    fn new_i8(&mut self, t: TId, scale: f32, zero_point: i32) -> TId {
        let name = self.g.tensors[t].name.clone();
        let id = self
            .q
            .add_tensor(name, DType::I8, self.g.tensors[t].shape.clone());
        self.q.tensors[id].quant = Quant::PerTensor { scale, zero_point };
        self.int8_of.insert(t, id);
        id
    }

    fn qparams(&self, qt: TId) -> (f32, i32) {
        match self.q.tensors[qt].quant {
            Quant::PerTensor { scale, zero_point } => (scale, zero_point),
            _ => (1.0, 0),
        }
    }

    /// The int8 version of activation `t`, quantizing it if it only exists in float.
    fn need_i8(&mut self, t: TId) -> Result<TId> {
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
    fn need_f32(&mut self, t: TId) -> Result<TId> {
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

    fn is_act(&self, t: TId) -> bool {
        self.g.tensors[t].data.is_none() && self.g.tensors[t].dtype == DType::F32
    }

    /// The fused float clamp of `n` in the quantized domain of `(scale, zp)`.
    fn int_clamp(n: &Node, scale: f32, zp: i32) -> Act {
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

    fn build(mut self) -> Result<Self> {
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

    /// Emits `n` as an int8 op if it has an int8 kernel; returns false to keep it in float.
    fn int8_node(&mut self, n: &Node) -> Result<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Node;

    /// x -> conv 3x3 -> {sigmoid, tanh} -> mul -> concat(conv, mul) -> flatten -> dense -> softmax
    fn graph() -> Graph {
        let mut g = Graph::default();
        let x = g.add_tensor("x", DType::F32, vec![1, 4, 4, 2]);
        let w: Vec<f32> = (0..3 * 3 * 3 * 2)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0)
            .collect();
        let wt = g.add_const_f32("w", vec![3, 3, 3, 2], w);
        let bt = g.add_const_f32("b", vec![3], vec![0.1, -0.2, 0.05]);
        let c = g.add_tensor("conv", DType::F32, vec![1, 4, 4, 3]);
        use kiln_runtime::ops::{
            ConcatParams, ConvGeom, ConvParams, DenseParams, ReduceParams, ReshapeParams,
            SoftmaxParams,
        };
        let geom = ConvGeom {
            pad: [1; 4],
            ..ConvGeom::default()
        };
        g.push(Node::new(
            "conv",
            OpParams::Conv2d(ConvParams::new(geom)),
            vec![Some(x), Some(wt), Some(bt)],
            vec![c],
        ));
        let unary = |k| OpParams::Unary(UnaryParams::new(k));
        let s = g.add_tensor("sig", DType::F32, vec![1, 4, 4, 3]);
        g.push(Node::new(
            "sig",
            unary(UnaryKind::Sigmoid),
            vec![Some(c)],
            vec![s],
        ));
        let t = g.add_tensor("tanh", DType::F32, vec![1, 4, 4, 3]);
        g.push(Node::new(
            "tanh",
            unary(UnaryKind::Tanh),
            vec![Some(c)],
            vec![t],
        ));
        let mul = OpParams::Binary(BinaryParams::new(BinaryKind::Mul));
        let m = g.add_tensor("mul", DType::F32, vec![1, 4, 4, 3]);
        g.push(Node::new("mul", mul, vec![Some(s), Some(t)], vec![m]));
        let mean = g.add_tensor("mean", DType::F32, vec![1, 1, 1, 3]);
        g.push(Node::new(
            "mean",
            OpParams::Reduce(ReduceParams::new(Reducer::Mean, 0b0110)),
            vec![Some(m)],
            vec![mean],
        ));
        let mm = g.add_tensor("scaled", DType::F32, vec![1, 4, 4, 3]);
        g.push(Node::new(
            "scaled",
            mul,
            vec![Some(m), Some(mean)],
            vec![mm],
        ));
        let k = g.add_tensor("cat", DType::F32, vec![1, 4, 4, 6]);
        g.push(Node::new(
            "cat",
            OpParams::Concat(ConcatParams { axis: 3 }),
            vec![Some(mm), Some(mm)],
            vec![k],
        ));
        let f = g.add_tensor("flat", DType::F32, vec![1, 96]);
        g.push(Node::new(
            "flat",
            OpParams::Reshape(ReshapeParams),
            vec![Some(k)],
            vec![f],
        ));
        let fw: Vec<f32> = (0..5 * 96)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 20.0)
            .collect();
        let fwt = g.add_const_f32("fw", vec![5, 96], fw);
        let l = g.add_tensor("logits", DType::F32, vec![1, 5]);
        g.push(Node::new(
            "fc",
            OpParams::Dense(DenseParams::default()),
            vec![Some(f), Some(fwt), None],
            vec![l],
        ));
        let y = g.add_tensor("y", DType::F32, vec![1, 5]);
        g.push(Node::new(
            "softmax",
            OpParams::Softmax(SoftmaxParams::new(1, false)),
            vec![Some(l)],
            vec![y],
        ));
        g.inputs = vec![x];
        g.outputs = vec![y];
        g
    }

    #[test]
    fn every_op_of_a_mixed_graph_runs_in_int8_and_tracks_float() {
        let g = graph();
        let samples: Vec<Vec<Vec<f32>>> = (0..20)
            .map(|s| {
                vec![(0..32)
                    .map(|i| (((i * 31 + s * 17) % 29) as f32 - 14.0) / 7.0)
                    .collect()]
            })
            .collect();
        for method in [
            Method::MinMax,
            Method::Percentile(99.9),
            Method::Entropy,
            Method::Mse,
        ] {
            let r = quantize(
                &g,
                &samples,
                &PtqOptions {
                    method,
                    int8_io: false,
                },
                &mut |_, _, _| {},
            )
            .unwrap();
            assert!(
                r.layers.iter().all(|l| l.int8),
                "{method:?}: {:?}",
                r.layers
            );
            let kinds: Vec<OpKind> = r.graph.nodes.iter().map(|n| n.kind()).collect();
            assert!(kinds.contains(&OpKind::Lut), "{kinds:?}");
            let fb = crate::emit::emit(&g).unwrap().0;
            let qb = crate::emit::emit(&r.graph).unwrap().0;
            let fo = crate::verify::run_kiln(&fb, &samples).unwrap();
            let qo = crate::verify::run_kiln(&qb, &samples).unwrap();
            for (a, b) in fo.iter().zip(&qo) {
                let d = a[0]
                    .iter()
                    .zip(&b[0])
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(d < 0.06, "{method:?}: probabilities differ by {d}");
            }
        }
    }
}
