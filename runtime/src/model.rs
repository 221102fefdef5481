//! Zero-copy, validate-once view of a `.kiln` file.

use crate::error::{Error, Result};
use crate::format::{
    self, header, op, range_ok, rd_i32, rd_u16, rd_u32, tensor, DType, Storage, ALIGN, HEADER_LEN,
    LIFE_INPUT, LIFE_NONE, MAX_ELEMENTS, MAX_LIVE, MAX_OPS, MAX_RANK, NO_TENSOR, OP_PARAMS,
    OP_RECORD_LEN, TENSOR_DESC_LEN,
};
use crate::ops::{self, OpKind};

/// Quantization parameters of a tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quant {
    /// Not quantized.
    None,
    /// One scale and zero point for the whole tensor: `real = scale * (q - zero_point)`.
    PerTensor {
        /// Scale.
        scale: f32,
        /// Zero point.
        zero_point: i32,
    },
    /// One scale per slice along `axis` (zero point 0, as TFLite's symmetric weights); the scales
    /// are the f32 constant tensor `scales`.
    PerAxis {
        /// Quantized axis.
        axis: u32,
        /// Index of the f32 constant tensor holding the scales.
        scales: u32,
    },
}

/// A decoded tensor descriptor.
#[derive(Clone, Copy, Debug)]
pub struct TensorInfo<'m> {
    /// Element type.
    pub dtype: DType,
    /// Number of dimensions.
    pub rank: usize,
    /// Dimensions; entries past `rank` are 1.
    pub dims: [usize; MAX_RANK],
    /// Arena or constant.
    pub storage: Storage,
    /// Byte offset: into the file for constants, into the arena otherwise.
    pub offset: usize,
    /// Byte length.
    pub byte_len: usize,
    /// Quantization parameters.
    pub quant: Quant,
    name: &'m [u8],
}

/// Where a tensor's bytes are ([`Model::tensor_loc`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TensorLoc {
    /// Element type.
    pub dtype: DType,
    /// Arena or constant.
    pub storage: Storage,
    /// Byte offset: into the file for constants, into the arena otherwise.
    pub offset: usize,
    /// Byte length.
    pub byte_len: usize,
}

impl<'m> TensorInfo<'m> {
    /// Name as in the source model (decoded on demand: the session never asks for it).
    pub fn name(&self) -> &'m str {
        core::str::from_utf8(self.name).unwrap_or("")
    }
    /// The dimensions as a slice of length `rank`.
    pub fn shape(&self) -> &[usize] {
        &self.dims[..self.rank]
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims[..self.rank].iter().product()
    }
    /// True when the tensor has no elements (never for a validated model).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A decoded op record.
#[derive(Clone, Copy, Debug)]
pub struct OpInfo<'m> {
    /// Position in execution order.
    pub index: u32,
    /// What the op computes.
    pub kind: OpKind,
    words: [i32; OP_PARAMS],
    name: &'m [u8],
    n_in: u8,
    n_out: u8,
    io_start: u32,
}

impl<'m> OpInfo<'m> {
    /// Name as in the source model (decoded on demand).
    pub fn name(&self) -> &'m str {
        core::str::from_utf8(self.name).unwrap_or("")
    }
    /// Number of inputs (including absent optional ones).
    pub fn num_inputs(&self) -> usize {
        self.n_in as usize
    }
    /// Number of outputs.
    pub fn num_outputs(&self) -> usize {
        self.n_out as usize
    }
    /// The raw parameter words (see `FORMAT.md`); [`crate::ops::OpParams::decode`] or
    /// [`Model::op_params`] gives them typed.
    pub fn words(&self) -> &[i32; OP_PARAMS] {
        &self.words
    }
}

/// A validated `.kiln` model borrowed from its bytes.
///
/// `from_bytes` checks every offset, length, shape, dtype and op parameter once; after that the
/// model is trusted and [`crate::Session`] runs it without further checks that could fail.
#[derive(Clone, Copy, Debug)]
pub struct Model<'m> {
    bytes: &'m [u8],
    num_tensors: usize,
    tensors_off: usize,
    num_ops: usize,
    ops_off: usize,
    io_off: usize,
    io_len: usize,
    num_inputs: usize,
    num_outputs: usize,
    arena_size: usize,
    strings_off: usize,
    strings_len: usize,
    dims_off: usize,
    dims_len: usize,
}

