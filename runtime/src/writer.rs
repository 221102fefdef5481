//! The `.kiln` writer (feature `alloc`): the exact inverse of [`crate::Model::from_bytes`].

extern crate alloc;
use alloc::string::String;
use alloc::vec::Vec;

use crate::format::{
    crc32, header, op, tensor, DType, ALIGN, HEADER_LEN, LIFE_INPUT, LIFE_NONE, MAGIC, MAX_OPS,
    MAX_RANK, NO_TENSOR, OP_PARAMS, OP_RECORD_LEN, TENSOR_DESC_LEN, VERSION,
};
use crate::model::Quant;
use crate::ops::OpKind;

/// Where a tensor described to the writer lives.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// An activation at this arena offset (multiple of 16).
    Arena {
        /// Offset in the arena.
        offset: usize,
    },
    /// Constant bytes stored in the file (little-endian elements).
    Constant(Vec<u8>),
}

/// A tensor to write.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// Name (from the source model).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape, at most six dims, every dim at least 1.
    pub shape: Vec<usize>,
    /// Storage.
    pub data: TensorData,
    /// Quantization parameters.
    pub quant: Quant,
}

/// An op to write.
#[derive(Clone, Debug, PartialEq)]
pub struct OpSpec {
    /// Kind.
    pub kind: OpKind,
    /// Name (from the source model).
    pub name: String,
    /// Input tensor indices; `None` for an absent optional input.
    pub inputs: Vec<Option<u32>>,
    /// Output tensor indices.
    pub outputs: Vec<u32>,
    /// Parameter words, as the file stores them: `OpParams::encode` of the typed parameters
    /// (tests may write any words to probe validation).
    pub params: [i32; OP_PARAMS],
}

impl OpSpec {
    /// An op computing `params` (its kind and encoded words).
    pub fn new(
        name: &str,
        params: crate::ops::OpParams,
        inputs: Vec<Option<u32>>,
        outputs: Vec<u32>,
    ) -> OpSpec {
        OpSpec {
            kind: params.kind(),
            name: name.into(),
            inputs,
            outputs,
            params: params.encode(),
        }
    }
}

/// A whole model to write: tensors, ops in execution order, graph inputs/outputs. The writer
/// derives the arena size and each tensor's lifetime (producer, last use) from them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelSpec {
    /// Tensor table.
    pub tensors: Vec<TensorSpec>,
    /// Ops in execution order.
    pub ops: Vec<OpSpec>,
    /// Graph input tensor indices.
    pub inputs: Vec<u32>,
    /// Graph output tensor indices.
    pub outputs: Vec<u32>,
}

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn align_up(v: usize) -> usize {
    v.div_ceil(ALIGN) * ALIGN
}

