//! Timing: a `.kiln` model in-process (whole inferences and per layer), and tract on the source
//! ONNX model, for `kiln bench` and `scripts/bench.sh`. Benchmarks, not tests: the numbers are
//! only as good as the machine is quiet, so every figure is a median with its spread.

use crate::verify::{random_inputs, set_input};
use anyhow::{bail, Context, Result};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{Kernels, Model, Session};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// One layer's share of an inference.
#[derive(Clone, Debug, Serialize)]
pub struct LayerTime {
    /// Execution index.
    pub index: usize,
    /// Op kind.
    pub op: String,
    /// Source node name.
    pub name: String,
    /// Output shape.
    pub output: Vec<usize>,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Median microseconds over the runs.
    pub median_us: f64,
    /// Billions of MACs per second at the median.
    pub gmacs: f64,
    /// Fraction of the summed layer medians.
    pub share: f64,
}

/// Timings of one model on one engine.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// `kiln` or `tract`.
    pub engine: String,
    /// The instruction set of kiln's int8 inner products (`avx2`, `neon`, `portable`, ...).
    pub isa: String,
    /// `optimized` or `reference` kernels (kiln).
    pub kernels: String,
    /// Threads a large layer may be split over (kiln; tract runs on 1).
    pub threads: usize,
    /// Timed runs.
    pub iterations: usize,
    /// Untimed runs before them.
    pub warmup: usize,
    /// Median microseconds per inference.
    pub median_us: f64,
    /// 10th percentile.
    pub p10_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// MACs per inference (kiln).
    pub macs: u64,
    /// Arena bytes (kiln).
    pub arena_bytes: usize,
    /// Peak resident set of this process, KiB (Linux `VmHWM`; `None` elsewhere).
    pub peak_rss_kib: Option<u64>,
    /// Per-layer medians (kiln).
    pub layers: Vec<LayerTime>,
}

/// `q`-quantile (0..=1) of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Peak resident set size of this process in KiB (Linux).
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Times `f` `iterations` times after `warmup` untimed calls; returns sorted microseconds.
fn time_runs(
    warmup: usize,
    iterations: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    let mut t = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok(sorted(t))
}

/// Benchmarks a `.kiln` model in-process: `input` fills input 0 (raw bytes in its dtype), or
/// every input gets deterministic pseudo-random values in [-1, 1) (quantized for int8 inputs);
/// `isa` pins the kernels' instruction set (default: the detected one).
pub fn bench_kiln(
    bytes: &[u8],
    input: Option<&[u8]>,
    warmup: usize,
    iterations: usize,
    kernels: Kernels,
    threads: usize,
    isa: Option<kiln_runtime::kernels::isa::Isa>,
) -> Result<BenchReport> {
    if iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let buf = AlignedBuf::new(bytes);
    let m = Model::from_bytes(buf.as_slice())?;
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let mut s = Session::new(&m, arena.as_mut_slice())?;
    s.set_kernels(kernels);
    s.set_threads(threads);
    if let Some(isa) = isa {
        if !s.set_isa(isa) {
            bail!("this CPU cannot run the {} kernels", isa.name());
        }
    }
    match input {
        Some(row) => {
            let dst = s.input_bytes_mut(0)?;
            if dst.len() != row.len() {
                bail!(
                    "the input has {} bytes, the model's input 0 takes {}",
                    row.len(),
                    dst.len()
                );
            }
            dst.copy_from_slice(row);
        }
        None => {
            let shapes: Vec<Vec<usize>> = (0..m.num_inputs())
                .map(|k| Ok(m.tensor(m.input_tensor(k)?).shape().to_vec()))
                .collect::<Result<_>>()?;
            let x = random_inputs(&shapes, 1, 7).remove(0);
            for (k, v) in x.iter().enumerate() {
                set_input(&mut s, k, v)?;
            }
        }
    }
    let whole = time_runs(warmup, iterations, || Ok(s.invoke()?))?;
    // Per layer: the time between consecutive observer calls is the op's time.
    let n_ops = m.num_ops();
    let mut per: Vec<Vec<f64>> = vec![Vec::with_capacity(iterations); n_ops];
    for _ in 0..iterations {
        let mut prev = Instant::now();
        s.invoke_observe(|i, _, _| {
            let now = Instant::now();
            per[i].push((now - prev).as_secs_f64() * 1e6);
            prev = now;
        })?;
    }
    let medians: Vec<f64> = per.into_iter().map(|v| quantile(&sorted(v), 0.5)).collect();
    let total: f64 = medians.iter().sum();
    let mut layers = Vec::with_capacity(n_ops);
    let mut macs_total = 0;
    for (i, &us) in medians.iter().enumerate() {
        let op = m.op(i);
        let macs = m.op_macs(&op);
        macs_total += macs;
        layers.push(LayerTime {
            index: i,
            op: op.kind.name().into(),
            name: op.name().into(),
            output: m.tensor(m.op_output(&op, 0)).shape().to_vec(),
            macs,
            median_us: us,
            gmacs: if us > 0.0 {
                macs as f64 / us / 1e3
            } else {
                0.0
            },
            share: if total > 0.0 { us / total } else { 0.0 },
        });
    }
    Ok(BenchReport {
        engine: "kiln".into(),
        isa: s.isa().name().into(),
        kernels: match kernels {
            Kernels::Optimized => "optimized".into(),
            Kernels::Reference => "reference".into(),
        },
        threads: s.threads(),
        iterations,
        warmup,
        median_us: quantile(&whole, 0.5),
        p10_us: quantile(&whole, 0.1),
        p90_us: quantile(&whole, 0.9),
        macs: macs_total,
        arena_bytes: m.arena_size(),
        peak_rss_kib: peak_rss_kib(),
        layers,
    })
}

/// Benchmarks tract (optimized, 1 thread) on an ONNX model with the same deterministic input as
/// [`bench_kiln`] uses when it is given none.
pub fn bench_tract(
    path: &Path,
    input_shapes: Option<&[Vec<usize>]>,
    warmup: usize,
    iterations: usize,
) -> Result<BenchReport> {
    use tract_onnx::prelude::*;
    if iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let typed = crate::onnx::load_typed(path, input_shapes)?;
    let shapes: Vec<Vec<usize>> = typed
        .input_outlets()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .iter()
        .map(|&o| {
            let f = typed.outlet_fact(o).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            f.shape
                .as_concrete()
                .map(|s| s.to_vec())
                .context("tract input shape is not concrete")
        })
        .collect::<Result<_>>()?;
    let plan = typed
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| anyhow::anyhow!("tract could not optimize the model: {e:?}"))?;
    let x = random_inputs(&shapes, 1, 7).remove(0);
    let inputs: TVec<TValue> = x
        .iter()
        .zip(&shapes)
        .map(|(v, s)| {
            tract_ndarray::ArrayD::from_shape_vec(s.clone(), v.clone())
                .map(|a| Tensor::from(a).into())
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<Result<_>>()?;
    let whole = time_runs(warmup, iterations, || {
        plan.run(inputs.clone())
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("tract: {e:?}"))
    })?;
    Ok(BenchReport {
        engine: "tract".into(),
        isa: String::new(),
        kernels: String::new(),
        threads: 1,
        iterations,
        warmup,
        median_us: quantile(&whole, 0.5),
        p10_us: quantile(&whole, 0.1),
        p90_us: quantile(&whole, 0.9),
        macs: 0,
        arena_bytes: 0,
        peak_rss_kib: peak_rss_kib(),
        layers: Vec::new(),
    })
}
