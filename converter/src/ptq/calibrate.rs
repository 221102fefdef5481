//! Calibration: the float model runs on the samples and every tensor's values are observed;
//! QDQ models bring their own parameters instead (`lower_with_hints`).

use super::builder::Builder;
use super::PtqOptions;
use crate::ir::{Graph, TId};
use anyhow::Result;
use kiln_quantize::calibrate::Method;
use kiln_runtime::cast::{bytes_as_f32, bytes_as_i8};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{DType, Model, OpKind, Quant, Session};
use std::collections::HashMap;

/// Runs a serialized model on each sample and calls `f(graph_tensor, values)` for every f32 or
/// int8 op output (int8 values are dequantized), plus the graph inputs.
pub(super) fn observe(
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

pub(super) fn inverse(remap: &[u32]) -> HashMap<usize, TId> {
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
pub(super) fn propagate_through_reshapes(g: &mut Graph) {
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
