//! Splitting layers over threads changes nothing: every MLPerf Tiny model (int8 and f32), run
//! with 1, 2 and 3 threads on its golden inputs, gives the same output bytes (and one thread is
//! what `mlperf_int8` / `mlperf_float` hold against the reference engines). Nor does the
//! instruction set: every path this CPU runs gives the int8 models' bytes of the portable
//! kernels, and the f32 models the same bits on every SIMD path.

use kiln_runtime::kernels::isa::Isa;
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
    run_on(bytes, input, threads, Isa::detect())
}

/// [`run`] on the kernels of `isa`.
fn run_on(bytes: &[u8], input: &[u8], threads: usize, isa: Isa) -> Vec<u8> {
    let buf = AlignedBuf::new(bytes);
    let model = Model::from_bytes(buf.as_slice()).unwrap();
    let mut arena = AlignedBuf::zeroed(model.arena_size());
    let mut s = Session::new(&model, arena.as_mut_slice()).unwrap();
    s.set_threads(threads);
    assert!(s.set_isa(isa), "{} not runnable here", isa.name());
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
        for (i, x) in golden_rows(model, 4).0.into_iter().enumerate() {
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

/// The golden input rows of `model` as raw bytes (at most `n`), and whether they are int8.
fn golden_rows(model: &str, n: usize) -> (Vec<Vec<u8>>, bool) {
    let a = assets().expect("assets");
    let inputs = npy(&a.join("golden").join(model).join("inputs.npy")).unwrap();
    let row = inputs.data.len() / inputs.shape[0];
    let int8 = inputs.dtype == "|i1";
    let rows = (0..inputs.shape[0].min(n))
        .map(|i| {
            let r = &inputs.data[i * row..(i + 1) * row];
            if inputs.dtype == "|i1" {
                r.iter().map(|&v| v as i8 as u8).collect()
            } else {
                r.iter().flat_map(|&v| v.to_le_bytes()).collect()
            }
        })
        .collect();
    (rows, int8)
}

#[test]
fn every_isa_path_gives_the_same_outputs() {
    let Some(a) = assets() else {
        eprintln!("shared assets not available; skipping");
        return;
    };
    let paths: Vec<Isa> = Isa::available().collect();
    let mut compared = 0;
    for model in MODELS {
        let (rows, int8) = golden_rows(model, 2);
        let path = a.join(format!("mlperf-tiny/{model}.tflite"));
        let bytes =
            kiln_converter::convert_file(&path).unwrap_or_else(|e| panic!("{model}: {e:#}"));
        // int8: every path against the portable kernels' bytes. f32: the SIMD paths against
        // each other (the portable twin rounds twice and is held to an error bound instead).
        let simd: Vec<Isa> = paths
            .iter()
            .copied()
            .filter(|&i| i != Isa::Portable)
            .collect();
        let (base, others) = if !int8 {
            match simd.split_first() {
                Some((b, rest)) => (*b, rest.to_vec()),
                None => continue,
            }
        } else {
            (Isa::Portable, simd)
        };
        for x in rows {
            let want = run_on(&bytes, &x, 1, base);
            for &isa in &others {
                assert_eq!(
                    want,
                    run_on(&bytes, &x, 1, isa),
                    "{model}: {} differs from {}",
                    isa.name(),
                    base.name()
                );
                compared += 1;
            }
        }
    }
    // On a machine with a SIMD path, at least the int8 models were compared.
    if paths.len() > 1 {
        assert!(compared >= 8, "only {compared} comparisons");
    }
}