fn tensor_err(index: usize, problem: &'static str) -> Error {
    Error::Tensor {
        index: index as u32,
        problem,
    }
}

impl<'m> Model<'m> {
    /// Parses and validates a model. The bytes must start at a 16-byte aligned address (use
    /// [`crate::AlignedBytes`] or `include_bytes!` into an aligned wrapper); they are borrowed, not
    /// copied.
    pub fn from_bytes(bytes: &'m [u8]) -> Result<Model<'m>> {
        if !(bytes.as_ptr() as usize).is_multiple_of(ALIGN) {
            return Err(Error::MisalignedBuffer);
        }
        let file_len = format::check_header(bytes)?;
        let u = |off| rd_u32(bytes, off) as usize;
        let m = Model {
            bytes,
            num_tensors: u(header::NUM_TENSORS),
            tensors_off: u(header::TENSORS_OFF),
            num_ops: u(header::NUM_OPS),
            ops_off: u(header::OPS_OFF),
            io_off: u(header::IO_OFF),
            io_len: u(header::IO_LEN),
            num_inputs: rd_u16(bytes, header::NUM_INPUTS) as usize,
            num_outputs: rd_u16(bytes, header::NUM_OUTPUTS) as usize,
            arena_size: u(header::ARENA_SIZE),
            strings_off: u(header::STRINGS_OFF),
            strings_len: u(header::STRINGS_LEN),
            dims_off: u(header::DIMS_OFF),
            dims_len: u(header::DIMS_LEN),
        };
        let sections = [
            (m.tensors_off, m.num_tensors.checked_mul(TENSOR_DESC_LEN)),
            (m.ops_off, m.num_ops.checked_mul(OP_RECORD_LEN)),
            (m.io_off, m.io_len.checked_mul(4)),
            (m.dims_off, m.dims_len.checked_mul(4)),
            (m.strings_off, Some(m.strings_len)),
            (u(header::DATA_OFF), Some(u(header::DATA_LEN))),
        ];
        for (off, len) in sections {
            let len = len.ok_or(Error::Header("section length overflows"))?;
            if off < HEADER_LEN || !range_ok(off, len, file_len) {
                return Err(Error::Header("section lies outside the file"));
            }
            if off % 4 != 0 {
                return Err(Error::Header("section is not 4-byte aligned"));
            }
        }
        if m.num_inputs == 0 || m.num_outputs == 0 {
            return Err(Error::Header("model has no inputs or no outputs"));
        }
        if m.num_inputs + m.num_outputs > m.io_len {
            return Err(Error::Header(
                "io list is shorter than the graph inputs and outputs",
            ));
        }
        if !m.arena_size.is_multiple_of(ALIGN) {
            return Err(Error::Header("arena size is not a multiple of 16"));
        }
        if m.num_ops > MAX_OPS {
            return Err(Error::Header("more ops than the format allows (65,520)"));
        }
        let mut arena_end = 0;
        for i in 0..m.num_tensors {
            arena_end = arena_end.max(m.validate_tensor(i)?);
        }
        // The header's arena size is what the plan needs, no more: a device sizes its arena from
        // it (and `kiln export` writes it into firmware), so it must not be trusted blindly.
        if m.arena_size != arena_end.div_ceil(ALIGN) * ALIGN {
            return Err(Error::Header(
                "arena size is not the size the tensor plan needs",
            ));
        }
        for k in 0..m.num_inputs + m.num_outputs {
            let t = m.io(k);
            if t as usize >= m.num_tensors {
                return Err(Error::Header(
                    "graph input/output names a tensor that does not exist",
                ));
            }
            if m.tensor(t as usize).storage != Storage::Arena {
                return Err(tensor_err(t as usize, "graph input/output is a constant"));
            }
        }
        if m.num_ops == 0 {
            return Err(Error::Header("model has no ops"));
        }
        for i in 0..m.num_ops {
            m.validate_op(i)?;
        }
        m.validate_dataflow()?;
        Ok(m)
    }

    /// Checks tensor `i`'s descriptor; returns the end of its arena slot (0 for a constant).
    fn validate_tensor(&self, i: usize) -> Result<usize> {
        let d = self.desc(i);
        let dtype = DType::from_u8(d[tensor::DTYPE]).ok_or(tensor_err(i, "unknown dtype"))?;
        let rank = d[tensor::RANK] as usize;
        if rank > MAX_RANK {
            return Err(tensor_err(i, "rank above 6"));
        }
        let first = rd_u32(d, tensor::DIMS) as usize;
        if !range_ok(first, rank, self.dims_len) {
            return Err(tensor_err(i, "dims lie past the dims table"));
        }
        let mut count: usize = 1;
        for k in 0..rank {
            let dim = self.dim(first + k);
            if dim == 0 {
                return Err(tensor_err(i, "zero-sized dimension"));
            }
            count = count
                .checked_mul(dim)
                .filter(|&c| c <= MAX_ELEMENTS)
                .ok_or(tensor_err(i, "element count overflows"))?;
        }
        let byte_len = count * dtype.size();
        let offset = rd_u32(d, tensor::OFFSET) as usize;
        if !offset.is_multiple_of(ALIGN) {
            return Err(tensor_err(i, "data offset is not 16-byte aligned"));
        }
        let arena_end = match d[tensor::STORAGE] {
            0 => {
                if !range_ok(offset, byte_len, self.arena_size) {
                    return Err(tensor_err(i, "arena slot lies past the arena size"));
                }
                offset + byte_len
            }
            1 => {
                if offset < HEADER_LEN || !range_ok(offset, byte_len, self.bytes.len()) {
                    return Err(tensor_err(i, "constant data lies outside the file"));
                }
                0
            }
            _ => return Err(tensor_err(i, "unknown storage kind")),
        };
        let name_off = rd_u32(d, tensor::NAME_OFF) as usize;
        let name_len = rd_u16(d, tensor::NAME_LEN) as usize;
        self.string(name_off, name_len).ok_or(tensor_err(
            i,
            "name lies outside the string section or is not UTF-8",
        ))?;
        match d[tensor::QUANT] {
            0 => {}
            1 => {
                let scale = f32::from_bits(rd_u32(d, tensor::SCALE));
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(tensor_err(i, "quantization scale is not a positive number"));
                }
            }
            2 => {
                let axis = rd_u16(d, tensor::QUANT_AXIS) as usize;
                let scales = rd_u32(d, tensor::QUANT_SCALES) as usize;
                if axis >= rank {
                    return Err(tensor_err(i, "quantized axis past the rank"));
                }
                if scales >= self.num_tensors || scales == i {
                    return Err(tensor_err(i, "per-axis scale tensor does not exist"));
                }
                // The scale tensor must be validated on its own; check its basic shape here.
                let sd = &self.bytes[self.tensors_off + scales * TENSOR_DESC_LEN..];
                let s_rank = sd[tensor::RANK] as usize;
                let s_first = rd_u32(sd, tensor::DIMS) as usize;
                if sd[tensor::DTYPE] != DType::F32 as u8
                    || sd[tensor::STORAGE] != 1
                    || s_rank != 1
                    || !range_ok(s_first, 1, self.dims_len)
                    || self.dim(s_first) != self.dim(first + axis)
                {
                    return Err(tensor_err(i, "per-axis scales are not one f32 per channel"));
                }
            }
            _ => return Err(tensor_err(i, "unknown quantization kind")),
        }
        Ok(arena_end)
    }

