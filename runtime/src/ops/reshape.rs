//! Reshape: the same elements under a new shape. Free when the planner gives input and output
//! the same arena slot; a copy otherwise. No parameter words.

use core::fmt;

use super::{Ctx, OpShapes, View, Words};
use crate::error::Result;
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::Reshape`] (none: the output tensor's shape says it all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReshapeParams;

impl ReshapeParams {
    /// Decodes the words (none are read).
    pub fn decode(_w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        Ok(ReshapeParams)
    }
    /// The words.
    pub fn encode(&self) -> Words {
        super::base_words()
    }
}

pub(super) fn validate(c: &Ctx<'_, '_>, _p: &ReshapeParams) -> Result<()> {
    c.arity(1, 1, 1)?;
    let (x, y) = (c.input(0)?, c.output(0));
    c.check(x.dtype == y.dtype, "reshape keeps the dtype")?;
    c.check(x.len() == y.len(), "reshape keeps the element count")
}

pub(super) fn run(
    v: &View<'_, '_>,
    _p: &ReshapeParams,
    out: &mut [u8],
    _yt: &TensorInfo<'_>,
) -> Result<()> {
    // The session skips aliased reshapes before it gets here.
    let xt = v.info(0)?;
    out.copy_from_slice(v.bytes(&xt)?);
    Ok(())
}

pub(super) fn macs(_p: &ReshapeParams, _s: &OpShapes<'_>) -> u64 {
    0
}

pub(super) fn describe(
    _p: &ReshapeParams,
    _s: &OpShapes<'_>,
    _f: &mut dyn fmt::Write,
) -> fmt::Result {
    Ok(())
}
