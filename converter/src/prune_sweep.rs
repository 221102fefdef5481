//! `kiln prune --sweep`: the same model pruned to several sparsities, each point measured as
//! float and as int8 (PTQ on the pruned float model, calibrated on the same samples): weights,
//! file size, MACs, single-thread latency and a quality metric, printed and plotted.

use crate::bench::bench_kiln;
use crate::ir::Graph;
use crate::prune::{prune, PruneOptions};
use crate::ptq::{quantize, PtqOptions};
use anyhow::{bail, Result};
use kiln_runtime::Kernels;
use serde::Serialize;

/// What "quality" means for a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Quality {
    /// Accuracy on labelled inputs (%).
    Accuracy,
    /// Top-1 agreement with the unpruned float model (%), for classifiers without labels.
    Agreement,
    /// Mean squared error of output against input (autoencoders).
    Reconstruction,
}

impl Quality {
    /// The column heading.
    pub fn name(self) -> &'static str {
        match self {
            Quality::Accuracy => "accuracy %",
            Quality::Agreement => "top-1 agreement %",
            Quality::Reconstruction => "reconstruction MSE",
        }
    }
}

/// One model of the sweep (float or int8).
#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    /// File bytes.
    pub bytes: usize,
    /// Median single-thread latency, µs.
    pub latency_us: f64,
    /// The quality metric.
    pub quality: f64,
}

/// One sparsity of the sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    /// The sparsity asked for (0: the unpruned model).
    pub asked: f32,
    /// Conv and dense weights kept.
    pub weights: usize,
    /// Fraction of the unpruned model's conv and dense weights removed.
    pub removed: f64,
    /// MACs per inference.
    pub macs: u64,
    /// The pruned float model.
    pub float: Variant,
    /// It quantized to int8.
    pub int8: Variant,
}

/// A sweep's inputs besides the model.
pub struct SweepData<'a> {
    /// Calibration samples (pruning refit and int8 ranges).
    pub calib: &'a [Vec<Vec<f32>>],
    /// Samples the quality is measured on.
    pub eval: &'a [Vec<Vec<f32>>],
    /// Their labels, for accuracy.
    pub labels: Option<&'a [usize]>,
    /// Timed runs per model (after a tenth as many untimed ones).
    pub iterations: usize,
}

/// The metric a model's outputs give on `data` (`base`: the unpruned float model's top-1 on
/// the same samples, for agreement).
fn quality(
    q: Quality,
    outs: &[Vec<Vec<f32>>],
    data: &SweepData<'_>,
    base: &[usize],
) -> Result<f64> {
    let first: Vec<Vec<f32>> = outs.iter().map(|o| o[0].clone()).collect();
    Ok(match q {
        Quality::Accuracy => {
            let labels = data.labels.unwrap_or(&[]);
            let right = first
                .iter()
                .zip(labels)
                .filter(|(o, &l)| crate::eval::argmax(o) == l)
                .count();
            100.0 * right as f64 / labels.len().max(1) as f64
        }
        Quality::Agreement => {
            let same = first
                .iter()
                .zip(base)
                .filter(|(o, &b)| crate::eval::argmax(o) == b)
                .count();
            100.0 * same as f64 / base.len().max(1) as f64
        }
        Quality::Reconstruction => {
            let inputs: Vec<Vec<f32>> = data.eval.iter().map(|s| s[0].clone()).collect();
            crate::eval::reconstruction(&first, &inputs)?.mse
        }
    })
}

/// Measures one model: bytes, latency, quality.
fn measure(
    bytes: &[u8],
    q: Quality,
    data: &SweepData<'_>,
    base: &[usize],
) -> Result<(Variant, u64)> {
    let outs = crate::verify::run_kiln(bytes, data.eval)?;
    let quality = quality(q, &outs, data, base)?;
    let warmup = (data.iterations / 10).max(1);
    let r = bench_kiln(
        bytes,
        None,
        warmup,
        data.iterations,
        Kernels::Optimized,
        1,
        None,
    )?;
    Ok((
        Variant {
            bytes: bytes.len(),
            latency_us: r.median_us,
            quality,
        },
        r.macs,
    ))
}

