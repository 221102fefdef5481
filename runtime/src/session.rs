//! The interpreter: runs a validated [`Model`] in a caller-provided arena, without a heap.

// Without the `float` feature the f32 dispatch and its helpers are compiled out.
#![cfg_attr(not(feature = "float"), allow(unused_imports, dead_code))]

use crate::cast::{
    bytes_as_f16, bytes_as_f32, bytes_as_f32_mut, bytes_as_i32, bytes_as_i8, bytes_as_i8_mut,
};
use crate::error::{Error, Result};
use crate::format::{DType, Storage, ALIGN};
use crate::kernels::optimized_i8 as opt8;
use crate::kernels::reference_f32 as k;
use crate::kernels::reference_i8 as ki8;
use crate::model::{Model, OpInfo, Quant, TensorInfo};
use crate::ops::{pad_pair, BinaryKind, OpKind, UnaryKind, P_ACT_MAX, P_ACT_MIN};

/// One inference context: a model plus the arena its activations live in.
///
/// ```no_run
/// # fn demo(bytes: &[u8]) -> Result<(), kiln_runtime::Error> {
/// let model = kiln_runtime::Model::from_bytes(bytes)?;
/// let mut arena = kiln_runtime::AlignedBytes::<65536>::zeroed();
/// let mut session = kiln_runtime::Session::new(&model, arena.as_mut_slice())?;
/// let mut out = [0f32; 10];
/// session.run(&[0.0; 64], &mut out)?;
/// # Ok(()) }
/// ```
pub struct Session<'m, 'a> {
    model: &'a Model<'m>,
    arena: &'a mut [u8],
    #[cfg(feature = "kernel-choice")]
    kernels: Kernels,
}

/// Which int8 kernels a [`Session`] runs (feature `kernel-choice`; without it, always the
/// optimized ones). Both give the same bytes (the tests and the differential fuzz target check
/// that); the reference kernels are the portable specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The fastest kernels for this CPU (the default).
    #[default]
    Optimized,
    /// The portable reference kernels (TFLite's reference arithmetic, loop for loop).
    Reference,
}

impl<'m, 'a> Session<'m, 'a> {
    /// Binds a model to an arena of at least `model.arena_size()` bytes, 16-byte aligned.
    pub fn new(model: &'a Model<'m>, arena: &'a mut [u8]) -> Result<Self> {
        if arena.len() < model.arena_size() {
            return Err(Error::ArenaTooSmall {
                needed: model.arena_size(),
                got: arena.len(),
            });
        }
        if !(arena.as_ptr() as usize).is_multiple_of(ALIGN) {
            return Err(Error::MisalignedArena);
        }
        let arena = &mut arena[..model.arena_size()];
        Ok(Session {
            model,
            arena,
            #[cfg(feature = "kernel-choice")]
            kernels: Kernels::Optimized,
        })
    }

    /// Chooses the int8 kernels this session runs (see [`Kernels`]; feature `kernel-choice`).
    #[cfg(feature = "kernel-choice")]
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    /// The int8 kernels this session runs.
    pub fn kernels(&self) -> Kernels {
        #[cfg(feature = "kernel-choice")]
        return self.kernels;
        #[cfg(not(feature = "kernel-choice"))]
        Kernels::Optimized
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model<'m> {
        self.model
    }

