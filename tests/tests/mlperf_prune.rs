//! Pruning the MLPerf Tiny float models (issue #15's figures): structured pruning at 50% of the
//! weights gives files of at most 55% of the unpruned size with top-1 agreement on the golden
//! inputs of at least 14 of 16 (keyword spotting, ResNet, visual wake words), and unstructured
//! pruning at 80% gives int8 files stored sparse that run exactly like their dense twins.
//! Calibration (the refit, int8 ranges) uses the same 16 golden inputs the agreement is
//! measured on: the only inputs there are for these models, so the agreement is in-sample.

use kiln_converter::emit::emit;
use kiln_converter::prune::{prune, Criterion, PruneOptions};
use kiln_converter::ptq::{quantize, PtqOptions};
use kiln_quantize::calibrate::Method;
use kiln_tests::{assets, npy};

/// The golden inputs of `model`, one sample per row.
fn golden(model: &str) -> Vec<Vec<Vec<f32>>> {
    let a = assets().expect("the MLPerf Tiny assets (set KILN_ASSETS)");
    let x = npy(&a.join("golden").join(model).join("inputs.npy")).unwrap();
    let n = x.shape[0];
    let per = x.data.len() / n;
    x.data.chunks(per).map(|r| vec![r.to_vec()]).collect()
}

fn graph(model: &str) -> kiln_converter::ir::Graph {
    let a = assets().expect("the MLPerf Tiny assets (set KILN_ASSETS)");
    kiln_converter::import_file(&a.join(format!("mlperf-tiny/{model}.tflite"))).unwrap()
}

fn top1(bytes: &[u8], samples: &[Vec<Vec<f32>>]) -> Vec<usize> {
    kiln_converter::verify::run_kiln(bytes, samples)
        .unwrap()
        .iter()
        .map(|o| kiln_converter::eval::argmax(&o[0]))
        .collect()
}

fn opts(sparsity: f32, unstructured: bool) -> PruneOptions {
    PruneOptions {
        sparsity,
        criterion: Criterion::L1,
        reconstruct: true,
        multiple: 1,
        layers: vec![],
        unstructured,
        sensitivity: false,
    }
}

#[test]
fn structured_half_keeps_top1_and_halves_the_file() {
    if assets().is_none() {
        eprintln!("shared assets not available; skipping");
        return;
    }
    for model in [
        "kws_ref_model_float32_dequant",
        "pretrainedResnet",
        "vww_96_float",
    ] {
        let g = graph(model);
        let s = golden(model);
        let r = prune(&g, &s, &opts(0.5, false)).unwrap();
        let (before, after) = (emit(&g).unwrap().0, emit(&r.graph).unwrap().0);
        let agree = top1(&before, &s)
            .iter()
            .zip(top1(&after, &s))
            .filter(|(a, b)| **a == *b)
            .count();
        let ratio = after.len() as f64 / before.len() as f64;
        eprintln!(
            "{model}: weights {} -> {}, file {} -> {} ({:.1}%), top-1 {agree}/16",
            r.weights.0,
            r.weights.1,
            before.len(),
            after.len(),
            100.0 * ratio
        );
        assert!(r.weights.1 * 2 <= r.weights.0, "{model}: {:?}", r.weights);
        assert!(ratio <= 0.55, "{model}: file {:.1}%", 100.0 * ratio);
        assert!(agree >= 14, "{model}: top-1 agrees on {agree}/16");
    }
}

#[test]
fn unstructured_80_stores_sparse_int8_exactly_like_dense() {
    if assets().is_none() {
        eprintln!("shared assets not available; skipping");
        return;
    }
    for (model, at_most) in [
        ("pretrainedResnet", 0.38),
        ("kws_ref_model_float32_dequant", 0.48),
    ] {
        let g = graph(model);
        let s = golden(model);
        let ptq = PtqOptions {
            method: Method::MinMax,
            int8_io: false,
        };
        let dense_int8 = quantize(&g, &s, &ptq, &mut |_, _, _| {}).unwrap().graph;
        let r = prune(&g, &s, &opts(0.8, true)).unwrap();
        assert!(r.weights.1 * 5 <= r.weights.0, "{model}: {:?}", r.weights);
        let mut q = quantize(&r.graph, &s, &ptq, &mut |_, _, _| {})
            .unwrap()
            .graph;
        q.sparse_weights = true;
        let sparse = emit(&q).unwrap().0;
        q.sparse_weights = false;
        let dense = emit(&q).unwrap().0;
        let base = emit(&dense_int8).unwrap().0;
        let ratio = sparse.len() as f64 / base.len() as f64;
        eprintln!(
            "{model}: int8 {} bytes; 80% unstructured int8 {} bytes sparse ({:.1}%), {} dense",
            base.len(),
            sparse.len(),
            100.0 * ratio,
            dense.len()
        );
        assert!(ratio <= at_most, "{model}: {:.1}%", 100.0 * ratio);
        let run = |b: &[u8]| kiln_converter::verify::run_kiln(b, &s).unwrap();
        assert_eq!(
            run(&sparse),
            run(&dense),
            "{model}: sparse and dense differ"
        );
    }
}
