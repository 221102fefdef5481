//! Splitting layers over threads changes nothing: every MLPerf Tiny model (int8 and f32), run
//! with 1, 2 and 3 threads on its golden inputs, gives the same output bytes (and one thread is
//! what `mlperf_int8` / `mlperf_float` hold against the reference engines).

use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{Model, Session};
use kiln_tests::{assets, npy};

const MODELS: &[&str] = &[
    "kws_ref_model",
    "vww_96_int8",
    "pretrainedResnet_quant",
    "ad01_int8",
    "kws_ref_model_float32",
    "vww_96_float",
    "pretrainedResnet",
    "ad01_fp32",
];

/// Output 0's bytes for one golden input row (raw bytes in the input's dtype).
fn run(bytes: &[u8], input: &[u8], threads: usize) -> Vec<u8> {
    let buf = AlignedBuf::new(bytes);
    let model = Model::from_bytes(buf.as_slice()).unwrap();
    let mut arena = AlignedBuf::zeroed(model.arena_size());
    let mut s = Session::new(&model, arena.as_mut_slice()).unwrap();
    s.set_threads(threads);
    s.input_bytes_mut(0).unwrap().copy_from_slice(input);
    s.invoke().unwrap();
    s.output_bytes(0).unwrap().to_vec()
}

#[test]
fn threads_give_the_bytes_of_one_thread() {
    let Some(a) = assets() else {
        eprintln!("shared assets not available; skipping");
        return;
    };
    let mut split_layers = 0;
    for model in MODELS {
        let path = a.join(format!("mlperf-tiny/{model}.tflite"));
        let bytes =
            kiln_converter::convert_file(&path).unwrap_or_else(|e| panic!("{model}: {e:#}"));
        let golden = a.join("golden").join(model);
        let inputs = npy(&golden.join("inputs.npy")).unwrap();
        let n = inputs.shape[0].min(4);
        let row = inputs.data.len() / inputs.shape[0];
        let elem = if inputs.dtype == "|i1" { 1 } else { 4 };
        for i in 0..n {
            let x: Vec<u8> = if elem == 1 {
                inputs.data[i * row..(i + 1) * row]
                    .iter()
                    .map(|&v| v as i8 as u8)
                    .collect()
            } else {
                inputs.data[i * row..(i + 1) * row]
                    .iter()
                    .flat_map(|&v| v.to_le_bytes())
                    .collect()
            };
            let one = run(&bytes, &x, 1);
            for t in [2, 3] {
                assert_eq!(
                    one,
                    run(&bytes, &x, t),
                    "{model} input {i}: {t} threads differ"
                );
            }
        }
        let buf = AlignedBuf::new(&bytes);
        let m = Model::from_bytes(buf.as_slice()).unwrap();
        split_layers += (0..m.num_ops())
            .filter(|&k| m.op_macs(&m.op(k)) >= kiln_runtime::ops::PARALLEL_MIN_MACS as u64)
            .count();
    }
    assert!(
        split_layers > 10,
        "only {split_layers} layers are large enough to split"
    );
}
