//! int8 -> int8 through a 256-entry table (input 1, indexed by the input byte): how int8
//! logistic, tanh and other element-wise functions run, as in TFLite. No parameter words.

use core::fmt;

use super::{Ctx, OpShapes, View, Words};
use crate::cast::{bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::{DType, Storage};
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::Lut`] (none: the table is input 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LutParams;

impl LutParams {
    /// Decodes the words (none are read).
    pub fn decode(_w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        Ok(LutParams)
    }
    /// The words.
    pub fn encode(&self) -> Words {
        super::base_words()
    }
}

pub(super) fn validate(c: &Ctx<'_, '_>, _p: &LutParams) -> Result<()> {
    c.arity(2, 2, 1)?;
    let (x, t, y) = (c.input(0)?, c.input(1)?, c.output(0));
    c.q8(&x)?;
    c.q8(&y)?;
    c.check(
        t.dtype == DType::I8 && t.len() == 256 && t.storage == Storage::Constant,
        "lookup table must be a constant int8 [256]",
    )?;
    c.check(x.shape() == y.shape(), "lookup keeps the shape")
}

pub(super) fn run(
    v: &View<'_, '_>,
    _p: &LutParams,
    out: &mut [u8],
    _yt: &TensorInfo<'_>,
) -> Result<()> {
    let x = bytes_as_i8(v.bytes(&v.info(0)?)?);
    let table = bytes_as_i8(v.bytes(&v.info(1)?)?);
    for (o, &q) in bytes_as_i8_mut(out).iter_mut().zip(x) {
        *o = table[q as u8 as usize];
    }
    Ok(())
}

pub(super) fn macs(_p: &LutParams, _s: &OpShapes<'_>) -> u64 {
    0
}

pub(super) fn describe(_p: &LutParams, _s: &OpShapes<'_>, _f: &mut dyn fmt::Write) -> fmt::Result {
    Ok(())
}
