//! Already-quantized ONNX (QDQ) models: kiln lowers them to int8 with the model's own scales and
//! zero points and must agree with onnxruntime running the same QDQ graph. onnxruntime
//! requantizes in float while kiln uses TFLite's fixed-point arithmetic, so a few LSB apart is
//! expected (the golden README measures the same gap between onnxruntime and TFLite).

use kiln_converter::eval::argmax;
use kiln_converter::verify::run_kiln;
use kiln_tests::{assets, int8_op_count, npy};

#[test]
fn qdq_models_run_in_int8_and_agree_with_onnxruntime() {
    let Some(a) = assets() else {
        eprintln!("shared assets not available; skipping");
        return;
    };
    // (model, max |kiln - ort| in output LSB)
    let cases = [
        ("kws_ref_model", 20),
        ("vww_96_int8", 6),
        ("pretrainedResnet_quant", 20),
        ("ad01_int8", 6),
    ];
    let mut failures = Vec::new();
    for (model, max_lsb) in cases {
        let g = kiln_converter::import_file(&a.join(format!("onnx/{model}.onnx")))
            .unwrap_or_else(|e| panic!("{model}: {e:#}"));
        let int8_ops = int8_op_count(&g);
        let float_ops = g.nodes.len() - int8_ops;
        let bytes = kiln_converter::emit::emit(&g).unwrap().0;
        let golden = a.join("golden").join(model);
        let inputs = npy(&golden.join("inputs.npy")).unwrap();
        let ort = npy(&golden.join("outputs_ort.npy")).unwrap();
        let n = inputs.shape[0];
        let (isz, osz) = (inputs.data.len() / n, ort.data.len() / n);
        let (mut worst, mut top1) = (0f32, 0);
        let buf = kiln_runtime::writer::AlignedBuf::new(&bytes);
        let m = kiln_runtime::Model::from_bytes(buf.as_slice()).unwrap();
        let ot = m.tensor(m.output_tensor(0).unwrap());
        let (scale, zp) = match ot.quant {
            kiln_runtime::Quant::PerTensor { scale, zero_point } => (scale, zero_point),
            _ => panic!("{model}: int8 output expected"),
        };
        let it = m.tensor(m.input_tensor(0).unwrap());
        let (iscale, izp) = match it.quant {
            kiln_runtime::Quant::PerTensor { scale, zero_point } => (scale, zero_point),
            _ => panic!("{model}: int8 input expected"),
        };
        for i in 0..n {
            // run_kiln takes real values and quantizes them with the input's parameters.
            let x: Vec<f32> = inputs.data[i * isz..(i + 1) * isz]
                .iter()
                .map(|&q| (q - izp as f32) * iscale)
                .collect();
            let y = run_kiln(&bytes, &[vec![x]]).unwrap().remove(0).remove(0);
            let yq: Vec<f32> = y.iter().map(|v| (v / scale).round() + zp as f32).collect();
            let want = &ort.data[i * osz..(i + 1) * osz];
            worst = yq
                .iter()
                .zip(want)
                .fold(worst, |m, (a, b)| m.max((a - b).abs()));
            top1 += (argmax(&yq) == argmax(want)) as usize;
        }
        eprintln!("{model}: {int8_ops} int8 ops, {float_ops} float ops; max |kiln - ort| {worst} LSB; top-1 agrees {top1}/{n}; {} bytes", bytes.len());
        let classifier = model != "ad01_int8";
        if worst > max_lsb as f32 || (classifier && top1 != n) || float_ops > 2 {
            failures.push(format!(
                "{model}: {worst} LSB, top-1 {top1}/{n}, {float_ops} float ops"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
