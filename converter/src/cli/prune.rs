//! `kiln prune`: structured pruning with least-squares channel reconstruction.

use super::common::ImageArgs;
use anyhow::{bail, Result};
use kiln_converter::prune::{prune, Criterion, PruneOptions};
use kiln_converter::{emit, fsutil, inspect};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::Model;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `kiln prune`.
#[derive(clap::Args)]
pub struct PruneArgs {
    /// Float model (.onnx, .tflite, or a float .kiln).
    model: PathBuf,
    /// Fraction of the conv and dense weights to remove, in [0, 1), as whole channels.
    #[arg(long, required_unless_present = "sweep")]
    sparsity: Option<f32>,
    /// Prune to each of these sparsities (comma-separated), quantize each, and print and plot
    /// (PNG, at -o) quality, file size, MACs and latency against sparsity, float and int8.
    /// Needs --calib; no model is written.
    #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "sparsity")]
    sweep: Vec<f32>,
    /// Inputs the sweep measures quality on (default: the calibration inputs, in-sample).
    #[arg(long)]
    eval_input: Option<PathBuf>,
    /// Labels of --eval-input (.npy class indices): the sweep reports accuracy. Without them
    /// it reports top-1 agreement with the unpruned model, or for an autoencoder (output the
    /// shape of its input) the reconstruction error.
    #[arg(long, requires = "eval_input")]
    labels: Option<PathBuf>,
    /// Timed runs per model in a sweep.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Calibration inputs for the least-squares refit of each pruned layer's readers (.npy
    /// batches, raw f32 files, images or directories of them); without them channels are only
    /// removed.
    #[arg(long, num_args = 1..)]
    calib: Vec<PathBuf>,
    /// Channel ranking: l1 or l2 norm of each filter.
    #[arg(long, default_value = "l1")]
    criterion: String,
    /// Remove single weights instead of channels: the smallest magnitudes of every conv and
    /// dense layer, the rest refit by least squares (with --calib). The float file keeps its
    /// size; `kiln quantize` then stores the mostly-zero int8 layers sparse.
    #[arg(long, conflicts_with_all = ["channel_multiple", "layer"])]
    unstructured: bool,
    /// Choose each layer's share by sensitivity: every prunable group is pruned alone at 25,
    /// 50 and 75% of its channels (refit included) and the model's output error on the
    /// calibration inputs measured; the channels then go where the error grows least per
    /// weight removed. Needs --calib; --layer pins a layer's fraction.
    #[arg(long, conflicts_with = "unstructured")]
    sensitivity: bool,
    /// Remove channels without refitting the next layers.
    #[arg(long)]
    no_reconstruct: bool,
    /// Keep a multiple of this many channels in every pruned layer (16 matches the x86
    /// kernels' tiles, so that latency falls with the MACs; layers of at most this many
    /// channels are left whole).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    channel_multiple: u64,
    /// A fixed fraction of one layer's channels to remove, NAME=FRACTION (repeatable; the name
    /// as `kiln inspect` shows it). The other layers share what is left of --sparsity.
    #[arg(long = "layer", value_name = "NAME=FRACTION")]
    layer: Vec<String>,
    /// Use at most this many calibration samples.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    max_samples: u64,
    /// Output file (default: the model's name with _pruned.kiln; with --sweep, the chart, the
    /// model's name with _sweep.png).
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    image: ImageArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Prunes, writes the model and prints what changed.
pub fn run(a: PruneArgs) -> Result<()> {
    let criterion = match a.criterion.as_str() {
        "l1" => Criterion::L1,
        "l2" => Criterion::L2,
        other => bail!("unknown --criterion '{other}' (l1, l2)"),
    };
    let suffix = if a.sweep.is_empty() {
        "_pruned.kiln"
    } else {
        "_sweep.png"
    };
    let out = super::common::output_beside(&a.model, a.output.clone(), suffix)?;
    let g = super::common::load_float_graph(&a.model, None)?;
    let samples: Vec<Vec<Vec<f32>>> = if a.calib.is_empty() {
        Vec::new()
    } else {
        if g.inputs.len() != 1 {
            bail!(
                "calibration feeds one input; this model has {}",
                g.inputs.len()
            );
        }
        let shape = g.tensors[g.inputs[0]].shape.clone();
        let rows = super::common::load_samples(
            &a.calib,
            &shape,
            &a.image.opts()?,
            a.max_samples as usize,
        )?;
        if rows.is_empty() {
            bail!("no calibration samples in {:?}", a.calib);
        }
        rows.into_iter().map(|r| vec![r]).collect()
    };
    let reconstruct = !a.no_reconstruct && !samples.is_empty();
    let layers = a
        .layer
        .iter()
        .map(|spec| {
            let (name, f) = spec.rsplit_once('=').ok_or_else(|| {
                anyhow::anyhow!("--layer {spec}: expected NAME=FRACTION (e.g. conv1=0.25)")
            })?;
            let f: f32 = f
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--layer {spec}: '{f}' is not a number"))?;
            Ok((name.to_string(), f))
        })
        .collect::<Result<Vec<_>>>()?;
    let opts = PruneOptions {
        sparsity: a.sparsity.unwrap_or(0.0),
        criterion,
        reconstruct,
        multiple: a.channel_multiple as usize,
        layers,
        unstructured: a.unstructured,
        sensitivity: a.sensitivity,
    };
    if !a.sweep.is_empty() {
        return run_sweep(&a, &g, &samples, &opts, &out);
    }
    let r = prune(&g, &samples, &opts)?;
    let (before, _) = emit::emit(&g)?;
    let (bytes, plan) = emit::emit(&r.graph)?;
    fsutil::write_atomic(&out, &bytes)?;
    let macs = |b: &[u8]| -> Result<u64> {
        let buf = AlignedBuf::new(b);
        Ok(inspect::report(&Model::from_bytes(buf.as_slice())?).macs)
    };
    let (m0, m1) = (macs(&before)?, macs(&bytes)?);
    if a.json {
        outln!(
            "{}",
            json!({"output": out, "sparsity": a.sparsity, "weights_before": r.weights.0,
                "weights_after": r.weights.1, "bytes_before": before.len(), "bytes_after": bytes.len(),
                "macs_before": m0, "macs_after": m1, "arena_bytes": plan.arena_size,
                "reconstructed": reconstruct, "groups": r.groups})
        );
        return Ok(());
    }
    outln!(
        "{:<40} {:>10} {:>16} {:>16}",
        "layer",
        if a.unstructured {
            "weights"
        } else {
            "channels"
        },
        "error removed",
        "error refit"
    );
    let e = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{:.2}%", 100.0 * v)
        }
    };
    for gr in &r.groups {
        outln!(
            "{:<40} {:>10} {:>16} {:>16}",
            gr.layer,
            format!("{} -> {}", gr.channels.0, gr.channels.1),
            e(gr.error_removed),
            format!(
                "{}{}",
                e(gr.error_refit),
                if gr.underdetermined { "*" } else { "" }
            )
        );
    }
    if r.groups.iter().any(|g| g.underdetermined) {
        super::common::note(
            "some refits had fewer calibration rows than unknowns (marked *): they stay close \
             to the old weights, and their error on the calibration samples says little about \
             other inputs; pass more samples",
        );
    }
    let int8 = g
        .tensors
        .iter()
        .any(|t| t.data.is_none() && t.dtype == kiln_runtime::DType::I8);
    if int8 {
        super::common::note(
            "int8 model: the weights removed are set to zero on their quantization grid, the \
             rest keep their values (nothing is refit; prune the float model for that)",
        );
    } else if !reconstruct {
        super::common::note(if a.calib.is_empty() {
            "no --calib: channels were removed without refitting the next layers (pass \
             calibration inputs for the least-squares reconstruction)"
        } else {
            "--no-reconstruct: channels were removed without refitting the next layers"
        });
    }
    outln!(
        "pruned {} -> {}: weights {} -> {} ({:.1}% removed), file {} -> {} bytes ({:.1}%), \
         {} -> {} MACs ({:.1}%), arena {} bytes",
        a.model.display(),
        out.display(),
        r.weights.0,
        r.weights.1,
        100.0 * (1.0 - r.weights.1 as f64 / r.weights.0.max(1) as f64),
        before.len(),
        bytes.len(),
        100.0 * bytes.len() as f64 / before.len().max(1) as f64,
        m0,
        m1,
        100.0 * m1 as f64 / m0.max(1) as f64,
        plan.arena_size
    );
    Ok(())
}

