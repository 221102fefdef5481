//! `kiln verify`: runs the same inputs through tract (ONNX or TFLite, the source model) and
//! through kiln (the converted model) and reports the error per output.

use crate::{detect_format, eval, onnx, SourceFormat};
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
    /// NaN or infinite values seen in either engine's output.
    pub non_finite: usize,
    /// Samples on which both engines' largest value is at the same position.
    pub top1_agree: usize,
    /// Samples compared.
    pub samples: usize,
}

impl OutputError {
    /// No samples compared yet.
    pub fn new(name: &str) -> OutputError {
        OutputError {
            name: name.to_string(),
            max_abs: 0.0,
            max_rel: 0.0,
            non_finite: 0,
            top1_agree: 0,
            samples: 0,
        }
    }

    /// Adds one sample: kiln's values `a` against the reference's `b`.
    pub fn add(&mut self, a: &[f32], b: &[f32]) -> Result<()> {
        if a.len() != b.len() {
            bail!(
                "output '{}': kiln has {} values, reference {}",
                self.name,
                a.len(),
                b.len()
            );
        }
        // `f32::max` ignores NaN: non-finite values are counted on their own, and any of them
        // makes the comparison fail rather than vanish from the maximum.
        self.non_finite += a.iter().chain(b).filter(|v| !v.is_finite()).count();
        let scale = b
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(1e-12);
        let abs = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        self.max_abs = self.max_abs.max(abs);
        self.max_rel = self.max_rel.max(abs / scale);
        if eval::argmax(a) == eval::argmax(b) {
            self.top1_agree += 1;
        }
        self.samples += 1;
        Ok(())
    }

    /// True when the output agrees within `tolerance` (max relative error) and is finite.
    pub fn ok(&self, tolerance: f32) -> bool {
        self.non_finite == 0 && self.max_rel <= tolerance && self.samples > 0
    }
}

