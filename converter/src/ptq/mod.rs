//! Post-training quantization of a float graph to int8: calibrate activation ranges on sample
//! inputs, quantize weights per channel (symmetric) and activations per tensor (asymmetric),
//! rewrite every op that has an int8 kernel to it, keep the rest in float behind
//! quantize/dequantize ops, and report per-layer error (SQNR) against the float model.

mod builder;
mod calibrate;
mod int8;
mod report;

use builder::Builder;
pub use calibrate::lower_with_hints;
use calibrate::{inverse, observe};

/// Runs a serialized model on each sample and calls `f(sample, graph tensor, values)` for every
/// op output (see `calibrate::observe`); `file_to_graph` from [`calibrate_inverse`].
pub(crate) fn observe_values(
    bytes: &[u8],
    file_to_graph: &std::collections::HashMap<usize, TId>,
    samples: &[Vec<Vec<f32>>],
    f: impl FnMut(usize, TId, &[f32]),
) -> Result<()> {
    observe(bytes, file_to_graph, samples, f, &mut |_, _| {})
}

/// File tensor index -> graph tensor id, from `emit_mapped`'s remap.
pub(crate) fn calibrate_inverse(remap: &[u32]) -> std::collections::HashMap<usize, TId> {
    inverse(remap)
}

use crate::emit::emit_mapped;
use crate::ir::{Graph, TId};
use anyhow::{bail, Result};
use kiln_quantize::calibrate::{Method, Observer};
use serde::Serialize;
use std::collections::HashMap;

/// Options of [`quantize`].
#[derive(Clone, Copy, Debug)]
pub struct PtqOptions {
    /// How activation ranges are chosen.
    pub method: Method,
    /// Make the graph inputs and outputs int8 too (the caller quantizes its data); otherwise
    /// they stay f32 and the model quantizes on entry and dequantizes on exit.
    pub int8_io: bool,
}

/// Error of one layer's output, int8 against float.
#[derive(Clone, Debug, Serialize)]
pub struct LayerError {
    /// Op name.
    pub name: String,
    /// Op kind.
    pub op: String,
    /// Whether the op runs in int8 (false: kept in float).
    pub int8: bool,
    /// Why it was kept in float (`None` for int8 ops).
    pub why_float: Option<String>,
    /// Signal-to-quantization-noise ratio of its output, in dB (higher is better).
    pub sqnr_db: f64,
}

/// The quantized graph and what was measured on the way.
#[derive(Clone, Debug)]
pub struct PtqResult {
    /// The int8 graph.
    pub graph: Graph,
    /// Per-layer error, in execution order of the float graph.
    pub layers: Vec<LayerError>,
}

