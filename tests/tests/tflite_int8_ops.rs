//! Single-op int8 TFLite models over an edge-case grid (made by `scripts/gen_tflite_ops.py`, with
//! LiteRT's reference kernels as the oracle): every case must be bitwise identical.

use kiln_tests::{npy, run_i8_multi};
use std::path::PathBuf;

fn dir() -> Option<PathBuf> {
    kiln_tests::data_dir("KILN_TFLITE_OPS", "build/tflite_ops", "SUMMARY.txt")
}

/// The grid `scripts/gen_tflite_ops.py` makes today has 123 cases (conv, depthwise, dense,
/// pools, add/sub, softmax, reshape, logistic/tanh, mul, concat, mean, and add/sub/mul with an
/// int8 constant operand on either side).
const MIN_CASES: usize = 120;

#[test]
fn int8_single_op_grid_is_bit_exact_with_tflite_reference() {
    let Some(root) = dir() else {
        eprintln!("no generated TFLite op cases (run scripts/test.sh); skipping");
        return;
    };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.tflite").is_file())
        .collect();
    cases.sort();
    // The generator writes its case count first in SUMMARY.txt; every case must be here, and a
    // generator that silently made few cases fails too.
    let summary = std::fs::read_to_string(root.join("SUMMARY.txt")).unwrap();
    let declared: usize = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("SUMMARY.txt starts with the case count");
    assert_eq!(
        cases.len(),
        declared,
        "{} holds {} cases, SUMMARY.txt declares {declared}",
        root.display(),
        cases.len()
    );
    assert!(
        cases.len() >= MIN_CASES,
        "only {} single-op int8 cases, expected at least {MIN_CASES}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let what = std::fs::read_to_string(case.join("op.txt")).unwrap_or_default();
        let bytes = match kiln_converter::convert_file(&case.join("model.tflite")) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{name} ({}): convert: {e:#}", what.trim()));
                continue;
            }
        };
        let mut inputs = Vec::new();
        for k in 0.. {
            let p = case.join(format!("input_{k}.npy"));
            if !p.is_file() {
                break;
            }
            inputs.push(
                npy(&p)
                    .unwrap()
                    .data
                    .iter()
                    .map(|&v| v as i8)
                    .collect::<Vec<i8>>(),
            );
        }
        let want: Vec<i8> = npy(&case.join("expected_0.npy"))
            .unwrap()
            .data
            .iter()
            .map(|&v| v as i8)
            .collect();
        match run_i8_multi(&bytes, &inputs) {
            Ok(got) if got == want => {}
            Ok(got) => {
                let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (*a as i32 - *b as i32).abs())
                    .max()
                    .unwrap_or(0);
                failures.push(format!(
                    "{name} ({}): {diff}/{} values differ, max {worst} LSB",
                    what.trim(),
                    want.len()
                ));
            }
            Err(e) => failures.push(format!("{name} ({}): run: {e:#}", what.trim())),
        }
    }
    eprintln!(
        "{} single-op int8 cases, {} failures",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
