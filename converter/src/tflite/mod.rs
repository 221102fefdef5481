//! TFLite import, reading the official schema directly with a small flatbuffers reader (every
//! scale, zero point and axis stays exactly as stored). TFLite is already NHWC, like kiln.

pub mod flatbuf;
mod ops;

pub use ops::{code, op_name};

use crate::ir::{Data, Graph, Node, TId};
use anyhow::{anyhow, bail, Context, Result};
use flatbuf::Table;
use kiln_quantize::requant::{activation_range_i8, conv_multipliers, Activation};
use kiln_runtime::ops::{OpParams, UnaryKind, UnaryParams};
use kiln_runtime::DType;
use kiln_runtime::Quant;
use std::collections::HashMap;

#[derive(Clone, Debug)]
struct TfTensor {
    name: String,
    shape: Vec<usize>,
    ttype: u8,
    buffer: usize,
    scales: Vec<f32>,
    zero_points: Vec<i64>,
    quant_axis: usize,
}

struct TfOp<'a> {
    code: i32,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    options: Option<Table<'a>>,
}

/// TensorType codes.
const T_FLOAT32: u8 = 0;
const T_FLOAT16: u8 = 1;
const T_INT32: u8 = 2;
const T_INT64: u8 = 4;
const T_INT8: u8 = 9;

/// Largest tensor the `.kiln` format holds (elements).
const MAX_ELEMENTS: usize = 1 << 28;

/// Bytes per element of the TensorType codes kiln reads.
fn type_size(t: u8) -> Option<usize> {
    match t {
        0 | 2 => Some(4),
        1 | 7 => Some(2),
        3 | 9 => Some(1),
        4 => Some(8),
        _ => None,
    }
}

fn type_name(t: u8) -> &'static str {
    match t {
        0 => "float32",
        1 => "float16",
        2 => "int32",
        3 => "uint8",
        4 => "int64",
        7 => "int16",
        9 => "int8",
        _ => "other",
    }
}

struct Importer<'a> {
    tensors: Vec<TfTensor>,
    buffers: Vec<&'a [u8]>,
    g: Graph,
    map: HashMap<usize, TId>,
}

