//! The interpreter: runs a validated [`Model`] in a caller-provided arena, without a heap.

use crate::cast::{bytes_as_f32, bytes_as_f32_mut};
use crate::error::{Error, Result};
use crate::format::{DType, Storage, ALIGN};
use crate::kernels::isa::Isa;
use crate::model::{Model, OpInfo, TensorInfo};
use crate::ops::{self, OpKind, View};

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
    isa: Isa,
    #[cfg(feature = "std")]
    pool: Option<crate::pool::Pool>,
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
            isa: Isa::detect(),
            #[cfg(feature = "std")]
            pool: None,
            #[cfg(feature = "kernel-choice")]
            kernels: Kernels::Optimized,
        })
    }

    /// The instruction set the optimized kernels use (detected when the session was built).
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs the optimized kernels on `isa` instead of the detected path (to compare paths on
    /// one machine, or to pin one). Returns false, changing nothing, when this CPU cannot run
    /// it ([`Isa::supported`]). Every path gives the same int8 bytes; f32 SIMD paths give the
    /// same bits as each other.
    pub fn set_isa(&mut self, isa: Isa) -> bool {
        if !isa.supported() {
            return false;
        }
        self.isa = isa;
        true
    }

    /// Splits each large conv layer (at least [`crate::ops::PARALLEL_MIN_MACS`]
    /// multiply-accumulates) by output pixels over `n` threads: this one and `n - 1` workers the
    /// session keeps (feature `std`; default 1). The outputs are the same bytes as with one
    /// thread.
    #[cfg(feature = "std")]
    pub fn set_threads(&mut self, n: usize) {
        self.pool = (n > 1).then(|| crate::pool::Pool::new(n - 1));
    }

    /// Threads a large layer may use (see `set_threads`).
    pub fn threads(&self) -> usize {
        #[cfg(feature = "std")]
        if let Some(p) = &self.pool {
            return p.threads();
        }
        1
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

    /// Runs every op in order on the inputs already in the arena. The planner lets later
    /// tensors reuse an input's arena slot once no op reads it, so after a run the inputs may
    /// hold other data: set them again before every run.
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
        self.invoke_ops(0..last + 1)?;
        let t = self
            .model
            .tensor(self.model.op_output(&self.model.op(last), 0));
        Ok(&self.arena[t.offset..t.offset + t.byte_len])
    }

    /// Runs ops `ops` only (in order), on whatever the arena holds: a caller that runs the
    /// first `n` ops reads a tensor they produce with [`Session::arena_tensor`] (how
    /// [`crate::train::ModelHead`] takes a frozen backbone's features).
    pub fn invoke_ops(&mut self, ops: core::ops::Range<usize>) -> Result<()> {
        if ops.end > self.model.num_ops() {
            return Err(Error::NoSuchOp {
                index: ops.end - 1,
                ops: self.model.num_ops(),
            });
        }
        for i in ops {
            self.exec(&self.model.op(i))?;
        }
        Ok(())
    }

    /// The arena bytes of activation tensor `t` (any dtype): what the last op that wrote it
    /// left there, valid until a later op reuses its slot.
    pub fn arena_tensor(&self, t: usize) -> Result<&[u8]> {
        match self.model.get_tensor(t) {
            Some(ti) if ti.storage == Storage::Arena => {
                Ok(&self.arena[ti.offset..ti.offset + ti.byte_len])
            }
            _ => Err(Error::Tensor {
                index: t as u32,
                problem: "not an activation tensor of this model",
            }),
        }
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
            isa: self.isa,
            #[cfg(feature = "std")]
            pool: self.pool.as_ref(),
        };
        ops::run(&view, out, &yt)
    }
}