/// `kiln prune --sweep`: every sparsity pruned, quantized and measured; a table and a chart.
fn run_sweep(
    a: &PruneArgs,
    g: &kiln_converter::ir::Graph,
    calib: &[Vec<Vec<f32>>],
    opts: &PruneOptions,
    out: &std::path::Path,
) -> Result<()> {
    use kiln_converter::prune_sweep::{plot, sweep, table, SweepData};
    if calib.is_empty() {
        bail!("--sweep needs --calib: the samples calibrate the int8 models and measure quality");
    }
    let eval: Vec<Vec<Vec<f32>>> = match &a.eval_input {
        Some(p) => {
            let shape = g.tensors[g.inputs[0]].shape.clone();
            let rows = super::common::load_samples(
                std::slice::from_ref(p),
                &shape,
                &a.image.opts()?,
                usize::MAX,
            )?;
            if rows.is_empty() {
                bail!("{}: no inputs", p.display());
            }
            rows.into_iter().map(|r| vec![r]).collect()
        }
        None => calib.to_vec(),
    };
    let labels = match &a.labels {
        Some(p) => Some(super::eval::read_labels(p)?),
        None => None,
    };
    let data = SweepData {
        calib,
        eval: &eval,
        labels: labels.as_deref(),
        iterations: a.iterations as usize,
    };
    let ptq = kiln_converter::ptq::PtqOptions {
        method: kiln_quantize::calibrate::Method::MinMax,
        int8_io: false,
    };
    let mut bar = super::common::progress_bar();
    let (q, points) = sweep(g, &a.sweep, opts, &ptq, &data, &mut |done, total| {
        bar("sweep", done, total)
    })?;
    let title = format!(
        "kiln prune --sweep: {}",
        a.model
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    );
    let png = plot(&title, q, &points, 1200, 900)?;
    fsutil::write_atomic(out, &png)?;
    if a.json {
        outln!(
            "{}",
            json!({"model": a.model, "quality": q.name(), "in_sample": a.eval_input.is_none(),
                "chart": out, "points": points})
        );
        return Ok(());
    }
    outln!("{}", table(q, &points).trim_end());
    if a.eval_input.is_none() {
        super::common::note(
            "quality measured on the calibration inputs (in-sample): pass --eval-input (and \
             --labels) for held-out figures",
        );
    }
    outln!(
        "sweep of {}: {} points, float and int8 (minmax PTQ on the same calibration inputs), \
         1 thread; chart {}",
        a.model.display(),
        points.len(),
        out.display()
    );
    Ok(())
}
