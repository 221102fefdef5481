//! `kiln bench`: latency of a model, whole and per layer, in-process (kiln), or of tract on the
//! source ONNX model (`--engine tract`), for side-by-side runs (`scripts/bench.sh`).

use super::common::{load_model_bytes, open_model, single_input, ImageArgs};
use super::run::load_all;
use anyhow::{bail, Result};
use kiln_converter::bench::{bench_kiln, bench_tract, BenchReport};
use kiln_runtime::kernels::isa::Isa;
use kiln_runtime::Kernels;
use std::path::PathBuf;

/// Arguments of `kiln bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// The .kiln model (or, with `--engine tract`, the .onnx model).
    model: PathBuf,
    /// One input (.npy, raw f32 or an image) fed to every run; default: deterministic
    /// pseudo-random values in [-1, 1) (quantized for an int8 input).
    #[arg(short, long)]
    input: Option<PathBuf>,
    #[command(flatten)]
    image: ImageArgs,
    /// Timed runs (the per-layer table takes as many again).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Untimed runs first.
    #[arg(long, default_value_t = 20)]
    warmup: u64,
    /// `kiln` (the .kiln file, in-process) or `tract` (the ONNX model, tract's optimized plan).
    #[arg(long, default_value = "kiln", value_parser = ["kiln", "tract"])]
    engine: String,
    /// Run the portable reference kernels instead of the optimized ones (kiln).
    #[arg(long)]
    reference: bool,
    /// Run the optimized kernels on this instruction set instead of the detected one (kiln:
    /// portable, avx2, avx512vnni, neon, neon-sdot; refused if this CPU lacks it).
    #[arg(long)]
    isa: Option<String>,
    /// Split each large conv layer over this many threads (kiln; same outputs as 1 thread).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
    /// Concrete shape of each input (tract; repeat per input).
    #[arg(long = "input-shape", value_parser = super::common::parse_shape)]
    input_shape: Vec<Vec<usize>>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark and prints the report.
pub fn run(a: BenchArgs) -> Result<()> {
    let (warmup, iterations) = (a.warmup as usize, a.iterations as usize);
    let r = if a.engine == "tract" {
        if a.input.is_some() {
            bail!("--engine tract feeds its own deterministic input; drop --input");
        }
        let shapes = (!a.input_shape.is_empty()).then_some(&a.input_shape[..]);
        bench_tract(&a.model, shapes, warmup, iterations)?
    } else {
        let buf = load_model_bytes(&a.model)?;
        let m = open_model(&buf, &a.model)?;
        let row = match &a.input {
            Some(p) => {
                let spec = single_input(&m, &a.model, "kiln bench --input")?;
                let batch = load_all(std::slice::from_ref(p), &spec, &a.image)?;
                if batch.rows.len() != 1 {
                    bail!(
                        "{}: holds {} inputs; `kiln bench` times one",
                        p.display(),
                        batch.rows.len()
                    );
                }
                Some(batch.rows.into_iter().next().unwrap_or_default())
            }
            None => None,
        };
        let kernels = if a.reference {
            Kernels::Reference
        } else {
            Kernels::Optimized
        };
        let isa = match a.isa.as_deref() {
            None => None,
            Some(name) => {
                let Some(isa) = Isa::from_name(name) else {
                    bail!("--isa {name}: not an instruction set kiln has kernels for (portable, avx2, avx512vnni, neon, neon-sdot)");
                };
                if !isa.supported() {
                    bail!(
                        "--isa {name}: this CPU cannot run it (its best path is {})",
                        Isa::detect().name()
                    );
                }
                Some(isa)
            }
        };
        bench_kiln(
            buf.as_slice(),
            row.as_deref(),
            warmup,
            iterations,
            kernels,
            a.threads as usize,
            isa,
        )?
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_report(&a.model, &r);
    }
    Ok(())
}

fn print_report(model: &std::path::Path, r: &BenchReport) {
    outln!(
        "{}: {} ({}{}), {} runs after {} warm-up, {} thread{}",
        model.display(),
        r.engine,
        if r.isa.is_empty() { "-" } else { &r.isa },
        if r.kernels.is_empty() {
            String::new()
        } else {
            format!(", {} kernels", r.kernels)
        },
        r.iterations,
        r.warmup,
        r.threads,
        if r.threads == 1 { "" } else { "s" }
    );
    outln!(
        "latency: median {:.1} µs (p10 {:.1}, p90 {:.1})",
        r.median_us,
        r.p10_us,
        r.p90_us
    );
    if !r.layers.is_empty() {
        outln!(
            "{:>4}  {:<10} {:<32} {:<16} {:>12} {:>10} {:>8} {:>6}",
            "#",
            "op",
            "name",
            "output",
            "MACs",
            "µs",
            "GMAC/s",
            "share"
        );
        for l in &r.layers {
            let name: String = if l.name.chars().count() > 32 {
                let tail: String = l.name.chars().rev().take(31).collect();
                format!("…{}", tail.chars().rev().collect::<String>())
            } else {
                l.name.clone()
            };
            let shape: Vec<String> = l.output.iter().map(|d| d.to_string()).collect();
            outln!(
                "{:>4}  {:<10} {:<32} {:<16} {:>12} {:>10.1} {:>8.2} {:>5.1}%",
                l.index,
                l.op,
                name,
                shape.join("x"),
                l.macs,
                l.median_us,
                l.gmacs,
                100.0 * l.share
            );
        }
        let gmacs = if r.median_us > 0.0 {
            r.macs as f64 / r.median_us / 1e3
        } else {
            0.0
        };
        outln!(
            "{} MACs per inference, {:.2} GMAC/s at the median; arena {} bytes",
            r.macs,
            gmacs,
            r.arena_bytes
        );
    }
    if let Some(kib) = r.peak_rss_kib {
        outln!("peak resident set of this process: {kib} KiB");
    }
}
