//! Malformed files and bad calls: each gets the specific error that names the problem, and no
//! corruption of a valid file makes the reader or the interpreter panic.

use kiln_runtime::format::{header, tensor, HEADER_LEN, TENSOR_DESC_LEN};
use kiln_runtime::ops::{
    Act, ConvGeom, ConvParams, DenseParams, OpDef, PoolParams, Rounding, SoftmaxParams,
    SoftmaxQuant,
};
use kiln_runtime::writer::{
    reseal, spec_from_model, write, AlignedBuf, ModelSpec, OpSpec, TensorData, TensorSpec,
};
use kiln_runtime::{DType, Error, Model, OpKind, Quant, Session};

fn small_model() -> ModelSpec {
    kiln_runtime::writer::example_cnn()
}

/// x i8 [1,4,4,2] -> int8 conv 3x3 (3 ch) -> int8 avg pool 2x2 -> reshape [1,12] -> int8 dense 4
/// -> int8 softmax -> dequantize (f32 output).
fn small_int8_model() -> ModelSpec {
    let q = |scale: f32, zero_point: i32| Quant::PerTensor { scale, zero_point };
    let t =
        |name: &str, dtype: DType, shape: &[usize], data: TensorData, quant: Quant| TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            data,
            quant,
        };
    let i8s =
        |n: usize, k: usize| TensorData::Constant((0..n).map(|i| ((i * k) % 255) as u8).collect());
    let i32s = |v: &[i32]| TensorData::Constant(v.iter().flat_map(|x| x.to_le_bytes()).collect());
    let conv = ConvParams {
        act: Act::INT8_NONE,
        ..ConvParams::new(ConvGeom {
            pad: [1; 4],
            ..ConvGeom::default()
        })
    }
    .encode();
    let pool = PoolParams {
        act: Act::INT8_NONE,
        ..PoolParams::new([2, 2], [2, 2])
    }
    .encode();
    let dense = DenseParams {
        act: Act::INT8_NONE,
        rounding: Rounding::Single,
        packed: false,
        sparse: false,
    }
    .encode();
    let sm = SoftmaxParams {
        quant: SoftmaxQuant {
            input_multiplier: 1_518_500_250,
            input_left_shift: 22,
            diff_min: -248,
        },
        ..SoftmaxParams::new(1, false)
    }
    .encode();
    let op = |kind, inputs: Vec<Option<u32>>, out: u32, params| OpSpec {
        kind,
        name: "op".into(),
        inputs,
        outputs: vec![out],
        params,
    };
    ModelSpec {
        tensors: vec![
            t(
                "x",
                DType::I8,
                &[1, 4, 4, 2],
                TensorData::Arena { offset: 0 },
                q(0.05, 3),
            ),
            t("w", DType::I8, &[3, 3, 3, 2], i8s(54, 37), Quant::None),
            t("b", DType::I32, &[3], i32s(&[100, -50, 7]), Quant::None),
            t(
                "m",
                DType::I32,
                &[3],
                i32s(&[1_300_000_000, 1_100_000_000, 1_800_000_000]),
                Quant::None,
            ),
            t(
                "s",
                DType::I8,
                &[3],
                TensorData::Constant(vec![0xF9, 0xF8, 0xFA]),
                Quant::None,
            ),
            t(
                "conv",
                DType::I8,
                &[1, 4, 4, 3],
                TensorData::Arena { offset: 48 },
                q(0.1, -5),
            ),
            t(
                "pool",
                DType::I8,
                &[1, 2, 2, 3],
                TensorData::Arena { offset: 0 },
                q(0.1, -5),
            ),
            t(
                "flat",
                DType::I8,
                &[1, 12],
                TensorData::Arena { offset: 0 },
                q(0.1, -5),
            ),
            t("fw", DType::I8, &[4, 12], i8s(48, 91), q(0.02, 0)),
            t("fm", DType::I32, &[1], i32s(&[1_500_000_000]), Quant::None),
            t("fs", DType::I32, &[1], i32s(&[-3]), Quant::None),
            t(
                "logits",
                DType::I8,
                &[1, 4],
                TensorData::Arena { offset: 16 },
                q(0.2, 0),
            ),
            t(
                "probs",
                DType::I8,
                &[1, 4],
                TensorData::Arena { offset: 0 },
                q(1.0 / 256.0, -128),
            ),
            t(
                "y",
                DType::F32,
                &[1, 4],
                TensorData::Arena { offset: 32 },
                Quant::None,
            ),
        ],
        ops: vec![
            op(
                OpKind::Conv2d,
                vec![Some(0), Some(1), Some(2), Some(3), Some(4)],
                5,
                conv,
            ),
            op(OpKind::AvgPool, vec![Some(5)], 6, pool),
            op(OpKind::Reshape, vec![Some(6)], 7, [0; 12]),
            op(
                OpKind::Dense,
                vec![Some(7), Some(8), None, Some(9), Some(10)],
                11,
                dense,
            ),
            op(OpKind::Softmax, vec![Some(11)], 12, sm),
            op(OpKind::Dequantize, vec![Some(12)], 13, [0; 12]),
        ],
        inputs: vec![0],
        outputs: vec![13],
    }
}