/// Reads a TFLite flatbuffer into a kiln graph (float models).
pub fn import(bytes: &[u8]) -> Result<Graph> {
    if bytes.len() < 8 || &bytes[4..8] != b"TFL3" {
        bail!("not a TFLite model (missing the TFL3 identifier)");
    }
    let model = Table::root(bytes)?;
    let opcodes = model
        .vector(1, 4)?
        .ok_or_else(|| anyhow!("model has no operator codes"))?;
    let mut codes = Vec::new();
    for i in 0..opcodes.len() {
        let oc = opcodes.table(i)?;
        let dep = oc.u8(0, 0)? as i8 as i32;
        let builtin = oc.i32(3, 0)?;
        codes.push(dep.max(builtin));
    }
    let subgraphs = model
        .vector(2, 4)?
        .ok_or_else(|| anyhow!("model has no subgraphs"))?;
    if subgraphs.len() != 1 {
        // Keras 3 writes recurrent layers as a WHILE loop whose body is another subgraph.
        if codes.contains(&ops::code::WHILE) {
            bail!(
                "model has {} subgraphs: a WHILE loop, which is how Keras 3 exports recurrent \
                 layers (LSTM, GRU, SimpleRNN); kiln runs no control flow. Re-export with the \
                 layer unrolled over its fixed number of time steps, e.g. \
                 `keras.layers.LSTM(units, unroll=True)` with a fixed input length: TFLite then \
                 writes FULLY_CONNECTED, LOGISTIC, TANH, SPLIT and UNPACK ops, which kiln converts",
                subgraphs.len()
            );
        }
        bail!(
            "model has {} subgraphs (control flow: {}); kiln imports single-subgraph models",
            subgraphs.len(),
            codes
                .iter()
                .filter(|&&c| [ops::code::IF, ops::code::CALL_ONCE, ops::code::CALL].contains(&c))
                .map(|&c| op_name(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let sg = subgraphs.table(0)?;
    let bufvec = model
        .vector(4, 4)?
        .ok_or_else(|| anyhow!("model has no buffers"))?;
    let mut buffers = Vec::new();
    for i in 0..bufvec.len() {
        let b = bufvec.table(i)?;
        let data = match b.vector(0, 1)? {
            Some(v) => v.bytes(1),
            None => {
                let (off, size) = (b.u64(1, 0)? as usize, b.u64(2, 0)? as usize);
                if off > 1 && size > 0 {
                    bytes
                        .get(off..off + size)
                        .ok_or_else(|| anyhow!("buffer {i} lies outside the file"))?
                } else {
                    &[][..]
                }
            }
        };
        buffers.push(data);
    }
    let tvec = sg
        .vector(0, 4)?
        .ok_or_else(|| anyhow!("subgraph has no tensors"))?;
    let mut tensors = Vec::new();
    for i in 0..tvec.len() {
        let t = tvec.table(i)?;
        let shape: Vec<usize> = match t.vector(0, 4)? {
            Some(v) => {
                let dims = v.i32s();
                if let Some(&d) = dims.iter().find(|&&d| d <= 0) {
                    bail!(
                        "tensor #{i} has shape {dims:?}: dimension {d} is not a size kiln can run (every dimension must be at least 1)"
                    );
                }
                dims.iter().map(|&d| d as usize).collect()
            }
            None => vec![],
        };
        let (mut scales, mut zero_points, mut quant_axis) = (vec![], vec![], 0);
        if let Some(q) = t.table(4)? {
            if let Some(s) = q.vector(2, 4)? {
                scales = s.f32s();
            }
            if let Some(z) = q.vector(3, 8)? {
                zero_points = z.i64s();
            }
            quant_axis = q.i32(6, 0)?.max(0) as usize;
        }
        tensors.push(TfTensor {
            // TensorFlow joins the names of fused ops with ';': the first one names the result.
            name: t
                .string(3)?
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .to_string(),
            shape,
            ttype: t.u8(1, 0)?,
            buffer: t.u32(2, 0)? as usize,
            scales,
            zero_points,
            quant_axis,
        });
    }
    let ovec = sg
        .vector(3, 4)?
        .ok_or_else(|| anyhow!("subgraph has no operators"))?;
    let mut ops = Vec::new();
    for i in 0..ovec.len() {
        let o = ovec.table(i)?;
        let idx = o.u32(0, 0)? as usize;
        let code = *codes
            .get(idx)
            .ok_or_else(|| anyhow!("operator {i} uses opcode {idx}, which does not exist"))?;
        ops.push(TfOp {
            code,
            inputs: o.vector(1, 4)?.map(|v| v.i32s()).unwrap_or_default(),
            outputs: o.vector(2, 4)?.map(|v| v.i32s()).unwrap_or_default(),
            options: o.table(4)?,
        });
    }
    for o in &ops {
        for &t in o.inputs.iter().chain(&o.outputs) {
            if t < -1 || (t >= 0 && t as usize >= tensors.len()) {
                bail!(
                    "an operator names tensor {t}, but the model has {} tensors",
                    tensors.len()
                );
            }
        }
    }
    let inputs: Vec<usize> = sg
        .vector(1, 4)?
        .map(|v| v.i32s())
        .unwrap_or_default()
        .iter()
        .map(|&t| t as usize)
        .collect();
    let outputs: Vec<usize> = sg
        .vector(2, 4)?
        .map(|v| v.i32s())
        .unwrap_or_default()
        .iter()
        .map(|&t| t as usize)
        .collect();
    if inputs.iter().chain(&outputs).any(|&t| t >= tensors.len()) {
        bail!("graph inputs/outputs name tensors that do not exist");
    }
    for t in &tensors {
        if t.buffer >= buffers.len() {
            bail!(
                "tensor '{}' names buffer {}, but the model has {}",
                t.name,
                t.buffer,
                buffers.len()
            );
        }
        let count = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&c| c <= MAX_ELEMENTS)
            .ok_or_else(|| {
                anyhow!(
                    "tensor '{}' has shape {:?}: more than 2^28 elements",
                    t.name,
                    t.shape
                )
            })?;
        let data = buffers[t.buffer];
        if let Some(size) = type_size(t.ttype) {
            if !data.is_empty() && data.len() != count * size {
                bail!(
                    "tensor '{}' ({} {:?}) holds {} bytes of data, expected {}",
                    t.name,
                    type_name(t.ttype),
                    t.shape,
                    data.len(),
                    count * size
                );
            }
        }
    }

    // Liveness from the outputs; shape-only inputs (RESHAPE's new shape) are not data.
    let mut live_t = vec![false; tensors.len()];
    for &o in &outputs {
        live_t[o] = true;
    }
    let mut live_op = vec![false; ops.len()];
    for (i, o) in ops.iter().enumerate().rev() {
        if o.outputs.iter().any(|&t| t >= 0 && live_t[t as usize]) {
            live_op[i] = true;
            let data_inputs = if o.code == code::RESHAPE {
                &o.inputs[..1.min(o.inputs.len())]
            } else {
                &o.inputs[..]
            };
            for &t in data_inputs {
                if t >= 0 {
                    live_t[t as usize] = true;
                }
            }
        }
    }
    let unsupported: Vec<String> = ops
        .iter()
        .enumerate()
        .filter(|(i, o)| live_op[*i] && ops::family(o.code).is_none())
        .map(|(_, o)| {
            let out = o
                .outputs
                .first()
                .and_then(|&t| tensors.get(t as usize))
                .map_or("?", |t| t.name.as_str());
            format!("{} (node producing '{}')", op_name(o.code), out)
        })
        .collect();
    if !unsupported.is_empty() {
        bail!(
            "unsupported TFLite ops ({}):\n  {}",
            unsupported.len(),
            unsupported.join("\n  ")
        );
    }

    // TFLite's post-training weight options: float16 constants behind DEQUANTIZE ops, or int8
    // constants read by float ops (dynamic range: no int8 activation anywhere).
    let constant = |t: &&TfTensor| !buffers.get(t.buffer).is_none_or(|b| b.is_empty());
    let source_weights = if tensors
        .iter()
        .filter(constant)
        .any(|t| t.ttype == T_FLOAT16)
    {
        crate::ir::SourceWeights::Fp16
    } else if tensors.iter().filter(constant).any(|t| t.ttype == T_INT8)
        && !tensors.iter().any(|t| t.ttype == T_INT8 && !constant(&t))
    {
        crate::ir::SourceWeights::Int8DynamicRange
    } else {
        crate::ir::SourceWeights::Float
    };
    let mut imp = Importer {
        tensors,
        buffers,
        g: Graph {
            source_weights,
            ..Graph::default()
        },
        map: HashMap::new(),
    };
    for &i in &inputs {
        let t = imp.activation(i)?;
        imp.g.inputs.push(t);
    }
    for (i, o) in ops.iter().enumerate() {
        if live_op[i] {
            imp.convert(o).with_context(|| {
                let out = o
                    .outputs
                    .first()
                    .and_then(|&t| imp.tensors.get(t as usize))
                    .map_or("?".into(), |t| t.name.clone());
                format!("converting {} (node producing '{out}')", op_name(o.code))
            })?;
        }
    }
    for &o in &outputs {
        let t = imp.tensor(o)?;
        imp.g.outputs.push(t);
    }
    imp.g.check()?;
    Ok(imp.g)
}

impl<'a> Importer<'a> {
    fn info(&self, t: usize) -> &TfTensor {
        &self.tensors[t]
    }

    fn is_const(&self, t: usize) -> bool {
        !self.buffers[self.tensors[t].buffer].is_empty()
    }

    fn activation(&mut self, t: usize) -> Result<TId> {
        if let Some(&id) = self.map.get(&t) {
            return Ok(id);
        }
        let info = self.info(t).clone();
        let shape = if info.shape.is_empty() {
            vec![1]
        } else {
            info.shape.clone()
        };
        let id = match info.ttype {
            T_FLOAT32 => self.g.add_tensor(info.name.clone(), DType::F32, shape),
            T_INT8 => {
                let (scale, zero_point) = self.per_tensor(t)?;
                let id = self.g.add_tensor(info.name.clone(), DType::I8, shape);
                self.g.tensors[id].quant = Quant::PerTensor { scale, zero_point };
                id
            }
            other => bail!(
                "tensor '{}' is {}: activations must be float32 or int8",
                info.name,
                type_name(other)
            ),
        };
        self.map.insert(t, id);
        Ok(id)
    }

    /// Per-tensor (scale, zero point) of a quantized tensor.
    fn per_tensor(&self, t: usize) -> Result<(f32, i32)> {
        let info = self.info(t);
        match (info.scales.as_slice(), info.zero_points.as_slice()) {
            ([s], [z]) if *s > 0.0 && s.is_finite() && (-128..=127).contains(z) => Ok((*s, *z as i32)),
            ([s], []) if *s > 0.0 && s.is_finite() => Ok((*s, 0)),
            _ => bail!(
                "tensor '{}' needs one positive scale and one int8 zero point (has {} scales, {} zero points)",
                info.name,
                info.scales.len(),
                info.zero_points.len()
            ),
        }
    }

    fn is_int8(&self, t: i32) -> bool {
        t >= 0
            && self
                .tensors
                .get(t as usize)
                .is_some_and(|i| i.ttype == T_INT8)
    }

    /// The shape of `t`, which the operator needs to be of rank `rank`.
    fn shape_of_rank(&self, t: TId, rank: usize, what: &str) -> Result<Vec<usize>> {
        let s = self.shape(t);
        if s.len() != rank {
            bail!(
                "{what} '{}' has shape {s:?}; expected rank {rank}",
                self.g.tensors[t].name
            );
        }
        Ok(s)
    }

    /// Constant int8 weights kept quantized. `depthwise` weights `[1, KH, KW, O]` (quantized
    /// along axis 3) become `[O, KH, KW, 1]`. Returns the tensor and one scale per output channel.
    fn int8_weights(&mut self, t: usize, depthwise: bool) -> Result<(TId, Vec<f32>)> {
        let info = self.info(t).clone();
        if info.ttype != T_INT8 || !self.is_const(t) {
            bail!("weights '{}' must be a constant int8 tensor", info.name);
        }
        if info.shape.len() < 2 || (depthwise && info.shape.len() != 4) {
            bail!(
                "weights '{}' have shape {:?}; expected rank {}",
                info.name,
                info.shape,
                if depthwise { "4" } else { "2 or 4" }
            );
        }
        let raw: Vec<i8> = self.raw(t).iter().map(|&b| b as i8).collect();
        let (data, shape, axis) = if depthwise {
            let (kh, kw, co) = (info.shape[1], info.shape[2], info.shape[3]);
            let mut d = vec![0i8; raw.len()];
            for ky in 0..kh {
                for kx in 0..kw {
                    for c in 0..co {
                        d[(c * kh + ky) * kw + kx] = raw[(ky * kw + kx) * co + c];
                    }
                }
            }
            (d, vec![co, kh, kw, 1], 3)
        } else {
            (raw, info.shape.clone(), 0)
        };
        let channels = shape[0];
        if info.scales.len() > 1 && info.quant_axis != axis {
            bail!(
                "weights '{}' are quantized along axis {}, expected the output-channel axis {axis}",
                info.name,
                info.quant_axis
            );
        }
        if info.zero_points.iter().any(|&z| z != 0) && info.scales.len() > 1 {
            bail!(
                "per-channel weights '{}' must be symmetric (zero point 0)",
                info.name
            );
        }
        let id = self.g.add_tensor(info.name.clone(), DType::I8, shape);
        self.g.tensors[id].data = Some(Data::I8(data));
        let scales = match info.scales.len() {
            1 => {
                let (scale, zero_point) = self.per_tensor(t)?;
                self.g.tensors[id].quant = Quant::PerTensor { scale, zero_point };
                vec![scale; channels]
            }
            n if n == channels => {
                let st = self.g.add_const_f32(
                    format!("{}.scales", info.name),
                    vec![channels],
                    info.scales.clone(),
                );
                self.g.tensors[id].quant = Quant::PerAxis {
                    axis: 0,
                    scales: st as u32,
                };
                info.scales.clone()
            }
            n => bail!(
                "weights '{}' have {n} scales for {channels} output channels",
                info.name
            ),
        };
        Ok((id, scales))
    }

    /// An int32 bias constant, kept as is.
    fn int32_bias(&mut self, t: i32) -> Result<Option<TId>> {
        if t < 0 {
            return Ok(None);
        }
        let info = self.info(t as usize).clone();
        if info.ttype != T_INT32 || !self.is_const(t as usize) {
            bail!(
                "bias '{}' of an int8 op must be a constant int32 tensor",
                info.name
            );
        }
        let v: Vec<i32> = self
            .raw(t as usize)
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let id = self
            .g
            .add_tensor(info.name.clone(), DType::I32, vec![v.len()]);
        self.g.tensors[id].data = Some(Data::I32(v));
        Ok(Some(id))
    }

    /// Quantized clamp of a fused activation on output tensor `y`.
    fn int8_act(&self, y: TId, act: u8) -> Result<(i32, i32)> {
        let Quant::PerTensor { scale, zero_point } = self.g.tensors[y].quant else {
            bail!("int8 output is not per-tensor quantized");
        };
        let a = match act {
            0 => Activation::None,
            1 => Activation::Relu,
            2 => Activation::ReluN1To1,
            3 => Activation::Relu6,
            a => bail!("fused activation {a} is not supported on int8 ops"),
        };
        Ok(activation_range_i8(a, scale, zero_point))
    }

    fn q_scale(&self, t: TId) -> f32 {
        match self.g.tensors[t].quant {
            Quant::PerTensor { scale, .. } => scale,
            _ => 1.0,
        }
    }

    /// An int8 conv / depthwise conv / fully connected: weights, bias and requantization tables.
    fn int8_weighted(
        &mut self,
        o: &TfOp<'a>,
        depthwise: bool,
    ) -> Result<(TId, TId, Vec<Option<TId>>)> {
        let x = self.input(o, 0)?;
        let y = self.out(o)?;
        let wt = o.inputs[1];
        if wt < 0 {
            bail!("the weights input is absent");
        }
        let (w, scales) = self.int8_weights(wt as usize, depthwise)?;
        let bias = self.int32_bias(o.inputs.get(2).copied().unwrap_or(-1))?;
        let (mult, shift) = conv_multipliers(self.q_scale(x), &scales, self.q_scale(y));
        let name = self.name_of(o);
        let m = self.g.add_const_i32(format!("{name}.multiplier"), mult);
        let s = self.g.add_const_i32(format!("{name}.shift"), shift);
        Ok((x, y, vec![Some(x), Some(w), bias, Some(m), Some(s)]))
    }

    /// Input `k` of an int8 element-wise op: an activation as usual; a constant int8 tensor
    /// (per-tensor quantized) kept int8 with its scale and zero point, not dequantized.
    fn int8_operand(&mut self, o: &TfOp, k: usize) -> Result<TId> {
        let t = input_index(o, k)?;
        if !self.is_const(t) || self.info(t).ttype != T_INT8 {
            return self.tensor(t);
        }
        if let Some(&id) = self.map.get(&t) {
            return Ok(id);
        }
        let info = self.info(t);
        if info.scales.len() != 1 {
            bail!(
                "int8 constant '{}' of an element-wise op has {} scales; only per-tensor quantization is supported there",
                info.name,
                info.scales.len()
            );
        }
        let shape = if info.shape.is_empty() {
            vec![1]
        } else {
            info.shape.clone()
        };
        let n: usize = shape.iter().product();
        let raw = self.raw(t);
        if raw.len() != n {
            bail!(
                "int8 constant '{}' holds {} bytes for shape {:?}",
                info.name,
                raw.len(),
                shape
            );
        }
        let data: Vec<i8> = raw.iter().map(|&b| b as i8).collect();
        let name = info.name.clone();
        let (scale, zero_point) = self.per_tensor(t)?;
        let id = self.g.add_tensor(name, DType::I8, shape);
        self.g.tensors[id].data = Some(Data::I8(data));
        self.g.tensors[id].quant = Quant::PerTensor { scale, zero_point };
        self.map.insert(t, id);
        Ok(id)
    }

    /// A tensor as a graph tensor: constants are decoded (and dequantized) to f32.
    fn tensor(&mut self, t: usize) -> Result<TId> {
        if let Some(&id) = self.map.get(&t) {
            return Ok(id);
        }
        if self.is_const(t) {
            let v = self.const_f32(t)?;
            let info = self.info(t);
            let shape = if info.shape.is_empty() {
                vec![1]
            } else {
                info.shape.clone()
            };
            let id = self.g.add_const_f32(info.name.clone(), shape, v);
            self.map.insert(t, id);
            return Ok(id);
        }
        bail!(
            "tensor '{}' is read before any operator writes it",
            self.info(t).name
        )
    }

    fn raw(&self, t: usize) -> &'a [u8] {
        self.buffers[self.tensors[t].buffer]
    }

    /// A constant's values as f32; int8 weights (hybrid models) are dequantized with their
    /// stored scales, float16 widened.
    fn const_f32(&self, t: usize) -> Result<Vec<f32>> {
        let info = self.info(t);
        let raw = self.raw(t);
        let n: usize = info.shape.iter().product::<usize>().max(1);
        let v: Vec<f32> = match info.ttype {
            T_FLOAT32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            T_FLOAT16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            T_INT32 => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            T_INT8 => {
                if info.scales.is_empty() {
                    bail!("int8 constant '{}' has no quantization scale", info.name);
                }
                let axis = info.quant_axis.min(info.shape.len().saturating_sub(1));
                let inner: usize = info.shape.get(axis + 1..).unwrap_or(&[]).iter().product();
                let dim = info.shape.get(axis).copied().unwrap_or(1);
                raw.iter()
                    .enumerate()
                    .map(|(i, &q)| {
                        let ch = if info.scales.len() > 1 {
                            (i / inner) % dim
                        } else {
                            0
                        };
                        let zp = info.zero_points.get(ch).copied().unwrap_or(0) as f32;
                        (q as i8 as f32 - zp) * info.scales[ch.min(info.scales.len() - 1)]
                    })
                    .collect()
            }
            other => bail!(
                "constant '{}' has unsupported type {}",
                info.name,
                type_name(other)
            ),
        };
        if v.len() != n {
            bail!(
                "constant '{}' holds {} values but its shape {:?} needs {n}",
                info.name,
                v.len(),
                info.shape
            );
        }
        Ok(v)
    }

    /// An int32/int64 constant (axes, paddings, perms).
    fn const_ints(&self, t: i32) -> Result<Vec<i64>> {
        if t < 0 || !self.is_const(t as usize) {
            bail!("a parameter input is not a constant");
        }
        let info = self.info(t as usize);
        let raw = self.raw(t as usize);
        Ok(match info.ttype {
            T_INT32 => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            T_INT64 => raw
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    i64::from_le_bytes(a)
                })
                .collect(),
            other => bail!(
                "parameter tensor '{}' has type {}, expected int32",
                info.name,
                type_name(other)
            ),
        })
    }

    fn out(&mut self, o: &TfOp) -> Result<TId> {
        let t = *o
            .outputs
            .first()
            .ok_or_else(|| anyhow!("operator has no outputs"))?;
        if t < 0 {
            bail!("the operator's output is absent");
        }
        self.activation(t as usize)
    }

    fn input(&mut self, o: &TfOp, k: usize) -> Result<TId> {
        self.tensor(input_index(o, k)?)
    }

    fn shape(&self, t: TId) -> Vec<usize> {
        self.g.tensors[t].shape.clone()
    }

    fn opt(&self, o: &TfOp<'a>) -> Result<Table<'a>> {
        o.options
            .ok_or_else(|| anyhow!("operator has no options table"))
    }

    /// Applies a TFLite fused activation to `node` (clamp) or appends an op (tanh).
    /// Ops without a clamp of their own (concat) get the activation as a unary op after them.
    fn push_with_act(&mut self, mut node: Node, act: u8) -> Result<()> {
        let clamp = match act {
            1 => Some((0.0, f32::INFINITY)),
            2 => Some((-1.0, 1.0)),
            3 => Some((0.0, 6.0)),
            _ => None,
        };
        let unary = match (clamp, node.op.act()) {
            (Some((lo, hi)), Some(_)) => {
                node.set_act(lo, hi);
                None
            }
            (Some((a, b)), None) => Some(UnaryParams {
                kind: UnaryKind::Clip,
                a,
                b,
            }),
            (None, _) if act == 4 => Some(UnaryParams::new(UnaryKind::Tanh)),
            (None, _) if act == 0 => None,
            (None, _) => bail!("fused activation {act} is not supported"),
        };
        match unary {
            None => {}
            Some(u) => {
                let y = node.outputs[0];
                let tmp =
                    self.g
                        .add_tensor(format!("{}.pre_tanh", node.name), DType::F32, self.shape(y));
                node.outputs[0] = tmp;
                let name = node.name.clone();
                self.g.push(node);
                self.g.push(Node::new(
                    format!("{name}.{}", u.kind.name()),
                    OpParams::Unary(u),
                    vec![Some(tmp)],
                    vec![y],
                ));
                return Ok(());
            }
        }
        self.g.push(node);
        Ok(())
    }

    fn name_of(&self, o: &TfOp) -> String {
        o.outputs
            .first()
            .and_then(|&t| self.tensors.get(t as usize))
            .map_or(String::new(), |t| t.name.clone())
    }
}

/// The TFLite tensor index of required input `k` of `o`.
fn input_index(o: &TfOp, k: usize) -> Result<usize> {
    let t = *o
        .inputs
        .get(k)
        .ok_or_else(|| anyhow!("missing input {k}"))?;
    if t < 0 {
        bail!("required input {k} is absent");
    }
    Ok(t as usize)
}