/// Why a spec could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// A tensor has more than six dims.
    RankTooHigh(usize),
    /// An op has more than 255 inputs or outputs.
    TooManyOperands(usize),
    /// The file would exceed 4 GiB.
    TooLarge,
    /// More than 65535 graph inputs or outputs.
    TooManyGraphIo,
    /// A tensor name is longer than 65535 bytes.
    NameTooLong(usize),
    /// More ops than [`MAX_OPS`].
    TooManyOps(usize),
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::RankTooHigh(i) => write!(f, "tensor #{i} has more than 6 dimensions"),
            WriteError::TooManyOperands(i) => write!(f, "op #{i} has more than 255 operands"),
            WriteError::TooLarge => write!(f, "model would exceed 4 GiB"),
            WriteError::TooManyGraphIo => write!(f, "more than 65535 graph inputs/outputs"),
            WriteError::NameTooLong(i) => write!(f, "tensor #{i} has a name over 65535 bytes"),
            WriteError::TooManyOps(n) => {
                write!(f, "{n} ops: the format holds at most {MAX_OPS}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WriteError {}

/// Serializes `spec`. The result loads with [`crate::Model::from_bytes`] if the spec is
/// consistent (the reader validates shapes and params; the writer only lays out bytes).
pub fn write(spec: &ModelSpec) -> Result<Vec<u8>, WriteError> {
    let nt = spec.tensors.len();
    let no = spec.ops.len();
    let io_len = spec.inputs.len()
        + spec.outputs.len()
        + spec
            .ops
            .iter()
            .map(|o| o.inputs.len() + o.outputs.len())
            .sum::<usize>();
    if spec.inputs.len() > u16::MAX as usize || spec.outputs.len() > u16::MAX as usize {
        return Err(WriteError::TooManyGraphIo);
    }
    if no > MAX_OPS {
        return Err(WriteError::TooManyOps(no));
    }
    let (producer, last_use) = lifetimes(spec);
    let arena_size = align_up(
        spec.tensors
            .iter()
            .filter_map(|t| match t.data {
                TensorData::Arena { offset } => {
                    Some(offset + t.shape.iter().product::<usize>() * t.dtype.size())
                }
                TensorData::Constant(_) => None,
            })
            .max()
            .unwrap_or(0),
    );
    let mut strings: Vec<u8> = Vec::new();
    // Equal names are stored once.
    let mut seen: alloc::collections::BTreeMap<&str, (u32, u32)> =
        alloc::collections::BTreeMap::new();
    let mut names: Vec<(u32, u32)> = Vec::with_capacity(spec.tensors.len() + spec.ops.len());
    for s in spec
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .chain(spec.ops.iter().map(|o| o.name.as_str()))
    {
        let at = *seen.entry(s).or_insert_with(|| {
            let at = (strings.len() as u32, s.len() as u32);
            strings.extend_from_slice(s.as_bytes());
            at
        });
        names.push(at);
    }
    let (tnames, onames) = names.split_at(spec.tensors.len());
    // The dims table: each tensor's dims as a run of u32, equal runs stored once.
    let mut dims: Vec<u32> = Vec::new();
    let mut dims_at: Vec<u32> = Vec::with_capacity(nt);
    for (i, t) in spec.tensors.iter().enumerate() {
        if t.shape.len() > MAX_RANK {
            return Err(WriteError::RankTooHigh(i));
        }
        if t.name.len() > u16::MAX as usize {
            return Err(WriteError::NameTooLong(i));
        }
        let run: Vec<u32> = t.shape.iter().map(|&d| d as u32).collect();
        let at = if run.is_empty() {
            0
        } else {
            (0..(dims.len() + 1).saturating_sub(run.len()))
                .find(|&s| dims[s..s + run.len()] == run[..])
                .unwrap_or_else(|| {
                    dims.extend_from_slice(&run);
                    dims.len() - run.len()
                })
        };
        dims_at.push(at as u32);
    }

    let tensors_off = HEADER_LEN;
    let ops_off = tensors_off + nt * TENSOR_DESC_LEN;
    let io_off = ops_off + no * OP_RECORD_LEN;
    let dims_off = io_off + io_len * 4;
    let strings_off = dims_off + dims.len() * 4;
    let data_off = align_up(strings_off + strings.len());
    let mut data_len = 0usize;
    let mut const_offsets = Vec::with_capacity(nt);
    for t in &spec.tensors {
        if let TensorData::Constant(d) = &t.data {
            const_offsets.push(data_off + data_len);
            data_len = align_up(data_len + d.len());
        } else {
            const_offsets.push(0);
        }
    }
    let file_len = data_off + data_len;
    if file_len > u32::MAX as usize {
        return Err(WriteError::TooLarge);
    }
    let mut b = alloc::vec![0u8; file_len];
    b[header::MAGIC..header::MAGIC + 4].copy_from_slice(&MAGIC);
    put_u16(&mut b, header::VERSION, VERSION);
    put_u16(&mut b, header::HEADER_LEN, HEADER_LEN as u16);
    put_u32(&mut b, header::FILE_LEN, file_len as u32);
    put_u32(&mut b, header::NUM_TENSORS, nt as u32);
    put_u32(&mut b, header::TENSORS_OFF, tensors_off as u32);
    put_u32(&mut b, header::NUM_OPS, no as u32);
    put_u32(&mut b, header::OPS_OFF, ops_off as u32);
    put_u32(&mut b, header::IO_OFF, io_off as u32);
    put_u32(&mut b, header::IO_LEN, io_len as u32);
    put_u16(&mut b, header::NUM_INPUTS, spec.inputs.len() as u16);
    put_u16(&mut b, header::NUM_OUTPUTS, spec.outputs.len() as u16);
    put_u32(&mut b, header::ARENA_SIZE, arena_size as u32);
    put_u32(&mut b, header::STRINGS_OFF, strings_off as u32);
    put_u32(&mut b, header::STRINGS_LEN, strings.len() as u32);
    put_u32(&mut b, header::DATA_OFF, data_off as u32);
    put_u32(&mut b, header::DATA_LEN, data_len as u32);
    put_u32(&mut b, header::DIMS_OFF, dims_off as u32);
    put_u32(&mut b, header::DIMS_LEN, dims.len() as u32);
    for (k, d) in dims.iter().enumerate() {
        put_u32(&mut b, dims_off + 4 * k, *d);
    }

    for (i, t) in spec.tensors.iter().enumerate() {
        let d = tensors_off + i * TENSOR_DESC_LEN;
        b[d + tensor::DTYPE] = t.dtype as u8;
        b[d + tensor::RANK] = t.shape.len() as u8;
        put_u32(&mut b, d + tensor::DIMS, dims_at[i]);
        match &t.data {
            TensorData::Arena { offset } => {
                b[d + tensor::STORAGE] = 0;
                put_u32(&mut b, d + tensor::OFFSET, *offset as u32);
            }
            TensorData::Constant(bytes) => {
                b[d + tensor::STORAGE] = 1;
                let off = const_offsets[i];
                put_u32(&mut b, d + tensor::OFFSET, off as u32);
                b[off..off + bytes.len()].copy_from_slice(bytes);
            }
        }
        put_u16(&mut b, d + tensor::PRODUCER, producer[i]);
        put_u16(&mut b, d + tensor::LAST_USE, last_use[i]);
        put_u32(&mut b, d + tensor::NAME_OFF, tnames[i].0);
        put_u16(&mut b, d + tensor::NAME_LEN, tnames[i].1 as u16);
        match t.quant {
            Quant::None => {}
            Quant::PerTensor { scale, zero_point } => {
                b[d + tensor::QUANT] = 1;
                put_u32(&mut b, d + tensor::SCALE, scale.to_bits());
                put_u32(&mut b, d + tensor::ZERO_POINT, zero_point as u32);
            }
            Quant::PerAxis { axis, scales } => {
                b[d + tensor::QUANT] = 2;
                put_u16(&mut b, d + tensor::QUANT_AXIS, axis as u16);
                put_u32(&mut b, d + tensor::QUANT_SCALES, scales);
            }
        }
    }
    let mut io = Vec::with_capacity(io_len);
    io.extend(spec.inputs.iter().copied());
    io.extend(spec.outputs.iter().copied());
    for (i, o) in spec.ops.iter().enumerate() {
        if o.inputs.len() > 255 || o.outputs.len() > 255 {
            return Err(WriteError::TooManyOperands(i));
        }
        let r = ops_off + i * OP_RECORD_LEN;
        put_u16(&mut b, r + op::KIND, o.kind as u16);
        b[r + op::N_IN] = o.inputs.len() as u8;
        b[r + op::N_OUT] = o.outputs.len() as u8;
        put_u32(&mut b, r + op::IO_START, io.len() as u32);
        put_u32(&mut b, r + op::NAME_OFF, onames[i].0);
        put_u32(&mut b, r + op::NAME_LEN, onames[i].1);
        for (k, p) in o.params.iter().enumerate() {
            put_u32(&mut b, r + op::PARAMS + 4 * k, *p as u32);
        }
        io.extend(o.inputs.iter().map(|t| t.unwrap_or(NO_TENSOR)));
        io.extend(o.outputs.iter().copied());
    }
    for (k, t) in io.iter().enumerate() {
        put_u32(&mut b, io_off + 4 * k, *t);
    }
    b[strings_off..strings_off + strings.len()].copy_from_slice(&strings);
    let crc = crc32(&b[16..]);
    put_u32(&mut b, header::CRC, crc);
    Ok(b)
}

/// Each tensor's producer and last use as the format stores them (`format::tensor::PRODUCER`).
/// Indices past the tensor table are skipped: the reader refuses such a file with its own
/// error (tests write malformed files on purpose).
fn lifetimes(spec: &ModelSpec) -> (Vec<u16>, Vec<u16>) {
    let nt = spec.tensors.len();
    let mut producer = alloc::vec![LIFE_NONE; nt];
    let mut last = alloc::vec![None::<u16>; nt];
    for &t in spec.inputs.iter().filter(|&&t| (t as usize) < nt) {
        producer[t as usize] = LIFE_INPUT;
    }
    for (j, o) in spec.ops.iter().enumerate() {
        for &t in o.inputs.iter().flatten().filter(|&&t| (t as usize) < nt) {
            last[t as usize] = Some(j as u16);
        }
        for &t in o.outputs.iter().filter(|&&t| (t as usize) < nt) {
            producer[t as usize] = j as u16;
        }
    }
    let mut last_use = alloc::vec![LIFE_NONE; nt];
    for t in 0..nt {
        if matches!(spec.tensors[t].data, TensorData::Constant(_)) {
            producer[t] = LIFE_NONE;
            continue;
        }
        last_use[t] = match (last[t], producer[t]) {
            (Some(l), _) => l,
            (None, LIFE_INPUT) => LIFE_INPUT, // a graph input nothing reads: dead before op 0
            (None, p) => p, // an op output nothing reads lives only while it is written
        };
    }
    for &t in spec.outputs.iter().filter(|&&t| (t as usize) < nt) {
        last_use[t as usize] = LIFE_NONE;
    }
    (producer, last_use)
}

/// Recomputes the CRC of a file whose bytes were edited (tests and tools that patch models).
pub fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        let crc = crc32(&bytes[16..]);
        put_u32(bytes, header::CRC, crc);
    }
}