    fn io_f32(&self, t: usize, index: usize) -> Result<TensorInfo<'m>> {
        let info = self.model.tensor(t);
        if info.dtype != DType::F32 {
            return Err(Error::WrongDtype { index });
        }
        Ok(info)
    }

    /// The arena bytes of graph input `k`, to fill in place (any dtype).
    pub fn input_bytes_mut(&mut self, k: usize) -> Result<&mut [u8]> {
        let t = self.model.tensor(self.model.input_tensor(k)?);
        Ok(&mut self.arena[t.offset..t.offset + t.byte_len])
    }

    /// The arena bytes of graph output `k` (any dtype), valid after [`Session::invoke`].
    pub fn output_bytes(&self, k: usize) -> Result<&[u8]> {
        let t = self.model.tensor(self.model.output_tensor(k)?);
        Ok(&self.arena[t.offset..t.offset + t.byte_len])
    }

    /// Copies `data` into f32 graph input `k`. NaN and infinities are rejected.
    pub fn set_input_f32(&mut self, k: usize, data: &[f32]) -> Result<()> {
        let t = self.io_f32(self.model.input_tensor(k)?, k)?;
        if data.len() != t.len() {
            return Err(Error::WrongLength {
                index: k,
                expected: t.len(),
                got: data.len(),
            });
        }
        if let Some(element) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteInput { index: k, element });
        }
        let dst = bytes_as_f32_mut(&mut self.arena[t.offset..t.offset + t.byte_len]);
        dst.copy_from_slice(data);
        Ok(())
    }

    /// f32 graph output `k`, valid after [`Session::invoke`].
    pub fn output_f32(&self, k: usize) -> Result<&[f32]> {
        let t = self.io_f32(self.model.output_tensor(k)?, k)?;
        Ok(bytes_as_f32(&self.arena[t.offset..t.offset + t.byte_len]))
    }

    /// Single-input, single-output convenience: set input 0, invoke, copy output 0.
    pub fn run(&mut self, input: &[f32], output: &mut [f32]) -> Result<()> {
        self.set_input_f32(0, input)?;
        self.invoke()?;
        let out = self.output_f32(0)?;
        if out.len() != output.len() {
            return Err(Error::WrongLength {
                index: 0,
                expected: out.len(),
                got: output.len(),
            });
        }
        output.copy_from_slice(out);
        Ok(())
    }

    /// Runs every op in order on the inputs already in the arena.
    pub fn invoke(&mut self) -> Result<()> {
        for i in 0..self.model.num_ops() {
            self.exec(&self.model.op(i))?;
        }
        Ok(())
    }

    /// Runs every op and calls `observe(op_index, output_tensor_index, output_bytes)` after
    /// each one: how calibration and per-layer error reports see intermediate tensors.
    pub fn invoke_observe(&mut self, mut observe: impl FnMut(usize, usize, &[u8])) -> Result<()> {
        for i in 0..self.model.num_ops() {
            let op = self.model.op(i);
            self.exec(&op)?;
            let t = self.model.op_output(&op, 0);
            let ti = self.model.tensor(t);
            observe(i, t, &self.arena[ti.offset..ti.offset + ti.byte_len]);
        }
        Ok(())
    }

    /// Runs ops `0..=last` only and returns the arena bytes of op `last`'s output: lets tools
    /// compare intermediate tensors with another engine.
    pub fn invoke_until(&mut self, last: usize) -> Result<&[u8]> {
        if last >= self.model.num_ops() {
            return Err(Error::NoSuchOp {
                index: last,
                ops: self.model.num_ops(),
            });
        }
        for i in 0..=last {
            self.exec(&self.model.op(i))?;
        }
        let t = self
            .model
            .tensor(self.model.op_output(&self.model.op(last), 0));
        Ok(&self.arena[t.offset..t.offset + t.byte_len])
    }

    fn exec(&mut self, op: &OpInfo<'m>) -> Result<()> {
        let m = self.model;
        let yt = m.tensor(m.op_output(op, 0));
        if op.kind == OpKind::Reshape {
            if let Some(xi) = m.op_input(op, 0) {
                let xt = m.tensor(xi);
                if xt.storage == Storage::Arena && xt.offset == yt.offset {
                    return Ok(()); // aliased by the planner: nothing to move
                }
            }
        }
        // Split the arena around the output slot; validation guarantees that no input overlaps
        // it, so every input lies wholly left or right of it.
        let reference = self.kernels() == Kernels::Reference;
        let (left, rest) = self.arena.split_at_mut(yt.offset);
        let (out, right) = rest.split_at_mut(yt.byte_len);
        let view = View {
            m,
            left,
            right,
            right_start: yt.offset + yt.byte_len,
            op,
            reference,
        };
        run_op(&view, op, out, &yt)
    }
}

