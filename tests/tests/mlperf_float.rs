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

#[test]
fn fp16_weights_halve_the_file_and_keep_the_answers() {
    let Some(a) = assets() else { return };
    for model in MODELS {
        let path = a.join(format!("mlperf-tiny/{model}.tflite"));
        let mut g = kiln_converter::import_file(&path).unwrap();
        let f32_bytes = kiln_converter::emit::emit(&g).unwrap().0;
        let n_conv = kiln_converter::passes::fp16_weights::run(&mut g);
        let f16_bytes = kiln_converter::emit::emit(&g).unwrap().0;
        let golden = a.join("golden").join(model);
        let inputs = npy(&golden.join("inputs.npy")).unwrap();
        let n = inputs.shape[0];
        let isz = inputs.data.len() / n;
        let mut worst = 0f32;
        for i in 0..n {
            let x = &inputs.data[i * isz..(i + 1) * isz];
            let y32 = run_f32(&f32_bytes, x).unwrap();
            let y16 = run_f32(&f16_bytes, x).unwrap();
            worst = worst.max(rel_err(&y16, &y32));
        }
        let ratio = f16_bytes.len() as f64 / f32_bytes.len() as f64;
        eprintln!("{model}: {n_conv} weight tensors in f16, {} -> {} bytes ({:.1}%), max rel error vs f32 {worst:.2e}", f32_bytes.len(), f16_bytes.len(), 100.0 * ratio);
        assert!(n_conv > 0 && ratio < 0.56, "{model}: ratio {ratio}");
        assert!(
            worst < 1e-2,
            "{model}: fp16 weights moved outputs by {worst}"
        );
    }
}