/// Runs the source model in tract on `inputs` (one row per graph input per sample).
pub fn run_tract(
    source: &Path,
    shapes: &[Vec<usize>],
    samples: &[Vec<Vec<f32>>],
) -> Result<Vec<Vec<Vec<f32>>>> {
    let bytes = crate::fsutil::read_file(source)?;
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
    let t = m.tensor(m.input_tensor(k)?);
    match (t.dtype, t.quant) {
        (kiln_runtime::DType::I8, kiln_runtime::Quant::PerTensor { scale, zero_point }) => {
            if x.len() != t.len() {
                bail!("input #{k}: expected {} values, got {}", t.len(), x.len());
            }
            if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                bail!("input #{k}: value #{i} is NaN or infinite");
            }
            let dst = s.input_bytes_mut(k)?;
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
    let t = m.tensor(m.output_tensor(k)?);
    match (t.dtype, t.quant) {
        (kiln_runtime::DType::I8, kiln_runtime::Quant::PerTensor { scale, zero_point }) => {
            let b = s.output_bytes(k)?;
            Ok(b.iter()
                .map(|&q| scale * (q as i8 as i32 - zero_point) as f32)
                .collect())
        }
        _ => Ok(s.output_f32(k)?.to_vec()),
    }
}

/// Runs a `.kiln` model on `samples`.
pub fn run_kiln(bytes: &[u8], samples: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<Vec<f32>>>> {
    let buf = AlignedBuf::new(bytes);
    let m = Model::from_bytes(buf.as_slice())?;
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let mut s = Session::new(&m, arena.as_mut_slice())?;
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
        s.invoke()?;
        let mut outs = Vec::new();
        for k in 0..m.num_outputs() {
            outs.push(get_output(&s, k)?);
        }
        all.push(outs);
    }
    Ok(all)
}

/// Compares kiln's outputs (`got[sample][output]`) with a reference's, output by output.
pub fn compare(
    names: &[String],
    got: &[Vec<Vec<f32>>],
    want: &[Vec<Vec<f32>>],
) -> Result<Vec<OutputError>> {
    let mut res: Vec<OutputError> = names.iter().map(|n| OutputError::new(n)).collect();
    for (g, w) in got.iter().zip(want) {
        if g.len() != w.len() || g.len() != names.len() {
            bail!("kiln produced {} outputs, reference {}", g.len(), w.len());
        }
        for (k, (a, b)) in g.iter().zip(w).enumerate() {
            res[k].add(a, b)?;
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

/// The Python program that runs a `.tflite` file with LiteRT's reference kernels
/// (`BUILTIN_REF`, the kernels kiln's int8 arithmetic is bit-exact with).
const LITERT_RUNNER: &str = r#"
import sys
try:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except Exception as e:
    sys.stderr.write("NO_LITERT: %s\n" % e)
    sys.exit(3)
model, xin, outdir = sys.argv[1:4]
x = np.load(xin)
engine = "LiteRT's reference kernels (ai-edge-litert, BUILTIN_REF)"
try:
    it = Interpreter(model_path=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
except ValueError as e:
    # The reference resolver lacks some op versions (int8 TILE, for one); the default kernels
    # have them. Say so rather than fail.
    missing = str(e).split("\n")[0]
    it = Interpreter(model_path=model)
    engine = "LiteRT's default kernels (ai-edge-litert; its reference resolver refused the file: %s)" % missing
with open(outdir + "/engine.txt", "w") as f:
    f.write(engine)
it.allocate_tensors()
ind, outd = it.get_input_details(), it.get_output_details()
if len(ind) != 1:
    sys.stderr.write("the model has %d inputs; verify feeds one\n" % len(ind))
    sys.exit(2)
outs = [[] for _ in outd]
for row in x:
    # Each input is a separate run from the model's initial state: LiteRT otherwise carries
    # variable tensors (a fused LSTM's state) from one invoke to the next.
    it.reset_all_variables()
    it.set_tensor(ind[0]["index"], row.reshape(ind[0]["shape"]).astype(ind[0]["dtype"]))
    it.invoke()
    for k, o in enumerate(outd):
        outs[k].append(it.get_tensor(o["index"]).copy())
with open(outdir + "/names.txt", "w") as f:
    for k, o in enumerate(outd):
        np.save("%s/out%d.npy" % (outdir, k), np.stack(outs[k]))
        f.write(o["name"] + "\n")
"#;

/// Outputs of a reference engine: per output, its name (when known), whether it is int8, and
/// one row of values per sample (int8 values as numbers).
pub struct RefOutputs {
    /// Output names in the reference's order.
    pub names: Vec<String>,
    /// `outputs[k][sample]`.
    pub outputs: Vec<Vec<Vec<f32>>>,
    /// Whether output `k` is int8.
    pub int8: Vec<bool>,
    /// Which engine computed them (LiteRT's reference kernels, or its default kernels where the
    /// reference resolver lacks an op, with the reason).
    pub engine: String,
}

/// Runs a `.tflite` model on `rows` (raw bytes in the model input's dtype, as kiln takes them)
/// with LiteRT's reference kernels, through the Python in `$KILN_PYTHON` (default `python3`)
/// with `ai-edge-litert` installed.
pub fn run_litert(
    source: &Path,
    input_shape: &[usize],
    int8_input: bool,
    rows: &[Vec<u8>],
) -> Result<RefOutputs> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let mut shape = vec![rows.len()];
    shape.extend_from_slice(input_shape);
    let x = if int8_input {
        let v: Vec<i8> = rows.iter().flatten().map(|&b| b as i8).collect();
        crate::npy::to_bytes_i8(&shape, &v)
    } else {
        let v: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.chunks_exact(4))
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        crate::npy::to_bytes_f32(&shape, &v)
    };
    let xin = dir.path().join("x.npy");
    std::fs::write(&xin, x).context("writing the reference input")?;
    let python = std::env::var_os("KILN_PYTHON").unwrap_or_else(|| "python3".into());
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(LITERT_RUNNER)
        .arg(source)
        .arg(&xin)
        .arg(dir.path())
        .output()
        .with_context(|| format!("starting {}", python.to_string_lossy()))?;
    if out.status.code() == Some(3) {
        bail!(
            "verifying a .tflite file needs LiteRT's interpreter: `pip install ai-edge-litert` \
             (or set KILN_PYTHON to a Python that has it; {} says: {})",
            python.to_string_lossy(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if !out.status.success() {
        bail!(
            "LiteRT failed on {}: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let names: Vec<String> = std::fs::read_to_string(dir.path().join("names.txt"))
        .context("reading LiteRT's output names")?
        .lines()
        .map(String::from)
        .collect();
    let mut outputs = Vec::new();
    let mut int8 = Vec::new();
    for k in 0..names.len() {
        let a = crate::npy::read(&dir.path().join(format!("out{k}.npy")))?;
        let per = a.data.len() / rows.len().max(1);
        int8.push(a.kind == crate::npy::NpyKind::Int8);
        outputs.push(a.data.chunks(per.max(1)).map(<[f32]>::to_vec).collect());
    }
    let engine = std::fs::read_to_string(dir.path().join("engine.txt"))
        .context("reading which LiteRT kernels ran")?;
    Ok(RefOutputs {
        names,
        outputs,
        int8,
        engine,
    })
}

/// One output of one kiln run: real values (int8 dequantized with the output's scale and zero
/// point) and, for an int8 output, its raw values.
#[derive(Clone, Debug, PartialEq)]
pub struct OutVals {
    /// Real values.
    pub real: Vec<f32>,
    /// Raw int8 values, for an int8 output.
    pub int8: Option<Vec<i8>>,
}

/// Copies row `i` (bytes in the input's dtype) into input 0 of `s`, refusing a wrong length.
pub fn set_row(s: &mut Session<'_, '_>, i: usize, row: &[u8]) -> Result<()> {
    let dst = s.input_bytes_mut(0)?;
    if dst.len() != row.len() {
        bail!(
            "input #{i}: {} bytes, the model's input takes {}",
            row.len(),
            dst.len()
        );
    }
    dst.copy_from_slice(row);
    Ok(())
}

/// Runs a single-input model on rows already in its input's dtype (see
/// [`crate::input::load_inputs`]); returns `[sample][output]`.
pub fn run_rows(m: &Model<'_>, rows: &[Vec<u8>]) -> Result<Vec<Vec<OutVals>>> {
    if m.num_inputs() != 1 {
        bail!(
            "the model has {} inputs; this command feeds one",
            m.num_inputs()
        );
    }
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let mut s = Session::new(m, arena.as_mut_slice())?;
    let mut all = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        set_row(&mut s, i, row)?;
        s.invoke().with_context(|| format!("input #{i}"))?;
        let mut outs = Vec::with_capacity(m.num_outputs());
        for k in 0..m.num_outputs() {
            let t = m.tensor(m.output_tensor(k)?);
            let int8 = (t.dtype == kiln_runtime::DType::I8).then(|| {
                s.output_bytes(k)
                    .map(|b| b.iter().map(|&v| v as i8).collect::<Vec<i8>>())
            });
            outs.push(OutVals {
                real: get_output(&s, k)?,
                int8: int8.transpose()?,
            });
        }
        all.push(outs);
    }
    Ok(all)
}
