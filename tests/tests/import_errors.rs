//! Import errors are specific: an unsupported model gets one error naming every unsupported op
//! with its node; corrupt or foreign files name the problem.

use kiln_tests::workspace;
use std::path::PathBuf;

fn conformance_dir() -> Option<PathBuf> {
    kiln_tests::data_dir(
        "KILN_CONFORMANCE",
        "build/conformance",
        "_kiln_unsupported.onnx",
    )
}

#[test]
fn onnx_unsupported_ops_are_listed_together() {
    let Some(dir) = conformance_dir() else {
        eprintln!("generated cases missing (run scripts/test.sh); skipping");
        return;
    };
    let err = format!(
        "{:#}",
        kiln_converter::import_file(&dir.join("_kiln_unsupported.onnx")).unwrap_err()
    );
    // Hardmax is two tract ops (an argmax and a one-hot): both are named as the ONNX op.
    assert!(err.contains("unsupported ops (3)"), "{err}");
    assert!(err.contains("LRN (node 'my_lrn', tract's Lrn)"), "{err}");
    assert!(err.contains("Hardmax (node 'my_hardmax."), "{err}");
    assert!(!err.contains("my_relu"), "{err}");
}

#[test]
fn foreign_and_corrupt_files() {
    let dir = std::env::temp_dir().join(format!("kiln-import-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let txt = dir.join("notes.txt");
    std::fs::write(&txt, "hello").unwrap();
    let err = format!("{:#}", kiln_converter::import_file(&txt).unwrap_err());
    assert!(err.contains("cannot tell the model format"), "{err}");
    let bad = dir.join("bad.tflite");
    std::fs::write(&bad, b"\x10\x00\x00\x00TFL3\xff\xff\xff\xff").unwrap();
    let err = format!("{:#}", kiln_converter::import_file(&bad).unwrap_err());
    assert!(
        err.contains("corrupt flatbuffer") && err.contains("bad.tflite"),
        "{err}"
    );
    let bad = dir.join("bad.onnx");
    std::fs::write(&bad, b"\x08\x07garbage").unwrap();
    let err = format!("{:#}", kiln_converter::import_file(&bad).unwrap_err());
    assert!(err.contains("bad.onnx") && err.contains("ONNX"), "{err}");
    let missing = dir.join("missing.onnx");
    let err = format!("{:#}", kiln_converter::import_file(&missing).unwrap_err());
    assert!(err.contains("missing.onnx"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Inputs the fuzzers found crashing the importers (`fuzz/`); each must now be a clean error.
#[test]
fn fuzz_regressions_are_errors() {
    let dir = workspace().join("tests/data/fuzz-regressions");
    // tflite_import: a CONV_2D on int8 tensors of rank 1 indexed the shape as if it were 4-D.
    let mut bytes = std::fs::read(dir.join("tflite_import-conv-rank.tflite")).unwrap();
    bytes[4..8].copy_from_slice(b"TFL3"); // as the fuzz target does
    let err = format!("{:#}", kiln_converter::tflite::import(&bytes).unwrap_err());
    assert!(err.contains("expected rank 4"), "{err}");
    // tflite_import: depthwise int8 weights whose shape promised more bytes than the buffer
    // held (an out-of-bounds index), and a shape of 8e8 elements that made the importer
    // allocate gigabytes: both are now rejected when the tensor table is read.
    for f in [
        "tflite_import-short-weights.tflite",
        "tflite_import-huge-shape.tflite",
    ] {
        let mut bytes = std::fs::read(dir.join(f)).unwrap();
        bytes[4..8].copy_from_slice(b"TFL3");
        let err = format!("{:#}", kiln_converter::tflite::import(&bytes).unwrap_err());
        assert!(err.contains("more than 2^28 elements"), "{f}: {err}");
    }
    // tflite_import: a conv naming tensor -150995200 as its weights (only -1, "absent", is
    // valid) indexed the tensor table with a wrapped negative number.
    // tflite_import: depthwise int8 weights of rank 2 were indexed as [1, KH, KW, O].
    let mut bytes = std::fs::read(dir.join("tflite_import-dw-weights-rank.tflite")).unwrap();
    bytes[4..8].copy_from_slice(b"TFL3");
    let err = format!("{:#}", kiln_converter::tflite::import(&bytes).unwrap_err());
    assert!(err.contains("expected rank 4"), "{err}");
    let mut bytes = std::fs::read(dir.join("tflite_import-absent-weights.tflite")).unwrap();
    bytes[4..8].copy_from_slice(b"TFL3");
    let err = format!("{:#}", kiln_converter::tflite::import(&bytes).unwrap_err());
    // The same mutation also gave a tensor a negative dimension, which the tensor table now
    // refuses first; either way the file is refused with an error that names the fault.
    assert!(
        err.contains("names tensor -150995200") || err.contains("dimension -82 is not a size"),
        "{err}"
    );
    // tflite_import: an int8 RELU_N1_TO_1 with an output scale of 6.5e-12 overflowed the
    // clamp bounds of its lookup table (-1 / scale past i32), which then crossed: a panic in
    // converter::lut. The model is valid, if extreme: it now imports, with the bounds
    // saturated as TFLite's are (every input byte at -128 or 127 but those within 1e-12 of 0).
    let mut bytes = std::fs::read(dir.join("tflite_import-lut-zero-point.tflite")).unwrap();
    bytes[4..8].copy_from_slice(b"TFL3");
    let mut g = kiln_converter::tflite::import(&bytes).unwrap();
    kiln_converter::passes::optimize(&mut g).unwrap();
    kiln_converter::emit::emit(&g).unwrap();
    // onnx_import: a graph input missing from tract's value table panicked inside tract-onnx.
    let path = dir.join("onnx_import-missing-value-info.onnx");
    let err = format!("{:#}", kiln_converter::import_file(&path).unwrap_err());
    assert!(
        err.contains("onnx_import-missing-value-info.onnx") && err.contains("malformed"),
        "{err}"
    );
}