    /// Entry `k` of the dims table (callers check `k < dims_len`).
    #[inline]
    fn dim(&self, k: usize) -> usize {
        rd_u32(self.bytes, self.dims_off + 4 * k) as usize
    }

    /// The bytes of a string (empty if out of range; validation has checked every name).
    fn string_bytes(&self, off: usize, len: usize) -> &'m [u8] {
        if !range_ok(off, len, self.strings_len) {
            return &[];
        }
        &self.bytes[self.strings_off + off..][..len]
    }

    fn string(&self, off: usize, len: usize) -> Option<&'m str> {
        if !range_ok(off, len, self.strings_len) {
            return None;
        }
        core::str::from_utf8(self.string_bytes(off, len)).ok()
    }

    fn validate_op(&self, i: usize) -> Result<()> {
        let r = &self.bytes[self.ops_off + i * OP_RECORD_LEN..][..OP_RECORD_LEN];
        let code = rd_u16(r, op::KIND);
        let err = |problem| Error::Op {
            index: i as u32,
            kind: code,
            problem,
        };
        OpKind::from_u16(code).ok_or(err("unknown op kind"))?;
        let n = r[op::N_IN] as usize + r[op::N_OUT] as usize;
        let start = rd_u32(r, op::IO_START) as usize;
        if !range_ok(start, n, self.io_len) {
            return Err(err("input/output list lies outside the io section"));
        }
        if r[op::N_OUT] == 0 {
            return Err(err("op has no outputs"));
        }
        for k in 0..n {
            let t = self.io(start + k);
            let is_input = k < r[op::N_IN] as usize;
            if t == NO_TENSOR && is_input {
                continue;
            }
            if t as usize >= self.num_tensors {
                return Err(err("names a tensor that does not exist"));
            }
            if !is_input && self.tensor(t as usize).storage != Storage::Arena {
                return Err(err("writes to a constant tensor"));
            }
        }
        let name_off = rd_u32(r, op::NAME_OFF) as usize;
        let name_len = rd_u32(r, op::NAME_LEN) as usize;
        self.string(name_off, name_len)
            .ok_or(err("name lies outside the string section or is not UTF-8"))?;
        ops::validate(self, &self.op(i))
    }

    /// The dataflow rules, checked in one pass over the ops with the lifetimes the file stores
    /// (each tensor's producer and last reader, `format::tensor::{PRODUCER, LAST_USE}`):
    ///
    /// - every arena tensor an op reads was written by an earlier op or is a graph input, and
    ///   its stored last use is not before the read;
    /// - every op output names the op as its producer, and the number of tensors that claim a
    ///   producer equals the number of op outputs (so no tensor is written twice and no claim is
    ///   false); likewise graph inputs and the tensors marked as such;
    /// - every graph output is written by an op and stays live to the end;
    /// - no tensor's arena bytes overlap those of another tensor live at the same time (graph
    ///   inputs are live before op 0 and so never share bytes; a graph input no op reads dies
    ///   there; a slot is freed after its last use); a reshape whose
    ///   output sits exactly on its input is the one allowed alias.
    ///
    /// The overlap check keeps the live tensors in a fixed array of [`MAX_LIVE`] entries: the
    /// whole check is O(ops × live + tensors) with no heap.
    fn validate_dataflow(&self) -> Result<()> {
        let n_ops = self.num_ops;
        let mut claimed_by_ops = 0usize;
        let mut claimed_inputs = 0usize;
        for t in 0..self.num_tensors {
            let d = self.desc(t);
            let (producer, last) = (rd_u16(d, tensor::PRODUCER), rd_u16(d, tensor::LAST_USE));
            if d[tensor::STORAGE] != 0 {
                if producer != LIFE_NONE || last != LIFE_NONE {
                    return Err(tensor_err(t, "a constant has a producer or a last use"));
                }
                continue;
            }
            if last == LIFE_INPUT && producer != LIFE_INPUT {
                return Err(tensor_err(t, "only a graph input can be read by no op"));
            }
            match producer {
                LIFE_INPUT => claimed_inputs += 1,
                LIFE_NONE => {}
                p if (p as usize) < n_ops => {
                    claimed_by_ops += 1;
                    if last != LIFE_NONE && last < p {
                        return Err(tensor_err(t, "last use lies before the producer"));
                    }
                }
                _ => return Err(tensor_err(t, "producer is not an op of the model")),
            }
            if last != LIFE_NONE && last != LIFE_INPUT && last as usize >= n_ops {
                return Err(tensor_err(t, "last use is not an op of the model"));
            }
        }
        if claimed_inputs != self.num_inputs {
            return Err(Error::Header(
                "the tensors marked as graph inputs are not the graph input list",
            ));
        }
        let mut live = Live::new();
        for k in 0..self.num_inputs {
            let t = self.io(k) as usize;
            if rd_u16(self.desc(t), tensor::PRODUCER) != LIFE_INPUT {
                return Err(tensor_err(t, "graph input is not marked as one"));
            }
            if live.conflicts(self, t) {
                return Err(tensor_err(
                    t,
                    "graph input shares arena bytes with another graph input",
                ));
            }
            if !live.insert(t) {
                return Err(Error::Header("more than 64 graph inputs"));
            }
        }
        for k in 0..self.num_outputs {
            let t = self.io(self.num_inputs + k) as usize;
            let d = self.desc(t);
            if rd_u16(d, tensor::PRODUCER) as usize >= n_ops {
                return Err(tensor_err(t, "graph output is not written by any op"));
            }
            if rd_u16(d, tensor::LAST_USE) != LIFE_NONE {
                return Err(tensor_err(t, "graph output is not live to the end"));
            }
        }
        let mut op_outputs = 0usize;
        for j in 0..n_ops {
            let o = self.op(j);
            let err = |problem| Error::Op {
                index: j as u32,
                kind: o.kind as u16,
                problem,
            };
            for k in 0..o.num_inputs() {
                let Some(t) = self.op_input(&o, k) else {
                    continue;
                };
                let d = self.desc(t);
                if d[tensor::STORAGE] != 0 {
                    continue;
                }
                let producer = rd_u16(d, tensor::PRODUCER);
                if !(producer == LIFE_INPUT || (producer as usize) < j) {
                    return Err(err("reads a tensor that no earlier op writes"));
                }
                if self.live_until(t) <= j {
                    return Err(err("reads a tensor after its recorded last use"));
                }
            }
            live.retire(self, j);
            for k in 0..o.num_outputs() {
                let out = self.op_output(&o, k);
                op_outputs += 1;
                if rd_u16(self.desc(out), tensor::PRODUCER) as usize != j {
                    return Err(err("output tensor does not name this op as its producer"));
                }
                // A reshape whose output sits exactly on its input writes nothing (the session
                // skips it); whatever later overwrites the shared bytes meets the output in the
                // live set and is checked against its lifetime.
                let aliased = k == 0
                    && o.kind == OpKind::Reshape
                    && self
                        .op_input(&o, 0)
                        .map(|t| self.tensor(t))
                        .is_some_and(|t| {
                            let ot = self.tensor(out);
                            t.storage == Storage::Arena
                                && t.offset == ot.offset
                                && t.byte_len == ot.byte_len
                        });
                if !aliased && live.conflicts(self, out) {
                    return Err(err("output slot overlaps a tensor that is still live"));
                }
                if !live.insert(out) {
                    return Err(err("more than 64 arena tensors live at once"));
                }
            }
        }
        if op_outputs != claimed_by_ops {
            return Err(Error::Header(
                "the tensors that name a producer are not the ops' outputs",
            ));
        }
        Ok(())
    }

    /// The raw descriptor of tensor `t` (callers check `t < num_tensors`).
    fn desc(&self, t: usize) -> &'m [u8] {
        &self.bytes[self.tensors_off + t * TENSOR_DESC_LEN..][..TENSOR_DESC_LEN]
    }

    /// The first op at which `t` is no longer live: its last use + 1, 0 for a graph input no
    /// op reads (dead before op 0), `usize::MAX` for graph outputs.
    fn live_until(&self, t: usize) -> usize {
        match rd_u16(self.desc(t), tensor::LAST_USE) {
            LIFE_NONE => usize::MAX,
            LIFE_INPUT => 0,
            l => l as usize + 1,
        }
    }

    #[inline]
    fn io(&self, k: usize) -> u32 {
        rd_u32(self.bytes, self.io_off + 4 * k)
    }

    /// The raw bytes of the model.
    pub fn bytes(&self) -> &'m [u8] {
        self.bytes
    }

    /// Bytes of arena a [`crate::Session`] needs: allocate this much (16-byte aligned).
    pub fn arena_size(&self) -> usize {
        self.arena_size
    }

    /// Number of tensors.
    pub fn num_tensors(&self) -> usize {
        self.num_tensors
    }

    /// Number of ops.
    pub fn num_ops(&self) -> usize {
        self.num_ops
    }

    /// Number of graph inputs.
    pub fn num_inputs(&self) -> usize {
        self.num_inputs
    }

    /// Number of graph outputs.
    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    /// Tensor index of graph input `k`.
    pub fn input_tensor(&self, k: usize) -> Result<usize> {
        if k >= self.num_inputs {
            return Err(Error::NoSuchTensor { index: k });
        }
        Ok(self.io(k) as usize)
    }

    /// Tensor index of graph output `k`.
    pub fn output_tensor(&self, k: usize) -> Result<usize> {
        if k >= self.num_outputs {
            return Err(Error::NoSuchTensor { index: k });
        }
        Ok(self.io(self.num_inputs + k) as usize)
    }

    /// Decodes tensor `i`. Panics if `i >= num_tensors()`; use [`Model::get_tensor`] for a checked
    /// lookup.
    pub fn tensor(&self, i: usize) -> TensorInfo<'m> {
        let d = self.desc(i);
        let loc = self.tensor_loc(i);
        let rank = d[tensor::RANK] as usize;
        let first = rd_u32(d, tensor::DIMS) as usize;
        let quant = match d[tensor::QUANT] {
            1 => Quant::PerTensor {
                scale: f32::from_bits(rd_u32(d, tensor::SCALE)),
                zero_point: rd_i32(d, tensor::ZERO_POINT),
            },
            2 => Quant::PerAxis {
                axis: rd_u16(d, tensor::QUANT_AXIS) as u32,
                scales: rd_u32(d, tensor::QUANT_SCALES),
            },
            _ => Quant::None,
        };
        // The dims are written straight into the returned value: built in a local array and
        // copied out, the copy's 16-byte loads of 8-byte stores stalled store forwarding, a
        // third of this function's time (the anomaly detector's small layers felt it).
        let mut t = TensorInfo {
            dtype: loc.dtype,
            rank,
            dims: [1; MAX_RANK],
            storage: loc.storage,
            offset: loc.offset,
            byte_len: loc.byte_len,
            name: self.string_bytes(
                rd_u32(d, tensor::NAME_OFF) as usize,
                rd_u16(d, tensor::NAME_LEN) as usize,
            ),
            quant,
        };
        for k in 0..rank.min(MAX_RANK) {
            t.dims[k] = self.dim(first + k);
        }
        t
    }

    /// Where tensor `i`'s bytes are, without the rest of its descriptor (kernels that only
    /// read a tensor's data: decoding and copying the whole [`TensorInfo`] was a large part of
    /// a small layer's fixed cost). Panics as [`Model::tensor`] does.
    #[inline]
    pub(crate) fn tensor_loc(&self, i: usize) -> TensorLoc {
        let d = self.desc(i);
        let rank = (d[tensor::RANK] as usize).min(MAX_RANK);
        let first = rd_u32(d, tensor::DIMS) as usize;
        let dtype = DType::from_u8(d[tensor::DTYPE]).unwrap_or(DType::F32);
        let mut byte_len = dtype.size();
        for k in 0..rank {
            byte_len *= self.dim(first + k);
        }
        TensorLoc {
            dtype,
            storage: if d[tensor::STORAGE] == 1 {
                Storage::Constant
            } else {
                Storage::Arena
            },
            offset: rd_u32(d, tensor::OFFSET) as usize,
            byte_len,
        }
    }

    /// Checked variant of [`Model::tensor`].
    pub fn get_tensor(&self, i: usize) -> Option<TensorInfo<'m>> {
        (i < self.num_tensors).then(|| self.tensor(i))
    }

    /// Decodes op `i` (execution order). Panics if `i >= num_ops()`.
    pub fn op(&self, i: usize) -> OpInfo<'m> {
        let r = &self.bytes[self.ops_off + i * OP_RECORD_LEN..][..OP_RECORD_LEN];
        let mut words = [0i32; OP_PARAMS];
        for (k, w) in words.iter_mut().enumerate() {
            *w = rd_i32(r, op::PARAMS + 4 * k);
        }
        OpInfo {
            index: i as u32,
            kind: OpKind::from_u16(rd_u16(r, op::KIND)).unwrap_or(OpKind::Reshape),
            words,
            name: self.string_bytes(
                rd_u32(r, op::NAME_OFF) as usize,
                rd_u32(r, op::NAME_LEN) as usize,
            ),
            n_in: r[op::N_IN],
            n_out: r[op::N_OUT],
            io_start: rd_u32(r, op::IO_START),
        }
    }

    /// The typed parameters of `op` (always `Ok` for an op of a validated model).
    pub fn op_params(&self, op: &OpInfo<'_>) -> Result<ops::OpParams> {
        ops::params_of(self, op).map_err(|problem| Error::Op {
            index: op.index,
            kind: op.kind as u16,
            problem,
        })
    }

    /// MACs of `op` per run (its parameters and shapes; 0 for ops without multiplies).
    pub fn op_macs(&self, op: &OpInfo<'_>) -> u64 {
        let mut buf = [[0; MAX_RANK]; 3];
        let s = ops::shapes_of(self, op, &mut buf);
        self.op_params(op).map_or(0, |p| p.macs(&s))
    }

    /// Tensor index of input `k` of `op`, or `None` for an absent optional input.
    pub fn op_input(&self, op: &OpInfo<'_>, k: usize) -> Option<usize> {
        if k >= op.num_inputs() {
            return None;
        }
        let t = self.io(op.io_start as usize + k);
        (t != NO_TENSOR).then_some(t as usize)
    }

    /// Tensor index of output `k` of `op`.
    pub fn op_output(&self, op: &OpInfo<'_>, k: usize) -> usize {
        self.io(op.io_start as usize + op.num_inputs() + k) as usize
    }

    /// The raw bytes of a constant tensor (empty for arena tensors).
    pub fn constant_bytes(&self, t: &TensorInfo<'_>) -> &'m [u8] {
        self.constant_at(t.storage, t.offset, t.byte_len)
    }

    /// The bytes of a constant at `offset` (empty for an arena tensor).
    #[inline]
    pub(crate) fn constant_at(&self, storage: Storage, offset: usize, len: usize) -> &'m [u8] {
        match storage {
            Storage::Constant => &self.bytes[offset..offset + len],
            Storage::Arena => &[],
        }
    }

    /// A constant tensor's data as `f32` (empty if it is not an f32 constant).
    pub fn constant_f32(&self, t: &TensorInfo<'_>) -> &'m [f32] {
        if t.dtype != DType::F32 {
            return &[];
        }
        crate::cast::bytes_as_f32(self.constant_bytes(t))
    }
}

