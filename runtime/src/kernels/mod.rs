//! Kernels. `reference_f32` is the specification; optimized kernels live beside it and are
//! tested against it.

pub mod f32gemm;
pub mod isa;
pub mod optimized_i8;
pub mod qs8;
pub mod reference_f32;
pub mod reference_i8;
pub mod simd;