struct View<'v, 'm> {
    m: &'v Model<'m>,
    left: &'v [u8],
    right: &'v [u8],
    right_start: usize,
    op: &'v OpInfo<'m>,
    /// Run the portable reference int8 kernels (a constant `false` without `kernel-choice`).
    reference: bool,
}

impl<'m> View<'_, 'm> {
    fn err(&self, problem: &'static str) -> Error {
        Error::Op {
            index: self.op.index,
            kind: self.op.kind as u16,
            problem,
        }
    }
    fn bytes(&self, t: &TensorInfo<'_>) -> Result<&[u8]> {
        match t.storage {
            Storage::Constant => Ok(self.m.constant_bytes(t)),
            Storage::Arena => {
                let end = t.offset + t.byte_len;
                if end <= self.left.len() {
                    Ok(&self.left[t.offset..end])
                } else if t.offset >= self.right_start {
                    Ok(&self.right[t.offset - self.right_start..end - self.right_start])
                } else {
                    Err(self.err("input overlaps the output slot"))
                }
            }
        }
    }
    fn info(&self, k: usize) -> Result<TensorInfo<'m>> {
        self.m
            .op_input(self.op, k)
            .map(|t| self.m.tensor(t))
            .ok_or(self.err("a required input is missing"))
    }
    fn f32(&self, k: usize) -> Result<(&[f32], TensorInfo<'m>)> {
        let t = self.info(k)?;
        Ok((bytes_as_f32(self.bytes(&t)?), t))
    }
    fn opt_f32(&self, k: usize) -> Result<Option<&[f32]>> {
        match self.m.op_input(self.op, k) {
            None => Ok(None),
            Some(t) => Ok(Some(bytes_as_f32(self.bytes(&self.m.tensor(t))?))),
        }
    }
}

fn dims4(t: &TensorInfo<'_>) -> [usize; 4] {
    [t.dims[0], t.dims[1], t.dims[2], t.dims[3]]
}

fn run_op(v: &View<'_, '_>, op: &OpInfo<'_>, out: &mut [u8], yt: &TensorInfo<'_>) -> Result<()> {
    if op.kind == OpKind::Reshape {
        let xt = v.info(0)?;
        out.copy_from_slice(v.bytes(&xt)?);
        return Ok(());
    }
    match op.kind {
        OpKind::Quantize => {
            let (x, _) = v.f32(0)?;
            let (scale, zp) = per_tensor(yt);
            ki8::quantize(x, bytes_as_i8_mut(out), scale, zp);
            return Ok(());
        }
        OpKind::Dequantize => {
            let xt = v.info(0)?;
            let (scale, zp) = per_tensor(&xt);
            ki8::dequantize(bytes_as_i8(v.bytes(&xt)?), bytes_as_f32_mut(out), scale, zp);
            return Ok(());
        }
        _ => {}
    }
    if v.info(0)?.dtype == DType::I8 {
        return run_op_i8(v, op, bytes_as_i8_mut(out), yt);
    }
    run_op_f32(v, op, out, yt)
}

#[cfg(not(feature = "float"))]
fn run_op_f32(
    v: &View<'_, '_>,
    _op: &OpInfo<'_>,
    _out: &mut [u8],
    _yt: &TensorInfo<'_>,
) -> Result<()> {
    // Unreachable for a validated model: validation rejects float ops without the feature.
    Err(v.err("float kernels are not compiled in"))
}

