//! The TFLite importer (flatbuffer reader, op mapping, passes, planner, writer) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    // Most inputs should get past the identifier check.
    if bytes.len() >= 8 {
        bytes[4..8].copy_from_slice(b"TFL3");
    }
    if let Ok(mut g) = kiln_converter::tflite::import(&bytes) {
        if kiln_converter::passes::optimize(&mut g).is_ok() {
            let _ = kiln_converter::emit::emit(&g);
        }
    }
});
