//! A full `Session::invoke` on a fuzzed model (checksum fixed up so validation is reached) and
//! a fuzzed input. The rule under test: a model that validates cannot make `invoke` fail or
//! panic, whatever its input bytes; and its outputs can be read.
#![no_main]
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
});
