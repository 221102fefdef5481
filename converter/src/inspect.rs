//! `kiln inspect`: a per-layer table of a `.kiln` file.

use kiln_runtime::format::Storage;
use kiln_runtime::ops::{pad_pair, BinaryKind, UnaryKind, P_ACT_MAX, P_ACT_MIN};
use kiln_runtime::{Model, OpKind};
use serde::Serialize;

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Layer {
    /// Execution index.
    pub index: usize,
    /// Op kind.
    pub op: String,
    /// Source node name.
    pub name: String,
    /// Shapes of the activation inputs.
    pub inputs: Vec<Vec<usize>>,
    /// Output shape.
    pub output: Vec<usize>,
    /// Parameters in words (`k3x3 s2 p1,1,1,1 g8 relu6`).
    pub params: String,
    /// Bytes of constant data (weights, bias) this op reads.
    pub weight_bytes: usize,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Arena offset of the output.
    pub arena_offset: usize,
    /// Bytes of the output.
    pub output_bytes: usize,
}

/// A graph input or output.
#[derive(Clone, Debug, Serialize)]
pub struct Io {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Quantization scale (int8 tensors).
    pub scale: Option<f32>,
    /// Quantization zero point (int8 tensors).
    pub zero_point: Option<i32>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `.kiln` format version of the file.
    pub format_version: u16,
    /// File size in bytes.
    pub file_bytes: usize,
    /// Constant data in bytes.
    pub weight_bytes: usize,
    /// Arena bytes a session needs.
    pub arena_bytes: usize,
    /// Total MACs per inference.
    pub macs: u64,
    /// Graph inputs.
    pub inputs: Vec<Io>,
    /// Graph outputs.
    pub outputs: Vec<Io>,
    /// Layers in execution order.
    pub layers: Vec<Layer>,
}

fn act_str(lo: f32, hi: f32) -> String {
    match (lo, hi) {
        (l, h) if l == f32::NEG_INFINITY && h == f32::INFINITY => String::new(),
        (l, h) if l == 0.0 && h == f32::INFINITY => " relu".into(),
        (l, h) if l == 0.0 && h == 6.0 => " relu6".into(),
        (l, h) => format!(" clamp[{l},{h}]"),
    }
}

/// Describes op `i`'s parameters in words.
pub fn describe(m: &Model<'_>, i: usize) -> String {
    let op = m.op(i);
    let p = op.params;
    let int8 = m
        .op_input(&op, 0)
        .is_some_and(|t| m.tensor(t).dtype == kiln_runtime::DType::I8);
    let act = if int8 {
        let (lo, hi) = (p[P_ACT_MIN], p[P_ACT_MAX]);
        if (lo, hi) == (-128, 127) {
            String::new()
        } else {
            format!(" clamp[{lo},{hi}]q")
        }
    } else {
        act_str(op.param_f32(P_ACT_MIN), op.param_f32(P_ACT_MAX))
    };
    match op.kind {
        OpKind::Conv2d => {
            let w = m
                .op_input(&op, 1)
                .map(|t| m.tensor(t).dims)
                .unwrap_or([0; 6]);
            let dw = if p[8] > 1 && w[3] == 1 {
                " depthwise"
            } else {
                ""
            };
            format!(
                "k{}x{} s{},{} d{},{} p{},{},{},{} g{}{dw}{act}",
                w[1], w[2], p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]
            )
        }
        OpKind::MaxPool | OpKind::AvgPool => format!(
            "k{}x{} s{},{} p{},{},{},{}{act}",
            p[2], p[3], p[0], p[1], p[4], p[5], p[6], p[7]
        ),
        OpKind::Dense | OpKind::MatMul => act.trim().to_string(),
        OpKind::Binary => format!(
            "{:?}{act}",
            BinaryKind::from_i32(p[0]).map_or("?".into(), |k| format!("{k:?}").to_lowercase())
        )
        .replace('"', ""),
        OpKind::Unary => {
            UnaryKind::from_i32(p[0]).map_or("?".into(), |k| format!("{k:?}").to_lowercase())
        }
        OpKind::Softmax => format!(
            "axis {} beta {}{}",
            p[0],
            op.param_f32(1),
            if p[2] == 1 { " log" } else { "" }
        ),
        OpKind::Reduce => format!(
            "{} mask {:#b}",
            ["mean", "sum", "max", "min", "prod", "mean_sq"]
                .get(p[0] as usize)
                .unwrap_or(&"?"),
            p[1]
        ),
        OpKind::Concat => format!("axis {}", p[0]),
        OpKind::Transpose => {
            let r = m.tensor(m.op_output(&op, 0)).rank;
            format!("perm {:?}", &p[..r])
        }
        OpKind::Pad => {
            let r = m.tensor(m.op_output(&op, 0)).rank;
            let pads: Vec<(usize, usize)> = (0..r).map(|d| pad_pair(p[2 + d])).collect();
            format!(
                "{} {pads:?}",
                ["constant", "reflect", "edge"]
                    .get(p[0] as usize)
                    .unwrap_or(&"?")
            )
        }
        OpKind::Slice => {
            let r = m.tensor(m.op_output(&op, 0)).rank;
            format!("begin {:?} step {:?}", &p[..r], &p[6..6 + r])
        }
        _ => String::new(),
    }
}

