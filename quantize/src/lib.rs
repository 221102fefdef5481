//! # kiln-quantize
//!
//! Quantization arithmetic computed offline (at convert time), so the runtime only applies it:
//! fixed-point multipliers, activation ranges and per-op requantization parameters with exactly
//! the rounding TFLite's kernels use, so kiln's int8 results are bit-exact with TFLite.
#![forbid(unsafe_code)]

pub mod calibrate;
pub mod requant;
