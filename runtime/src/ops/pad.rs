//! Padding of f32 tensors: constant, reflect or edge.
//!
//! Words: 0 mode (0 constant, 1 reflect, 2 edge), 1 constant value (f32 bits), 2-7 one word
//! per axis, `before << 16 | after`.

use core::fmt;

use super::{no_kernel, Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut};
use crate::error::Result;
use crate::format::{DType, MAX_RANK};
use crate::model::TensorInfo;

pub use crate::kernels::reference_f32::PadMode;

/// Parameters of [`super::OpKind::Pad`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PadParams {
    /// How the border is filled.
    pub mode: PadMode,
    /// `(before, after)` per axis; axes past the rank are `(0, 0)`.
    pub pads: [(usize, usize); MAX_RANK],
}

impl OpDef for PadParams {
    fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        let mode = match w[0] {
            0 => PadMode::Constant(f32::from_bits(w[1] as u32)),
            1 => PadMode::Reflect,
            2 => PadMode::Edge,
            _ => return Err("unknown pad mode"),
        };
        let mut pads = [(0, 0); MAX_RANK];
        for (d, p) in pads.iter_mut().enumerate() {
            let v = w[2 + d] as u32;
            *p = ((v >> 16) as usize, (v & 0xFFFF) as usize);
        }
        Ok(PadParams { mode, pads })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        let (mode, value) = match self.mode {
            PadMode::Constant(v) => (0, v),
            PadMode::Reflect => (1, 0.0),
            PadMode::Edge => (2, 0.0),
        };
        w[0] = mode;
        w[1] = value.to_bits() as i32;
        for (d, &(b, a)) in self.pads.iter().enumerate() {
            w[2 + d] = ((b << 16) | a) as i32;
        }
        w
    }
    fn describe(&self, s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        let mode = match self.mode {
            PadMode::Constant(_) => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
        };
        write!(f, "{mode} {:?}", &self.pads[..s.y.len().min(MAX_RANK)])
    }
}

pub(super) fn validate(c: &Ctx, p: &PadParams) -> Result<()> {
    c.arity(1, 1, 1)?;
    c.all_f32()?;
    let (x, y) = (c.input(0)?, c.output(0));
    c.check(x.rank == y.rank, "pad keeps the rank")?;
    for d in 0..x.rank {
        let (b, a) = p.pads[d];
        c.check(
            y.dims[d] == x.dims[d] + b + a,
            "output shape does not match pads",
        )?;
        if p.mode == PadMode::Reflect {
            c.check(
                b < x.dims[d] && a < x.dims[d],
                "reflect pads must be smaller than the input",
            )?;
        }
    }
    Ok(())
}

pub(super) fn run(v: &View, p: &PadParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    let xt = v.info(0)?;
    if xt.dtype != DType::F32 || !cfg!(feature = "float") {
        return no_kernel(v);
    }
    let x = bytes_as_f32(v.bytes(&xt)?);
    crate::kernels::reference_f32::pad(
        x,
        xt.shape(),
        &p.pads[..xt.rank],
        p.mode,
        bytes_as_f32_mut(out),
        yt.shape(),
    );
    Ok(())
}
