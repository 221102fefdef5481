//! Kernels. `reference_f32` is the specification; optimized kernels live beside it and are
//! tested against it.

pub mod reference_f32;
pub mod reference_i8;
