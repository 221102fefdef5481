//! `kiln verify`: runs the same inputs through tract (ONNX or TFLite, the source model) and
//! through kiln (the converted model) and reports the error per output.

use crate::{detect_format, onnx, SourceFormat};
use anyhow::{anyhow, bail, Context, Result};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{Model, Session};
use serde::Serialize;
use std::path::Path;
use tract_onnx::prelude::*;

/// Error of one output over all inputs.
#[derive(Clone, Debug, Serialize)]
pub struct OutputError {
    /// Output name.
    pub name: String,
    /// Largest absolute difference.
    pub max_abs: f32,
    /// Largest absolute difference divided by the largest reference magnitude.
    pub max_rel: f32,
}

/// Runs the source model in tract on `inputs` (one row per graph input per sample).
pub fn run_tract(
    source: &Path,
    shapes: &[Vec<usize>],
    samples: &[Vec<Vec<f32>>],
) -> Result<Vec<Vec<Vec<f32>>>> {
    let bytes = std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
    let typed = match detect_format(source, &bytes)? {
        SourceFormat::Onnx => onnx::load_typed(source, Some(shapes))?,
        SourceFormat::Tflite => tract_tflite::tflite()
            .model_for_path(source)
            .map_err(|e| anyhow!("{e:?}"))
            .context("tract could not read the TFLite model")?,
    };
    let plan = typed
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| anyhow!("{e:?}"))
        .context("tract could not prepare the model")?;
    let mut all = Vec::new();
    for sample in samples {
        let mut ins = TVec::new();
        for (shape, data) in shapes.iter().zip(sample) {
            ins.push(
                Tensor::from_shape(shape, data)
                    .map_err(|e| anyhow!("{e:?}"))?
                    .into_tvalue(),
            );
        }
        let outs = plan
            .run(ins)
            .map_err(|e| anyhow!("{e:?}"))
            .context("tract failed to run")?;
        let mut v = Vec::new();
        for o in outs {
            let t = o.cast_to::<f32>().map_err(|e| anyhow!("{e:?}"))?;
            v.push(
                t.to_plain_array_view::<f32>()
                    .map_err(|e| anyhow!("{e:?}"))?
                    .iter()
                    .copied()
                    .collect(),
            );
        }
        all.push(v);
    }
    Ok(all)
}

/// Feeds f32 data to graph input `k`: copied for an f32 input, quantized with the input's scale
/// and zero point for an int8 one.
pub fn set_input(s: &mut Session<'_, '_>, k: usize, x: &[f32]) -> Result<()> {
    let m = s.model();
    let t = m.tensor(m.input_tensor(k).map_err(|e| anyhow!("{e}"))?);
    match (t.dtype, t.quant) {
        (kiln_runtime::DType::I8, kiln_runtime::Quant::PerTensor { scale, zero_point }) => {
            if x.len() != t.len() {
                bail!("input #{k}: expected {} values, got {}", t.len(), x.len());
            }
            if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                bail!("input #{k}: value #{i} is NaN or infinite");
            }
            let dst = s.input_bytes_mut(k).map_err(|e| anyhow!("{e}"))?;
            let mut q = vec![0i8; x.len()];
            kiln_runtime::kernels::reference_i8::quantize(x, &mut q, scale, zero_point);
            for (d, v) in dst.iter_mut().zip(q) {
                *d = v as u8;
            }
            Ok(())
        }
        _ => s
            .set_input_f32(k, x)
            .map_err(|e| anyhow!("input #{k}: {e}")),
    }
}

/// Reads graph output `k` as f32 (an int8 output is dequantized).
pub fn get_output(s: &Session<'_, '_>, k: usize) -> Result<Vec<f32>> {
    let m = s.model();
    let t = m.tensor(m.output_tensor(k).map_err(|e| anyhow!("{e}"))?);
    match (t.dtype, t.quant) {
        (kiln_runtime::DType::I8, kiln_runtime::Quant::PerTensor { scale, zero_point }) => {
            let b = s.output_bytes(k).map_err(|e| anyhow!("{e}"))?;
            Ok(b.iter()
                .map(|&q| scale * (q as i8 as i32 - zero_point) as f32)
                .collect())
        }
        _ => Ok(s.output_f32(k).map_err(|e| anyhow!("{e}"))?.to_vec()),
    }
}

/// Runs a `.kiln` model on `samples`.
pub fn run_kiln(bytes: &[u8], samples: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<Vec<f32>>>> {
    let buf = AlignedBuf::new(bytes);
    let m = Model::from_bytes(buf.as_slice()).map_err(|e| anyhow!("{e}"))?;
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let mut s = Session::new(&m, arena.as_mut_slice()).map_err(|e| anyhow!("{e}"))?;
    let mut all = Vec::new();
    for sample in samples {
        if sample.len() != m.num_inputs() {
            bail!(
                "model has {} inputs, sample has {}",
                m.num_inputs(),
                sample.len()
            );
        }
        for (k, x) in sample.iter().enumerate() {
            set_input(&mut s, k, x)?;
        }
        s.invoke().map_err(|e| anyhow!("{e}"))?;
        let mut outs = Vec::new();
        for k in 0..m.num_outputs() {
            outs.push(get_output(&s, k)?);
        }
        all.push(outs);
    }
    Ok(all)
}

/// Compares two sets of outputs.
pub fn compare(
    names: &[String],
    got: &[Vec<Vec<f32>>],
    want: &[Vec<Vec<f32>>],
) -> Result<Vec<OutputError>> {
    let mut res: Vec<OutputError> = names
        .iter()
        .map(|n| OutputError {
            name: n.clone(),
            max_abs: 0.0,
            max_rel: 0.0,
        })
        .collect();
    for (g, w) in got.iter().zip(want) {
        if g.len() != w.len() || g.len() != names.len() {
            bail!("kiln produced {} outputs, reference {}", g.len(), w.len());
        }
        for (k, (a, b)) in g.iter().zip(w).enumerate() {
            if a.len() != b.len() {
                bail!(
                    "output '{}': kiln has {} values, reference {}",
                    names[k],
                    a.len(),
                    b.len()
                );
            }
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            let abs = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            res[k].max_abs = res[k].max_abs.max(abs);
            res[k].max_rel = res[k].max_rel.max(abs / scale);
        }
    }
    Ok(res)
}

/// Deterministic pseudo-random inputs in [-1, 1] (a 32-bit LCG).
pub fn random_inputs(shapes: &[Vec<usize>], n: usize, seed: u32) -> Vec<Vec<Vec<f32>>> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            shapes
                .iter()
                .map(|s| {
                    (0..s.iter().product::<usize>())
                        .map(|_| {
                            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                            (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}