#[test]
fn int8_model_runs_and_every_byte_corruption_is_handled() {
    let good = write(&small_int8_model()).unwrap();
    let buf = AlignedBuf::new(&good);
    let m = Model::from_bytes(buf.as_slice()).unwrap();
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let mut s = Session::new(&m, arena.as_mut_slice()).unwrap();
    for (i, b) in s.input_bytes_mut(0).unwrap().iter_mut().enumerate() {
        *b = (i * 29) as u8;
    }
    s.invoke().unwrap();
    let y = s.output_f32(0).unwrap();
    assert!((y.iter().sum::<f32>() - 1.0).abs() < 0.05, "{y:?}");
    let (loaded, rejected) = corrupt_every_byte(&good, |_| {});
    assert!(
        loaded > 0 && rejected > 0,
        "loaded {loaded}, rejected {rejected}"
    );
}

fn load(bytes: &[u8]) -> Result<(), Error> {
    let buf = AlignedBuf::new(bytes);
    Model::from_bytes(buf.as_slice()).map(|_| ())
}

fn tensor_field(bytes: &mut [u8], t: usize, field: usize, v: u32) {
    let tensors_off =
        u32::from_le_bytes(bytes[header::TENSORS_OFF..][..4].try_into().unwrap()) as usize;
    let at = tensors_off + t * TENSOR_DESC_LEN + field;
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    reseal(bytes);
}

/// Sets entry `k` of tensor `t`'s dims (in the shared dims table).
fn dim_entry(bytes: &mut [u8], t: usize, k: usize, v: u32) {
    let rd = |b: &[u8], at: usize| u32::from_le_bytes(b[at..][..4].try_into().unwrap()) as usize;
    let desc = rd(bytes, header::TENSORS_OFF) + t * TENSOR_DESC_LEN;
    let at = rd(bytes, header::DIMS_OFF) + 4 * (rd(bytes, desc + tensor::DIMS) + k);
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    reseal(bytes);
}

fn tensor_err(index: u32, problem: &'static str) -> Error {
    Error::Tensor { index, problem }
}

#[test]
fn valid_model_runs_and_round_trips() {
    let bytes = write(&small_model()).unwrap();
    let buf = AlignedBuf::new(&bytes);
    let m = Model::from_bytes(buf.as_slice()).unwrap();
    assert_eq!(write(&spec_from_model(&m)).unwrap(), bytes);
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let mut s = Session::new(&m, arena.as_mut_slice()).unwrap();
    let x: Vec<f32> = (0..32).map(|i| i as f32 / 32.0).collect();
    let mut y = [0f32; 4];
    s.run(&x, &mut y).unwrap();
    assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-6);
}

#[test]
fn truncated_files() {
    let bytes = write(&small_model()).unwrap();
    assert_eq!(
        load(&bytes[..10]),
        Err(Error::Truncated {
            needed: HEADER_LEN,
            got: 10
        })
    );
    assert_eq!(
        load(&bytes[..bytes.len() - 1]),
        Err(Error::Truncated {
            needed: bytes.len(),
            got: bytes.len() - 1
        })
    );
    for len in 0..bytes.len() {
        assert!(load(&bytes[..len]).is_err(), "a {len}-byte prefix loaded");
    }
}