fn overlaps(a: usize, alen: usize, b: usize, blen: usize) -> bool {
    a < b + blen && b < a + alen
}

/// The arena tensors live at the current op, for the overlap check: a fixed array, no heap.
/// Their lifetimes are read from their descriptors as needed.
struct Live {
    tensors: [u32; MAX_LIVE],
    len: usize,
}

impl Live {
    fn new() -> Live {
        Live {
            tensors: [0; MAX_LIVE],
            len: 0,
        }
    }

    /// Drops the tensors that are no longer live at op `j`.
    fn retire(&mut self, m: &Model<'_>, j: usize) {
        let mut k = 0;
        while k < self.len {
            if m.live_until(self.tensors[k] as usize) <= j {
                self.len -= 1;
                self.tensors[k] = self.tensors[self.len];
            } else {
                k += 1;
            }
        }
    }

    /// Whether a live tensor's arena bytes overlap those of `t` (`t` itself too, if live).
    fn conflicts(&self, m: &Model<'_>, t: usize) -> bool {
        let a = m.tensor(t);
        self.tensors[..self.len].iter().any(|&u| {
            let b = m.tensor(u as usize);
            overlaps(a.offset, a.byte_len, b.offset, b.byte_len)
        })
    }

    /// Adds `t`; false when the set is full.
    fn insert(&mut self, t: usize) -> bool {
        if self.len == MAX_LIVE {
            return false;
        }
        self.tensors[self.len] = t as u32;
        self.len += 1;
        true
    }
}
