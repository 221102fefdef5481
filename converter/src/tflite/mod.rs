//! TFLite import, reading the official schema directly with a small flatbuffers reader (every
//! scale, zero point and axis stays exactly as stored). TFLite is already NHWC, like kiln.

pub mod flatbuf;

use crate::ir::{pool_op, Data, Graph, Node, TId};
use anyhow::{anyhow, bail, Context, Result};
use flatbuf::Table;
use kiln_quantize::requant::{
    activation_range_i8, add_params, conv_multipliers, logistic, lut_i8, mean_params, mul_params,
    softmax_params, Activation,
};
use kiln_runtime::format::MAX_RANK;
use kiln_runtime::ops::{
    Act, AddQuant, BinaryKind, BinaryParams, BinaryQuant, ConcatParams, ConvGeom, ConvParams,
    DenseParams, DequantizeParams, LutParams, MeanQuant, MulQuant, OpParams, PadMode, PadParams,
    PoolParams, QuantizeParams, ReduceParams, Reducer, ReshapeParams, Rounding, SliceParams,
    SoftmaxParams, SoftmaxQuant, TransposeParams, UnaryKind, UnaryParams,
};
use kiln_runtime::DType;
use kiln_runtime::Quant;
use std::collections::HashMap;

/// TFLite builtin operator codes used here (schema.fbs `BuiltinOperator`).
#[allow(missing_docs)]
pub mod code {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONCATENATION: i32 = 2;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const LOGISTIC: i32 = 14;
    pub const MAX_POOL_2D: i32 = 17;
    pub const MUL: i32 = 18;
    pub const RELU: i32 = 19;
    pub const RELU_N1_TO_1: i32 = 20;
    pub const RELU6: i32 = 21;
    pub const RESHAPE: i32 = 22;
    pub const SOFTMAX: i32 = 25;
    pub const TANH: i32 = 28;
    pub const PAD: i32 = 34;
    pub const TRANSPOSE: i32 = 39;
    pub const MEAN: i32 = 40;
    pub const SUB: i32 = 41;
    pub const DIV: i32 = 42;
    pub const SQUEEZE: i32 = 43;
    pub const STRIDED_SLICE: i32 = 45;
    pub const EXP: i32 = 47;
    pub const MAXIMUM: i32 = 55;
    pub const MINIMUM: i32 = 57;
    pub const NEG: i32 = 59;
    pub const PADV2: i32 = 60;
    pub const EXPAND_DIMS: i32 = 70;
    pub const LOG: i32 = 73;
    pub const SUM: i32 = 74;
    pub const SQRT: i32 = 75;
    pub const SHAPE: i32 = 77;
    pub const REDUCE_PROD: i32 = 81;
    pub const REDUCE_MAX: i32 = 82;
    pub const PACK: i32 = 83;
    pub const REDUCE_MIN: i32 = 89;
    pub const LEAKY_RELU: i32 = 98;
    pub const ABS: i32 = 101;
    pub const ELU: i32 = 111;
    pub const QUANTIZE: i32 = 114;
    pub const HARD_SWISH: i32 = 117;
}