#[test]
fn header_errors() {
    let good = write(&small_model()).unwrap();
    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(load(&b), Err(Error::BadMagic));
    let mut b = good.clone();
    b[header::VERSION] = 9;
    assert_eq!(load(&b), Err(Error::UnsupportedVersion(9)));
    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    assert!(matches!(load(&b), Err(Error::ChecksumMismatch { .. })));
    let mut b = good.clone();
    b.extend_from_slice(&[0; 16]);
    assert_eq!(
        load(&b),
        Err(Error::Header(
            "trailing bytes after the declared file length"
        ))
    );
    let mut b = good.clone();
    b[header::TENSORS_OFF..][..4].copy_from_slice(&(good.len() as u32).to_le_bytes());
    reseal(&mut b);
    assert_eq!(
        load(&b),
        Err(Error::Header("section lies outside the file"))
    );
    let mut b = good.clone();
    b[header::ARENA_SIZE..][..4].copy_from_slice(&321u32.to_le_bytes());
    reseal(&mut b);
    assert_eq!(
        load(&b),
        Err(Error::Header("arena size is not a multiple of 16"))
    );
}

#[test]
fn misaligned_buffer() {
    let bytes = write(&small_model()).unwrap();
    let mut v = vec![0u8; bytes.len() + 16];
    let base = v.as_ptr() as usize;
    let start = (16 - base % 16) % 16 + 1; // deliberately 1 past a 16-byte boundary
    v[start..start + bytes.len()].copy_from_slice(&bytes);
    assert_eq!(
        Model::from_bytes(&v[start..start + bytes.len()]).err(),
        Some(Error::MisalignedBuffer)
    );
}

#[test]
fn tensor_errors() {
    let good = write(&small_model()).unwrap();
    let mut b = good.clone();
    tensor_field(&mut b, 1, tensor::OFFSET, good.len() as u32 + 16);
    assert_eq!(
        load(&b),
        Err(tensor_err(1, "constant data lies outside the file"))
    );
    let mut b = good.clone();
    tensor_field(&mut b, 3, tensor::OFFSET, 320);
    assert_eq!(
        load(&b),
        Err(tensor_err(3, "arena slot lies past the arena size"))
    );
    let mut b = good.clone();
    tensor_field(&mut b, 3, tensor::OFFSET, 136);
    assert_eq!(
        load(&b),
        Err(tensor_err(3, "data offset is not 16-byte aligned"))
    );
    let mut b = good.clone();
    dim_entry(&mut b, 0, 0, 0x4000_0000);
    dim_entry(&mut b, 0, 1, 0x4000_0000);
    assert_eq!(load(&b), Err(tensor_err(0, "element count overflows")));
    let mut b = good.clone();
    dim_entry(&mut b, 0, 1, 0);
    assert_eq!(load(&b), Err(tensor_err(0, "zero-sized dimension")));
    let mut b = good.clone();
    tensor_field(&mut b, 2, tensor::DIMS, 1 << 30);
    assert_eq!(load(&b), Err(tensor_err(2, "dims lie past the dims table")));
    let mut b = good.clone();
    tensor_field(&mut b, 2, tensor::DTYPE, 77);
    assert_eq!(load(&b), Err(tensor_err(2, "unknown dtype")));
    let mut b = good.clone();
    tensor_field(&mut b, 2, tensor::NAME_LEN, 0xFFFF);
    assert_eq!(
        load(&b),
        Err(tensor_err(
            2,
            "name lies outside the string section or is not UTF-8"
        ))
    );
}

