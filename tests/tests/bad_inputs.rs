//! The bad-input table: every way a model file, a call or an input file can be wrong, each with
//! the specific error that names the problem. No row may panic.

use kiln_runtime::format::{header, tensor, TENSOR_DESC_LEN};
use kiln_runtime::writer::{reseal, write, AlignedBuf, ModelSpec, TensorData, TensorSpec};
use kiln_runtime::{Model, OpKind, Session};
use std::path::PathBuf;

/// Tensors 0..=8: x, w, b, conv, pool, flat, fw, logits, probs; ops: conv, pool, flatten, fc,
/// softmax (`kiln_runtime::writer::example_cnn`).
fn spec() -> ModelSpec {
    kiln_runtime::writer::example_cnn()
}

fn good() -> Vec<u8> {
    write(&spec()).unwrap()
}

fn load(b: &[u8]) -> String {
    let buf = AlignedBuf::new(b);
    match Model::from_bytes(buf.as_slice()) {
        Ok(_) => "loaded".into(),
        Err(e) => e.to_string(),
    }
}

fn patched(f: impl Fn(&mut Vec<u8>)) -> String {
    let mut b = good();
    f(&mut b);
    reseal(&mut b);
    load(&b)
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn tensor_at(b: &[u8], t: usize) -> usize {
    u32::from_le_bytes(b[header::TENSORS_OFF..][..4].try_into().unwrap()) as usize
        + t * TENSOR_DESC_LEN
}

/// Byte offset of dim `k` of tensor `t` in the shared dims table.
fn dim_at(b: &[u8], t: usize, k: usize) -> usize {
    let rd = |at: usize| u32::from_le_bytes(b[at..][..4].try_into().unwrap()) as usize;
    rd(header::DIMS_OFF) + 4 * (rd(tensor_at(b, t) + tensor::DIMS) + k)
}

/// Adds a tensor like graph input 0 (same arena slot) that no op writes; returns its index.
fn push_copy_of_input(s: &mut ModelSpec, name: &str) -> u32 {
    s.tensors.push(TensorSpec {
        name: name.into(),
        ..s.tensors[0].clone()
    });
    s.tensors.len() as u32 - 1
}

fn respec(f: impl Fn(&mut ModelSpec)) -> String {
    let mut s = spec();
    f(&mut s);
    match write(&s) {
        Ok(b) => load(&b),
        Err(e) => e.to_string(),
    }
}

fn session(input: &[f32], arena_len: usize, arena_offset: usize) -> String {
    let b = good();
    let buf = AlignedBuf::new(&b);
    let m = Model::from_bytes(buf.as_slice()).unwrap();
    let mut arena = AlignedBuf::zeroed(arena_len + 16);
    let mut s = match Session::new(
        &m,
        &mut arena.as_mut_slice()[arena_offset..arena_offset + arena_len],
    ) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let mut y = [0f32; 4];
    match s.run(input, &mut y) {
        Ok(()) => "ran".into(),
        Err(e) => e.to_string(),
    }
}

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-bad-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn converter_err<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn bad_input_table() {
    let x = vec![0.5f32; 32];
    let mut nan = x.clone();
    nan[3] = f32::NAN;
    let mut inf = x.clone();
    inf[9] = f32::NEG_INFINITY;
    let npy_ok = kiln_converter::npy::to_bytes_f32(&[2, 32], &[0.25; 64]);
    let mut npy_nan = kiln_converter::npy::to_bytes_f32(&[1, 4, 4, 2], &[0.25; 32]);
    let len = npy_nan.len();
    npy_nan[len - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut npy_f16 = npy_ok.clone();
    let at = npy_f16.windows(3).position(|w| w == b"<f4").unwrap();
    npy_f16[at..at + 3].copy_from_slice(b"<c8");
    let rows = |p: PathBuf| {
        converter_err(kiln_converter::input::load_batch(
            &p,
            &[1, 4, 4, 2],
            &Default::default(),
        ))
    };

    let table: Vec<(&str, String, &str)> = vec![
        (
            "empty file",
            load(&[]),
            "file truncated: needs 80 bytes, got 0",
        ),
        (
            "10-byte file",
            load(&good()[..10]),
            "needs 80 bytes, got 10",
        ),
        (
            "truncated by one byte",
            load(&good()[..good().len() - 1]),
            "file truncated",
        ),
        (
            "model bigger than memory (declared 4 GiB)",
            patched(|b| put32(b, header::FILE_LEN, u32::MAX)),
            "needs 4294967295 bytes",
        ),
        (
            "wrong magic",
            {
                let mut b = good();
                b[0] = b'X';
                load(&b)
            },
            "not a .kiln model",
        ),
        (
            "unknown version",
            {
                let mut b = good();
                b[4] = 7;
                load(&b)
            },
            "format version 7, but this kiln reads version 4: re-convert it from the source model",
        ),
        (
            "wrong header length",
            patched(|b| b[6] = 32),
            "header length is not 80",
        ),
        (
            "checksum mismatch",
            {
                let mut b = good();
                let n = b.len();
                b[n - 1] ^= 1;
                load(&b)
            },
            "checksum mismatch",
        ),
        (
            "trailing bytes",
            patched(|b| b.extend_from_slice(&[0; 16])),
            "trailing bytes",
        ),
        (
            "section past the end",
            patched(|b| {
                let n = b.len() as u32;
                put32(b, header::OPS_OFF, n)
            }),
            "section lies outside the file",
        ),
        (
            "misaligned section",
            patched(|b| {
                let v = u32::from_le_bytes(b[header::IO_OFF..][..4].try_into().unwrap());
                put32(b, header::IO_OFF, v + 2)
            }),
            "not 4-byte aligned",
        ),
        (
            "no graph inputs",
            patched(|b| b[header::NUM_INPUTS] = 0),
            "no inputs or no outputs",
        ),
        (
            "arena size not a multiple of 16",
            patched(|b| put32(b, header::ARENA_SIZE, 321)),
            "arena size is not a multiple of 16",
        ),
        (
            "constant data past the end",
            patched(|b| {
                let t = tensor_at(b, 1);
                let n = b.len() as u32;
                put32(b, t + tensor::OFFSET, n + 16)
            }),
            "tensor #1: constant data lies outside the file",
        ),
        (
            "arena slot past the arena",
            patched(|b| {
                let t = tensor_at(b, 3);
                put32(b, t + tensor::OFFSET, 1024)
            }),
            "tensor #3: arena slot lies past the arena size",
        ),
        (
            "misaligned tensor data",
            patched(|b| {
                let t = tensor_at(b, 3);
                put32(b, t + tensor::OFFSET, 132)
            }),
            "tensor #3: data offset is not 16-byte aligned",
        ),
        (
            "overflowing shape",
            patched(|b| {
                let (d0, d1) = (dim_at(b, 0, 0), dim_at(b, 0, 1));
                put32(b, d0, 1 << 30);
                put32(b, d1, 1 << 30)
            }),
            "tensor #0: element count overflows",
        ),
        (
            "zero-sized tensor",
            patched(|b| {
                let d0 = dim_at(b, 0, 0);
                put32(b, d0, 0)
            }),
            "tensor #0: zero-sized dimension",
        ),
        (
            "rank above 6",
            patched(|b| {
                let t = tensor_at(b, 2);
                b[t + tensor::RANK] = 7
            }),
            "tensor #2: rank above 6",
        ),
        (
            "unknown dtype",
            patched(|b| {
                let t = tensor_at(b, 2);
                b[t + tensor::DTYPE] = 99
            }),
            "tensor #2: unknown dtype",
        ),
        (
            "dims past the dims table",
            patched(|b| {
                let t = tensor_at(b, 2);
                put32(b, t + tensor::DIMS, 1 << 30)
            }),
            "tensor #2: dims lie past the dims table",
        ),
        (
            "name outside the string section",
            patched(|b| {
                let t = tensor_at(b, 2);
                b[t + tensor::NAME_LEN..][..2].copy_from_slice(&u16::MAX.to_le_bytes())
            }),
            "name lies outside the string section",
        ),
        (
            "unknown op kind",
            respec(|s| s.ops[1].kind = OpKind::Lut),
            "op #1 (lut): wrong number of inputs",
        ),
        (
            "op names a missing tensor",
            respec(|s| s.ops[3].inputs[1] = Some(77)),
            "op #3 (dense): names a tensor that does not exist",
        ),
        (
            "op writes a constant",
            respec(|s| s.ops[2].outputs[0] = 6),
            "op #2 (reshape): writes to a constant tensor",
        ),
        (
            "conv stride 0",
            respec(|s| s.ops[0].params[1] = 0),
            "op #0 (conv2d): stride must be positive",
        ),
        (
            "conv output shape wrong",
            respec(|s| s.tensors[3].shape = vec![1, 3, 4, 3]),
            "op #0 (conv2d): output shape does not match conv arithmetic",
        ),
        (
            "dense weights do not match",
            respec(|s| s.tensors[6].shape = vec![4, 11]),
            "op #3 (dense): input's last dim does not match weights",
        ),
        (
            "softmax axis outside rank",
            respec(|s| s.ops[4].params[0] = 3),
            "op #4 (softmax): axis outside the rank",
        ),
        (
            "unsound arena plan",
            respec(|s| s.tensors[4].data = TensorData::Arena { offset: 128 }),
            "output slot overlaps a tensor that is still live",
        ),
        (
            "ops out of order",
            respec(|s| s.ops.swap(0, 1)),
            "last use lies before the producer",
        ),
        (
            "op reads an arena tensor nothing writes",
            respec(|s| s.ops[0].inputs[0] = Some(push_copy_of_input(s, "stale"))),
            "reads a tensor that no earlier op writes",
        ),
        (
            "graph output no op writes",
            respec(|s| s.outputs = vec![push_copy_of_input(s, "stale")]),
            "graph output is not written by any op",
        ),
        (
            "graph output that is a graph input",
            respec(|s| s.outputs = vec![0]),
            "graph output is not written by any op",
        ),
        (
            "two graph inputs sharing one arena slot",
            respec(|s| {
                let b = push_copy_of_input(s, "b");
                s.inputs.push(b);
            }),
            "graph input shares arena bytes with another graph input",
        ),
        (
            "the same graph input listed twice",
            respec(|s| s.inputs = vec![0, 0]),
            "graph inputs are not the graph input list",
        ),
        (
            "header arena size larger than the plan needs (4 GiB)",
            patched(|b| put32(b, header::ARENA_SIZE, u32::MAX - 15)),
            "arena size is not the size the tensor plan needs",
        ),
        (
            "header arena size smaller than the plan needs",
            patched(|b| put32(b, header::ARENA_SIZE, 16)),
            "arena slot lies past the arena size",
        ),
        (
            "a tensor claims a producer that does not write it",
            patched(|b| {
                let at = tensor_at(b, 3) + tensor::PRODUCER;
                b[at..at + 2].copy_from_slice(&1u16.to_le_bytes());
            }),
            "output tensor does not name this op as its producer",
        ),
        (
            "a last use recorded before a read",
            patched(|b| {
                let at = tensor_at(b, 3) + tensor::LAST_USE;
                b[at..at + 2].copy_from_slice(&0u16.to_le_bytes());
            }),
            "reads a tensor after its recorded last use",
        ),
        (
            "arena too small",
            session(&x, 64, 0),
            "arena too small: model needs 320 bytes, got 64",
        ),
        (
            "misaligned arena",
            session(&x, 320, 4),
            "arena must start at a 16-byte aligned address",
        ),
        (
            "wrong input length",
            session(&x[..31], 320, 0),
            "expected 32 elements, got 31",
        ),
        (
            "NaN input",
            session(&nan, 320, 0),
            "input #0: element 3 is NaN or infinite",
        ),
        (
            "infinite input",
            session(&inf, 320, 0),
            "input #0: element 9 is NaN or infinite",
        ),
        (
            "not a model file",
            converter_err(kiln_converter::import_file(&temp("notes.txt", b"hello"))),
            "cannot tell the model format",
        ),
        (
            "corrupt TFLite",
            converter_err(kiln_converter::import_file(&temp(
                "bad.tflite",
                b"\x10\x00\x00\x00TFL3\xff\xff\xff\xff",
            ))),
            "corrupt flatbuffer",
        ),
        (
            "corrupt ONNX",
            converter_err(kiln_converter::import_file(&temp(
                "bad.onnx",
                b"\x08\x07garbage",
            ))),
            "tract could not parse the ONNX file",
        ),
        (
            "missing model file",
            converter_err(kiln_converter::import_file(&PathBuf::from(
                "/nonexistent/m.onnx",
            ))),
            "reading /nonexistent/m.onnx",
        ),
        (
            "truncated .npy",
            converter_err(kiln_converter::npy::parse(&npy_ok[..npy_ok.len() - 3])),
            "truncated",
        ),
        (
            "unsupported .npy dtype",
            converter_err(kiln_converter::npy::parse(&npy_f16)),
            "unsupported .npy dtype '<c8'",
        ),
        (
            "NaN in an .npy input",
            rows(temp("nan.npy", &npy_nan)),
            "is NaN or infinite",
        ),
        (
            "raw input not whole f32 values",
            rows(temp("x.bin", &[0u8; 10])),
            "not a whole number of f32 values",
        ),
        (
            "input of the wrong size",
            rows(temp("x.raw", &[0u8; 12])),
            "3 f32 values is not a whole number of input 'input' (f32 [1, 4, 4, 2])",
        ),
        (
            "corrupt image",
            converter_err(kiln_converter::input::load_batch(
                &temp("x.png", b"\x89PNG\r\n\x1a\nbroken"),
                &[1, 4, 4, 3],
                &Default::default(),
            )),
            "cannot decode image",
        ),
        (
            "image for a non-image input",
            rows(temp("y.png", b"\x89PNG")),
            "does not look like an image",
        ),
        (
            "unknown input type",
            rows(temp("x.csv", b"1,2,3")),
            "unknown input type '.csv'",
        ),
    ];
    let mut failures = Vec::new();
    for (what, got, want) in &table {
        if !got.contains(want) {
            failures.push(format!(
                "{what}: got {got:?}, expected it to contain {want:?}"
            ));
        }
    }
    eprintln!("{} bad inputs, {} wrong", table.len(), failures.len());
    assert!(table.len() >= 30);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
