//! A full `Session::invoke` on a fuzzed model (checksum fixed up so validation is reached) and
//! a fuzzed input. The rule under test: a model that validates cannot make `invoke` fail or
//! panic, whatever its input bytes; its outputs can be read; and a fine-tuning head found in it
//! runs its backbone.
#![no_main]
use kiln_runtime::train::ModelHead;
use kiln_runtime::writer::{reseal, AlignedBuf};
use kiln_runtime::{Model, Session};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let split = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (model, input) = data[2..].split_at(split);
    let mut sealed = model.to_vec();
    reseal(&mut sealed);
    let buf = AlignedBuf::new(&sealed);
    let Ok(m) = Model::from_bytes(buf.as_slice()) else {
        return;
    };
    if m.arena_size() > 1 << 24 {
        return;
    }
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let Ok(mut s) = Session::new(&m, arena.as_mut_slice()) else {
        return;
    };
    for k in 0..m.num_inputs() {
        if let Ok(dst) = s.input_bytes_mut(k) {
            for (d, &v) in dst.iter_mut().zip(input.iter().cycle()) {
                *d = v;
            }
        }
    }
    if let Err(e) = s.invoke() {
        panic!("a validated model failed to invoke: {e}");
    }
    for k in 0..m.num_outputs() {
        let t = m.tensor(m.output_tensor(k).expect("output index"));
        let out = s.output_bytes(k).expect("validated output");
        assert_eq!(out.len(), t.byte_len);
    }
    // Fine-tuning's view of the same model: finding a head may refuse it, but a head found
    // must yield its parameters or a clear refusal, and its features always.
    for n in 1..=2 {
        if let Ok(mh) = ModelHead::find(&m, n) {
            let mut p = vec![0f32; mh.head.num_params()];
            let _refused_or_loaded = mh.load_params(&m, &mut p);
            let mut f = vec![0f32; mh.head.inputs()];
            if let Err(e) = mh.features(&mut s, &mut f) {
                panic!("a head's features failed on a validated model: {e}");
            }
        }
    }
});