#[test]
fn op_errors() {
    let mut spec = small_model();
    spec.ops[0].params[0] = 0;
    assert_eq!(
        load(&write(&spec).unwrap()),
        Err(Error::Op {
            index: 0,
            kind: 1,
            problem: "stride must be positive"
        })
    );
    let mut spec = small_model();
    spec.tensors[3].shape = vec![1, 4, 5, 3];

    assert_eq!(
        load(&write(&spec).unwrap()),
        Err(Error::Op {
            index: 0,
            kind: 1,
            problem: "output shape does not match conv arithmetic"
        })
    );
    let mut spec = small_model();
    spec.ops[3].inputs[0] = Some(99);
    assert_eq!(
        load(&write(&spec).unwrap()),
        Err(Error::Op {
            index: 3,
            kind: 2,
            problem: "names a tensor that does not exist"
        })
    );
    let mut spec = small_model();
    spec.ops[1].outputs[0] = 1;
    assert_eq!(
        load(&write(&spec).unwrap()),
        Err(Error::Op {
            index: 1,
            kind: 4,
            problem: "writes to a constant tensor"
        })
    );
    let mut spec = small_model();
    spec.ops.swap(0, 1);
    assert!(matches!(
        load(&write(&spec).unwrap()),
        Err(Error::Op { .. } | Error::Tensor { .. })
    ));
    // The pool's output planned over the conv's input while the conv output is still needed.
    let mut spec = small_model();
    spec.tensors[4].data = TensorData::Arena { offset: 128 };
    assert_eq!(
        load(&write(&spec).unwrap()),
        Err(Error::Op {
            index: 1,
            kind: 4,
            problem: "output slot overlaps a tensor that is still live"
        })
    );
    let mut spec = small_model();
    spec.ops[4].params[0] = 5;
    assert_eq!(
        load(&write(&spec).unwrap()),
        Err(Error::Op {
            index: 4,
            kind: 12,
            problem: "axis outside the rank"
        })
    );
    let mut b = write(&small_model()).unwrap();
    let ops_off = u32::from_le_bytes(b[header::OPS_OFF..][..4].try_into().unwrap()) as usize;
    b[ops_off] = 200;
    reseal(&mut b);
    assert_eq!(
        load(&b),
        Err(Error::Op {
            index: 0,
            kind: 200,
            problem: "unknown op kind"
        })
    );
}

#[test]
fn session_errors() {
    let bytes = write(&small_model()).unwrap();
    let buf = AlignedBuf::new(&bytes);
    let m = Model::from_bytes(buf.as_slice()).unwrap();
    let mut small = AlignedBuf::zeroed(64);
    assert_eq!(
        Session::new(&m, small.as_mut_slice()).err(),
        Some(Error::ArenaTooSmall {
            needed: 320,
            got: 64
        })
    );
    let mut arena = AlignedBuf::zeroed(400);
    assert_eq!(
        Session::new(&m, &mut arena.as_mut_slice()[1..]).err(),
        Some(Error::MisalignedArena)
    );
    let mut s = Session::new(&m, arena.as_mut_slice()).unwrap();
    assert_eq!(
        s.set_input_f32(0, &[0.0; 31]),
        Err(Error::WrongLength {
            index: 0,
            expected: 32,
            got: 31
        })
    );
    let mut x = [0.5f32; 32];
    x[7] = f32::NAN;
    assert_eq!(
        s.set_input_f32(0, &x),
        Err(Error::NonFiniteInput {
            index: 0,
            element: 7
        })
    );
    x[7] = f32::INFINITY;
    assert_eq!(
        s.set_input_f32(0, &x),
        Err(Error::NonFiniteInput {
            index: 0,
            element: 7
        })
    );
    assert_eq!(
        s.set_input_f32(1, &x),
        Err(Error::NoSuchTensor { index: 1 })
    );
    let mut y = [0f32; 3];
    assert_eq!(
        s.run(&[0.5; 32], &mut y),
        Err(Error::WrongLength {
            index: 0,
            expected: 4,
            got: 3
        })
    );
}

/// Every single-byte change of `good` (0x00, 0xFF, +1 and the top bit flipped, at each byte after
/// the magic and version, with the checksum recomputed so that it reaches the validator) either
/// fails to load or loads and runs: `prepare` fills the input, then `invoke` must succeed,
/// whatever bytes the corruption left in the weights. Returns (loaded, rejected).
fn corrupt_every_byte(good: &[u8], mut prepare: impl FnMut(&mut Session)) -> (usize, usize) {
    let (mut loaded, mut rejected) = (0, 0);
    for pos in 16..good.len() {
        for v in [0u8, 0xFF, good[pos].wrapping_add(1), good[pos] ^ 0x80] {
            if v == good[pos] {
                continue;
            }
            let mut b = good.to_vec();
            b[pos] = v;
            reseal(&mut b);
            let buf = AlignedBuf::new(&b);
            let Ok(m) = Model::from_bytes(buf.as_slice()) else {
                rejected += 1;
                continue;
            };
            loaded += 1;
            let mut arena = AlignedBuf::zeroed(m.arena_size());
            let mut s = Session::new(&m, arena.as_mut_slice()).unwrap();
            prepare(&mut s);
            if let Err(e) = s.invoke() {
                panic!("byte {pos} = {v:#04x}: the model loads but invoke fails: {e}");
            }
        }
    }
    (loaded, rejected)
}

