//! `kiln verify`: kiln against a reference engine that reads the source file correctly.

use super::common::{load_model_bytes, note, open_model, single_input, ImageArgs};
use super::run::load_all;
use anyhow::{bail, Result};
use kiln_converter::input::{self, Batch, InputSpec};
use kiln_converter::verify::{self, OutVals};
use kiln_converter::{detect_format, fsutil, SourceFormat};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::DType;
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `kiln verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Source model (.onnx or .tflite).
    source: PathBuf,
    /// The converted model (default: convert the source now).
    #[arg(long)]
    kiln: Option<PathBuf>,
    /// Inputs (.npy batch or images); default: random inputs in [-1, 1].
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Number of random inputs.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    samples: u64,
    /// Float outputs: fail (exit 1) if any output's max relative error exceeds this.
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f32,
    /// int8 outputs: fail (exit 1) if any value differs by more than this many steps (LSBs).
    #[arg(long, default_value_t = 0)]
    max_lsb: u32,
    #[command(flatten)]
    image: ImageArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// How one output compares.
#[derive(Serialize)]
struct Row {
    name: String,
    /// "int8" (compared in LSBs) or "f32" (relative error).
    kind: &'static str,
    /// Float outputs: largest absolute and relative difference.
    max_abs: Option<f32>,
    max_rel: Option<f32>,
    /// int8 outputs: largest difference in quantization steps.
    max_lsb: Option<u32>,
    non_finite: usize,
    top1_agree: usize,
    samples: usize,
    ok: bool,
}

/// Random inputs in [-1, 1] encoded for the model input (quantized for an int8 input).
fn random_batch(spec: &InputSpec, n: usize) -> Result<Batch> {
    let values = verify::random_inputs(std::slice::from_ref(&spec.shape), n, 0x1234_5678)
        .into_iter()
        .map(|mut v| v.remove(0))
        .collect();
    input::encode_float(spec, values)
}

/// Compares kiln's output `k` over all samples with the reference's: in LSBs when both are
/// int8, by relative error otherwise.
fn compare(
    name: &str,
    got: &[&OutVals],
    want: &[&Vec<f32>],
    ref_int8: bool,
    a: &VerifyArgs,
) -> Result<Row> {
    let int8 = ref_int8 && got.iter().all(|g| g.int8.is_some());
    let mut e = verify::OutputError::new(name);
    for (g, w) in got.iter().zip(want) {
        match &g.int8 {
            // int8 against int8: the differences are whole quantization steps.
            Some(q) if int8 => e.add(&q.iter().map(|&v| v as f32).collect::<Vec<_>>(), w)?,
            _ => e.add(&g.real, w)?,
        }
    }
    let (max_abs, max_rel, max_lsb) = if int8 {
        (None, None, Some(e.max_abs as u32))
    } else {
        (Some(e.max_abs), Some(e.max_rel), None)
    };
    Ok(Row {
        name: name.to_string(),
        kind: if int8 { "int8" } else { "f32" },
        ok: match max_lsb {
            Some(l) => e.non_finite == 0 && l <= a.max_lsb,
            None => e.ok(a.tolerance),
        },
        max_abs,
        max_rel,
        max_lsb,
        non_finite: e.non_finite,
        top1_agree: e.top1_agree,
        samples: e.samples,
    })
}

/// Runs both engines on the same inputs and reports per output.
pub fn run(a: VerifyArgs) -> Result<()> {
    let buf = match &a.kiln {
        Some(p) => load_model_bytes(p)?,
        None => AlignedBuf::new(&kiln_converter::convert_file(&a.source)?),
    };
    let kiln_path = a.kiln.clone().unwrap_or_else(|| a.source.clone());
    let m = open_model(&buf, &kiln_path)?;
    let spec = single_input(&m, &kiln_path, "kiln verify")?;
    let batch = match &a.input {
        Some(p) => load_all(std::slice::from_ref(p), &spec, &a.image)?,
        None => random_batch(&spec, a.samples as usize)?,
    };
    if batch.rows.is_empty() {
        bail!("no inputs to compare");
    }
    let source_bytes = fsutil::read_file(&a.source)?;
    let (reference, ref_names, ref_outs, ref_int8) = match detect_format(&a.source, &source_bytes)?
    {
        SourceFormat::Onnx => {
            let samples: Vec<Vec<Vec<f32>>> =
                batch.values.iter().map(|v| vec![v.clone()]).collect();
            let outs = verify::run_tract(&a.source, std::slice::from_ref(&spec.shape), &samples)?;
            let n_out = outs.first().map_or(0, Vec::len);
            let per_output: Vec<Vec<Vec<f32>>> = (0..n_out)
                .map(|k| outs.iter().map(|o| o[k].clone()).collect())
                .collect();
            (
                "tract 0.23.9 (reads the ONNX file)".to_string(),
                vec![],
                per_output,
                vec![false; n_out],
            )
        }
        SourceFormat::Tflite => {
            let r =
                verify::run_litert(&a.source, &spec.shape, spec.dtype == DType::I8, &batch.rows)?;
            (r.engine, r.names, r.outputs, r.int8)
        }
    };
    let kiln_outs = verify::run_rows(&m, &batch.rows)?;
    let names: Vec<String> = (0..m.num_outputs())
        .map(|k| m.tensor(m.output_tensor(k).unwrap_or(0)).name().to_string())
        .collect();
    if ref_outs.len() != names.len() {
        bail!(
            "kiln's model has {} outputs, the reference {}",
            names.len(),
            ref_outs.len()
        );
    }
    let mut rows = Vec::new();
    for (k, name) in names.iter().enumerate() {
        // The reference's output of the same name, else the one at the same position.
        let r = ref_names.iter().position(|n| n == name).unwrap_or(k);
        let got: Vec<&OutVals> = kiln_outs.iter().map(|o| &o[k]).collect();
        let want: Vec<&Vec<f32>> = ref_outs[r].iter().collect();
        rows.push(compare(name, &got, &want, ref_int8[r], &a)?);
    }
    let ok = rows.iter().all(|r| r.ok);
    if a.json {
        outln!(
            "{}",
            json!({"reference": reference, "samples": batch.rows.len(), "outputs": rows,
                "tolerance": a.tolerance, "max_lsb": a.max_lsb, "ok": ok})
        );
    } else {
        outln!(
            "{} input(s) through kiln and {reference}:",
            batch.rows.len()
        );
        for r in &rows {
            let detail = match (r.max_lsb, r.max_abs, r.max_rel) {
                (Some(l), _, _) => format!("max diff {l} LSB"),
                (None, Some(abs), Some(rel)) => format!("max abs {abs:.3e}  max rel {rel:.3e}"),
                _ => String::new(),
            };
            outln!(
                "  {:<30} {:<5} {detail}  top-1 agrees {}/{}{}",
                r.name,
                r.kind,
                r.top1_agree,
                r.samples,
                if r.non_finite > 0 {
                    format!("  {} NaN/infinite value(s)", r.non_finite)
                } else {
                    String::new()
                }
            );
        }
        if !ok {
            note(&format!(
                "bounds: float outputs max rel {:e} (--tolerance), int8 outputs {} LSB (--max-lsb); NaN or infinite values always fail",
                a.tolerance, a.max_lsb
            ));
            let dynamic = kiln_converter::import_file(&a.source).is_ok_and(|g| {
                g.source_weights == kiln_converter::ir::SourceWeights::Int8DynamicRange
            });
            if dynamic {
                note(
                    "this is a dynamic-range model: LiteRT's hybrid kernels quantize the \
                     activations to int8 on the fly, kiln computes in float with the weights \
                     dequantized exactly, so the two differ by about the activations' \
                     quantization step (compare at --tolerance 1e-2)",
                );
            }
        }
        outln!("{}", if ok { "OK" } else { "MISMATCH" });
    }
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
