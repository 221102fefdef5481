//! A full `Session::run` on a fuzzed model (checksum fixed up so validation is reached) and a
//! fuzzed input: every loaded model must run without panicking.
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
    let Ok(m) = Model::from_bytes(buf.as_slice()) else { return };
    if m.arena_size() > 1 << 24 {
        return;
    }
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let Ok(mut s) = Session::new(&m, arena.as_mut_slice()) else { return };
    for k in 0..m.num_inputs() {
        if let Ok(dst) = s.input_bytes_mut(k) {
            for (d, &v) in dst.iter_mut().zip(input.iter().cycle()) {
                *d = v;
            }
        }
    }
    let _ = s.invoke();
    for k in 0..m.num_outputs() {
        let _ = s.output_bytes(k);
    }
});
