//! The `kiln` binary as a user meets it: each command's dtype/shape/layout handling and error
//! paths, the signature policy, key handling, and a property test that no argument list makes
//! the CLI panic or succeed silently on bad input.

use kiln_runtime::ops::{DequantizeParams, OpParams, UnaryKind, UnaryParams};
use kiln_runtime::writer::{write, ModelSpec, OpSpec, TensorData, TensorSpec};
use kiln_runtime::{DType, Quant};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    kiln_env(args, &[])
}

fn kiln_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.args(args).env_remove("KILN_TRUSTED_KEY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running kiln")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure with status 1 and a message containing every `needle`.
#[track_caller]
fn fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}\nstderr: {err}",
        stdout(o)
    );
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in: {err}");
    }
}

/// x f32 [1,4] -> dense(w = 4x4 permutation scaled) -> y f32 [1,4]: class k scores x[perm[k]].
fn f32_model() -> Vec<u8> {
    let w: Vec<f32> = (0..16)
        .map(|i| if i % 5 == 0 { 1.0 } else { 0.0 })
        .collect();
    write(&kiln_runtime::writer::example_dense(4, &w)).unwrap()
}

/// x int8 [1,4] (scale 0.5, zero point 10) -> dequantize -> y f32 [1,4].
fn int8_input_model() -> Vec<u8> {
    write(&ModelSpec {
        tensors: vec![
            TensorSpec {
                name: "x".into(),
                dtype: DType::I8,
                shape: vec![1, 4],
                data: TensorData::Arena { offset: 0 },
                quant: Quant::PerTensor {
                    scale: 0.5,
                    zero_point: 10,
                },
            },
            TensorSpec {
                name: "y".into(),
                dtype: DType::F32,
                shape: vec![1, 4],
                data: TensorData::Arena { offset: 16 },
                quant: Quant::None,
            },
        ],
        ops: vec![OpSpec::new(
            "dq",
            OpParams::Dequantize(DequantizeParams),
            vec![Some(0)],
            vec![1],
        )],
        inputs: vec![0],
        outputs: vec![1],
    })
    .unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(f.p("f32.kiln"), f32_model()).unwrap();
        std::fs::write(f.p("i8.kiln"), int8_input_model()).unwrap();
        f
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).display().to_string()
    }
    fn npy_f32(&self, name: &str, shape: &[usize], v: &[f32]) -> String {
        std::fs::write(self.p(name), kiln_converter::npy::to_bytes_f32(shape, v)).unwrap();
        self.s(name)
    }
    fn npy_i8(&self, name: &str, shape: &[usize], v: &[i8]) -> String {
        std::fs::write(self.p(name), kiln_converter::npy::to_bytes_i8(shape, v)).unwrap();
        self.s(name)
    }
}

fn npy_u8(path: &Path, shape: &[usize], v: &[u8]) {
    use npyz::WriterBuilder;
    let mut out = Vec::new();
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    w.extend(v.iter().copied()).unwrap();
    w.finish().unwrap();
    std::fs::write(path, out).unwrap();
}