/// Every single-byte change of a valid file (checksum recomputed, so it reaches the validator)
/// either fails to load or loads and runs: never a panic.
#[test]
fn every_byte_corruption_is_handled() {
    let good = write(&small_model()).unwrap();
    let x: Vec<f32> = (0..32).map(|i| i as f32 / 32.0).collect();
    let (loaded, rejected) = corrupt_every_byte(&good, |s| {
        // A corruption may change the input's dtype or shape, and then the input refuses `x`
        // for that reason only; either way the model must run.
        match s.set_input_f32(0, &x) {
            Ok(()) | Err(Error::WrongDtype { .. } | Error::WrongLength { .. }) => {}
            Err(e) => panic!("set_input: {e}"),
        }
    });
    assert!(
        rejected > 0 && loaded > 0,
        "loaded {loaded}, rejected {rejected}"
    );
}

/// int8 softmax on a rank-0 tensor used to pass validation (the axis check was
/// `axis == rank.saturating_sub(1)`) and then index `dims[rank - 1]` in the session.
#[test]
fn int8_softmax_on_a_scalar_is_refused() {
    let q = |scale: f32, zero_point: i32| Quant::PerTensor { scale, zero_point };
    let t = |name: &str, offset: usize, quant: Quant| TensorSpec {
        name: name.into(),
        dtype: DType::I8,
        shape: vec![],
        data: TensorData::Arena { offset },
        quant,
    };
    let sm = SoftmaxParams {
        quant: SoftmaxQuant {
            input_multiplier: 1 << 30,
            input_left_shift: 0,
            diff_min: -1,
        },
        ..SoftmaxParams::new(0, false)
    }
    .encode();
    let spec = ModelSpec {
        tensors: vec![t("x", 0, q(0.1, 0)), t("y", 16, q(1.0 / 256.0, -128))],
        ops: vec![OpSpec {
            kind: OpKind::Softmax,
            name: "softmax".into(),
            inputs: vec![Some(0)],
            outputs: vec![1],
            params: sm,
        }],
        inputs: vec![0],
        outputs: vec![1],
    };
    assert_eq!(
        load(&write(&spec).unwrap()),
        Err(Error::Op {
            index: 0,
            kind: OpKind::Softmax as u16,
            problem: "int8 softmax runs along the last axis"
        })
    );
}

/// A whole int8 model (conv, pool, reshape, dense, softmax) gives the same bytes with the
/// optimized and the reference kernels, for many inputs.
#[test]
fn optimized_and_reference_sessions_agree_bit_for_bit() {
    use kiln_runtime::Kernels;
    let b = write(&small_int8_model()).unwrap();
    let buf = AlignedBuf::new(&b);
    let m = Model::from_bytes(buf.as_slice()).unwrap();
    for seed in 0..64u32 {
        let run = |kernels: Kernels| {
            let mut arena = AlignedBuf::zeroed(m.arena_size());
            let mut s = Session::new(&m, arena.as_mut_slice()).unwrap();
            s.set_kernels(kernels);
            assert_eq!(s.kernels(), kernels);
            for (i, v) in s.input_bytes_mut(0).unwrap().iter_mut().enumerate() {
                *v = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed * 97) as u8;
            }
            s.invoke().unwrap();
            s.output_bytes(0).unwrap().to_vec()
        };
        assert_eq!(
            run(Kernels::Optimized),
            run(Kernels::Reference),
            "seed {seed}"
        );
    }
}

