//! The ONNX importer (tract parse, typing, kiln lowering, passes, writer) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;

static QUIET: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    // The importer catches panics inside tract and turns them into errors; without this hook
    // libFuzzer's own would abort on them. A panic that escapes the importer still aborts:
    // libfuzzer-sys checks the target's result with catch_unwind.
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let path = std::env::temp_dir().join(format!("kiln-fuzz-{}.onnx", std::process::id()));
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    drop(f);
    if let Ok(g) = kiln_converter::import_file(&path) {
        let _ = kiln_converter::emit::emit(&g);
    }
});
