//! Reshape: the same elements under a new shape. Free when the planner gives input and output
//! the same arena slot; a copy otherwise. No parameter words.

use super::{Ctx, View};
use crate::error::Result;
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::Reshape`] (none: the output tensor's shape says it all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReshapeParams;

super::no_params!(ReshapeParams);

pub(super) fn validate(c: &Ctx, _p: &ReshapeParams) -> Result<()> {
    c.arity(1, 1, 1)?;
    let (x, y) = (c.input(0)?, c.output(0));
    c.check(x.dtype == y.dtype, "reshape keeps the dtype")?;
    c.check(x.len() == y.len(), "reshape keeps the element count")
}

pub(super) fn run(v: &View, _p: &ReshapeParams, out: &mut [u8], _yt: &TensorInfo) -> Result<()> {
    // The session skips aliased reshapes before it gets here.
    let xt = v.info(0)?;
    out.copy_from_slice(v.bytes(&xt)?);
    Ok(())
}
