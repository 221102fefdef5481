//! kiln f32 vs onnxruntime on the ONNX backend node tests, run as data: every folder under the
//! conformance directory (made by `scripts/gen_conformance.py`) is one case. A case either
//! converts and must match onnxruntime, or is rejected at import with an "unsupported" error
//! naming the op; anything else (a crash, an invalid model, a wrong answer) fails the test.

use kiln_converter::npy;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest accepted `max |kiln - ort| / max(max |ort|, 1e-3)`.
const TOLERANCE: f32 = 1e-4;

/// Op types kiln claims to import; each must pass at least one case.
const MUST_PASS: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Ceil",
    "Clip",
    "Concat",
    "Conv",
    "Div",
    "Exp",
    "Flatten",
    "Floor",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Pad",
    "PRelu",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
];

/// Fewest cases that must pass (guards against a silent regression of the whole importer).
const MIN_PASSING: usize = 675;

enum Outcome {
    Pass,
    Unsupported(String),
    Fail(String),
}

fn dir() -> Option<PathBuf> {
    kiln_tests::data_dir("KILN_CONFORMANCE", "build/conformance", "SUMMARY.txt")
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for k in 0.. {
        let p = dir.join(format!("{prefix}_{k}.npy"));
        if !p.is_file() {
            break;
        }
        v.push(p);
    }
    v
}

fn run_case(dir: &Path) -> Outcome {
    let inputs: Vec<npy::NpyArray> = match numbered(dir, "input")
        .iter()
        .map(|p| npy::read(p))
        .collect()
    {
        Ok(v) => v,
        Err(e) => return Outcome::Fail(format!("reading inputs: {e:#}")),
    };
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|a| a.shape.clone()).collect();
    let graph = match kiln_converter::onnx::import_with(&dir.join("model.onnx"), Some(&shapes)) {
        Ok(g) => g,
        Err(e) => {
            let msg = format!("{e:#}");
            let unsupported = [
                "unsupported",
                "not supported",
                "tract could not",
                "only f32",
            ];
            return if unsupported.iter().any(|u| msg.contains(u)) {
                Outcome::Unsupported(msg.lines().map(str::trim).collect::<Vec<_>>().join(" | "))
            } else {
                Outcome::Fail(format!("import: {msg}"))
            };
        }
    };
    let mut graph = graph;
    if let Err(e) = kiln_converter::passes::optimize(&mut graph) {
        return Outcome::Fail(format!("passes: {e:#}"));
    }
    let bytes = match kiln_converter::emit::emit(&graph) {
        Ok((b, _)) => b,
        Err(e) => return Outcome::Fail(format!("emit: {e:#}")),
    };
    let sample: Vec<Vec<f32>> = inputs.iter().map(|a| a.data.clone()).collect();
    if sample.iter().flatten().any(|v| !v.is_finite()) {
        return Outcome::Unsupported("non-finite inputs are rejected by design".into());
    }
    let outs = match kiln_converter::verify::run_kiln(&bytes, &[sample]) {
        Ok(mut o) => o.remove(0),
        Err(e) => return Outcome::Fail(format!("run: {e:#}")),
    };
    let expected = numbered(dir, "expected");
    if expected.len() != outs.len() {
        return Outcome::Fail(format!(
            "{} outputs, onnxruntime has {}",
            outs.len(),
            expected.len()
        ));
    }
    for (k, (got, p)) in outs.iter().zip(&expected).enumerate() {
        let want = match npy::read(p) {
            Ok(a) => a.data,
            Err(e) => return Outcome::Fail(format!("{e:#}")),
        };
        if got.len() != want.len() {
            return Outcome::Fail(format!(
                "output {k}: {} values, onnxruntime has {}",
                got.len(),
                want.len()
            ));
        }
        let scale = want
            .iter()
            .filter(|v| v.is_finite())
            .fold(1e-3f32, |m, v| m.max(v.abs()));
        let mut worst = 0f32;
        for (a, b) in got.iter().zip(&want) {
            let e = if a.is_nan() && b.is_nan() || a == b {
                0.0
            } else {
                (a - b).abs() / scale
            };
            if e.is_nan() || e > worst {
                worst = if e.is_nan() { f32::INFINITY } else { e };
            }
        }
        if worst > TOLERANCE {
            return Outcome::Fail(format!("output {k}: error {worst:.3e} > {TOLERANCE:.0e}"));
        }
    }
    Outcome::Pass
}

#[test]
fn onnx_node_conformance() {
    let Some(root) = dir() else {
        eprintln!("no conformance cases (run scripts/test.sh, which generates them); skipping");
        return;
    };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    // per op: (pass, unsupported, fail)
    let mut per_op: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut unsupported = Vec::new();
    let mut passed = 0;
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let ops: Vec<String> = std::fs::read_to_string(case.join("ops.txt"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        let outcome = std::panic::catch_unwind(|| run_case(case))
            .unwrap_or_else(|_| Outcome::Fail("panicked".into()));
        for op in &ops {
            let e = per_op.entry(op.clone()).or_default();
            match &outcome {
                Outcome::Pass => e.0 += 1,
                Outcome::Unsupported(_) => e.1 += 1,
                Outcome::Fail(_) => e.2 += 1,
            }
        }
        match outcome {
            Outcome::Pass => passed += 1,
            Outcome::Unsupported(why) => unsupported.push(format!("{name}: {why}")),
            Outcome::Fail(why) => failures.push(format!("{name}: {why}")),
        }
    }
    let mut report = format!(
        "{} cases: {passed} pass, {} unsupported, {} fail\n{:<28} {:>5} {:>11} {:>5}\n",
        cases.len(),
        unsupported.len(),
        failures.len(),
        "op",
        "pass",
        "unsupported",
        "fail"
    );
    for (op, (p, u, f)) in &per_op {
        report.push_str(&format!("{op:<28} {p:>5} {u:>11} {f:>5}\n"));
    }
    report.push_str("\nunsupported:\n");
    for u in &unsupported {
        report.push_str(&format!("  {u}\n"));
    }
    report.push_str("\nfailures:\n");
    for f in &failures {
        report.push_str(&format!("  {f}\n"));
    }
    let _ = std::fs::write(root.join("REPORT.txt"), &report);
    eprintln!("{report}");
    assert!(
        failures.is_empty(),
        "{} conformance failures (see {}/REPORT.txt)",
        failures.len(),
        root.display()
    );
    assert!(
        passed >= MIN_PASSING,
        "only {passed} cases pass, expected at least {MIN_PASSING}"
    );
    for op in MUST_PASS {
        assert!(
            per_op.get(*op).is_some_and(|e| e.0 > 0),
            "no passing conformance case for {op}"
        );
    }
}