/// Calibrates `g` on `samples` and returns its int8 version with a per-layer error report.
/// `progress(stage, done, total)` is called as samples are processed.
pub fn quantize(
    g: &Graph,
    samples: &[Vec<Vec<f32>>],
    opts: &PtqOptions,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<PtqResult> {
    if samples.is_empty() {
        bail!("calibration needs at least one sample");
    }
    if let Some(t) = g
        .tensors
        .iter()
        .find(|t| t.data.is_none() && t.dtype != kiln_runtime::DType::F32)
    {
        bail!(
            "the model is already quantized (tensor '{}' is {}): quantize the float model",
            t.name,
            t.dtype.name()
        );
    }
    let (bytes, _, remap) = emit_mapped(g)?;
    let file_to_graph = inverse(&remap);
    let mut obs: HashMap<TId, Observer> = HashMap::new();
    observe(
        &bytes,
        &file_to_graph,
        samples,
        |_, t, v| obs.entry(t).or_default().observe_range(v),
        &mut |d, n| progress("calibrating ranges", d, n),
    )?;
    if opts.method.needs_histogram() {
        observe(
            &bytes,
            &file_to_graph,
            samples,
            |_, t, v| obs.entry(t).or_default().observe_hist(v),
            &mut |d, n| progress("calibrating histograms", d, n),
        )?;
    }
    let mut q = Builder::new(g, &obs, opts).build()?;
    let mut graph = std::mem::take(&mut q.q);
    crate::passes::dce::run(&mut graph);
    graph.check()?;

    let layers = report::layer_errors(g, &bytes, &file_to_graph, &graph, &q, samples, progress)?;
    Ok(PtqResult { graph, layers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_runtime::ops::{BinaryKind, BinaryParams, OpParams, Reducer, UnaryKind, UnaryParams};
    use kiln_runtime::{DType, OpKind};

    /// x -> conv 3x3 -> {sigmoid, tanh} -> mul -> concat(conv, mul) -> flatten -> dense -> softmax
    fn graph() -> Graph {
        let mut g = Graph::default();
        let x = g.add_tensor("x", DType::F32, vec![1, 4, 4, 2]);
        let c = crate::passes::tests::conv(&mut g, x);
        use kiln_runtime::ops::{
            ConcatParams, DenseParams, ReduceParams, ReshapeParams, SoftmaxParams,
        };
        let unary = |k| OpParams::Unary(UnaryParams::new(k));
        let s = g.add_op(
            "sig",
            unary(UnaryKind::Sigmoid),
            vec![Some(c)],
            vec![1, 4, 4, 3],
        );
        let t = g.add_op(
            "tanh",
            unary(UnaryKind::Tanh),
            vec![Some(c)],
            vec![1, 4, 4, 3],
        );
        let mul = OpParams::Binary(BinaryParams::new(BinaryKind::Mul));
        let m = g.add_op("mul", mul, vec![Some(s), Some(t)], vec![1, 4, 4, 3]);
        let mean = g.add_op(
            "mean",
            OpParams::Reduce(ReduceParams::new(Reducer::Mean, 0b0110)),
            vec![Some(m)],
            vec![1, 1, 1, 3],
        );
        let mm = g.add_op("scaled", mul, vec![Some(m), Some(mean)], vec![1, 4, 4, 3]);
        let k = g.add_op(
            "cat",
            OpParams::Concat(ConcatParams { axis: 3 }),
            vec![Some(mm), Some(mm)],
            vec![1, 4, 4, 6],
        );
        let f = g.add_op(
            "flat",
            OpParams::Reshape(ReshapeParams),
            vec![Some(k)],
            vec![1, 96],
        );
        let fw: Vec<f32> = (0..5 * 96)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 20.0)
            .collect();
        let fwt = g.add_const_f32("fw", vec![5, 96], fw);
        let l = g.add_op(
            "logits",
            OpParams::Dense(DenseParams::default()),
            vec![Some(f), Some(fwt), None],
            vec![1, 5],
        );
        let y = g.add_op(
            "y",
            OpParams::Softmax(SoftmaxParams::new(1, false)),
            vec![Some(l)],
            vec![1, 5],
        );
        g.inputs = vec![x];
        g.outputs = vec![y];
        g
    }

    #[test]
    fn every_op_of_a_mixed_graph_runs_in_int8_and_tracks_float() {
        let g = graph();
        let samples: Vec<Vec<Vec<f32>>> = (0..20)
            .map(|s| {
                vec![(0..32)
                    .map(|i| (((i * 31 + s * 17) % 29) as f32 - 14.0) / 7.0)
                    .collect()]
            })
            .collect();
        for method in [
            Method::MinMax,
            Method::Percentile(99.9),
            Method::Entropy,
            Method::Mse,
        ] {
            let r = quantize(
                &g,
                &samples,
                &PtqOptions {
                    method,
                    int8_io: false,
                },
                &mut |_, _, _| {},
            )
            .unwrap();
            assert!(
                r.layers.iter().all(|l| l.int8),
                "{method:?}: {:?}",
                r.layers
            );
            let kinds: Vec<OpKind> = r.graph.nodes.iter().map(|n| n.kind()).collect();
            assert!(kinds.contains(&OpKind::Lut), "{kinds:?}");
            let fb = crate::emit::emit(&g).unwrap().0;
            let qb = crate::emit::emit(&r.graph).unwrap().0;
            let fo = crate::verify::run_kiln(&fb, &samples).unwrap();
            let qo = crate::verify::run_kiln(&qb, &samples).unwrap();
            for (a, b) in fo.iter().zip(&qo) {
                let d = a[0]
                    .iter()
                    .zip(&b[0])
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(d < 0.06, "{method:?}: probabilities differ by {d}");
            }
        }
    }
}
