//! `Model::from_bytes` on arbitrary bytes: an error or a model, never a panic or a bad read.
#![no_main]
use kiln_runtime::writer::{reseal, AlignedBuf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let buf = AlignedBuf::new(data);
    let _ = kiln_runtime::Model::from_bytes(buf.as_slice());
    // The same bytes with a valid checksum reach the deeper validation.
    let mut sealed = data.to_vec();
    reseal(&mut sealed);
    let buf = AlignedBuf::new(&sealed);
    if let Ok(m) = kiln_runtime::Model::from_bytes(buf.as_slice()) {
        for i in 0..m.num_tensors() {
            let t = m.tensor(i);
            let _ = m.constant_bytes(&t);
        }
    }
});
