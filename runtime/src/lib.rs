//! # kiln-runtime
//!
//! A `no_std`, allocation-free inference runtime for `.kiln` models.
//!
//! * [`Model::from_bytes`] validates a model once (every offset, length, shape, dtype and op
//!   parameter) and borrows it zero-copy; a malformed file is an [`Error`], never a panic.
//! * [`Model::arena_size`] tells how many bytes of activation memory the model needs, so a
//!   firmware can put it in a `static` before it boots.
//! * [`Session`] runs the ops in order inside that caller-provided arena.
//!
//! The `alloc` feature adds the writer ([`writer`]) used by the converter; `std` adds
//! `std::error::Error` impls.
#![no_std]
#![warn(missing_docs)]
// `unsafe` lives only in `kernels::simd` (SIMD intrinsics, Cortex-M DSP instructions); each block
// has a SAFETY comment and a test. Byte views go through `bytemuck`'s checked casts (`cast`).
#![deny(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod cast;
pub mod error;
pub mod fixedpoint;
pub mod format;
pub mod kernels;
pub mod model;
pub mod ops;
#[cfg(feature = "std")]
mod pool;
pub mod session;
#[cfg(feature = "signature")]
pub mod signature;
pub mod train;
#[cfg(feature = "alloc")]
pub mod writer;

pub use error::{Error, Result};
pub use format::DType;
pub use model::{Model, OpInfo, Quant, TensorInfo};
pub use ops::OpKind;
pub use session::{Kernels, Session};

/// A 16-byte aligned byte array for arenas and embedded models:
/// `static MODEL: AlignedBytes<N> = AlignedBytes(*include_bytes!("model.kiln"));`
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug)]
pub struct AlignedBytes<const N: usize>(pub [u8; N]);

impl<const N: usize> AlignedBytes<N> {
    /// All zeros.
    pub const fn zeroed() -> Self {
        AlignedBytes([0; N])
    }
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
}