#[test]
fn int8_inputs_are_taken_as_is_and_floats_are_quantized_and_said_so() {
    let f = Fixture::new();
    // int8 data for an int8 input: taken as is. x = [12, 14, 8, 30] -> y = 0.5 (x - 10).
    let xi = f.npy_i8("x_i8.npy", &[1, 4], &[12, 14, 8, 30]);
    let o = kiln(&["run", &f.s("i8.kiln"), "-i", &xi, "--top-k", "4", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let top = &v["results"][0];
    assert_eq!(top[0]["class"], 3);
    assert_eq!(top[0]["score"], 10.0);
    assert_eq!(top[3]["score"], -1.0);
    assert!(!stderr(&o).contains("quantized"), "{}", stderr(&o));
    // Float data for the same input: quantized with its scale/zero point, and the user is told.
    let xf = f.npy_f32("x_f.npy", &[1, 4], &[1.0, 2.0, -1.0, 10.0]);
    let o = kiln(&["run", &f.s("i8.kiln"), "-i", &xf, "--top-k", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("quantized to int8"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["results"][0][0]["score"], 10.0);
    // eval on the int8 input: the int8 values are not quantized a second time.
    let labels = f.npy_i8("y.npy", &[2], &[3, 1]);
    let x2 = f.npy_i8("x2.npy", &[2, 1, 4], &[12, 14, 8, 30, 0, 100, 20, 30]);
    let o = kiln(&["eval", &f.s("i8.kiln"), "-i", &x2, "-l", &labels, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["metrics"]["accuracy"], 1.0);
}

#[test]
fn export_records_quantized_float_input_and_exact_int8_rows() {
    let f = Fixture::new();
    let xf = f.npy_f32(
        "x.npy",
        &[2, 4],
        &[1.0, 2.0, -1.0, 10.0, 0.5, 0.0, 0.0, 0.0],
    );
    let out = f.p("fw");
    let export_row = |row: &str| {
        kiln(&[
            "export",
            &f.s("i8.kiln"),
            "-o",
            &out.display().to_string(),
            "-i",
            &xf,
            "--row",
            row,
        ])
    };
    let o = export_row("0");
    assert!(o.status.success(), "{}", stderr(&o));
    // 1.0 / 0.5 + 10 = 12, ...: the floats are quantized, not truncated to int8.
    assert_eq!(
        std::fs::read(out.join("input.bin")).unwrap(),
        [12u8, 14, 8, 30]
    );
    let rs = std::fs::read_to_string(out.join("model.rs")).unwrap();
    assert!(rs.contains("INPUT_SCALE: f32 = 5e-1"), "{rs}");
    assert!(rs.contains("INPUT_ZERO_POINT: i32 = 10"), "{rs}");
    for row in ["2", "18446744073709551615", "4611686018427387904"] {
        let o = export_row(row);
        fails(&o, &["no row", "holds 2 inputs"]);
    }
}

#[test]
fn dtype_and_shape_mismatches_are_refused_with_both_sides_named() {
    let f = Fixture::new();
    // A uint8 array for a float input.
    npy_u8(&f.p("u8.npy"), &[1, 4], &[0, 255, 3, 4]);
    let o = kiln(&["run", &f.s("f32.kiln"), "-i", &f.s("u8.npy")]);
    fails(&o, &["uint8", "takes float", "f32 [1, 4]"]);
    // int8 data for a float input.
    let xi = f.npy_i8("xi.npy", &[1, 4], &[1, 2, 3, 4]);
    fails(
        &kiln(&["run", &f.s("f32.kiln"), "-i", &xi]),
        &["int8", "takes float"],
    );
    // A wrong shape with the right element count.
    let x = f.npy_f32("x22.npy", &[2, 2], &[0.0; 4]);
    fails(
        &kiln(&["run", &f.s("f32.kiln"), "-i", &x]),
        &["shape [2, 2]", "[1, 4]"],
    );
    // NaN inputs.
    let x = f.npy_f32("nan.npy", &[1, 4], &[0.0, f32::NAN, 0.0, 0.0]);
    fails(&kiln(&["run", &f.s("f32.kiln"), "-i", &x]), &["NaN"]);
}

#[test]
fn eval_refuses_labels_out_of_range_and_names_the_file() {
    let f = Fixture::new();
    let x = f.npy_f32("x.npy", &[2, 1, 4], &[0.0; 8]);
    let y = f.npy_i8("y.npy", &[2], &[0, 99]);
    fails(
        &kiln(&["eval", &f.s("f32.kiln"), "-i", &x, "-l", &y]),
        &["y.npy", "label #1 is 99", "4 classes"],
    );
    let y = f.npy_f32("yf.npy", &[2], &[0.0, 0.625]);
    fails(
        &kiln(&["eval", &f.s("f32.kiln"), "-i", &x, "-l", &y]),
        &["yf.npy", "label #1 is 0.625"],
    );
}

#[test]
fn eval_into_a_closed_pipe_does_not_panic() {
    let f = Fixture::new();
    let n = 64;
    let x = f.npy_f32("x.npy", &[n, 1, 4], &vec![0.5; n * 4]);
    let y = f.npy_i8("y.npy", &[n], &vec![0; n]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["eval", &f.s("f32.kiln"), "-i", &x, "-l", &y])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before kiln writes
    let o = child.wait_with_output().unwrap();
    assert_ne!(o.status.code(), Some(101), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn a_trusted_key_refuses_unsigned_and_foreign_models() {
    let f = Fixture::new();
    let key = f.s("dev");
    assert!(kiln(&["keygen", &key]).status.success());
    let other = f.s("other");
    assert!(kiln(&["keygen", &other]).status.success());
    let signed = f.s("signed.kiln");
    let o = kiln(&[
        "sign",
        &f.s("f32.kiln"),
        "--key",
        &format!("{key}.secret"),
        "-o",
        &signed,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let trusted = [("KILN_TRUSTED_KEY", format!("{key}.pub"))];
    let env: Vec<(&str, &str)> = trusted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert!(kiln_env(&["inspect", &signed], &env).status.success());
    // The same model with its trailer stripped: refused, not run unverified.
    fails(
        &kiln_env(&["inspect", &f.s("f32.kiln")], &env),
        &["not signed", "KILN_TRUSTED_KEY"],
    );
    fails(
        &kiln_env(&["run", &f.s("f32.kiln"), "-i", "x.npy"], &env),
        &["not signed"],
    );
    // Signed by another key: refused.
    let foreign = f.s("foreign.kiln");
    assert!(kiln(&[
        "sign",
        &f.s("f32.kiln"),
        "--key",
        &format!("{other}.secret"),
        "-o",
        &foreign
    ])
    .status
    .success());
    fails(
        &kiln_env(&["inspect", &foreign], &env),
        &["refused", "signature"],
    );
}

#[cfg(unix)]
#[test]
fn keys_are_private_never_overwritten_and_checked() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let name = f.s("dev.v2");
    let o = kiln(&["keygen", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let secret = f.p("dev.v2.secret");
    assert!(f.p("dev.v2.pub").is_file() && !f.p("dev.secret").exists());
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&secret).unwrap();
    fails(&kiln(&["keygen", &name]), &["already exists"]);
    assert_eq!(std::fs::read(&secret).unwrap(), before);
    // A secret key whose public half does not match its seed.
    let mut hex = std::fs::read_to_string(&secret).unwrap();
    let flip = if hex.as_bytes()[70] == b'0' { "1" } else { "0" };
    hex.replace_range(70..71, flip);
    std::fs::write(f.p("bad.secret"), hex).unwrap();
    fails(
        &kiln(&["sign", &f.s("f32.kiln"), "--key", &f.s("bad.secret")]),
        &["does not match its seed"],
    );
    // Multibyte characters in a key file.
    std::fs::write(f.p("mb.secret"), "é".repeat(64)).unwrap();
    fails(
        &kiln(&["sign", &f.s("f32.kiln"), "--key", &f.s("mb.secret")]),
        &["hex digits"],
    );
}

#[test]
fn files_kiln_reads_are_regular_and_capped() {
    let f = Fixture::new();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/dev/zero", f.p("zero.npy")).unwrap();
        fails(
            &kiln(&["run", &f.s("f32.kiln"), "-i", &f.s("zero.npy")]),
            &["not a regular file"],
        );
        fails(&kiln(&["inspect", "/dev/zero"]), &["not a regular file"]);
    }
    let x = f.npy_f32("x.npy", &[1, 4], &[0.0; 4]);
    fails(
        &kiln(&["--max-file-size", "50", "run", &f.s("f32.kiln"), "-i", &x]),
        &["over the 50-byte limit", "--max-file-size"],
    );
    // --save onto a device is refused rather than replacing it.
    #[cfg(unix)]
    fails(
        &kiln(&["run", &f.s("f32.kiln"), "-i", &x, "--save", "/dev/null"]),
        &["not a regular file"],
    );
}

#[test]
fn convert_never_replaces_its_source_and_shapes_are_checked() {
    let f = Fixture::new();
    let src = f.p("m.onnx");
    std::fs::write(&src, b"not really onnx").unwrap();
    fails(
        &kiln(&["convert", &f.s("m.onnx"), "-o", &f.s("m.onnx")]),
        &["replace the source"],
    );
    assert_eq!(std::fs::read(&src).unwrap(), b"not really onnx");
    for (shape, msg) in [
        ("0,8", "dimension 0"),
        ("99999999999,8", "elements"),
        ("1,x", "bad dimension"),
    ] {
        let o = kiln(&["convert", &f.s("m.onnx"), "--input-shape", shape]);
        assert_eq!(o.status.code(), Some(2), "{shape}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{shape}: {}", stderr(&o));
    }
}

#[test]
fn inspect_shows_version_and_io_quantization() {
    let f = Fixture::new();
    let o = kiln(&["inspect", &f.s("i8.kiln")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("format version 4"), "{s}");
    assert!(s.contains("scale 5e-1 zero point 10"), "{s}");
    let o = kiln(&["inspect", &f.s("i8.kiln"), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["inputs"][0]["zero_point"], 10);
    assert_eq!(v["format_version"], 4);
}

#[test]
fn a_file_of_another_format_version_names_both_versions() {
    let f = Fixture::new();
    let mut b = f32_model();
    b[4] = 2; // format version 2
    kiln_runtime::writer::reseal(&mut b);
    std::fs::write(f.p("old.kiln"), b).unwrap();
    fails(
        &kiln(&["inspect", &f.s("old.kiln")]),
        &["version 2", "reads version 4", "re-convert"],
    );
}

#[test]
fn finetune_learns_a_new_mapping_and_refuses_bad_data() {
    let f = Fixture::new();
    // The model scores class k by x[k]; the new task labels each row by the argmax of x
    // reversed, so the untuned head is right only by chance.
    let n = 200;
    let xs: Vec<f32> = (0..n * 4)
        .map(|i| (((i * 7919) % 1009) as f32 / 1009.0) * 2.0 - 1.0)
        .collect();
    let ys: Vec<f32> = xs
        .chunks(4)
        .map(|r| {
            let rev = [r[3], r[2], r[1], r[0]];
            (0..4).fold(0, |b, k| if rev[k] > rev[b] { k } else { b }) as f32
        })
        .collect();
    let x = f.npy_f32("x.npy", &[n, 1, 4], &xs);
    let y = f.npy_f32("y.npy", &[n], &ys);
    let out = f.s("tuned.kiln");
    let o = kiln(&[
        "finetune",
        &f.s("f32.kiln"),
        "-i",
        &x,
        "-l",
        &y,
        "-o",
        &out,
        "--epochs",
        "40",
        "--lr",
        "0.05",
        "--batch",
        "4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let before = j["before"]["accuracy"].as_f64().unwrap();
    let after = j["tuned_file_accuracy"].as_f64().unwrap();
    assert!(
        before < 0.5 && after > 0.95,
        "{before} -> {after}: {}",
        stdout(&o)
    );
    // The written file is a loadable model that scores the same on the held-out rows.
    let e = kiln(&["eval", &out, "-i", &x, "-l", &y, "--json"]);
    assert!(e.status.success(), "{}", stderr(&e));
    let acc = serde_json::from_str::<serde_json::Value>(&stdout(&e)).unwrap()["metrics"]
        ["accuracy"]
        .as_f64()
        .unwrap();
    assert!(acc > 0.95, "{acc}");
    let args = |extra: &[&str], labels: &str| {
        let mut a = vec!["finetune", "MODEL", "-i", "X", "-l", "L", "-o", "OUT"];
        a.extend_from_slice(extra);
        a.iter()
            .map(|s| match *s {
                "MODEL" => f.s("f32.kiln"),
                "X" => x.clone(),
                "L" => labels.to_string(),
                "OUT" => f.s("bad_out.kiln"),
                s => s.to_string(),
            })
            .collect::<Vec<String>>()
    };
    let run = |extra: &[&str], labels: &str| {
        let a = args(extra, labels);
        kiln(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let mut bad = ys.clone();
    bad[7] = 9.0;
    let yb = f.npy_f32("yb.npy", &[n], &bad);
    fails(&run(&[], &yb), &["yb.npy", "label #7 is 9", "4 classes"]);
    let ys3 = f.npy_f32("y3.npy", &[3], &ys[..3]);
    fails(&run(&[], &ys3), &["200 inputs", "3 labels"]);
    fails(
        &run(&["--head", "2"], &y),
        &["--head 2", "fewer dense layers"],
    );
    fails(
        &run(&["--optimizer", "sgd", "--lr", "3e38", "--batch", "1"], &y),
        &["the loss is NaN or infinite", "step", "--lr"],
    );
    fails(&run(&["--loss", "mse"], &y), &["y.npy", "[N, 4]"]);
    fails(&run(&["--val-split", "1.5"], &y), &["--val-split"]);
    assert!(!f.p("bad_out.kiln").exists(), "a failed run wrote a file");
}

fn subcommand_args(f: &Fixture) -> Vec<Vec<String>> {
    let m = f.s("f32.kiln");
    let bad = f.s("bad.bin");
    vec![
        vec!["convert".into(), bad.clone()],
        vec![
            "quantize".into(),
            bad.clone(),
            "--calib".into(),
            bad.clone(),
        ],
        vec!["inspect".into(), bad.clone()],
        vec!["run".into(), m.clone(), "-i".into(), bad.clone()],
        vec!["run".into(), bad.clone(), "-i".into(), bad.clone()],
        vec![
            "eval".into(),
            m.clone(),
            "-i".into(),
            bad.clone(),
            "-l".into(),
            bad.clone(),
        ],
        vec!["verify".into(), bad.clone()],
        vec!["export".into(), bad.clone(), "-o".into(), f.s("out")],
        vec![
            "export".into(),
            m.clone(),
            "-o".into(),
            f.s("out"),
            "-i".into(),
            bad.clone(),
        ],
        vec!["sign".into(), m.clone(), "--key".into(), bad.clone()],
        vec![
            "finetune".into(),
            m.clone(),
            "-i".into(),
            bad.clone(),
            "-l".into(),
            bad.clone(),
            "-o".into(),
            f.s("tuned.kiln"),
        ],
        vec![
            "check-signature".into(),
            m.clone(),
            "--pub".into(),
            bad.clone(),
        ],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Every subcommand, given a file of arbitrary bytes (named like an input it takes) or an
    /// arbitrary extra argument, exits 1 or 2 with a message: never a panic (101), never a
    /// silent success.
    #[test]
    fn bad_files_and_arguments_get_an_error_with_a_message(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ext in prop::sample::select(vec!["npy", "kiln", "onnx", "tflite", "png", "bin", "pub", "secret"]),
        which in 0usize..12,
        extra in prop::sample::select(vec!["", "--top-k=0", "--row=99", "--samples=0", "--layout=hwc", "--max-samples=0", "--std=0"]),
    ) {
        let f = Fixture::new();
        let mut args = subcommand_args(&f)[which].clone();
        let bad = f.p(&format!("bad.{ext}"));
        std::fs::write(&bad, &bytes).unwrap();
        for a in args.iter_mut() {
            if a.ends_with("bad.bin") {
                *a = bad.display().to_string();
            }
        }
        if !extra.is_empty() {
            args.push(extra.to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = kiln(&refs);
        let code = o.status.code();
        prop_assert!(code == Some(1) || code == Some(2), "{args:?}: exit {code:?}\n{}", stderr(&o));
        prop_assert!(!stderr(&o).trim().is_empty(), "{args:?}: no message");
        prop_assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
}

/// An ONNX model `y = op(x, C)` with x float [1, 4] and a constant C [4, 4] (MatMul) or [1, 4]
/// (Add), written with tract's own protobuf types. `twice` adds a second node writing `y`.
fn onnx_model(op: &str, c: &[f32], twice: bool) -> Vec<u8> {
    use prost::Message;
    use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
    use tract_onnx::pb::{
        type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
        TensorShapeProto, TypeProto, ValueInfoProto,
    };
    let value = |name: &str| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: [1, 4]
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let node = |name: &str| NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: vec!["x".into(), "c".into()],
        output: vec!["y".into()],
        ..Default::default()
    };
    let mut nodes = vec![node("first")];
    if twice {
        nodes.push(node("second"));
    }
    let dims = if c.len() == 16 {
        vec![4, 4]
    } else {
        vec![1, 4]
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: nodes,
            initializer: vec![TensorProto {
                name: "c".into(),
                data_type: 1,
                dims,
                float_data: c.to_vec(),
                ..Default::default()
            }],
            input: vec![value("x")],
            output: vec![value("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn identity4() -> Vec<f32> {
    (0..16)
        .map(|i| if i % 5 == 0 { 1.0 } else { 0.0 })
        .collect()
}

#[test]
fn convert_refuses_nan_weights_and_values_written_twice() {
    let f = Fixture::new();
    std::fs::write(f.p("ok.onnx"), onnx_model("MatMul", &identity4(), false)).unwrap();
    let o = kiln(&["convert", &f.s("ok.onnx"), "-o", &f.s("ok.kiln")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut w = identity4();
    w[6] = f32::NAN;
    std::fs::write(f.p("nan.onnx"), onnx_model("MatMul", &w, false)).unwrap();
    fails(
        &kiln(&["convert", &f.s("nan.onnx")]),
        &["nan.onnx", "node 'first'", "holds NaN"],
    );
    std::fs::write(f.p("twice.onnx"), onnx_model("MatMul", &identity4(), true)).unwrap();
    fails(
        &kiln(&["convert", &f.s("twice.onnx")]),
        &[
            "value 'y' is written twice",
            "node 'first'",
            "node 'second'",
        ],
    );
}

#[test]
fn quantize_refuses_calibration_data_it_cannot_measure() {
    let f = Fixture::new();
    std::fs::write(f.p("m.onnx"), onnx_model("MatMul", &identity4(), false)).unwrap();
    let zeros = f.npy_f32("zeros.npy", &[8, 1, 4], &[0.0; 32]);
    fails(
        &kiln(&["quantize", &f.s("m.onnx"), "--calib", &zeros]),
        &["all zeros"],
    );
    let mut huge = vec![0.5f32; 32];
    huge[3] = 3e38;
    huge[9] = -3e38;
    let huge = f.npy_f32("huge.npy", &[8, 1, 4], &huge);
    fails(
        &kiln(&["quantize", &f.s("m.onnx"), "--calib", &huge]),
        &["too large", "3e38"],
    );
    let o = kiln(&[
        "quantize",
        &f.s("m.onnx"),
        "--calib",
        &zeros,
        "--input-shape",
        "99999999999,4",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A calibration set it can measure works, and the int8 file validates.
    let x: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 8.0).collect();
    let x = f.npy_f32("x.npy", &[8, 1, 4], &x);
    let o = kiln(&[
        "quantize",
        &f.s("m.onnx"),
        "--calib",
        &x,
        "-o",
        &f.s("q.kiln"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(kiln(&["inspect", &f.s("q.kiln")]).status.success());
}

#[test]
fn verify_never_calls_non_finite_outputs_ok() {
    let f = Fixture::new();
    // y = x + c with c[2] = -inf: both engines give -inf there. Equal infinities must not read
    // as "no difference" (f32::max ignores the NaN that inf - inf makes).
    std::fs::write(
        f.p("inf.onnx"),
        onnx_model("Add", &[0.0, 1.0, f32::NEG_INFINITY, 0.0], false),
    )
    .unwrap();
    let o = kiln(&["verify", &f.s("inf.onnx"), "--samples", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("MISMATCH"), "{}", stdout(&o));
    assert!(stdout(&o).contains("NaN/infinite"), "{}", stdout(&o));
    // A finite model verifies, and --samples 0 is refused as an argument.
    std::fs::write(f.p("ok.onnx"), onnx_model("MatMul", &identity4(), false)).unwrap();
    let o = kiln(&["verify", &f.s("ok.onnx"), "--samples", "2"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("tract") && stdout(&o).contains("OK"),
        "{}",
        stdout(&o)
    );
    let o = kiln(&["verify", &f.s("ok.onnx"), "--samples", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// Keras models exported to .tflite by `scripts/gen_keras_models.py` (committed with Keras'
/// own outputs): kiln matches Keras, and `kiln verify` (LiteRT's reference kernels, through
/// `$KILN_PYTHON`, which `scripts/test.sh` sets to the project venv) says OK. Flatten with a
/// dynamic batch is SHAPE / STRIDED_SLICE / PACK / RESHAPE in the file; PReLU is PRELU; the
/// autoencoder is TRANSPOSE_CONV and TILE; LayerNormalization is SQUARED_DIFFERENCE and RSQRT;
/// the segmentation head is RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR; the unrolled LSTM and
/// GRU are SPLIT and UNPACK around FULLY_CONNECTED; Keras 2's LSTM is one
/// UNIDIRECTIONAL_SEQUENCE_LSTM (verify resets LiteRT's variable state before each input).
#[test]
fn keras_models_match_keras_and_verify() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/keras");
    let f = Fixture::new();
    for name in [
        "conv1d",
        "flatten",
        "prelu",
        "autoencoder",
        "layernorm",
        "mobile",
        "segment",
        "lstm_unrolled",
        "gru_unrolled",
        "lstm_fused",
    ] {
        let model = dir.join(format!("{name}.tflite")).display().to_string();
        let x = dir.join(format!("{name}_inputs.npy")).display().to_string();
        let k = f.s(&format!("{name}.kiln"));
        let o = kiln(&["convert", &model, "-o", &k]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let saved = f.s(&format!("{name}_out.npy"));
        let o = kiln(&["run", &k, "-i", &x, "--save", &saved]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let got = kiln_converter::npy::read(Path::new(&saved)).unwrap().data;
        let want = kiln_converter::npy::read(&dir.join(format!("{name}_keras.npy")))
            .unwrap()
            .data;
        assert_eq!(got.len(), want.len(), "{name}");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        assert!(err <= 1e-4, "{name}: max rel error vs Keras {err}");
        let Some(py) = std::env::var_os("KILN_PYTHON") else {
            eprintln!(
                "KILN_PYTHON unset: `kiln verify {name}.tflite` not run (scripts/test.sh sets it)"
            );
            continue;
        };
        let o = kiln_env(
            &["verify", &model, "-i", &x],
            &[("KILN_PYTHON", &py.to_string_lossy())],
        );
        assert!(o.status.success(), "{name}: {}{}", stdout(&o), stderr(&o));
        assert!(
            stdout(&o).contains("LiteRT's reference kernels"),
            "{}",
            stdout(&o)
        );
        assert!(stdout(&o).ends_with("OK\n"), "{}", stdout(&o));
    }
}

/// The full-integer int8 exports of three Keras models (TRANSPOSE_CONV, TILE, HARD_SWISH,
/// LEAKY_RELU, a squeeze-excitation MUL, CONCATENATION, RESIZE_BILINEAR,
/// RESIZE_NEAREST_NEIGHBOR): `kiln verify` finds every output byte
/// equal to LiteRT's (its reference kernels, or its default ones where the reference resolver
/// lacks an op version, as it lacks int8 TILE; verify says which ran).
#[test]
fn keras_int8_models_are_bit_exact_with_litert() {
    let Some(py) = std::env::var_os("KILN_PYTHON") else {
        eprintln!("KILN_PYTHON unset: int8 Keras models not verified (scripts/test.sh sets it)");
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/keras");
    for name in ["autoencoder", "mobile", "segment"] {
        let model = dir
            .join(format!("{name}_int8.tflite"))
            .display()
            .to_string();
        let x = dir.join(format!("{name}_inputs.npy")).display().to_string();
        let o = kiln_env(
            &["verify", &model, "-i", &x],
            &[("KILN_PYTHON", &py.to_string_lossy())],
        );
        assert!(o.status.success(), "{name}: {}{}", stdout(&o), stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("max abs 0.000e0"), "{name}: {out}");
        assert!(out.ends_with("OK\n"), "{name}: {out}");
    }
}

/// TFLite's weight-only options: a float16 model keeps its half-float weights (the file is
/// about half the f32 one, outputs equal LiteRT's), a dynamic-range model (int8 weights, float
/// activations) runs in float with exactly dequantized weights, says so, and lands within
/// LiteRT's hybrid kernels' activation rounding; `--fp16` halves its weights.
#[test]
fn keras_weight_only_models_keep_their_weight_format_or_say_why() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/keras");
    let f = Fixture::new();
    let size = |p: &str| std::fs::metadata(p).unwrap().len();
    let src = |n: &str| dir.join(format!("{n}.tflite")).display().to_string();
    let o = kiln(&["convert", &src("wide"), "-o", &f.s("f32.kiln")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kiln(&["convert", &src("wide_fp16"), "-o", &f.s("fp16.kiln")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("float16"), "{}", stderr(&o));
    let (f32_len, f16_len) = (size(&f.s("f32.kiln")), size(&f.s("fp16.kiln")));
    assert!(
        f16_len * 10 < f32_len * 6,
        "fp16 {f16_len} vs f32 {f32_len} bytes"
    );
    let o = kiln(&["convert", &src("wide_dynamic"), "-o", &f.s("dyn.kiln")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("dynamic-range"), "{}", stderr(&o));
    let o = kiln(&[
        "convert",
        &src("wide_dynamic"),
        "--fp16",
        "-o",
        &f.s("dyn16.kiln"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(size(&f.s("dyn16.kiln")) * 10 < size(&f.s("dyn.kiln")) * 6);
    let Some(py) = std::env::var_os("KILN_PYTHON") else {
        eprintln!("KILN_PYTHON unset: weight-only models not verified (scripts/test.sh sets it)");
        return;
    };
    let x = dir.join("wide_inputs.npy").display().to_string();
    let py = py.to_string_lossy().to_string();
    let o = kiln_env(
        &["verify", &src("wide_fp16"), "-i", &x],
        &[("KILN_PYTHON", &py)],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = kiln_env(
        &["verify", &src("wide_dynamic"), "-i", &x],
        &[("KILN_PYTHON", &py)],
    );
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("hybrid kernels"), "{}", stderr(&o));
    let o = kiln_env(
        &[
            "verify",
            &src("wide_dynamic"),
            "-i",
            &x,
            "--tolerance",
            "1e-2",
        ],
        &[("KILN_PYTHON", &py)],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

/// `kiln prune` on a Keras conv/dense classifier: whole channels go, the file and the MAC count
/// shrink as reported, the model still runs and agrees with the unpruned one on most inputs;
/// a pruned `.kiln` prunes and quantizes further; bad requests fail with the reason and leave
/// no file.
#[test]
fn prune_removes_channels_and_refuses_bad_requests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/keras");
    let f = Fixture::new();
    let model = dir.join("wide.tflite").display().to_string();
    let x = dir.join("wide_inputs.npy").display().to_string();
    let (full, pruned) = (f.s("wide.kiln"), f.s("wide_pruned.kiln"));
    assert!(kiln(&["convert", &model, "-o", &full]).status.success());
    let o = kiln(&[
        "prune",
        &model,
        "--sparsity",
        "0.3",
        "--calib",
        &x,
        "-o",
        &pruned,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("weights 5520 -> "), "{out}");
    let size = |p: &str| std::fs::metadata(p).unwrap().len();
    assert!(size(&pruned) * 10 < size(&full) * 8, "{out}");
    let run = |m: &str, save: &str| {
        let o = kiln(&["run", m, "-i", &x, "--save", save]);
        assert!(o.status.success(), "{}", stderr(&o));
        kiln_converter::npy::read(Path::new(save)).unwrap().data
    };
    let (a, b) = (run(&full, &f.s("a.npy")), run(&pruned, &f.s("b.npy")));
    let top =
        |v: &[f32]| -> Vec<usize> { v.chunks(10).map(kiln_converter::eval::argmax).collect() };
    let agree = top(&a)
        .iter()
        .zip(top(&b))
        .filter(|(p, q)| **p == *q)
        .count();
    assert!(agree >= 6, "top-1 agrees on {agree}/8");
    // The pruned .kiln prunes again and quantizes.
    let again = f.s("again.kiln");
    let o = kiln(&["prune", &pruned, "--sparsity", "0.2", "-o", &again]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no --calib"), "{}", stderr(&o));
    let q = f.s("pruned_int8.kiln");
    let o = kiln(&["quantize", &pruned, "--calib", &x, "-o", &q]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (args, want) in [
        (vec!["--sparsity", "1.0"], "outside [0, 1)"),
        (
            vec!["--sparsity", "0.995"],
            "can be removed by whole channels",
        ),
        (
            vec!["--sparsity", "0.3", "--criterion", "l3"],
            "unknown --criterion",
        ),
        (
            vec!["--sparsity", "0.3", "--layer", "nosuch=0.2"],
            "--layer nosuch: no layer of that name; the prunable layers are: functional_1/conv2d_1/Relu",
        ),
        (
            vec!["--sparsity", "0.3", "--layer", "functional_1/dense_1/MatMul"],
            "expected NAME=FRACTION",
        ),
        (
            vec!["--sparsity", "0.3", "--layer", "functional_1/dense_1/MatMul=1.2"],
            "outside [0, 1)",
        ),
        (
            vec!["--sparsity", "0.1", "--layer", "functional_1/dense_1_2/MatMul=0.2"],
            "its channels cannot be pruned",
        ),
    ] {
        let bad = f.s("bad.kiln");
        let mut a = vec!["prune", model.as_str(), "-o", bad.as_str()];
        a.extend(args);
        let o = kiln(&a);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
        assert!(!Path::new(&bad).exists());
    }
    let int8 = dir.join("mobile_int8.tflite").display().to_string();
    let o = kiln(&["prune", &int8, "--sparsity", "0.3", "-o", &f.s("i.kiln")]);
    assert!(stderr(&o).contains("int8"), "{}", stderr(&o));
    // A fixed fraction for one layer, multiples of 4 everywhere.
    let fixed = f.s("fixed.kiln");
    let o = kiln(&[
        "prune",
        &model,
        "--sparsity",
        "0.3",
        "--layer",
        "functional_1/conv2d_1/Relu=0.5",
        "--channel-multiple",
        "4",
        "-o",
        &fixed,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout(&kiln(&["inspect", &fixed]));
    let channels: Vec<usize> = shown
        .lines()
        .filter(|l| l.contains(" conv2d ") || l.contains(" dense "))
        .filter_map(|l| {
            let out = l.split_whitespace().nth(4)?;
            out.rsplit('x').next()?.parse().ok()
        })
        .collect();
    assert_eq!(channels.len(), 4, "{shown}");
    assert_eq!(channels[0], 8, "{shown}");
    assert!(channels[..3].iter().all(|c| c % 4 == 0), "{shown}");
    assert_eq!(channels[3], 10, "{shown}");
}

/// Keras 3's LSTM is a WHILE loop in the .tflite file: refused with the way out (unroll it).
#[test]
fn keras_while_loops_are_refused_with_a_way_out() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/keras");
    let f = Fixture::new();
    let model = dir.join("lstm.tflite").display().to_string();
    let o = kiln(&["convert", &model, "-o", &f.s("lstm.kiln")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("WHILE") && err.contains("unroll=True") && err.contains("lstm.tflite"),
        "{err}"
    );
}

/// PTQ of the MobileNetV3-style Keras model leaves no op in float (hard-swish, hard-sigmoid's
/// add and divide by constants, leaky ReLU, the concat of differently scaled branches all
/// have int8 forms), says why when the int8 file is not smaller (the model is tiny), and stays
/// close to the float model.
#[test]
fn ptq_quantizes_every_op_of_a_mobilenet_style_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/keras");
    let f = Fixture::new();
    let model = dir.join("mobile.tflite").display().to_string();
    let x = dir.join("mobile_inputs.npy").display().to_string();
    let q = f.s("mobile_q.kiln");
    let o = kiln(&["quantize", &model, "--calib", &x, "-o", &q]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("0 op(s) kept in float"), "{out}");
    assert!(!out.contains("kept in float:"), "{out}");
    assert!(
        out.contains("warning: the int8 file") && out.contains("every op is int8"),
        "{out}"
    );
    let saved = f.s("q_out.npy");
    let o = kiln(&["run", &q, "-i", &x, "--save", &saved]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = kiln_converter::npy::read(Path::new(&saved)).unwrap().data;
    let want = kiln_converter::npy::read(&dir.join("mobile_keras.npy"))
        .unwrap()
        .data;
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 0.05, "int8 probabilities differ from Keras' by {err}");
}

/// x f32 `shape` -> relu -> y: an image model (one-channel NHWC, or NCHW as from ONNX).
fn relu_model(shape: &[usize]) -> Vec<u8> {
    let bytes = 4 * shape.iter().product::<usize>();
    let t = |name: &str, offset| TensorSpec {
        name: name.into(),
        dtype: DType::F32,
        shape: shape.to_vec(),
        data: TensorData::Arena { offset },
        quant: Quant::None,
    };
    write(&ModelSpec {
        tensors: vec![t("x", 0), t("y", bytes.div_ceil(16) * 16)],
        ops: vec![OpSpec::new(
            "relu",
            OpParams::Unary(UnaryParams::new(UnaryKind::Relu)),
            vec![Some(0)],
            vec![1],
        )],
        inputs: vec![0],
        outputs: vec![1],
    })
    .unwrap()
}

#[test]
fn images_get_a_polarity_hint_and_decode_errors_are_said_once() {
    let f = Fixture::new();
    std::fs::write(f.p("gray.kiln"), relu_model(&[1, 4, 4, 1])).unwrap();
    // A dark digit on a white page: most pixels are light.
    let img = image::GrayImage::from_fn(4, 4, |x, _| image::Luma([if x == 1 { 0 } else { 255 }]));
    img.save(f.p("digit.png")).unwrap();
    let o = kiln(&["run", &f.s("gray.kiln"), "-i", &f.s("digit.png")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("need --invert"), "{}", stderr(&o));
    let o = kiln(&[
        "run",
        &f.s("gray.kiln"),
        "-i",
        &f.s("digit.png"),
        "--invert",
    ]);
    assert!(
        o.status.success() && !stderr(&o).contains("--invert"),
        "{}",
        stderr(&o)
    );
    // A corrupt image: the decoder's message once, with the file's name.
    std::fs::write(f.p("bad.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let o = kiln(&["run", &f.s("gray.kiln"), "-i", &f.s("bad.png")]);
    fails(&o, &["bad.png", "cannot decode image"]);
    let err = stderr(&o);
    let first = err.lines().next().unwrap_or_default();
    let tail = first
        .rsplit("cannot decode image: ")
        .next()
        .unwrap_or_default();
    assert_eq!(
        err.matches(tail).count(),
        1,
        "the decoder's text repeats: {err}"
    );
}

#[test]
fn nhwc_arrays_for_an_nchw_model_are_refused_or_transposed_on_request() {
    let f = Fixture::new();
    std::fs::write(f.p("nchw.kiln"), relu_model(&[1, 3, 2, 2])).unwrap();
    // NHWC [1, 2, 2, 3]: pixel (y, x) has channels (c0, c1, c2) = (10p, 10p + 1, 10p + 2).
    let nhwc: Vec<f32> = (0..4)
        .flat_map(|p| (0..3).map(move |c| (10 * p + c) as f32))
        .collect();
    let x = f.npy_f32("nhwc.npy", &[1, 2, 2, 3], &nhwc);
    fails(
        &kiln(&["run", &f.s("nchw.kiln"), "-i", &x]),
        &["looks NHWC", "is NCHW", "--layout nhwc"],
    );
    let o = kiln(&[
        "run",
        &f.s("nchw.kiln"),
        "-i",
        &x,
        "--layout",
        "nhwc",
        "--save",
        &f.s("y.npy"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("transposed NHWC"), "{}", stderr(&o));
    // relu keeps the values: output 0 must be the NCHW order of the same pixels.
    let y = kiln_converter::npy::read(&f.p("y.npy")).unwrap().data;
    let nchw: Vec<f32> = (0..3)
        .flat_map(|c| (0..4).map(move |p| (10 * p + c) as f32))
        .collect();
    assert_eq!(y, nchw);
    // An NCHW array is taken as is, and --layout on a non-image input is refused.
    let x = f.npy_f32("nchw.npy", &[1, 3, 2, 2], &nchw);
    let o = kiln(&["run", &f.s("nchw.kiln"), "-i", &x, "--save", &f.s("y2.npy")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        kiln_converter::npy::read(&f.p("y2.npy")).unwrap().data,
        nchw
    );
    let x = f.npy_f32("x4.npy", &[1, 4], &[0.0; 4]);
    fails(
        &kiln(&["run", &f.s("f32.kiln"), "-i", &x, "--layout", "nhwc"]),
        &["--layout applies to image inputs"],
    );
}

/// `kiln verify` on int8 TFLite files: compared in LSBs against LiteRT's reference kernels, with
/// which kiln is bit-exact. Uses the generated single-op grid (`$KILN_TFLITE_OPS`) and
/// `$KILN_PYTHON`, both set by scripts/test.sh.
#[test]
fn verify_compares_int8_tflite_outputs_in_lsbs() {
    let (Some(ops), Some(py)) = (
        std::env::var_os("KILN_TFLITE_OPS"),
        std::env::var_os("KILN_PYTHON"),
    ) else {
        eprintln!("KILN_TFLITE_OPS or KILN_PYTHON unset: not run (scripts/test.sh sets both)");
        return;
    };
    let py = py.to_string_lossy().into_owned();
    let mut checked = 0;
    for case in ["000_conv", "002_depthwise"] {
        let model = Path::new(&ops).join(case).join("model.tflite");
        let o = kiln_env(
            &["verify", &model.display().to_string(), "--samples", "4"],
            &[("KILN_PYTHON", &py)],
        );
        let out = stdout(&o);
        assert!(o.status.success(), "{case}: {out}{}", stderr(&o));
        assert!(
            out.contains(" int8 ") && out.contains("max diff 0 LSB"),
            "{case}: {out}"
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
}

/// `kiln bench`: one timed row per op, medians that are real times, the reference kernels on
/// request, and refusals that say why.
#[test]
fn bench_reports_every_layer_and_refuses_what_it_cannot_time() {
    let f = Fixture::new();
    let m = f.s("f32.kiln");
    for extra in [&[][..], &["--reference"][..]] {
        let mut args = vec!["bench", &m, "--iterations", "5", "--warmup", "1", "--json"];
        args.extend_from_slice(extra);
        let o = kiln(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(r["engine"], "kiln");
        assert_eq!(r["iterations"], 5);
        let layers = r["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "{r}");
        assert_eq!(layers[0]["op"], "dense");
        assert_eq!(layers[0]["macs"], 16);
        assert_eq!(r["macs"], 16);
        let (p10, med, p90) = (
            r["p10_us"].as_f64().unwrap(),
            r["median_us"].as_f64().unwrap(),
            r["p90_us"].as_f64().unwrap(),
        );
        assert!(med > 0.0 && p10 <= med && med <= p90, "{r}");
        let kernels = if extra.is_empty() {
            "optimized"
        } else {
            "reference"
        };
        assert_eq!(r["kernels"], kernels);
    }
    let o = kiln(&["bench", &m, "--iterations", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--iterations"), "{}", stderr(&o));
    fails(
        &kiln(&["bench", &m, "--engine", "tract", "-i", &m]),
        &["drop --input"],
    );
}

#[test]
fn eval_reconstruction_is_the_mse_of_output_against_input_and_refuses_the_rest() {
    let f = Fixture::new();
    // i8.kiln quantizes its float input (scale 0.5, zero point 10) and dequantizes it back:
    // its reconstruction error is exactly the input's quantization error, clamping included.
    let x: Vec<f32> = vec![
        0.3, -1.1, 2.7, 60.0, -80.0, 0.0, 1.3, -0.6, 7.9, 3.3, -4.4, 0.1,
    ];
    let input = f.npy_f32("x.npy", &[3, 4], &x);
    let o = kiln(&[
        "eval",
        "--reconstruction",
        &f.s("i8.kiln"),
        &f.s("f32.kiln"),
        "-i",
        &input,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let want: Vec<f64> = x
        .chunks(4)
        .map(|row| {
            row.iter()
                .map(|&r| {
                    let q = ((r / 0.5).round() + 10.0).clamp(-128.0, 127.0);
                    let back = 0.5 * (q - 10.0);
                    (back as f64 - r as f64).powi(2)
                })
                .sum::<f64>()
                / 4.0
        })
        .collect();
    let got: Vec<f64> = v[0]["reconstruction"]["per_sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), 3);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9 * w.max(1.0), "{got:?} vs {want:?}");
    }
    let mean = want.iter().sum::<f64>() / 3.0;
    let mse = v[0]["reconstruction"]["mse"].as_f64().unwrap();
    assert!((mse - mean).abs() <= 1e-9 * mean, "{mse} vs {mean}");
    // The float identity reconstructs exactly.
    assert_eq!(v[1]["reconstruction"]["mse"].as_f64(), Some(0.0));
    let o = kiln(&["eval", "--reconstruction", &f.s("i8.kiln"), "-i", &input]);
    assert!(stdout(&o).contains("MSE"), "{}", stdout(&o));
    // Int8 arrays are not the float truth; a classifier is not an autoencoder.
    let q = f.npy_i8("q.npy", &[1, 4], &[1, 2, 3, 4]);
    fails(
        &kiln(&["eval", "--reconstruction", &f.s("i8.kiln"), "-i", &q]),
        &["q.npy", "float inputs", "|i1"],
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/keras");
    let wide = f.s("wide.kiln");
    let model = dir.join("wide.tflite").display().to_string();
    assert!(kiln(&["convert", &model, "-o", &wide]).status.success());
    let xs = dir.join("wide_inputs.npy").display().to_string();
    fails(
        &kiln(&["eval", "--reconstruction", &wide, "-i", &xs]),
        &["wide.kiln", "output 0 has 10 values and the input 192"],
    );
    // Without --reconstruction, accuracy needs labels (a usage error, status 2).
    let o = kiln(&["eval", &wide, "-i", &xs]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--labels"), "{}", stderr(&o));
}

#[test]
fn prune_sweep_measures_every_point_and_plots_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/keras");
    let f = Fixture::new();
    let model = dir.join("wide.tflite").display().to_string();
    let x = dir.join("wide_inputs.npy").display().to_string();
    let png = f.s("sweep.png");
    let o = kiln(&[
        "prune",
        &model,
        "--sweep",
        "0.2,0.4",
        "--calib",
        &x,
        "--iterations",
        "3",
        "-o",
        &png,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["quality"], "top-1 agreement %");
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    let num = |p: &serde_json::Value, k: &str| p[k].as_f64().unwrap();
    // The unpruned float model agrees with itself; every point removes at least what it was
    // asked for, fewer weights and MACs each time; int8 is the smaller file.
    assert_eq!(points[0]["float"]["quality"].as_f64(), Some(100.0));
    assert_eq!(num(&points[0], "removed"), 0.0);
    for w in points.windows(2) {
        assert!(num(&w[1], "weights") < num(&w[0], "weights"), "{v}");
        assert!(num(&w[1], "macs") < num(&w[0], "macs"), "{v}");
        assert!(num(&w[1], "removed") >= num(&w[1], "asked") - 1e-6, "{v}");
    }
    for p in points {
        assert!(
            p["int8"]["bytes"].as_u64() < p["float"]["bytes"].as_u64(),
            "{v}"
        );
        assert!(p["float"]["latency_us"].as_f64().unwrap() > 0.0);
    }
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (1200, 900));
    // The same figures as a plain prune at 0.4 reports.
    let one = f.s("p40.kiln");
    let o = kiln(&[
        "prune",
        &model,
        "--sparsity",
        "0.4",
        "--calib",
        &x,
        "-o",
        &one,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["weights_after"].as_f64(), points[2]["weights"].as_f64());
    assert_eq!(
        r["bytes_after"].as_u64(),
        points[2]["float"]["bytes"].as_u64()
    );
    // Unstructured: the zeros count as removed, and int8 shrinks as the weights go.
    let o = kiln(&[
        "prune",
        &model,
        "--sweep",
        "0.5,0.8",
        "--unstructured",
        "--calib",
        &x,
        "--iterations",
        "2",
        "-o",
        &png,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let u: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let up = u["points"].as_array().unwrap();
    for p in &up[1..] {
        assert!(num(p, "removed") >= num(p, "asked") - 1e-6, "{u}");
    }
    assert!(
        up[2]["int8"]["bytes"].as_u64() < up[0]["int8"]["bytes"].as_u64(),
        "{u}"
    );
    fails(
        &kiln(&["prune", &model, "--sweep", "0.2", "-o", &png]),
        &["--sweep needs --calib"],
    );
    fails(
        &kiln(&[
            "prune", &model, "--sweep", "0.2,1.5", "--calib", &x, "-o", &png,
        ]),
        &["sparsity 1.5 is outside [0, 1)"],
    );
}

#[test]
fn unstructured_pruning_stores_sparse_int8_that_runs_like_dense() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/keras");
    let f = Fixture::new();
    let model = dir.join("wide.tflite").display().to_string();
    let x = dir.join("wide_inputs.npy").display().to_string();
    let pruned = f.s("u80.kiln");
    let o = kiln(&[
        "prune",
        &model,
        "--unstructured",
        "--sparsity",
        "0.8",
        "--calib",
        &x,
        "-o",
        &pruned,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let (before, after) = (
        v["weights_before"].as_f64().unwrap(),
        v["weights_after"].as_f64().unwrap(),
    );
    assert!(after <= 0.2 * before, "{v}");
    let (sparse, dense) = (f.s("sparse.kiln"), f.s("dense.kiln"));
    let o = kiln(&["quantize", &pruned, "--calib", &x, "-o", &sparse, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let q: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(q["sparse_layers"].as_u64().unwrap() >= 2, "{q}");
    let o = kiln(&[
        "quantize", &pruned, "--calib", &x, "-o", &dense, "--sparse", "off",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let size = |p: &str| std::fs::metadata(p).unwrap().len();
    assert_eq!(q["int8_dense_bytes"].as_u64(), Some(size(&dense)));
    assert!(
        size(&sparse) * 10 < size(&dense) * 7,
        "{} vs {}",
        size(&sparse),
        size(&dense)
    );
    assert!(stdout(&kiln(&["inspect", &sparse])).contains(" sparse"));
    assert!(!stdout(&kiln(&["inspect", &dense])).contains(" sparse"));
    // The same integers either way: identical outputs.
    let run = |m: &str, save: &str| {
        let o = kiln(&["run", m, "-i", &x, "--save", save]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(save).unwrap()
    };
    assert_eq!(run(&sparse, &f.s("a.npy")), run(&dense, &f.s("b.npy")));
    // A sparse int8 file reads back: it loses more single weights on its grid, but not whole
    // channels, and is not quantized twice.
    let more = f.s("u90.kiln");
    let o = kiln(&[
        "prune",
        &sparse,
        "--unstructured",
        "--sparsity",
        "0.9",
        "-o",
        &more,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["weights_after"].as_f64().unwrap() <= 0.1 * before, "{v}");
    assert!(size(&more) < size(&sparse));
    fails(
        &kiln(&[
            "prune",
            &sparse,
            "--sparsity",
            "0.2",
            "-o",
            &f.s("again.kiln"),
        ]),
        &["int8 activations: whole channels are pruned from the float model"],
    );
    fails(
        &kiln(&["quantize", &sparse, "--calib", &x, "-o", &f.s("twice.kiln")]),
        &["already quantized", "quantize the float model"],
    );
}
