//! `kiln run`: top-k classes for inputs of any supported kind.

use super::common::{load_model_bytes, note, open_model, single_input, ImageArgs};
use anyhow::Result;
use kiln_converter::input::{self, Batch, InputSpec};
use kiln_converter::{fsutil, npy, verify};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `kiln run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The .kiln model.
    model: PathBuf,
    /// Inputs: .npy (one input or a batch [N, ...]; float, or int8 for an int8 input), raw f32
    /// .bin, or images.
    #[arg(short, long, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    #[command(flatten)]
    image: ImageArgs,
    /// How many classes to print per input.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    top_k: u64,
    /// A text file with one class name per line.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Write output 0 of every input to this .npy file, one row per input ([N, values]), in the
    /// output's dtype (int8 outputs stay int8).
    #[arg(long)]
    save: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Loads every input file for model input `spec`, printing the conversions made.
pub fn load_all(paths: &[PathBuf], spec: &InputSpec, image: &ImageArgs) -> Result<Batch> {
    let opts = image.opts()?;
    let mut batch = Batch::default();
    for p in paths {
        batch.extend(input::load_inputs(p, spec, &opts, image.layout)?);
    }
    for n in &batch.notes {
        note(n);
    }
    Ok(batch)
}

/// Runs the model on every input and prints the top-k classes.
pub fn run(a: RunArgs) -> Result<()> {
    let buf = load_model_bytes(&a.model)?;
    let m = open_model(&buf, &a.model)?;
    let spec = single_input(&m, &a.model, "kiln run")?;
    let batch = load_all(&a.input, &spec, &a.image)?;
    let names: Vec<String> = match &a.labels {
        Some(p) => fsutil::read_text(p)?
            .lines()
            .map(|s| s.trim().to_string())
            .collect(),
        None => vec![],
    };
    let ot = m.tensor(m.output_tensor(0)?);
    if ot.dtype == kiln_runtime::DType::I8 {
        if let kiln_runtime::Quant::PerTensor { scale, zero_point } = ot.quant {
            note(&format!(
                "output '{}' is int8: scores are dequantized with its scale {scale:e} and zero point {zero_point}",
                ot.name()
            ));
        }
    }
    let t0 = Instant::now();
    let outs = verify::run_rows(&m, &batch.rows)?;
    let secs = t0.elapsed().as_secs_f64();
    let mut results = Vec::new();
    for o in &outs {
        let y = &o[0].real;
        let mut idx: Vec<usize> = (0..y.len()).collect();
        idx.sort_by(|&i, &j| y[j].total_cmp(&y[i]));
        let top: Vec<(usize, f32)> = idx
            .iter()
            .take(a.top_k as usize)
            .map(|&k| (k, y[k]))
            .collect();
        results.push(top);
    }
    if let Some(p) = &a.save {
        // One row per input: [inputs, values of output 0].
        let shape = [outs.len(), ot.len()];
        let bytes = if ot.dtype == kiln_runtime::DType::I8 {
            let v: Vec<i8> = outs
                .iter()
                .flat_map(|o| o[0].int8.clone().unwrap_or_default())
                .collect();
            npy::to_bytes_i8(&shape, &v)
        } else {
            let v: Vec<f32> = outs.iter().flat_map(|o| o[0].real.clone()).collect();
            npy::to_bytes_f32(&shape, &v)
        };
        fsutil::write_atomic(p, &bytes)?;
    }
    let label = |k: usize| names.get(k).cloned().unwrap_or_else(|| k.to_string());
    if a.json {
        let v: Vec<_> = results
            .iter()
            .map(|t| {
                t.iter()
                    .map(|&(k, p)| json!({"class": k, "label": label(k), "score": p}))
                    .collect::<Vec<_>>()
            })
            .collect();
        outln!(
            "{}",
            json!({"results": v, "seconds": secs, "notes": batch.notes})
        );
    } else {
        for (i, t) in results.iter().enumerate() {
            let s: Vec<String> = t
                .iter()
                .map(|&(k, p)| format!("{} {:.4}", label(k), p))
                .collect();
            outln!("#{i}: {}", s.join(", "));
        }
        eprintln!(
            "{} inference(s) in {:.3} ms each",
            outs.len(),
            secs * 1e3 / outs.len().max(1) as f64
        );
    }
    Ok(())
}
