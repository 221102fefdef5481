//! Graph passes, one per file; each takes the graph and rewrites it in place.

pub mod dce;
pub mod dedup_constants;
pub mod fold_affine;
pub mod fold_input_affine;
pub mod fold_transpose_dense;
pub mod fp16_weights;
pub mod fuse_activation;
pub mod pack_weights;
pub mod simplify_reshape;
pub mod unpack_weights;

use crate::ir::Graph;
use anyhow::Result;

/// The standard pipeline run on every imported graph.
pub fn optimize(g: &mut Graph) -> Result<()> {
    dce::run(g);
    simplify_reshape::run(g);
    fold_affine::run(g);
    fold_input_affine::run(g);
    fold_transpose_dense::run(g);
    fuse_activation::run(g);
    dce::run(g);
    g.check()
}

#[cfg(test)]
pub(crate) mod tests;