/// Prunes `g` to every sparsity in `sparsities` (with the rest of `opts`), quantizes each
/// pruned model, and measures the unpruned model and every point, float and int8.
/// `progress(done, total)` is called after each point.
pub fn sweep(
    g: &Graph,
    sparsities: &[f32],
    opts: &PruneOptions,
    ptq: &PtqOptions,
    data: &SweepData<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Quality, Vec<SweepPoint>)> {
    if data.calib.is_empty() || data.eval.is_empty() {
        bail!(
            "a sweep needs calibration samples (--calib): they calibrate int8 and measure quality"
        );
    }
    if sparsities.is_empty() {
        bail!("--sweep: no sparsities given");
    }
    for &s in sparsities {
        if !(0.0..1.0).contains(&s) {
            bail!("--sweep: sparsity {s} is outside [0, 1)");
        }
    }
    let in_len: usize = g.tensors[g.inputs[0]].shape.iter().product();
    let out_len: usize = g.tensors[g.outputs[0]].shape.iter().product();
    let q = match data.labels {
        Some(l) if l.len() != data.eval.len() => bail!(
            "{} labels for {} evaluation inputs",
            l.len(),
            data.eval.len()
        ),
        Some(_) => Quality::Accuracy,
        None if in_len == out_len => Quality::Reconstruction,
        None => Quality::Agreement,
    };
    let (float0, _) = crate::emit::emit(g)?;
    let base: Vec<usize> = crate::verify::run_kiln(&float0, data.eval)?
        .iter()
        .map(|o| crate::eval::argmax(&o[0]))
        .collect();
    let total = crate::prune::conv_dense_weights(g);
    let mut points = Vec::new();
    let n = sparsities.len() + 1;
    for (k, &s) in std::iter::once(&0.0f32).chain(sparsities).enumerate() {
        // The weights that stay: non-zero ones after unstructured pruning.
        let (pruned, weights) = if s == 0.0 {
            (g.clone(), total)
        } else {
            let o = PruneOptions {
                sparsity: s,
                ..opts.clone()
            };
            let r = prune(g, data.calib, &o).map_err(|e| anyhow::anyhow!("sparsity {s}: {e}"))?;
            (r.graph, r.weights.1)
        };
        let (fbytes, _) = crate::emit::emit(&pruned)?;
        let mut int8 = quantize(&pruned, data.calib, ptq, &mut |_, _, _| {})?.graph;
        // As `kiln quantize` writes it: mostly-zero layers sparse where that is smaller.
        int8.sparse_weights = true;
        let (ibytes, _) = crate::emit::emit(&int8)?;
        let (float, macs) = measure(&fbytes, q, data, &base)?;
        let (int8v, _) = measure(&ibytes, q, data, &base)?;
        points.push(SweepPoint {
            asked: s,
            weights,
            removed: 1.0 - weights as f64 / total.max(1) as f64,
            macs,
            float,
            int8: int8v,
        });
        progress(k + 1, n);
    }
    Ok((q, points))
}

/// The sweep as a markdown table.
pub fn table(q: Quality, points: &[SweepPoint]) -> String {
    let mut s = format!(
        "| sparsity asked | weights removed | weights | MACs | float bytes | int8 bytes | float µs | int8 µs | float {0} | int8 {0} |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        q.name()
    );
    let fmt_q = |v: f64| match q {
        Quality::Reconstruction => format!("{v:.4}"),
        _ => format!("{v:.2}"),
    };
    for p in points {
        s.push_str(&format!(
            "| {:.2} | {:.1}% | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} |\n",
            p.asked,
            100.0 * p.removed,
            p.weights,
            p.macs,
            p.float.bytes,
            p.int8.bytes,
            p.float.latency_us,
            p.int8.latency_us,
            fmt_q(p.float.quality),
            fmt_q(p.int8.quality)
        ));
    }
    s
}

/// Plots the sweep (quality, file size, MACs and latency against the weights removed, float
/// and int8) as a PNG of `width` × `height` pixels.
pub fn plot(
    title: &str,
    q: Quality,
    points: &[SweepPoint],
    width: u32,
    height: u32,
) -> Result<Vec<u8>> {
    use plotters::prelude::*;
    ensure_font();
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        let panels = root.split_evenly((2, 2));
        let x: Vec<f64> = points.iter().map(|p| 100.0 * p.removed).collect();
        let x_hi = x.iter().cloned().fold(0.0, f64::max).max(1.0) * 1.05;
        type Series<'a> = Vec<(&'a str, RGBColor, Vec<f64>)>;
        let most = points.iter().map(|p| p.macs).max().unwrap_or(0);
        let mac_unit = if most >= 1_000_000 {
            ("MACs (millions)", 1e6)
        } else {
            ("MACs (thousands)", 1e3)
        };
        let charts: [(&str, Series<'_>); 4] = [
            (
                q.name(),
                vec![
                    (
                        "float",
                        BLUE,
                        points.iter().map(|p| p.float.quality).collect(),
                    ),
                    ("int8", RED, points.iter().map(|p| p.int8.quality).collect()),
                ],
            ),
            (
                "file KB",
                vec![
                    (
                        "float",
                        BLUE,
                        points
                            .iter()
                            .map(|p| p.float.bytes as f64 / 1000.0)
                            .collect(),
                    ),
                    (
                        "int8",
                        RED,
                        points
                            .iter()
                            .map(|p| p.int8.bytes as f64 / 1000.0)
                            .collect(),
                    ),
                ],
            ),
            (
                mac_unit.0,
                vec![(
                    "MACs",
                    BLACK,
                    points.iter().map(|p| p.macs as f64 / mac_unit.1).collect(),
                )],
            ),
            (
                "latency µs (1 thread)",
                vec![
                    (
                        "float",
                        BLUE,
                        points.iter().map(|p| p.float.latency_us).collect(),
                    ),
                    (
                        "int8",
                        RED,
                        points.iter().map(|p| p.int8.latency_us).collect(),
                    ),
                ],
            ),
        ];
        for (area, (name, series)) in panels.iter().zip(&charts) {
            let ys = series.iter().flat_map(|s| s.2.iter().cloned());
            let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
            let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.02).max(1e-9);
            let (lo, hi) = (
                if lo >= 0.0 {
                    (lo - pad).max(0.0)
                } else {
                    lo - pad
                },
                hi + pad,
            );
            let mut chart = ChartBuilder::on(area)
                .caption(*name, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(0.0..x_hi, lo..hi)
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            chart
                .configure_mesh()
                .x_desc("weights removed %")
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            for (label, color, y) in series {
                let pts: Vec<(f64, f64)> = x.iter().cloned().zip(y.iter().cloned()).collect();
                let c = *color;
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(|e| anyhow::anyhow!("plot: {e}"))?
                    .label(*label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], c));
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    let img = image::RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| anyhow::anyhow!("plot: buffer of the wrong size"))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}

/// Registers the embedded DejaVu Sans as the plots' sans-serif font (once).
fn ensure_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}
