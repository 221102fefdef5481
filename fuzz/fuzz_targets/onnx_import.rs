//! The ONNX importer (tract parse, typing, kiln lowering, passes, writer) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("kiln-fuzz-{}.onnx", std::process::id()));
    let Ok(mut f) = std::fs::File::create(&path) else { return };
    if f.write_all(data).is_err() {
        return;
    }
    drop(f);
    if let Ok(g) = kiln_converter::import_file(&path) {
        let _ = kiln_converter::emit::emit(&g);
    }
});
