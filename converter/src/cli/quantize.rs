//! `kiln quantize`: post-training int8 quantization.

use super::common::{progress_bar, ImageArgs};
use anyhow::{anyhow, bail, Result};
use kiln_converter::{emit, fsutil};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `kiln quantize`.
#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// Float model (.onnx, .tflite, or a float .kiln such as a pruned one).
    model: PathBuf,
    /// Calibration inputs: .npy batches, raw f32 files, images or directories of them
    /// (repeatable).
    #[arg(long, num_args = 1.., required = true)]
    calib: Vec<PathBuf>,
    /// Output file (default: the model's name with _int8.kiln).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Range method: minmax, percentile[:P], entropy, mse.
    #[arg(long, default_value = "minmax")]
    method: String,
    /// Use at most this many calibration samples.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    max_samples: u64,
    /// Make the model's inputs and outputs int8 (the caller quantizes).
    #[arg(long)]
    int8_io: bool,
    /// Sparse weight storage: `auto` stores an int8 conv or dense layer as its non-zero
    /// entries where that is smaller (a pruned model's), `off` keeps every layer dense.
    #[arg(long, default_value = "auto", value_parser = ["auto", "off"])]
    sparse: String,
    /// Concrete input shape (ONNX; repeat per input).
    #[arg(long = "input-shape", value_parser = super::common::parse_shape)]
    input_shape: Vec<Vec<usize>>,
    #[command(flatten)]
    image: ImageArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The last `n` characters of `s`, with a leading ellipsis when cut (never splits a character).
fn tail_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        return s.to_string();
    }
    let tail: String = s.chars().skip(count - (n - 1)).collect();
    format!("…{tail}")
}