/// 16 bytes, 16-byte aligned on every target (`u128` is only 8-aligned on 32-bit ARM).
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(16))]
struct Block([u8; 16]);

/// An owned, 16-byte aligned copy of a model's bytes (a `Vec<u8>` gives no alignment promise).
#[derive(Clone, Debug)]
pub struct AlignedBuf {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBuf {
    /// Copies `bytes` into aligned storage.
    pub fn new(bytes: &[u8]) -> AlignedBuf {
        let mut buf = AlignedBuf::zeroed(bytes.len());
        buf.as_mut_slice().copy_from_slice(bytes);
        buf
    }
    /// Zero-filled aligned storage of `len` bytes (an arena).
    pub fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf {
            blocks: alloc::vec![Block([0; 16]); len.div_ceil(16)],
            len,
        }
    }
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.blocks)[..self.len]
    }
    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.blocks)[..self.len]
    }
}

/// Rebuilds the spec of a loaded model: `write(&spec_from_model(&m))` reproduces the file byte
/// for byte (the reader and the writer are exact inverses).
pub fn spec_from_model(m: &crate::Model<'_>) -> ModelSpec {
    use crate::format::Storage;
    let tensors = (0..m.num_tensors())
        .map(|i| {
            let t = m.tensor(i);
            TensorSpec {
                name: t.name().into(),
                dtype: t.dtype,
                shape: t.shape().to_vec(),
                data: match t.storage {
                    Storage::Arena => TensorData::Arena { offset: t.offset },
                    Storage::Constant => TensorData::Constant(m.constant_bytes(&t).to_vec()),
                },
                quant: t.quant,
            }
        })
        .collect();
    let ops = (0..m.num_ops())
        .map(|i| {
            let o = m.op(i);
            OpSpec {
                kind: o.kind,
                name: o.name().into(),
                inputs: (0..o.num_inputs())
                    .map(|k| m.op_input(&o, k).map(|t| t as u32))
                    .collect(),
                outputs: (0..o.num_outputs())
                    .map(|k| m.op_output(&o, k) as u32)
                    .collect(),
                params: *o.words(),
            }
        })
        .collect();
    ModelSpec {
        tensors,
        ops,
        inputs: (0..m.num_inputs())
            .filter_map(|k| m.input_tensor(k).ok())
            .map(|t| t as u32)
            .collect(),
        outputs: (0..m.num_outputs())
            .filter_map(|k| m.output_tensor(k).ok())
            .map(|t| t as u32)
            .collect(),
    }
}