#[cfg(feature = "float")]
fn run_op_f32(
    v: &View<'_, '_>,
    op: &OpInfo<'_>,
    out: &mut [u8],
    yt: &TensorInfo<'_>,
) -> Result<()> {
    let p = &op.params;
    let act = [op.param_f32(P_ACT_MIN), op.param_f32(P_ACT_MAX)];
    let y = bytes_as_f32_mut(out);
    match op.kind {
        OpKind::Conv2d => {
            let (x, xt) = v.f32(0)?;
            let wt = v.info(1)?;
            let bias = v.opt_f32(2)?;
            let cp = k::Conv2dParams {
                stride: [p[0] as usize, p[1] as usize],
                dilation: [p[2] as usize, p[3] as usize],
                pad: [p[4] as usize, p[5] as usize, p[6] as usize, p[7] as usize],
                groups: p[8] as usize,
                act,
            };
            let wb = v.bytes(&wt)?;
            if wt.dtype == DType::F16 {
                k::conv2d(
                    x,
                    dims4(&xt),
                    bytes_as_f16(wb),
                    dims4(&wt),
                    bias,
                    y,
                    dims4(yt),
                    &cp,
                );
            } else {
                k::conv2d(
                    x,
                    dims4(&xt),
                    bytes_as_f32(wb),
                    dims4(&wt),
                    bias,
                    y,
                    dims4(yt),
                    &cp,
                );
            }
        }
        OpKind::Dense => {
            let (x, _) = v.f32(0)?;
            let wt = v.info(1)?;
            let bias = v.opt_f32(2)?;
            let wb = v.bytes(&wt)?;
            if wt.dtype == DType::F16 {
                k::dense(x, wt.dims[1], bytes_as_f16(wb), wt.dims[0], bias, y, act);
            } else {
                k::dense(x, wt.dims[1], bytes_as_f32(wb), wt.dims[0], bias, y, act);
            }
        }
        OpKind::MaxPool | OpKind::AvgPool => {
            let (x, xt) = v.f32(0)?;
            let pp = k::PoolParams {
                stride: [p[0] as usize, p[1] as usize],
                kernel: [p[2] as usize, p[3] as usize],
                pad: [p[4] as usize, p[5] as usize, p[6] as usize, p[7] as usize],
                ceil_extra: [(p[11] >> 16) as usize, (p[11] & 0xFFFF) as usize],
                count_include_pad: p[8] != 0,
                act,
            };
            k::pool2d(x, dims4(&xt), y, dims4(yt), &pp, op.kind == OpKind::MaxPool);
        }
        OpKind::Reduce => {
            let (x, xt) = v.f32(0)?;
            k::reduce(x, xt.shape(), p[1] as u32, p[0], y);
        }
        OpKind::Binary => {
            let (a, at) = v.f32(0)?;
            let (b, bt) = v.f32(1)?;
            let kind = BinaryKind::from_i32(p[0]).ok_or(v.err("unknown binary kind"))?;
            k::binary(kind, a, at.shape(), b, bt.shape(), y, yt.shape(), act);
        }
        OpKind::Concat => {
            let axis = p[0] as usize;
            let outer: usize = yt.shape()[..axis].iter().product();
            let inner: usize = yt.shape()[axis + 1..].iter().product();
            let y_chunk = yt.dims[axis] * inner;
            let mut off = 0;
            for i in 0..op.num_inputs() {
                let (x, xt) = v.f32(i)?;
                let chunk = xt.dims[axis] * inner;
                k::concat_block(x, y, outer, chunk, y_chunk, off);
                off += chunk;
            }
        }
        OpKind::Pad => {
            let (x, xt) = v.f32(0)?;
            let mut pads = [(0usize, 0usize); 6];
            for (d, pd) in pads.iter_mut().enumerate().take(xt.rank) {
                *pd = pad_pair(p[2 + d]);
            }
            let mode = match p[0] {
                0 => k::PadMode::Constant(op.param_f32(1)),
                1 => k::PadMode::Reflect,
                _ => k::PadMode::Edge,
            };
            k::pad(x, xt.shape(), &pads[..xt.rank], mode, y, yt.shape());
        }
        OpKind::Transpose => {
            let (x, xt) = v.f32(0)?;
            let mut perm = [0usize; 6];
            for (d, pd) in perm.iter_mut().enumerate().take(xt.rank) {
                *pd = p[d] as usize;
            }
            k::transpose(x, xt.shape(), &perm[..xt.rank], y);
        }
        OpKind::Unary => {
            let (x, _) = v.f32(0)?;
            let kind = UnaryKind::from_i32(p[0]).ok_or(v.err("unknown unary kind"))?;
            k::unary(kind, x, y, op.param_f32(1), op.param_f32(2));
        }
        OpKind::Softmax => {
            let (x, xt) = v.f32(0)?;
            let axis = p[0] as usize;
            let outer: usize = xt.shape()[..axis].iter().product();
            let inner: usize = xt.shape()[axis + 1..].iter().product();
            k::softmax(
                x,
                y,
                outer,
                xt.dims[axis],
                inner,
                op.param_f32(1),
                p[2] == 1,
            );
        }
        OpKind::Slice => {
            let (x, xt) = v.f32(0)?;
            let mut begin = [0i64; 6];
            let mut step = [1i64; 6];
            for d in 0..xt.rank {
                begin[d] = p[d] as i64;
                step[d] = p[6 + d] as i64;
            }
            k::slice(
                x,
                xt.shape(),
                &begin[..xt.rank],
                &step[..xt.rank],
                y,
                yt.shape(),
            );
        }
        OpKind::MatMul => {
            let (a, at) = v.f32(0)?;
            let (b, bt) = v.f32(1)?;
            let bias = v.opt_f32(2)?;
            k::matmul(a, at.shape(), b, bt.shape(), bias, y, yt.shape(), act);
        }
        OpKind::Reshape | OpKind::Quantize | OpKind::Dequantize => {}
        OpKind::Lut => return Err(v.err("lookup tables are int8 only")),
    }
    Ok(())
}