/// Name of a builtin code, for error messages.
pub fn op_name(c: i32) -> String {
    let known: &[(i32, &str)] = &[
        (0, "ADD"),
        (1, "AVERAGE_POOL_2D"),
        (2, "CONCATENATION"),
        (3, "CONV_2D"),
        (4, "DEPTHWISE_CONV_2D"),
        (5, "DEPTH_TO_SPACE"),
        (6, "DEQUANTIZE"),
        (8, "FLOOR"),
        (9, "FULLY_CONNECTED"),
        (11, "L2_NORMALIZATION"),
        (14, "LOGISTIC"),
        (16, "LSTM"),
        (17, "MAX_POOL_2D"),
        (18, "MUL"),
        (19, "RELU"),
        (20, "RELU_N1_TO_1"),
        (21, "RELU6"),
        (22, "RESHAPE"),
        (23, "RESIZE_BILINEAR"),
        (25, "SOFTMAX"),
        (26, "SPACE_TO_DEPTH"),
        (28, "TANH"),
        (32, "CUSTOM"),
        (34, "PAD"),
        (36, "GATHER"),
        (39, "TRANSPOSE"),
        (40, "MEAN"),
        (41, "SUB"),
        (42, "DIV"),
        (43, "SQUEEZE"),
        (45, "STRIDED_SLICE"),
        (47, "EXP"),
        (49, "SPLIT"),
        (53, "CAST"),
        (54, "PRELU"),
        (55, "MAXIMUM"),
        (57, "MINIMUM"),
        (59, "NEG"),
        (60, "PADV2"),
        (67, "TRANSPOSE_CONV"),
        (70, "EXPAND_DIMS"),
        (73, "LOG"),
        (74, "SUM"),
        (75, "SQRT"),
        (77, "SHAPE"),
        (82, "REDUCE_MAX"),
        (83, "PACK"),
        (97, "RESIZE_NEAREST_NEIGHBOR"),
        (98, "LEAKY_RELU"),
        (101, "ABS"),
        (111, "ELU"),
        (114, "QUANTIZE"),
        (117, "HARD_SWISH"),
        (126, "BATCH_MATMUL"),
    ];
    known
        .iter()
        .find(|(k, _)| *k == c)
        .map_or(format!("BUILTIN_{c}"), |(_, n)| n.to_string())
}

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
        bail!(
            "model has {} subgraphs; kiln imports single-subgraph models",
            subgraphs.len()
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
        .filter(|(i, o)| live_op[*i] && !supported(o.code))
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

    let mut imp = Importer {
        tensors,
        buffers,
        g: Graph::default(),
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

fn supported(c: i32) -> bool {
    use code::*;
    matches!(
        c,
        ADD | AVERAGE_POOL_2D
            | CONCATENATION
            | CONV_2D
            | DEPTHWISE_CONV_2D
            | DEQUANTIZE
            | FULLY_CONNECTED
            | LOGISTIC
            | MAX_POOL_2D
            | MUL
            | RELU
            | RELU_N1_TO_1
            | RELU6
            | RESHAPE
            | SOFTMAX
            | TANH
            | PAD
            | TRANSPOSE
            | MEAN
            | SUB
            | DIV
            | SQUEEZE
            | STRIDED_SLICE
            | EXP
            | MAXIMUM
            | MINIMUM
            | NEG
            | PADV2
            | EXPAND_DIMS
            | LOG
            | SUM
            | SQRT
            | REDUCE_PROD
            | REDUCE_MAX
            | REDUCE_MIN
            | LEAKY_RELU
            | ABS
            | ELU
            | HARD_SWISH
            | QUANTIZE
    )
}

/// Explicit (before, after) padding and output size for TF's SAME/VALID along one axis.
fn tf_padding(
    input: usize,
    k: usize,
    stride: usize,
    dil: usize,
    same: bool,
) -> (usize, usize, usize) {
    let extent = (k - 1) * dil + 1;
    if same {
        let out = input.div_ceil(stride);
        let needed = ((out - 1) * stride + extent).saturating_sub(input);
        (needed / 2, needed - needed / 2, out)
    } else {
        (0, 0, (input.saturating_sub(extent)) / stride + 1)
    }
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
        let t = *o
            .inputs
            .get(k)
            .ok_or_else(|| anyhow!("missing input {k}"))?;
        if t < 0 {
            bail!("required input {k} is absent");
        }
        self.tensor(t as usize)
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

    fn convert(&mut self, o: &TfOp<'a>) -> Result<()> {
        use code::*;
        let name = self.name_of(o);
        let min_inputs = match o.code {
            STRIDED_SLICE => 4,
            CONV_2D | DEPTHWISE_CONV_2D | FULLY_CONNECTED | ADD | SUB | MUL | DIV | MAXIMUM
            | MINIMUM | MEAN | SUM | REDUCE_MAX | REDUCE_MIN | REDUCE_PROD | PAD | PADV2
            | TRANSPOSE => 2,
            _ => 1,
        };
        if o.inputs.len() < min_inputs || o.outputs.is_empty() {
            bail!(
                "{} '{name}' has {} inputs and {} outputs; it needs at least {min_inputs} inputs and 1 output",
                op_name(o.code),
                o.inputs.len(),
                o.outputs.len()
            );
        }
        match o.code {
            CONV_2D | DEPTHWISE_CONV_2D if self.is_int8(o.inputs[0]) => {
                let opt = self.opt(o)?;
                let depthwise = o.code == DEPTHWISE_CONV_2D;
                let (x, y, ins) = self.int8_weighted(o, depthwise)?;
                let w = ins[1].unwrap_or(0);
                let xs = self.shape_of_rank(x, 4, "input")?;
                let wk = self.shape_of_rank(w, 4, "weights")?;
                let ys = self.shape(y);
                let same = opt.u8(0, 0)? == 0;
                let sw = opt.i32(1, 1)?.max(1) as usize;
                let sh = opt.i32(2, 1)?.max(1) as usize;
                let (act, dw, dh) = if depthwise {
                    (
                        opt.u8(4, 0)?,
                        opt.i32(5, 1)?.max(1) as usize,
                        opt.i32(6, 1)?.max(1) as usize,
                    )
                } else {
                    (
                        opt.u8(3, 0)?,
                        opt.i32(4, 1)?.max(1) as usize,
                        opt.i32(5, 1)?.max(1) as usize,
                    )
                };
                let groups = if depthwise {
                    xs[3]
                } else {
                    xs[3] / wk[3].max(1)
                };
                let (pt, pb, oh) = tf_padding(xs[1], wk[1], sh, dh, same);
                let (pl, pr, ow) = tf_padding(xs[2], wk[2], sw, dw, same);
                if ys != [xs[0], oh, ow, wk[0]] {
                    bail!("output shape {ys:?} does not match the conv arithmetic");
                }
                let (lo, hi) = self.int8_act(y, act)?;
                self.g.push(Node::new(
                    name,
                    OpParams::Conv2d(ConvParams {
                        geom: ConvGeom {
                            stride: [sh, sw],
                            dilation: [dh, dw],
                            pad: [pt, pl, pb, pr],
                            groups,
                        },
                        act: Act::Int8 { lo, hi },
                        rounding: Rounding::Double,
                    }),
                    ins,
                    vec![y],
                ));
                Ok(())
            }
            FULLY_CONNECTED if self.is_int8(o.inputs[0]) => {
                let opt = self.opt(o)?;
                let (x, y, mut ins) = self.int8_weighted(o, false)?;
                let w = ins[1].unwrap_or(0);
                let ws = self.shape_of_rank(w, 2, "weights")?;
                let (m, k) = (ws[0], ws[1]);
                if k == 0 {
                    bail!("weights have zero input features");
                }
                let xs = self.shape(x);
                let n: usize = xs.iter().product();
                if !n.is_multiple_of(k) {
                    bail!("input {xs:?} cannot be flattened into rows of {k}");
                }
                let rows = n / k;
                if xs != [rows, k] {
                    let t = self
                        .g
                        .add_tensor(format!("{name}.flat"), DType::I8, vec![rows, k]);
                    self.g.tensors[t].quant = self.g.tensors[x].quant;
                    self.g.push(Node::new(
                        format!("{name}.flatten"),
                        OpParams::Reshape(ReshapeParams),
                        vec![Some(x)],
                        vec![t],
                    ));
                    ins[0] = Some(t);
                }
                let y2 = if self.shape(y) != [rows, m] {
                    let t = self
                        .g
                        .add_tensor(format!("{name}.rows"), DType::I8, vec![rows, m]);
                    self.g.tensors[t].quant = self.g.tensors[y].quant;
                    t
                } else {
                    y
                };
                let (lo, hi) = self.int8_act(y, opt.u8(0, 0)?)?;
                // LiteRT's reference FULLY_CONNECTED rescales with a single rounding (conv and the
                // rest use gemmlowp's double rounding); matching it keeps kiln bit-exact.
                self.g.push(Node::new(
                    name.clone(),
                    OpParams::Dense(DenseParams {
                        act: Act::Int8 { lo, hi },
                        rounding: Rounding::Single,
                    }),
                    ins,
                    vec![y2],
                ));
                if y2 != y {
                    self.g.push(Node::new(
                        format!("{name}.unflatten"),
                        OpParams::Reshape(ReshapeParams),
                        vec![Some(y2)],
                        vec![y],
                    ));
                }
                Ok(())
            }
            AVERAGE_POOL_2D | MAX_POOL_2D if self.is_int8(o.inputs[0]) => {
                let opt = self.opt(o)?;
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                if self.g.tensors[x].quant != self.g.tensors[y].quant {
                    bail!("int8 pooling must keep the input's scale and zero point");
                }
                let xs = self.shape_of_rank(x, 4, "input")?;
                let same = opt.u8(0, 0)? == 0;
                let (sw, sh) = (
                    opt.i32(1, 1)?.max(1) as usize,
                    opt.i32(2, 1)?.max(1) as usize,
                );
                let (kw, kh) = (
                    opt.i32(3, 1)?.max(1) as usize,
                    opt.i32(4, 1)?.max(1) as usize,
                );
                let (pt, pb, _) = tf_padding(xs[1], kh, sh, 1, same);
                let (pl, pr, _) = tf_padding(xs[2], kw, sw, 1, same);
                let (lo, hi) = self.int8_act(y, opt.u8(5, 0)?)?;
                let mut p = PoolParams::new([kh, kw], [sh, sw]);
                p.window.pad = [pt, pl, pb, pr];
                p.act = Act::Int8 { lo, hi };
                self.g.push(Node::new(
                    name,
                    pool_op(o.code == MAX_POOL_2D, p),
                    vec![Some(x)],
                    vec![y],
                ));
                Ok(())
            }
            LOGISTIC | TANH if self.is_int8(o.inputs[0]) => {
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                let (
                    Quant::PerTensor {
                        scale: sx,
                        zero_point: zx,
                    },
                    Quant::PerTensor {
                        scale: sy,
                        zero_point: zy,
                    },
                ) = (self.g.tensors[x].quant, self.g.tensors[y].quant)
                else {
                    bail!("int8 {} needs per-tensor quantization", op_name(o.code));
                };
                let table = if o.code == LOGISTIC {
                    lut_i8(sx, zx, sy, zy, logistic)
                } else {
                    lut_i8(sx, zx, sy, zy, f32::tanh)
                };
                let t = self
                    .g
                    .add_tensor(format!("{name}.table"), DType::I8, vec![256]);
                self.g.tensors[t].data = Some(Data::I8(table));
                self.g.push(Node::new(
                    name,
                    OpParams::Lut(LutParams),
                    vec![Some(x), Some(t)],
                    vec![y],
                ));
                Ok(())
            }
            MEAN if self.is_int8(o.inputs[0]) => {
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                let xs = self.shape(x);
                let rank = xs.len() as i64;
                let mut mask = 0u32;
                let mut count = 1i64;
                for a in self.const_ints(o.inputs[1])? {
                    let a = if a < 0 { a + rank } else { a };
                    if !(0..rank).contains(&a) {
                        bail!("reduction axis {a} outside rank {rank}");
                    }
                    if mask & (1 << a) == 0 {
                        count *= xs[a as usize] as i64;
                    }
                    mask |= 1 << a;
                }
                let (multiplier, shift) = mean_params(self.q_scale(x), self.q_scale(y), count);
                self.g.push(Node::new(
                    name,
                    OpParams::Reduce(ReduceParams {
                        quant: MeanQuant { multiplier, shift },
                        ..ReduceParams::new(Reducer::Mean, mask)
                    }),
                    vec![Some(x)],
                    vec![y],
                ));
                Ok(())
            }
            MUL if self.is_int8(o.inputs[0]) => {
                let a = self.input(o, 0)?;
                let b = self.input(o, 1)?;
                let y = self.out(o)?;
                if self.g.tensors[b].dtype != DType::I8 {
                    bail!("int8 MUL needs two int8 operands");
                }
                let act = o.options.map(|t| t.u8(0, 0)).transpose()?.unwrap_or(0);
                let (lo, hi) = self.int8_act(y, act)?;
                let (multiplier, shift) =
                    mul_params(self.q_scale(a), self.q_scale(b), self.q_scale(y));
                self.g.push(Node::new(
                    name,
                    OpParams::Binary(BinaryParams {
                        kind: BinaryKind::Mul,
                        act: Act::Int8 { lo, hi },
                        quant: BinaryQuant::Mul(MulQuant {
                            multiplier,
                            shift,
                            rounding: Rounding::Double,
                        }),
                    }),
                    vec![Some(a), Some(b)],
                    vec![y],
                ));
                Ok(())
            }
            ADD | SUB if self.is_int8(o.inputs[0]) => {
                let a = self.input(o, 0)?;
                let b = self.input(o, 1)?;
                let y = self.out(o)?;
                if self.g.tensors[b].dtype != DType::I8 {
                    bail!("int8 {} needs two int8 operands", op_name(o.code));
                }
                let act = o.options.map(|t| t.u8(0, 0)).transpose()?.unwrap_or(0);
                let (lo, hi) = self.int8_act(y, act)?;
                let (left, m) = add_params(self.q_scale(a), self.q_scale(b), self.q_scale(y));
                let kind = if o.code == SUB {
                    BinaryKind::Sub
                } else {
                    BinaryKind::Add
                };
                self.g.push(Node::new(
                    name,
                    OpParams::Binary(BinaryParams {
                        kind,
                        act: Act::Int8 { lo, hi },
                        quant: BinaryQuant::Add(AddQuant {
                            left_shift: left,
                            mult: m,
                        }),
                    }),
                    vec![Some(a), Some(b)],
                    vec![y],
                ));
                Ok(())
            }
            SOFTMAX if self.is_int8(o.inputs[0]) => {
                let beta = self.opt(o)?.f32(0, 1.0)?;
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                if self.g.tensors[y].quant
                    != (Quant::PerTensor {
                        scale: 1.0 / 256.0,
                        zero_point: -128,
                    })
                {
                    bail!("int8 softmax output must have scale 1/256 and zero point -128");
                }
                let (m, shift, diff_min) = softmax_params(beta, self.q_scale(x));
                let axis = self
                    .shape(x)
                    .len()
                    .checked_sub(1)
                    .ok_or_else(|| anyhow!("softmax of a scalar"))?;
                self.g.push(Node::new(
                    name,
                    OpParams::Softmax(SoftmaxParams {
                        axis,
                        beta,
                        log: false,
                        quant: SoftmaxQuant {
                            input_multiplier: m,
                            input_left_shift: shift,
                            diff_min,
                        },
                    }),
                    vec![Some(x)],
                    vec![y],
                ));
                Ok(())
            }
            QUANTIZE => {
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                if self.g.tensors[x].dtype != DType::F32 || self.g.tensors[y].dtype != DType::I8 {
                    bail!("only float32 -> int8 QUANTIZE is supported");
                }
                self.g.push(Node::new(
                    name,
                    OpParams::Quantize(QuantizeParams),
                    vec![Some(x)],
                    vec![y],
                ));
                Ok(())
            }
            DEQUANTIZE
                if !self.is_const(o.inputs[0].max(0) as usize) && self.is_int8(o.inputs[0]) =>
            {
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                self.g.push(Node::new(
                    name,
                    OpParams::Dequantize(DequantizeParams),
                    vec![Some(x)],
                    vec![y],
                ));
                Ok(())
            }
            CONV_2D | DEPTHWISE_CONV_2D => {
                let opt = self.opt(o)?;
                let depthwise = o.code == DEPTHWISE_CONV_2D;
                let x = self.input(o, 0)?;
                let w_tf = self.input(o, 1)?;
                let bias = match o.inputs.get(2) {
                    Some(&b) if b >= 0 => Some(self.tensor(b as usize)?),
                    _ => None,
                };
                let y = self.out(o)?;
                let (xs, ws, ys) = (self.shape(x), self.shape(w_tf), self.shape(y));
                if xs.len() != 4 || ws.len() != 4 {
                    bail!("expects 4-D input and weights, got {xs:?} and {ws:?}");
                }
                let same = opt.u8(0, 0)? == 0;
                let sw = opt.i32(1, 1)?.max(1) as usize;
                let sh = opt.i32(2, 1)?.max(1) as usize;
                let (act, dw, dh) = if depthwise {
                    (
                        opt.u8(4, 0)?,
                        opt.i32(5, 1)?.max(1) as usize,
                        opt.i32(6, 1)?.max(1) as usize,
                    )
                } else {
                    (
                        opt.u8(3, 0)?,
                        opt.i32(4, 1)?.max(1) as usize,
                        opt.i32(5, 1)?.max(1) as usize,
                    )
                };
                let (w, groups) = if depthwise {
                    // [1, kh, kw, co] -> [co, kh, kw, 1]
                    let (kh, kw, co) = (ws[1], ws[2], ws[3]);
                    let src = self
                        .g
                        .const_f32(w_tf)
                        .ok_or_else(|| anyhow!("depthwise weights must be constant"))?
                        .to_vec();
                    let mut dst = vec![0.0; src.len()];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            for c in 0..co {
                                dst[(c * kh + ky) * kw + kx] = src[(ky * kw + kx) * co + c];
                            }
                        }
                    }
                    let t = self.g.add_const_f32(
                        format!("{name}.weights_ohwi"),
                        vec![co, kh, kw, 1],
                        dst,
                    );
                    (t, xs[3])
                } else {
                    if xs[3] % ws[3] != 0 {
                        bail!(
                            "input channels {} are not a multiple of the weights' {}",
                            xs[3],
                            ws[3]
                        );
                    }
                    (w_tf, xs[3] / ws[3])
                };
                let wk = self.shape(w);
                let (pt, pb, oh) = tf_padding(xs[1], wk[1], sh, dh, same);
                let (pl, pr, ow) = tf_padding(xs[2], wk[2], sw, dw, same);
                if ys != [xs[0], oh, ow, wk[0]] {
                    bail!("output shape {ys:?} does not match the conv arithmetic [{}, {oh}, {ow}, {}]", xs[0], wk[0]);
                }
                let geom = ConvGeom {
                    stride: [sh, sw],
                    dilation: [dh, dw],
                    pad: [pt, pl, pb, pr],
                    groups,
                };
                let node = Node::new(
                    name,
                    OpParams::Conv2d(ConvParams::new(geom)),
                    vec![Some(x), Some(w), bias],
                    vec![y],
                );
                self.push_with_act(node, act)
            }
            FULLY_CONNECTED => {
                let opt = self.opt(o)?;
                if opt.u8(1, 0)? != 0 {
                    bail!("shuffled weight formats are not supported");
                }
                let x = self.input(o, 0)?;
                let w = self.input(o, 1)?;
                let bias = match o.inputs.get(2) {
                    Some(&b) if b >= 0 => Some(self.tensor(b as usize)?),
                    _ => None,
                };
                let y = self.out(o)?;
                let ws = self.shape(w);
                if ws.len() != 2 {
                    bail!("weights must be 2-D, got {ws:?}");
                }
                let k = ws[1];
                let xs = self.shape(x);
                let n: usize = xs.iter().product();
                if !n.is_multiple_of(k) {
                    bail!("input {xs:?} cannot be flattened into rows of {k}");
                }
                let rows = n / k;
                let x2 = if xs != [rows, k] {
                    let t = self
                        .g
                        .add_tensor(format!("{name}.flat"), DType::F32, vec![rows, k]);
                    self.g.push(Node::new(
                        format!("{name}.flatten"),
                        OpParams::Reshape(ReshapeParams),
                        vec![Some(x)],
                        vec![t],
                    ));
                    t
                } else {
                    x
                };
                let ys = self.shape(y);
                let y2 = if ys != [rows, ws[0]] {
                    self.g
                        .add_tensor(format!("{name}.rows"), DType::F32, vec![rows, ws[0]])
                } else {
                    y
                };
                let node = Node::new(
                    name.clone(),
                    OpParams::Dense(DenseParams::default()),
                    vec![Some(x2), Some(w), bias],
                    vec![y2],
                );
                self.push_with_act(node, opt.u8(0, 0)?)?;
                if y2 != y {
                    self.g.push(Node::new(
                        format!("{name}.unflatten"),
                        OpParams::Reshape(ReshapeParams),
                        vec![Some(y2)],
                        vec![y],
                    ));
                }
                Ok(())
            }
            AVERAGE_POOL_2D | MAX_POOL_2D => {
                let opt = self.opt(o)?;
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                let xs = self.shape_of_rank(x, 4, "input")?;
                let same = opt.u8(0, 0)? == 0;
                let (sw, sh) = (
                    opt.i32(1, 1)?.max(1) as usize,
                    opt.i32(2, 1)?.max(1) as usize,
                );
                let (kw, kh) = (
                    opt.i32(3, 1)?.max(1) as usize,
                    opt.i32(4, 1)?.max(1) as usize,
                );
                let (pt, pb, _) = tf_padding(xs[1], kh, sh, 1, same);
                let (pl, pr, _) = tf_padding(xs[2], kw, sw, 1, same);
                let mut p = PoolParams::new([kh, kw], [sh, sw]);
                p.window.pad = [pt, pl, pb, pr];
                let node = Node::new(
                    name,
                    pool_op(o.code == MAX_POOL_2D, p),
                    vec![Some(x)],
                    vec![y],
                );
                self.push_with_act(node, opt.u8(5, 0)?)
            }
            ADD | SUB | MUL | DIV | MAXIMUM | MINIMUM => {
                let kind = match o.code {
                    ADD => BinaryKind::Add,
                    SUB => BinaryKind::Sub,
                    MUL => BinaryKind::Mul,
                    DIV => BinaryKind::Div,
                    MAXIMUM => BinaryKind::Max,
                    _ => BinaryKind::Min,
                };
                let a = self.input(o, 0)?;
                let b = self.input(o, 1)?;
                let y = self.out(o)?;
                let act = match o.options {
                    Some(t) if !matches!(o.code, MAXIMUM | MINIMUM) => t.u8(0, 0)?,
                    _ => 0,
                };
                let node = Node::new(
                    name,
                    OpParams::Binary(BinaryParams::new(kind)),
                    vec![Some(a), Some(b)],
                    vec![y],
                );
                self.push_with_act(node, act)
            }
            RESHAPE | SQUEEZE | EXPAND_DIMS => {
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                if self.g.tensors[x].len() != self.g.tensors[y].len() {
                    bail!("reshape changes the element count");
                }
                self.g.push(Node::new(
                    name,
                    OpParams::Reshape(ReshapeParams),
                    vec![Some(x)],
                    vec![y],
                ));
                Ok(())
            }
            SOFTMAX => {
                let beta = self.opt(o)?.f32(0, 1.0)?;
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                let axis = self
                    .shape(x)
                    .len()
                    .checked_sub(1)
                    .ok_or_else(|| anyhow!("softmax of a scalar"))?;
                self.g.push(Node::new(
                    name,
                    OpParams::Softmax(SoftmaxParams {
                        beta,
                        ..SoftmaxParams::new(axis, false)
                    }),
                    vec![Some(x)],
                    vec![y],
                ));
                Ok(())
            }
            RELU | RELU6 | RELU_N1_TO_1 | LOGISTIC | TANH | LEAKY_RELU | HARD_SWISH | EXP | ABS
            | NEG | SQRT | LOG | ELU => {
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                let (kind, a, b) = match o.code {
                    RELU => (UnaryKind::Relu, 0.0, 0.0),
                    RELU6 => (UnaryKind::Clip, 0.0, 6.0),
                    RELU_N1_TO_1 => (UnaryKind::Clip, -1.0, 1.0),
                    LOGISTIC => (UnaryKind::Sigmoid, 0.0, 0.0),
                    TANH => (UnaryKind::Tanh, 0.0, 0.0),
                    LEAKY_RELU => (UnaryKind::LeakyRelu, self.opt(o)?.f32(0, 0.0)?, 0.0),
                    HARD_SWISH => (UnaryKind::HardSwish, 0.0, 0.0),
                    EXP => (UnaryKind::Exp, 0.0, 0.0),
                    ABS => (UnaryKind::Abs, 0.0, 0.0),
                    NEG => (UnaryKind::Neg, 0.0, 0.0),
                    SQRT => (UnaryKind::Sqrt, 0.0, 0.0),
                    LOG => (UnaryKind::Log, 0.0, 0.0),
                    _ => (UnaryKind::Elu, 1.0, 0.0),
                };
                self.g.push(Node::new(
                    name,
                    OpParams::Unary(UnaryParams { kind, a, b }),
                    vec![Some(x)],
                    vec![y],
                ));
                Ok(())
            }
            CONCATENATION => {
                let opt = self.opt(o)?;
                let y = self.out(o)?;
                let rank = self.shape(y).len() as i32;
                let mut axis = opt.i32(0, 0)?;
                if axis < 0 {
                    axis += rank;
                }
                let axis = usize::try_from(axis)
                    .map_err(|_| anyhow!("concat axis {axis} outside rank {rank}"))?;
                let mut ins = Vec::new();
                for k in 0..o.inputs.len() {
                    ins.push(Some(self.input(o, k)?));
                }
                let node = Node::new(name, OpParams::Concat(ConcatParams { axis }), ins, vec![y]);
                self.push_with_act(node, opt.u8(1, 0)?)
            }
            PAD | PADV2 => {
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                let pads = self.const_ints(o.inputs[1])?;
                let rank = self.shape(x).len();
                if pads.len() != 2 * rank {
                    bail!("paddings must be [{rank}, 2]");
                }
                let value = if o.code == PADV2 && o.inputs.len() > 2 && o.inputs[2] >= 0 {
                    let c = self.tensor(o.inputs[2] as usize)?;
                    self.g
                        .const_f32(c)
                        .and_then(|v| v.first().copied())
                        .unwrap_or(0.0)
                } else {
                    0.0
                };
                if rank > MAX_RANK {
                    bail!("pad of a rank-{rank} tensor (at most {MAX_RANK})");
                }
                let mut p = PadParams {
                    mode: PadMode::Constant(value),
                    pads: [(0, 0); MAX_RANK],
                };
                for d in 0..rank {
                    let (b, a) = (pads[2 * d], pads[2 * d + 1]);
                    if !(0..1 << 15).contains(&b) || !(0..1 << 15).contains(&a) {
                        bail!("padding ({b}, {a}) out of range");
                    }
                    p.pads[d] = (b as usize, a as usize);
                }
                self.g
                    .push(Node::new(name, OpParams::Pad(p), vec![Some(x)], vec![y]));
                Ok(())
            }
            TRANSPOSE => {
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                let perm = self.const_ints(o.inputs[1])?;
                let rank = self.shape(x).len();
                let mut seen = vec![false; rank];
                for &p in &perm {
                    if p < 0 || p as usize >= rank || std::mem::replace(&mut seen[p as usize], true)
                    {
                        bail!("permutation {perm:?} is not a permutation of rank {rank}");
                    }
                }
                if perm.len() != rank || rank > 6 {
                    bail!("permutation {perm:?} does not fit an input of rank {rank} (at most 6)");
                }
                let perm: Vec<usize> = perm.iter().map(|&p| p as usize).collect();
                self.g.push(Node::new(
                    name,
                    OpParams::Transpose(TransposeParams::new(&perm)),
                    vec![Some(x)],
                    vec![y],
                ));
                Ok(())
            }
            MEAN | SUM | REDUCE_MAX | REDUCE_MIN | REDUCE_PROD => {
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                let rank = self.shape(x).len() as i64;
                let mut mask = 0u32;
                for a in self.const_ints(o.inputs[1])? {
                    let a = if a < 0 { a + rank } else { a };
                    if !(0..rank).contains(&a) {
                        bail!("reduction axis {a} outside rank {rank}");
                    }
                    mask |= 1 << a;
                }
                let reducer = match o.code {
                    MEAN => Reducer::Mean,
                    SUM => Reducer::Sum,
                    REDUCE_MAX => Reducer::Max,
                    REDUCE_MIN => Reducer::Min,
                    _ => Reducer::Prod,
                };
                self.g.push(Node::new(
                    name,
                    OpParams::Reduce(ReduceParams::new(reducer, mask)),
                    vec![Some(x)],
                    vec![y],
                ));
                Ok(())
            }
            STRIDED_SLICE => {
                let opt = self.opt(o)?;
                let x = self.input(o, 0)?;
                let y = self.out(o)?;
                let xs = self.shape(x);
                let begin = self.const_ints(o.inputs[1])?;
                let end = self.const_ints(o.inputs[2])?;
                let strides = self.const_ints(o.inputs[3])?;
                let (bm, em, ellipsis, new_axis, shrink) = (
                    opt.i32(0, 0)?,
                    opt.i32(1, 0)?,
                    opt.i32(2, 0)?,
                    opt.i32(3, 0)?,
                    opt.i32(4, 0)?,
                );
                if ellipsis != 0 || new_axis != 0 {
                    bail!("ellipsis and new-axis masks are not supported");
                }
                if xs.len() > MAX_RANK {
                    bail!("slice of a rank-{} tensor (at most {MAX_RANK})", xs.len());
                }
                let mut sp = SliceParams::default();
                let mut sliced = Vec::new();
                for d in 0..xs.len() {
                    let n = xs[d] as i64;
                    let s = strides.get(d).copied().unwrap_or(1);
                    if s == 0 {
                        bail!("stride 0 on axis {d}");
                    }
                    let clampb = |v: i64| if v < 0 { v + n } else { v };
                    let (lo, hi) = if s > 0 { (0, n) } else { (-1, n - 1) };
                    let mut b = if bm & (1 << d) != 0 {
                        if s > 0 {
                            0
                        } else {
                            n - 1
                        }
                    } else {
                        clampb(begin.get(d).copied().unwrap_or(0)).clamp(lo, hi)
                    };
                    let mut e = if em & (1 << d) != 0 {
                        if s > 0 {
                            n
                        } else {
                            -1
                        }
                    } else {
                        clampb(end.get(d).copied().unwrap_or(n)).clamp(lo, hi)
                    };
                    if shrink & (1 << d) != 0 {
                        b = clampb(begin.get(d).copied().unwrap_or(0));
                        e = b + 1;
                    }
                    let count = if s > 0 {
                        (e - b + s - 1).div_euclid(s)
                    } else {
                        (b - e + (-s) - 1).div_euclid(-s)
                    };
                    if count <= 0 {
                        bail!("slice is empty on axis {d}");
                    }
                    sp.begin[d] = i32::try_from(b)?;
                    sp.step[d] = if shrink & (1 << d) != 0 {
                        1
                    } else {
                        i32::try_from(s)?
                    };
                    sliced.push(count as usize);
                }
                let mut node = Node::new(name.clone(), OpParams::Slice(sp), vec![Some(x)], vec![]);
                if sliced == self.shape(y) {
                    node.outputs.push(y);
                    self.g.push(node);
                } else {
                    let t = self
                        .g
                        .add_tensor(format!("{name}.sliced"), DType::F32, sliced);
                    node.outputs.push(t);
                    self.g.push(node);
                    self.g.push(Node::new(
                        format!("{name}.shrink"),
                        OpParams::Reshape(ReshapeParams),
                        vec![Some(t)],
                        vec![y],
                    ));
                }
                Ok(())
            }
            DEQUANTIZE => {
                // Constant weights stored as float16/int8 feeding float ops: fold to f32 now.
                let src = o.inputs[0];
                if src < 0 || !self.is_const(src as usize) {
                    bail!("DEQUANTIZE of an activation needs a quantized model");
                }
                let v = self.const_f32(src as usize)?;
                let out = o.outputs[0] as usize;
                let shape = self.info(out).shape.clone();
                let id = self.g.add_const_f32(self.info(out).name.clone(), shape, v);
                self.map.insert(out, id);
                Ok(())
            }
            c => bail!("unsupported operator {}", op_name(c)),
        }
    }
}
