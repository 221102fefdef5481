//! Every input parser: `.npy`, raw f32 and image files.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let _ = kiln_converter::npy::parse(data);
    let dir = std::env::temp_dir().join(format!("kiln-fuzz-in-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    for ext in ["npy", "bin", "png", "pgm", "bmp", "jpg"] {
        let p = dir.join(format!("x.{ext}"));
        if let Ok(mut f) = std::fs::File::create(&p) {
            if f.write_all(data).is_ok() {
                drop(f);
                let _ = kiln_converter::input::load_batch(&p, &[1, 8, 8, 1], &Default::default());
                let _ = kiln_converter::input::load_batch(&p, &[1, 3, 4, 4], &Default::default());
            }
        }
    }
});
