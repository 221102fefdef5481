//! The four float MLPerf Tiny models, converted from TFLite and from ONNX, against the golden
//! outputs of TFLite's reference kernels and onnxruntime.

use kiln_tests::{assets, npy, rel_err, run_f32};

const MODELS: &[&str] = &[
    "kws_ref_model_float32_dequant",
    "vww_96_float",
    "pretrainedResnet",
    "ad01_fp32",
];

fn check(model: &str, source: &str, oracle: &str) {
    let Some(a) = assets() else {
        eprintln!("shared assets not available; skipping");
        return;
    };
    let path = if source == "tflite" {
        a.join(format!("mlperf-tiny/{model}.tflite"))
    } else {
        a.join(format!("onnx/{model}.onnx"))
    };
    let bytes = kiln_converter::convert_file(&path).unwrap_or_else(|e| panic!("{model}: {e:#}"));
    let golden = a.join("golden").join(model);
    let inputs = npy(&golden.join("inputs.npy")).unwrap();
    let outputs = npy(&golden.join(format!("outputs_{oracle}.npy"))).unwrap();
    let n = inputs.shape[0];
    let (isz, osz) = (inputs.data.len() / n, outputs.data.len() / n);
    let mut worst = 0f32;
    for i in 0..n {
        let y = run_f32(&bytes, &inputs.data[i * isz..(i + 1) * isz]).unwrap();
        let e = rel_err(&y, &outputs.data[i * osz..(i + 1) * osz]);
        worst = worst.max(e);
    }
    eprintln!(
        "{model} ({source} vs {oracle}): max rel error {worst:.3e} over {n} inputs, {} bytes",
        bytes.len()
    );
    assert!(
        worst <= 1e-4,
        "{model} ({source}): max rel error {worst} > 1e-4"
    );
}

#[test]
fn tflite_float_models_match_tflite_reference() {
    for m in MODELS {
        check(m, "tflite", "tflite_ref");
    }
}

#[test]
fn onnx_float_models_match_onnxruntime() {
    for m in MODELS.iter().filter(|m| !m.ends_with("_dequant")) {
        check(m, "onnx", "ort");
    }
    check("kws_ref_model_float32", "onnx", "ort");
}
