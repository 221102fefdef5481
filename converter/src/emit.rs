//! Writes a planned graph as `.kiln` bytes.

use crate::ir::Graph;
use crate::plan::{plan, Plan};
use anyhow::{anyhow, Context, Result};
use kiln_runtime::writer::{self, ModelSpec, OpSpec, TensorData, TensorSpec};
use kiln_runtime::Quant;

/// Plans `g` and serializes it; returns the bytes and the plan (indexed by graph tensor id).
pub fn emit(g: &Graph) -> Result<(Vec<u8>, Plan)> {
    let (bytes, plan, _) = emit_mapped(g)?;
    Ok((bytes, plan))
}

/// As [`emit`], also returning for each graph tensor its index in the file (`u32::MAX` when it
/// was dropped).
pub fn emit_mapped(g: &Graph) -> Result<(Vec<u8>, Plan, Vec<u32>)> {
    emit_with(g, true)
}

/// As [`emit_mapped`]; `pack` false keeps every weight in its natural layout (the older,
/// slower kernel paths: tests compare the two).
pub fn emit_with(g: &Graph, pack: bool) -> Result<(Vec<u8>, Plan, Vec<u32>)> {
    g.check()?;
    // Weights in the layouts the microkernels read (new tensors appended: ids stay valid).
    let mut packed = g.clone();
    if pack {
        crate::passes::pack_weights::run(&mut packed);
    }
    crate::passes::dedup_constants::run(&mut packed);
    let g = &packed;
    let p = plan(g);
    if std::env::var_os("KILN_DUMP_GRAPH").is_some() {
        eprintln!("{}", crate::ir::dump(g, Some(&p)));
    }
    // Keep only tensors that live nodes or graph io use (plus per-axis scale tensors).
    let mut used = vec![false; g.tensors.len()];
    for n in &g.nodes {
        for &t in n.inputs.iter().flatten().chain(&n.outputs) {
            used[t] = true;
        }
    }
    for &t in g.inputs.iter().chain(&g.outputs) {
        used[t] = true;
    }
    for t in 0..g.tensors.len() {
        if used[t] {
            if let Quant::PerAxis { scales, .. } = g.tensors[t].quant {
                used[scales as usize] = true;
            }
        }
    }
    let mut remap = vec![u32::MAX; g.tensors.len()];
    let mut tensors = Vec::new();
    for (t, tensor) in g.tensors.iter().enumerate() {
        if !used[t] {
            continue;
        }
        remap[t] = tensors.len() as u32;
        let data = match &tensor.data {
            Some(d) => TensorData::Constant(d.to_bytes()),
            None => TensorData::Arena {
                offset: p.offsets[t]
                    .ok_or_else(|| anyhow!("internal: tensor '{}' was not planned", tensor.name))?,
            },
        };
        tensors.push(TensorSpec {
            // Constants are identified by the op that reads them: their (often long) source
            // names would only cost flash.
            name: if tensor.data.is_some() {
                String::new()
            } else {
                tensor.name.clone()
            },
            dtype: tensor.dtype,
            shape: tensor.shape.clone(),
            data,
            quant: tensor.quant,
        });
    }
    for ts in tensors.iter_mut() {
        if let Quant::PerAxis { axis, scales } = ts.quant {
            ts.quant = Quant::PerAxis {
                axis,
                scales: remap[scales as usize],
            };
        }
    }
    let ops = g
        .nodes
        .iter()
        .map(|n| OpSpec {
            kind: n.kind(),
            name: n.name.clone(),
            inputs: n.inputs.iter().map(|i| i.map(|t| remap[t])).collect(),
            outputs: n.outputs.iter().map(|&t| remap[t]).collect(),
            params: n.op.encode(),
        })
        .collect();
    let spec = ModelSpec {
        tensors,
        ops,
        inputs: g.inputs.iter().map(|&t| remap[t]).collect(),
        outputs: g.outputs.iter().map(|&t| remap[t]).collect(),
    };
    let bytes = writer::write(&spec)?;
    let remap_out = remap.clone();
    // Every file we write must load: validate it with the runtime's own reader.
    let buf = writer::AlignedBuf::new(&bytes);
    kiln_runtime::Model::from_bytes(buf.as_slice())
        .context("internal: the emitted model does not validate")?;
    Ok((bytes, p, remap_out))
}