/// MACs of op `i`.
pub fn macs(m: &Model<'_>, i: usize) -> u64 {
    let op = m.op(i);
    let out = m.tensor(m.op_output(&op, 0)).len() as u64;
    let w = |k| m.op_input(&op, k).map(|t| m.tensor(t));
    match op.kind {
        OpKind::Conv2d => w(1).map_or(0, |t| out * (t.dims[1] * t.dims[2] * t.dims[3]) as u64),
        OpKind::Dense => w(1).map_or(0, |t| out * t.dims[1] as u64),
        OpKind::MatMul => w(0).map_or(0, |t| out * t.dims[t.rank - 1] as u64),
        OpKind::MaxPool | OpKind::AvgPool => out * (op.params[2] * op.params[3]) as u64,
        _ => 0,
    }
}

/// Builds the report.
pub fn report(m: &Model<'_>) -> Report {
    let mut layers = Vec::new();
    let mut weight_total = 0;
    for t in 0..m.num_tensors() {
        let ti = m.tensor(t);
        if ti.storage == Storage::Constant {
            weight_total += ti.byte_len;
        }
    }
    for i in 0..m.num_ops() {
        let op = m.op(i);
        let mut inputs = Vec::new();
        let mut wb = 0;
        for k in 0..op.num_inputs() {
            if let Some(t) = m.op_input(&op, k) {
                let ti = m.tensor(t);
                match ti.storage {
                    Storage::Arena => inputs.push(ti.shape().to_vec()),
                    Storage::Constant => wb += ti.byte_len,
                }
            }
        }
        let y = m.tensor(m.op_output(&op, 0));
        layers.push(Layer {
            index: i,
            op: op.kind.name().into(),
            name: op.name().into(),
            inputs,
            output: y.shape().to_vec(),
            params: describe(m, i),
            weight_bytes: wb,
            macs: macs(m, i),
            arena_offset: y.offset,
            output_bytes: y.byte_len,
        });
    }
    let io = |t: usize| {
        let ti = m.tensor(t);
        let (scale, zero_point) = match ti.quant {
            kiln_runtime::Quant::PerTensor { scale, zero_point } => (Some(scale), Some(zero_point)),
            _ => (None, None),
        };
        Io {
            name: ti.name().to_string(),
            dtype: ti.dtype.name().to_string(),
            shape: ti.shape().to_vec(),
            scale,
            zero_point,
        }
    };
    Report {
        format_version: kiln_runtime::format::VERSION,
        file_bytes: m.bytes().len(),
        weight_bytes: weight_total,
        arena_bytes: m.arena_size(),
        macs: layers.iter().map(|l| l.macs).sum(),
        inputs: (0..m.num_inputs())
            .filter_map(|k| m.input_tensor(k).ok())
            .map(io)
            .collect(),
        outputs: (0..m.num_outputs())
            .filter_map(|k| m.output_tensor(k).ok())
            .map(io)
            .collect(),
        layers,
    }
}

fn shape_str(s: &[usize]) -> String {
    s.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// Renders the report as a table for people.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let name_w = r
        .layers
        .iter()
        .map(|l| l.name.chars().count().min(40))
        .max()
        .unwrap_or(4)
        .max(4);
    out.push_str(&format!(
        "{:>3}  {:<10} {:<name_w$}  {:<22} {:<14} {:<34} {:>10} {:>9} {:>10}\n",
        "#", "op", "name", "inputs", "output", "params", "MACs", "weights", "arena@"
    ));
    for l in &r.layers {
        let name: String = if l.name.chars().count() > 40 {
            let tail: String = l
                .name
                .chars()
                .rev()
                .take(39)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("…{tail}")
        } else {
            l.name.clone()
        };
        let ins = l
            .inputs
            .iter()
            .map(|s| shape_str(s))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "{:>3}  {:<10} {:<name_w$}  {:<22} {:<14} {:<34} {:>10} {:>9} {:>10}\n",
            l.index,
            l.op,
            name,
            ins,
            shape_str(&l.output),
            l.params,
            l.macs,
            l.weight_bytes,
            format!("{}+{}", l.arena_offset, l.output_bytes)
        ));
    }
    for (what, list) in [("input ", &r.inputs), ("output", &r.outputs)] {
        for io in list {
            let q = match (io.scale, io.zero_point) {
                (Some(s), Some(z)) => format!(" scale {s:e} zero point {z}"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{what} '{}' {}[{}]{q}\n",
                io.name,
                io.dtype,
                shape_str(&io.shape)
            ));
        }
    }
    out.push_str(&format!(
        ".kiln format version {}; {} ops, {} MACs; file {} bytes (weights {}), arena {} bytes\n",
        r.format_version,
        r.layers.len(),
        r.macs,
        r.file_bytes,
        r.weight_bytes,
        r.arena_bytes
    ));
    out
}