/// The smallest useful float model: `x [1, k]` -> dense (no bias, no activation) with `weights`
/// `[m, k]` (row-major, `m = weights.len() / k`) -> `y [1, m]`. For tests and examples.
pub fn example_dense(k: usize, weights: &[f32]) -> ModelSpec {
    let m = weights.len() / k.max(1);
    let t = |name: &str, shape: Vec<usize>, data| TensorSpec {
        name: name.into(),
        dtype: DType::F32,
        shape,
        data,
        quant: Quant::None,
    };
    let w = weights.iter().flat_map(|v| v.to_le_bytes()).collect();
    ModelSpec {
        tensors: alloc::vec![
            t("x", alloc::vec![1, k], TensorData::Arena { offset: 0 }),
            t("w", alloc::vec![m, k], TensorData::Constant(w)),
            t(
                "y",
                alloc::vec![1, m],
                TensorData::Arena {
                    offset: (4 * k).div_ceil(16) * 16
                }
            ),
        ],
        ops: alloc::vec![OpSpec::new(
            "fc",
            crate::ops::OpParams::Dense(crate::ops::DenseParams::default()),
            alloc::vec![Some(0), Some(1), None],
            alloc::vec![2],
        )],
        inputs: alloc::vec![0],
        outputs: alloc::vec![2],
    }
}

