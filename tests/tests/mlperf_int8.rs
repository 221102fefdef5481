//! The four MLPerf Tiny int8 models, imported from TFLite, against the golden outputs of TFLite's
//! reference kernels: every output of every golden input must be bitwise identical.

use kiln_tests::{assets, npy, run_i8};

const MODELS: &[&str] = &[
    "kws_ref_model",
    "vww_96_int8",
    "pretrainedResnet_quant",
    "ad01_int8",
];

#[test]
fn int8_models_are_bit_exact_with_tflite_reference_kernels() {
    let Some(a) = assets() else {
        eprintln!("shared assets not available; skipping");
        return;
    };
    let mut failures = Vec::new();
    for model in MODELS {
        let path = a.join(format!("mlperf-tiny/{model}.tflite"));
        let bytes =
            kiln_converter::convert_file(&path).unwrap_or_else(|e| panic!("{model}: {e:#}"));
        let golden = a.join("golden").join(model);
        let inputs = npy(&golden.join("inputs.npy")).unwrap();
        let outputs = npy(&golden.join("outputs_tflite_ref.npy")).unwrap();
        assert_eq!(inputs.dtype, "|i1", "{model}: golden inputs are int8");
        let n = inputs.shape[0];
        let (isz, osz) = (inputs.data.len() / n, outputs.data.len() / n);
        let (mut exact, mut worst) = (0, 0i32);
        for i in 0..n {
            let x: Vec<i8> = inputs.data[i * isz..(i + 1) * isz]
                .iter()
                .map(|&v| v as i8)
                .collect();
            let y = run_i8(&bytes, &x).unwrap();
            let want: Vec<i8> = outputs.data[i * osz..(i + 1) * osz]
                .iter()
                .map(|&v| v as i8)
                .collect();
            let d = y
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .max()
                .unwrap_or(0);
            worst = worst.max(d);
            exact += (y == want) as usize;
        }
        eprintln!(
            "{model}: {exact}/{n} outputs bit-exact, max |diff| {worst} LSB, {} bytes",
            bytes.len()
        );
        if exact != n {
            failures.push(format!("{model}: {exact}/{n} bit-exact, max diff {worst}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
