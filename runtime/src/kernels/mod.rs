//! Kernels. `reference_f32` and `reference_i8` are the specification; optimized kernels live
//! beside them and are tested against them: `qs8` (int8 over packed weights), `f32gemm` (f32 over
//! packed weights), `optimized_i8` + `simd` (int8 over natural weights), with the instruction set
//! chosen once per session (`isa`); `selfcheck` is an edge-case grid of the int8 kernels that
//! runs on the target itself.

pub mod f32gemm;
pub mod isa;
pub mod optimized_i8;
pub mod qs8;
pub mod reference_f32;
pub mod reference_i8;
pub mod selfcheck;
pub mod simd;
pub mod sparse;