/// `small_int8_model` with its conv and dense stored as sparse blobs (bias folded):
/// (the file, the original file).
fn sparse_int8_model() -> (Vec<u8>, Vec<u8>) {
    use kiln_runtime::kernels::sparse;
    let dense = small_int8_model();
    let mut spec = dense.clone();
    let weights = |t: &TensorSpec| -> Vec<i8> {
        match &t.data {
            TensorData::Constant(b) => b.iter().map(|&v| v as i8).collect(),
            _ => unreachable!(),
        }
    };
    // Every other weight zeroed (a pruned model), in both files.
    for k in [1usize, 8] {
        let mut w = weights(&spec.tensors[k]);
        for (i, v) in w.iter_mut().enumerate() {
            if i % 2 == 1 || i % 7 == 0 {
                *v = 0;
            }
        }
        spec.tensors[k].data = TensorData::Constant(w.iter().map(|&v| v as u8).collect());
    }
    let zero_weights = spec.clone();
    // conv: 3 x 18 after x zero point 3; dense: 4 x 12 after the pool's zero point -5.
    for (op, wk, m, k, zx, shape) in [
        (0usize, 1usize, 3usize, 18usize, 3i32, vec![1usize, 3, 3]),
        (3, 8, 4, 12, -5, vec![1]),
    ] {
        let w = weights(&spec.tensors[wk]);
        let mut blob = sparse::encode(&w, m, k).unwrap();
        let bias: Vec<i32> = match spec.ops[op].inputs[2] {
            Some(b) => match &spec.tensors[b as usize].data {
                TensorData::Constant(v) => v
                    .chunks(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                _ => unreachable!(),
            },
            None => vec![0; m],
        };
        let folded: Vec<u8> = (0..m)
            .flat_map(|r| {
                let s: i32 = w[r * k..][..k].iter().map(|&v| v as i32).sum();
                (bias[r] - zx * s).to_le_bytes()
            })
            .collect();
        let mut shape = shape;
        let taps: usize = shape[1..].iter().product();
        let l = blob.len().div_ceil(taps);
        blob.resize(l * taps, 0);
        shape.push(l);
        spec.tensors[wk] = TensorSpec {
            name: format!("w{op}.sparse"),
            dtype: DType::U8,
            shape,
            data: TensorData::Constant(blob),
            quant: Quant::None,
        };
        spec.tensors.push(TensorSpec {
            name: format!("b{op}.folded"),
            dtype: DType::I32,
            shape: vec![m],
            data: TensorData::Constant(folded),
            quant: Quant::None,
        });
        spec.ops[op].inputs[2] = Some(spec.tensors.len() as u32 - 1);
        let words = spec.ops[op].params;
        spec.ops[op].params = match spec.ops[op].kind {
            OpKind::Conv2d => {
                let mut p = ConvParams::decode(&words, true).unwrap();
                p.sparse = true;
                p.encode()
            }
            _ => {
                let mut p = DenseParams::decode(&words, true).unwrap();
                p.sparse = true;
                p.encode()
            }
        };
    }
    (write(&spec).unwrap(), write(&zero_weights).unwrap())
}

#[test]
fn sparse_weights_run_like_dense_and_bad_blobs_are_refused() {
    let (sparse, dense) = sparse_int8_model();
    let run = |bytes: &[u8]| -> Vec<f32> {
        let buf = AlignedBuf::new(bytes);
        let m = Model::from_bytes(buf.as_slice()).unwrap();
        let mut arena = AlignedBuf::zeroed(m.arena_size());
        let mut s = Session::new(&m, arena.as_mut_slice()).unwrap();
        for (i, b) in s.input_bytes_mut(0).unwrap().iter_mut().enumerate() {
            *b = (i * 29) as u8;
        }
        s.invoke().unwrap();
        s.output_f32(0).unwrap().to_vec()
    };
    assert_eq!(run(&sparse), run(&dense));
    // A count past the blob, a gap past the row: refused by name.
    let spec = spec_from_model(&Model::from_bytes(AlignedBuf::new(&sparse).as_slice()).unwrap());
    let blob_at = spec
        .tensors
        .iter()
        .position(|t| t.name == "w3.sparse")
        .unwrap();
    for (at, v) in [(1usize, 200u8), (6, 0xFF)] {
        let mut bad = spec.clone();
        if let TensorData::Constant(b) = &mut bad.tensors[blob_at].data {
            b[at] = v;
        }
        let bytes = write(&bad).unwrap();
        let err = load(&bytes).unwrap_err().to_string();
        assert!(err.contains("sparse weights: malformed blob"), "{err}");
    }
    // No single-byte change makes the reader or the kernels panic.
    let (loaded, rejected) = corrupt_every_byte(&sparse, |_| {});
    assert!(
        rejected > 0 && loaded > 0,
        "loaded {loaded}, rejected {rejected}"
    );
}