/// A small valid float model, for tests, examples and fuzz seeds: `x [1,4,4,2]` -> conv 3x3 pad 1
/// (3 channels) + ReLU -> average pool 2x2 -> reshape `[1,12]` -> dense 4 -> softmax. Tensors
/// 0..=8 are x, w, b, conv, pool, flat, fw, logits, probs; ops 0..=4 conv, pool, flatten, fc,
/// softmax.
pub fn example_cnn() -> ModelSpec {
    use crate::ops::{
        Act, ConvGeom, ConvParams, DenseParams, OpDef, PoolParams, ReshapeParams, SoftmaxParams,
    };
    let f32_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let t = |name: &str, shape: &[usize], data: TensorData| TensorSpec {
        name: name.into(),
        dtype: DType::F32,
        shape: shape.to_vec(),
        data,
        quant: Quant::None,
    };
    let w: Vec<f32> = (0..3 * 3 * 3 * 2)
        .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5)
        .collect();
    let fw: Vec<f32> = (0..4 * 12)
        .map(|i| ((i * 5) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let pad1 = ConvGeom {
        pad: [1; 4],
        ..ConvGeom::default()
    };
    let conv = ConvParams {
        act: Act::Float {
            lo: 0.0,
            hi: f32::INFINITY,
        },
        ..ConvParams::new(pad1)
    }
    .encode();
    let pool = PoolParams::new([2, 2], [2, 2]).encode();
    let plain = ReshapeParams.encode();
    let dense = DenseParams::default().encode();
    let sm = SoftmaxParams::new(1, false).encode();
    let op = |kind, name: &str, inputs: Vec<Option<u32>>, out: u32, params| OpSpec {
        kind,
        name: name.into(),
        inputs,
        outputs: alloc::vec![out],
        params,
    };
    ModelSpec {
        tensors: alloc::vec![
            t("x", &[1, 4, 4, 2], TensorData::Arena { offset: 0 }),
            t("w", &[3, 3, 3, 2], TensorData::Constant(f32_bytes(&w))),
            t(
                "b",
                &[3],
                TensorData::Constant(f32_bytes(&[0.1, -0.1, 0.0])),
            ),
            t("conv", &[1, 4, 4, 3], TensorData::Arena { offset: 128 }),
            t("pool", &[1, 2, 2, 3], TensorData::Arena { offset: 0 }),
            t("flat", &[1, 12], TensorData::Arena { offset: 0 }),
            t("fw", &[4, 12], TensorData::Constant(f32_bytes(&fw))),
            t("logits", &[1, 4], TensorData::Arena { offset: 64 }),
            t("probs", &[1, 4], TensorData::Arena { offset: 0 }),
        ],
        ops: alloc::vec![
            op(
                OpKind::Conv2d,
                "conv",
                alloc::vec![Some(0), Some(1), Some(2)],
                3,
                conv,
            ),
            op(OpKind::AvgPool, "pool", alloc::vec![Some(3)], 4, pool),
            op(OpKind::Reshape, "flatten", alloc::vec![Some(4)], 5, plain),
            op(
                OpKind::Dense,
                "fc",
                alloc::vec![Some(5), Some(6), None],
                7,
                dense
            ),
            op(OpKind::Softmax, "softmax", alloc::vec![Some(7)], 8, sm),
        ],
        inputs: alloc::vec![0],
        outputs: alloc::vec![8],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Model, Session};
    use alloc::vec;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// y = relu(x @ W^T + b), 1x3 -> 1x2.
    pub(crate) fn tiny_dense() -> ModelSpec {
        use crate::ops::OpDef;
        let params = crate::ops::DenseParams {
            act: crate::ops::Act::Float {
                lo: 0.0,
                hi: f32::INFINITY,
            },
            ..Default::default()
        }
        .encode();
        ModelSpec {
            tensors: vec![
                TensorSpec {
                    name: "x".into(),
                    dtype: DType::F32,
                    shape: vec![1, 3],
                    data: TensorData::Arena { offset: 0 },
                    quant: Quant::None,
                },
                TensorSpec {
                    name: "w".into(),
                    dtype: DType::F32,
                    shape: vec![2, 3],
                    data: TensorData::Constant(f32_bytes(&[1.0, 2.0, 3.0, -1.0, -1.0, -1.0])),
                    quant: Quant::None,
                },
                TensorSpec {
                    name: "b".into(),
                    dtype: DType::F32,
                    shape: vec![2],
                    data: TensorData::Constant(f32_bytes(&[0.5, 0.25])),
                    quant: Quant::None,
                },
                TensorSpec {
                    name: "y".into(),
                    dtype: DType::F32,
                    shape: vec![1, 2],
                    data: TensorData::Arena { offset: 16 },
                    quant: Quant::None,
                },
            ],
            ops: vec![OpSpec {
                kind: OpKind::Dense,
                name: "fc".into(),
                inputs: vec![Some(0), Some(1), Some(2)],
                outputs: vec![3],
                params,
            }],
            inputs: vec![0],
            outputs: vec![3],
        }
    }

    #[test]
    fn aligned_buf_is_aligned_exact_and_mutable() {
        for len in [0usize, 1, 15, 16, 17, 100] {
            let src: Vec<u8> = (0..len as u8).collect();
            let mut b = AlignedBuf::new(&src);
            assert_eq!(b.as_slice(), &src[..]);
            assert_eq!(b.as_slice().as_ptr() as usize % 16, 0);
            if len > 0 {
                b.as_mut_slice()[len - 1] = 0xAA;
                assert_eq!(b.as_slice()[len - 1], 0xAA);
            }
            let z = AlignedBuf::zeroed(len);
            assert!(z.as_slice().iter().all(|&v| v == 0) && z.as_slice().len() == len);
        }
    }

    #[test]
    fn round_trip_and_run() {
        let bytes = write(&tiny_dense()).unwrap();
        let buf = AlignedBuf::new(&bytes);
        let m = Model::from_bytes(buf.as_slice()).unwrap();
        assert_eq!(m.arena_size(), 32);
        assert_eq!(m.tensor(1).name(), "w");
        assert_eq!(m.op(0).name(), "fc");
        let mut arena = AlignedBuf::zeroed(m.arena_size());
        let mut s = Session::new(&m, arena.as_mut_slice()).unwrap();
        let mut y = [0.0; 2];
        s.run(&[1.0, 1.0, 1.0], &mut y).unwrap();
        assert_eq!(y, [6.5, 0.0]);
    }
}