/// Quantizes, writes the int8 model and prints the per-layer report.
pub fn run(a: QuantizeArgs) -> Result<()> {
    let method = kiln_quantize::calibrate::Method::parse(&a.method).ok_or_else(|| {
        anyhow!(
            "unknown --method '{}' (minmax, percentile[:P], entropy, mse)",
            a.method
        )
    })?;
    let out = super::common::output_beside(&a.model, a.output.clone(), "_int8.kiln")?;
    let shapes = (!a.input_shape.is_empty()).then_some(a.input_shape.as_slice());
    let g = super::common::load_float_graph(&a.model, shapes)?;
    if g.inputs.len() != 1 {
        bail!(
            "calibration feeds one input; this model has {}",
            g.inputs.len()
        );
    }
    let in_shape = g.tensors[g.inputs[0]].shape.clone();
    let opts = a.image.opts()?;
    let rows = super::common::load_samples(&a.calib, &in_shape, &opts, a.max_samples as usize)?;
    if rows.is_empty() {
        bail!("no calibration samples in {:?}", a.calib);
    }
    if rows.iter().flatten().all(|&v| v == 0.0) {
        bail!(
            "the calibration set {:?} is all zeros: activation ranges cannot be measured from it",
            a.calib
        );
    }
    let (lo, hi) = rows
        .iter()
        .flatten()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    if !(hi - lo).is_finite() || hi.abs().max(lo.abs()) > 1e18 {
        bail!(
            "calibration values span [{lo:e}, {hi:e}]: too large for int8 ranges to be \
             computed in f32 (normalize the data the way the model was trained)"
        );
    }
    let samples: Vec<Vec<Vec<f32>>> = rows.into_iter().map(|r| vec![r]).collect();
    let (float_bytes, _) = emit::emit(&g)?;
    let mut bar = progress_bar();
    let t0 = Instant::now();
    let res = kiln_converter::ptq::quantize(
        &g,
        &samples,
        &kiln_converter::ptq::PtqOptions {
            method,
            int8_io: a.int8_io,
        },
        &mut bar,
    )?;
    let mut int8 = res.graph.clone();
    int8.sparse_weights = a.sparse == "auto";
    let (bytes, plan) = emit::emit(&int8)?;
    // The same model with every layer dense, for the report.
    let sparse_layers = count_sparse(&bytes)?;
    let (dense_len, latency) = if sparse_layers > 0 {
        int8.sparse_weights = false;
        let dense = emit::emit(&int8)?.0;
        // Latency both ways, on this machine, 1 thread (sparse storage saves bytes; on a host
        // with SIMD the dense kernels are faster).
        let time = |b: &[u8]| -> Result<f64> {
            let r = kiln_converter::bench::bench_kiln(
                b,
                None,
                5,
                50,
                kiln_runtime::Kernels::Optimized,
                1,
                None,
            )?;
            Ok(r.median_us)
        };
        let latency = (time(&bytes)?, time(&dense)?);
        (dense.len(), Some(latency))
    } else {
        (bytes.len(), None)
    };
    fsutil::write_atomic(&out, &bytes)?;
    let float_ops = res.layers.iter().filter(|l| !l.int8).count();
    if a.json {
        outln!(
            "{}",
            json!({"output": out, "method": a.method, "samples": samples.len(), "float_bytes": float_bytes.len(),
                "int8_bytes": bytes.len(), "sparse_layers": sparse_layers, "int8_dense_bytes": dense_len,
                "latency_us_sparse_dense": latency, "arena_bytes": plan.arena_size, "float_ops": float_ops,
                "layers": res.layers, "seconds": t0.elapsed().as_secs_f64()})
        );
        return Ok(());
    }
    outln!(
        "{:>3}  {:<10} {:<40} {:>6} {:>10}",
        "#",
        "op",
        "name",
        "dtype",
        "SQNR dB"
    );
    for (i, l) in res.layers.iter().enumerate() {
        let sq = if l.sqnr_db.is_nan() {
            "-".to_string()
        } else if l.sqnr_db.is_infinite() {
            "exact".to_string()
        } else {
            format!("{:.1}", l.sqnr_db)
        };
        outln!(
            "{i:>3}  {:<10} {:<40} {:>6} {:>10}",
            l.op,
            tail_chars(&l.name, 40),
            if l.int8 { "int8" } else { "f32" },
            sq
        );
    }
    // Every op left in float, with the reason, so a size or accuracy surprise has its cause.
    for l in res.layers.iter().filter(|l| !l.int8) {
        outln!(
            "kept in float: {} '{}': {}",
            l.op,
            l.name,
            l.why_float.as_deref().unwrap_or("no int8 kernel")
        );
    }
    if bytes.len() >= float_bytes.len() {
        let tables = res
            .graph
            .nodes
            .iter()
            .filter(|n| n.kind() == kiln_runtime::OpKind::Lut)
            .count();
        let why = if float_ops > 0 {
            format!(
                "the {float_ops} op(s) kept in float above keep float weights and add \
                 quantize/dequantize steps around them"
            )
        } else {
            format!(
                "every op is int8, but the model has so few weights that the per-op \
                 requantization data ({tables} element-wise table(s) of 256 bytes, per-channel \
                 multipliers and shifts) outweighs what int8 weights save"
            )
        };
        outln!(
            "warning: the int8 file ({} bytes) is not smaller than the float one ({} bytes): {why}",
            bytes.len(),
            float_bytes.len()
        );
    }
    if let Some((ts, td)) = latency {
        outln!(
            "sparse storage: {sparse_layers} layer(s) kept as their non-zero weights: {} bytes \
             instead of {dense_len} ({:.1}%); latency {ts:.1} µs sparse, {td:.1} µs dense \
             (median, 1 thread, this machine; --sparse off keeps every layer dense)",
            bytes.len(),
            100.0 * bytes.len() as f64 / dense_len as f64
        );
    }
    outln!(
        "quantized {} -> {}: {} calibration samples ({}), size {} -> {} bytes ({:.1}%), arena {} bytes, {} op(s) kept in float, {:.2}s",
        a.model.display(),
        out.display(),
        samples.len(),
        a.method,
        float_bytes.len(),
        bytes.len(),
        100.0 * bytes.len() as f64 / float_bytes.len() as f64,
        plan.arena_size,
        float_ops,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Conv and dense ops of a model file stored with sparse weights.
fn count_sparse(bytes: &[u8]) -> Result<usize> {
    use kiln_runtime::ops::OpParams;
    let buf = kiln_runtime::writer::AlignedBuf::new(bytes);
    let m = kiln_runtime::Model::from_bytes(buf.as_slice())?;
    let mut n = 0;
    for i in 0..m.num_ops() {
        let op = m.op(i);
        match kiln_runtime::ops::params_of(&m, &op).map_err(|e| anyhow!("{e}"))? {
            OpParams::Conv2d(p) if p.sparse => n += 1,
            OpParams::Dense(p) if p.sparse => n += 1,
            _ => {}
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tails_never_split_a_character() {
        let s = "é".repeat(50);
        let t = super::tail_chars(&s, 40);
        assert_eq!(t.chars().count(), 40);
        assert!(t.starts_with('…'));
        assert_eq!(super::tail_chars("abc", 40), "abc");
    }
}
