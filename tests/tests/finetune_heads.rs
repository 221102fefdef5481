//! The head a fine-tune starts from is the model's own: for every MLPerf Tiny model (float and
//! int8, TFLite's per-channel int8 weights) and for kiln's own int8 quantization of the float
//! models (weight scales folded into the requantization), the trainer's f32 head on the
//! backbone's features reproduces the model's last dense layer on the golden inputs.

use kiln_converter::ptq::{quantize, PtqOptions};
use kiln_quantize::calibrate::Method;
use kiln_runtime::train::{train_arena_size, Loss, ModelHead, Optimizer, Trainer};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{DType, Model, Quant, Session};
use kiln_tests::{assets, npy};

/// Largest difference between the head's outputs (its last dense layer's, before any
/// softmax) and the model's own values of that tensor over `rows`, and the unit it is judged
/// in: the tensor's quantization step if it is int8, its largest magnitude if f32.
fn head_vs_model(bytes: &[u8], rows: &[Vec<u8>]) -> (f32, f32, bool) {
    let buf = AlignedBuf::new(bytes);
    let m = Model::from_bytes(buf.as_slice()).unwrap();
    let mh = ModelHead::find(&m, 1).unwrap();
    let mut params = vec![0f32; mh.head.num_params()];
    mh.load_params(&m, &mut params).unwrap();
    let mut mem = AlignedBuf::zeroed(train_arena_size(&mh.head, &Optimizer::sgd(0.1), 1));
    let mut t = Trainer::new(
        mh.head,
        Optimizer::sgd(0.1),
        Loss::CrossEntropy,
        1,
        mem.as_mut_slice(),
    )
    .unwrap();
    t.params_mut().copy_from_slice(&params);
    let op = mh.layer_op(0).unwrap();
    let yt = m.tensor(m.op_output(&m.op(op), 0));
    let q = match (yt.dtype, yt.quant) {
        (DType::I8, Quant::PerTensor { scale, zero_point }) => Some((scale, zero_point)),
        _ => None,
    };
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let mut s = Session::new(&m, arena.as_mut_slice()).unwrap();
    let (mut worst, mut largest) = (0f32, 0f32);
    for row in rows {
        s.input_bytes_mut(0).unwrap().copy_from_slice(row);
        let mut f = vec![0f32; mh.head.inputs()];
        mh.features(&mut s, &mut f).unwrap();
        let y = t.forward(&f).unwrap().to_vec();
        s.invoke_ops(mh.first_op..op + 1).unwrap();
        let got = s.arena_tensor(m.op_output(&m.op(op), 0)).unwrap();
        let model: Vec<f32> = match q {
            Some((scale, zp)) => got
                .iter()
                .map(|&b| scale * (b as i8 as i32 - zp) as f32)
                .collect(),
            None => kiln_runtime::cast::bytes_as_f32(got).to_vec(),
        };
        for (a, b) in y.iter().zip(&model) {
            let a = match q {
                Some((scale, zp)) => a.clamp(scale * (-128 - zp) as f32, scale * (127 - zp) as f32),
                None => *a,
            };
            worst = worst.max((a - b).abs());
            largest = largest.max(b.abs());
        }
    }
    match q {
        Some((scale, _)) => (worst, scale, true),
        None => (worst, largest, false),
    }
}

#[test]
fn every_mlperf_models_head_reproduces_its_outputs() {
    let a = assets().expect("the MLPerf Tiny assets (set KILN_ASSETS)");
    for (model, golden) in [
        ("kws_ref_model", "kws_ref_model"),
        ("kws_ref_model_float32", "kws_ref_model_float32"),
        ("vww_96_int8", "vww_96_int8"),
        ("vww_96_float", "vww_96_float"),
        ("pretrainedResnet_quant", "pretrainedResnet_quant"),
        ("pretrainedResnet", "pretrainedResnet"),
        ("ad01_int8", "ad01_int8"),
        ("ad01_fp32", "ad01_fp32"),
    ] {
        let src = a.join(format!("mlperf-tiny/{model}.tflite"));
        let g = kiln_converter::import_file(&src).unwrap();
        let inputs = npy(&a.join(format!("golden/{golden}/inputs.npy"))).unwrap();
        let float = g.tensors[g.inputs[0]].dtype == DType::F32
            && g.nodes
                .iter()
                .all(|n| n.kind() != kiln_runtime::OpKind::Quantize);
        let per: usize = g.tensors[g.inputs[0]].shape.iter().product();
        let mut files = vec![(model.to_string(), kiln_converter::emit::emit(&g).unwrap().0)];
        if float {
            // kiln's own int8 of the float model, calibrated on the golden inputs not judged
            // below: its weight scales live only in the requantization multipliers.
            let calib: Vec<Vec<Vec<f32>>> = inputs
                .data
                .chunks(per)
                .skip(4)
                .map(|r| vec![r.to_vec()])
                .collect();
            let opts = PtqOptions {
                method: Method::MinMax,
                int8_io: false,
            };
            let q = quantize(&g, &calib, &opts, &mut |_, _, _| {}).unwrap();
            files.push((
                format!("{model} (kiln PTQ)"),
                kiln_converter::emit::emit(&q.graph).unwrap().0,
            ));
        }
        for (model, bytes) in files {
            let buf = AlignedBuf::new(&bytes);
            let m = Model::from_bytes(buf.as_slice()).unwrap();
            let xt = m.tensor(m.input_tensor(0).unwrap());
            let rows: Vec<Vec<u8>> = inputs
                .data
                .chunks(per)
                .take(4)
                .map(|r| match xt.dtype {
                    DType::I8 => r.iter().map(|&v| v as i8 as u8).collect(),
                    _ => r.iter().flat_map(|v| v.to_le_bytes()).collect(),
                })
                .collect();
            let (worst, unit, int8) = head_vs_model(&bytes, &rows);
            // int8: within 0.55 steps of the model's requantized logits (the model rounds them, the
            // f32 head does not). f32: within 1e-5 of the largest logit.
            let bound = if int8 { 0.55 * unit } else { 1e-5 * unit };
            println!("{model}: head vs model {worst:e} (bound {bound:e})");
            assert!(
                worst <= bound,
                "{model}: head differs from the model by {worst}"
            );
        }
    }
}
