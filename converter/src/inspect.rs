//! `kiln inspect`: a per-layer table of a `.kiln` file.

use kiln_runtime::format::Storage;
use kiln_runtime::format::MAX_RANK;
use kiln_runtime::ops::shapes_of;
use kiln_runtime::Model;
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

/// Describes op `i`'s parameters in words (`k3x3 s2,2 d1,1 p1,1,1,1 g8 relu6`).
pub fn describe(m: &Model<'_>, i: usize) -> String {
    let op = m.op(i);
    let mut buf = [[0; MAX_RANK]; 3];
    let shapes = shapes_of(m, &op, &mut buf);
    let mut s = String::new();
    match m.op_params(&op) {
        Ok(p) => {
            // Writing into a String cannot fail.
            let _ = p.describe(&shapes, &mut s);
        }
        Err(e) => s = format!("(invalid parameters: {e})"),
    }
    s.trim().to_string()
}

/// MACs of op `i`.
pub fn macs(m: &Model<'_>, i: usize) -> u64 {
    m.op_macs(&m.op(i))
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
