//! `kiln eval`: accuracy and per-class metrics on a labelled data set, or the reconstruction
//! error of autoencoders, models side by side.

use super::common::{load_model_bytes, open_model, single_input, ImageArgs};
use super::run::load_all;
use anyhow::{bail, Result};
use kiln_converter::{eval, fsutil, npy, verify};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `kiln eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// The .kiln models (classifiers: output 0 holds one score per class), side by side.
    #[arg(num_args = 1.., required = true)]
    models: Vec<PathBuf>,
    /// Inputs as one .npy batch [N, ...] (float, or int8 for an int8 input).
    #[arg(short, long)]
    input: PathBuf,
    /// Labels as .npy [N] (integer class indices).
    #[arg(short, long, required_unless_present = "reconstruction")]
    labels: Option<PathBuf>,
    /// Measure reconstruction error instead of accuracy (autoencoders such as MLPerf Tiny's
    /// anomaly detector): per input, the mean squared difference between output 0 and the
    /// float input as given.
    #[arg(long, conflicts_with_all = ["labels", "names"])]
    reconstruction: bool,
    /// Class names, one per line.
    #[arg(long)]
    names: Option<PathBuf>,
    #[command(flatten)]
    image: ImageArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

struct EvalResult {
    metrics: eval::Metrics,
    predictions: Vec<usize>,
    seconds: f64,
    bytes: usize,
    arena: usize,
}

/// Reads class labels: whole numbers, one per sample.
pub fn read_labels(path: &Path) -> Result<Vec<usize>> {
    let a = npy::read(path)?;
    a.data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 && v.fract() == 0.0 && v < u32::MAX as f32 {
                Ok(v as usize)
            } else {
                bail!(
                    "{}: label #{i} is {v}, not a class index (a whole number from 0)",
                    path.display()
                )
            }
        })
        .collect()
}

fn eval_one(a: &EvalArgs, labels: &Path, model: &Path, truth: &[usize]) -> Result<EvalResult> {
    let buf = load_model_bytes(model)?;
    let m = open_model(&buf, model)?;
    let spec = single_input(&m, model, "kiln eval")?;
    let batch = load_all(std::slice::from_ref(&a.input), &spec, &a.image)?;
    if truth.len() != batch.rows.len() {
        bail!(
            "{} holds {} inputs but {} holds {} labels",
            a.input.display(),
            batch.rows.len(),
            labels.display(),
            truth.len()
        );
    }
    let t0 = Instant::now();
    let outs = verify::run_rows(&m, &batch.rows)?;
    let seconds = t0.elapsed().as_secs_f64();
    let classes = outs.first().map_or(0, |o| o[0].real.len());
    if let Some((i, &l)) = truth.iter().enumerate().find(|(_, &l)| l >= classes) {
        bail!(
            "{}: label #{i} is {l} but {} has {classes} classes (0..{})",
            labels.display(),
            model.display(),
            classes.saturating_sub(1)
        );
    }
    let predictions: Vec<usize> = outs.iter().map(|o| eval::argmax(&o[0].real)).collect();
    Ok(EvalResult {
        metrics: eval::metrics(&predictions, truth, classes),
        predictions,
        seconds,
        bytes: buf.as_slice().len(),
        arena: m.arena_size(),
    })
}

/// Width of the model-name column: the longest name, at least `min`.
fn name_width(models: &[PathBuf], min: usize) -> usize {
    models
        .iter()
        .map(|p| p.display().to_string().len())
        .max()
        .unwrap_or(0)
        .max(min)
}

/// Evaluates every model on the same data and prints the metrics.
pub fn run(a: EvalArgs) -> Result<()> {
    let Some(labels) = a.labels.clone() else {
        return run_reconstruction(&a);
    };
    let truth = read_labels(&labels)?;
    if truth.is_empty() {
        bail!("{}: no labels", labels.display());
    }
    let mut results = Vec::new();
    for model in &a.models {
        results.push(eval_one(&a, &labels, model, &truth)?);
    }
    let names: Vec<String> = match &a.names {
        Some(p) => fsutil::read_text(p)?.lines().map(String::from).collect(),
        None => vec![],
    };
    if a.json {
        let v: Vec<_> = a
            .models
            .iter()
            .zip(&results)
            .map(|(p, r)| json!({"model": p, "metrics": r.metrics, "seconds": r.seconds, "model_bytes": r.bytes, "arena_bytes": r.arena}))
            .collect();
        outln!("{}", if v.len() == 1 { v[0].clone() } else { json!(v) });
        return Ok(());
    }
    if results.len() == 1 {
        let r = &results[0];
        outln!("{}", eval::render(&r.metrics, &names).trim_end());
        outln!(
            "{:.1} us per inference",
            r.seconds * 1e6 / r.metrics.samples.max(1) as f64
        );
        return Ok(());
    }
    let w = name_width(&a.models, 40);
    outln!(
        "{:<w$} {:>9} {:>12} {:>12} {:>14}",
        "model",
        "accuracy",
        "file bytes",
        "arena bytes",
        "us/inference"
    );
    for (p, r) in a.models.iter().zip(&results) {
        outln!(
            "{:<w$} {:>8.2}% {:>12} {:>12} {:>14.1}",
            p.display().to_string(),
            r.metrics.accuracy * 100.0,
            r.bytes,
            r.arena,
            r.seconds * 1e6 / r.metrics.samples.max(1) as f64
        );
    }
    let base = &results[0];
    for (p, r) in a.models.iter().zip(&results).skip(1) {
        let agree = r
            .predictions
            .iter()
            .zip(&base.predictions)
            .filter(|(x, y)| x == y)
            .count();
        outln!(
            "{}: {:+.2} accuracy points vs {}; top-1 agrees on {agree}/{}",
            p.display(),
            (r.metrics.accuracy - base.metrics.accuracy) * 100.0,
            a.models[0].display(),
            r.predictions.len()
        );
    }
    Ok(())
}

/// Reconstruction error of one model: the per-input report, seconds, file and arena bytes.
fn reconstruction_one(
    a: &EvalArgs,
    model: &Path,
) -> Result<(eval::Reconstruction, f64, usize, usize)> {
    let buf = load_model_bytes(model)?;
    let m = open_model(&buf, model)?;
    let spec = single_input(&m, model, "kiln eval --reconstruction")?;
    if a.input.extension().is_some_and(|e| e == "npy") {
        let arr = npy::read(&a.input)?;
        if arr.kind != npy::NpyKind::Float {
            bail!(
                "{}: reconstruction error is measured against float inputs; this array is {}",
                a.input.display(),
                arr.dtype
            );
        }
    }
    if a.image.layout != kiln_converter::input::Layout::AsModel {
        bail!(
            "--layout: reconstruction error compares outputs with inputs in the model's own layout"
        );
    }
    // The reference: the float values as given (an int8 model sees them quantized, and that
    // error is part of its cost).
    let reference = kiln_converter::input::load_batch(&a.input, &spec.shape, &a.image.opts()?)?;
    let batch = load_all(std::slice::from_ref(&a.input), &spec, &a.image)?;
    let t0 = Instant::now();
    let outs = verify::run_rows(&m, &batch.rows)?;
    let seconds = t0.elapsed().as_secs_f64();
    let ys: Vec<Vec<f32>> = outs
        .into_iter()
        .map(|mut o| o.swap_remove(0).real)
        .collect();
    let r = eval::reconstruction(&ys, &reference)
        .map_err(|e| anyhow::anyhow!("{} on {}: {e}", model.display(), a.input.display()))?;
    Ok((r, seconds, buf.as_slice().len(), m.arena_size()))
}

/// `kiln eval --reconstruction`: every model's reconstruction error on the same inputs.
fn run_reconstruction(a: &EvalArgs) -> Result<()> {
    let mut results = Vec::new();
    for model in &a.models {
        results.push(reconstruction_one(a, model)?);
    }
    if a.json {
        let v: Vec<_> = a
            .models
            .iter()
            .zip(&results)
            .map(|(p, (r, s, b, ar))| {
                json!({"model": p, "reconstruction": r, "seconds": s, "model_bytes": b, "arena_bytes": ar})
            })
            .collect();
        outln!("{}", if v.len() == 1 { v[0].clone() } else { json!(v) });
        return Ok(());
    }
    let w = name_width(&a.models, 30);
    outln!(
        "reconstruction error (mean squared error of output vs input) on {} inputs of {}",
        results[0].0.samples,
        a.input.display()
    );
    outln!(
        "{:<w$} {:>12} {:>12} {:>12} {:>9} {:>12} {:>12} {:>14}",
        "model",
        "MSE",
        "median",
        "p90",
        "vs first",
        "file bytes",
        "arena bytes",
        "us/inference"
    );
    let base = results[0].0.mse;
    for (p, (r, s, b, ar)) in a.models.iter().zip(&results) {
        let ratio = if base > 0.0 {
            format!("{:.3}x", r.mse / base)
        } else {
            "-".into()
        };
        outln!(
            "{:<w$} {:>12.6} {:>12.6} {:>12.6} {:>9} {:>12} {:>12} {:>14.1}",
            p.display().to_string(),
            r.mse,
            r.p50,
            r.p90,
            ratio,
            b,
            ar,
            s * 1e6 / r.samples.max(1) as f64
        );
    }
    Ok(())
}