fn per_tensor(t: &TensorInfo<'_>) -> (f32, i32) {
    match t.quant {
        Quant::PerTensor { scale, zero_point } => (scale, zero_point),
        _ => (1.0, 0),
    }
}

/// Weight zero point: per-tensor zero point, or 0 for symmetric per-axis weights.
fn weight_zp(t: &TensorInfo<'_>) -> i32 {
    match t.quant {
        Quant::PerTensor { zero_point, .. } => zero_point,
        _ => 0,
    }
}

fn run_op_i8(v: &View<'_, '_>, op: &OpInfo<'_>, y: &mut [i8], yt: &TensorInfo<'_>) -> Result<()> {
    let p = &op.params;
    let act = [p[P_ACT_MIN], p[P_ACT_MAX]];
    let xt = v.info(0)?;
    let x = bytes_as_i8(v.bytes(&xt)?);
    let (_, x_zp) = per_tensor(&xt);
    let (_, y_zp) = per_tensor(yt);
    match op.kind {
        OpKind::Conv2d | OpKind::Dense => {
            let wt = v.info(1)?;
            let w = bytes_as_i8(v.bytes(&wt)?);
            let bias = match v.m.op_input(v.op, 2) {
                Some(b) => Some(bytes_as_i32(v.bytes(&v.m.tensor(b))?)),
                None => None,
            };
            let q = ki8::QuantParams {
                input_zp: x_zp,
                weight_zp: weight_zp(&wt),
                output_zp: y_zp,
                multiplier: {
                    let mt = v.info(3)?;
                    if mt.dtype == DType::I16 {
                        ki8::Multipliers::I16(crate::cast::bytes_as_i16(v.bytes(&mt)?))
                    } else {
                        ki8::Multipliers::I32(bytes_as_i32(v.bytes(&mt)?))
                    }
                },
                shift: {
                    let st = v.info(4)?;
                    if st.dtype == DType::I8 {
                        ki8::Shifts::I8(bytes_as_i8(v.bytes(&st)?))
                    } else {
                        ki8::Shifts::I32(bytes_as_i32(v.bytes(&st)?))
                    }
                },
                act,
                rounding: if p[11] == 1 {
                    ki8::Rounding::Single
                } else {
                    ki8::Rounding::Double
                },
            };
            let reference = v.reference;
            if op.kind == OpKind::Dense {
                if reference {
                    ki8::dense(x, wt.dims[1], w, wt.dims[0], bias, y, &q);
                } else {
                    opt8::dense(x, wt.dims[1], w, wt.dims[0], bias, y, &q);
                }
            } else {
                let geo = k::Conv2dParams {
                    stride: [p[0] as usize, p[1] as usize],
                    dilation: [p[2] as usize, p[3] as usize],
                    pad: [p[4] as usize, p[5] as usize, p[6] as usize, p[7] as usize],
                    groups: p[8] as usize,
                    act: [0.0, 0.0],
                };
                if reference {
                    ki8::conv2d(x, dims4(&xt), w, dims4(&wt), bias, y, dims4(yt), &geo, &q);
                } else {
                    opt8::conv2d(x, dims4(&xt), w, dims4(&wt), bias, y, dims4(yt), &geo, &q);
                }
            }
        }
        OpKind::MaxPool | OpKind::AvgPool => {
            let pp = k::PoolParams {
                stride: [p[0] as usize, p[1] as usize],
                kernel: [p[2] as usize, p[3] as usize],
                pad: [p[4] as usize, p[5] as usize, p[6] as usize, p[7] as usize],
                ceil_extra: [0, 0],
                count_include_pad: false,
                act: [0.0, 0.0],
            };
            ki8::pool2d(
                x,
                dims4(&xt),
                y,
                dims4(yt),
                &pp,
                act,
                op.kind == OpKind::MaxPool,
            );
        }
        OpKind::Binary => {
            let bt = v.info(1)?;
            let b = bytes_as_i8(v.bytes(&bt)?);
            if p[0] == BinaryKind::Mul as i32 {
                let mp = ki8::MulParams {
                    zp: [x_zp, per_tensor(&bt).1, y_zp],
                    multiplier: p[2],
                    shift: p[3],
                    act,
                    rounding: if p[11] == 1 {
                        ki8::Rounding::Single
                    } else {
                        ki8::Rounding::Double
                    },
                };
                ki8::broadcast_binary(x, xt.shape(), b, bt.shape(), y, yt.shape(), |p, q| {
                    ki8::mul_one(p, q, &mp)
                });
                return Ok(());
            }
            let ap = ki8::AddParams {
                zp: [x_zp, per_tensor(&bt).1, y_zp],
                left_shift: p[1],
                mult: [(p[2], p[3]), (p[4], p[5]), (p[6], p[7])],
                act,
                subtract: p[0] == BinaryKind::Sub as i32,
            };
            ki8::broadcast_binary(x, xt.shape(), b, bt.shape(), y, yt.shape(), |p, q| {
                ki8::add_one(p, q, &ap)
            });
        }
        OpKind::Softmax => {
            let sp = ki8::SoftmaxParams {
                input_multiplier: p[3],
                input_left_shift: p[4],
                diff_min: p[5],
            };
            ki8::softmax(x, y, xt.dims[xt.rank - 1], &sp);
        }
        OpKind::Concat => {
            let axis = p[0] as usize;
            let outer: usize = yt.shape()[..axis].iter().product();
            let inner: usize = yt.shape()[axis + 1..].iter().product();
            let y_chunk = yt.dims[axis] * inner;
            let mut off = 0;
            for i in 0..op.num_inputs() {
                let it = v.info(i)?;
                let xi = bytes_as_i8(v.bytes(&it)?);
                let chunk = it.dims[axis] * inner;
                k::concat_block(xi, y, outer, chunk, y_chunk, off);
                off += chunk;
            }
        }
        OpKind::Reduce => {
            ki8::mean(x, xt.shape(), p[1] as u32, y, x_zp, p[2], p[3], y_zp);
        }
        OpKind::Lut => {
            let table = bytes_as_i8(v.bytes(&v.info(1)?)?);
            for (o, &q) in y.iter_mut().zip(x) {
                *o = table[q as u8 as usize];
            }
        }
        OpKind::Transpose => {
            let mut perm = [0usize; 6];
            for (d, pd) in perm.iter_mut().enumerate().take(xt.rank) {
                *pd = p[d] as usize;
            }
            k::transpose(x, xt.shape(), &perm[..xt.rank], y);
        }
        OpKind::Slice => {
            let mut begin = [0i64; 6];
            let mut step = [1i64; 6];
            for d in 0..xt.rank {
                begin[d] = p[d] as i64;
                step[d] = p[6 + d] as i64;
            }
            k::slice(
                x,
                xt.shape(),
                &begin[..xt.rank],
                &step[..xt.rank],
                y,
                yt.shape(),
            );
        }
        _ => return Err(v.err("op has no int8 kernel")),
    }
    Ok(())
}
