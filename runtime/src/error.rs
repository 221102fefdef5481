//! The runtime's error type: small, `Copy`, and specific enough to name the problem.

use core::fmt;

/// Everything that can go wrong when loading a model or running a session.
///
/// Errors carry the index of the tensor or op at fault and a static description, so a device can
/// log them without an allocator and a host tool can turn them into a readable message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The buffer is shorter than the header or than the length the header declares.
    Truncated {
        /// Bytes the file needs.
        needed: usize,
        /// Bytes that were given.
        got: usize,
    },
    /// The first four bytes are not `KILN`.
    BadMagic,
    /// The file's format version is not one this runtime reads.
    UnsupportedVersion(u16),
    /// The CRC-32 stored in the header does not match the file's contents.
    ChecksumMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the file.
        computed: u32,
    },
    /// The model bytes are not aligned to 16 bytes in memory (see `AlignedBytes`).
    MisalignedBuffer,
    /// A header field or section is inconsistent.
    Header(&'static str),
    /// A tensor descriptor is invalid.
    Tensor {
        /// Tensor index.
        index: u32,
        /// What is wrong.
        problem: &'static str,
    },
    /// An op record is invalid (wrong arity, shape, dtype or parameter).
    Op {
        /// Op index in execution order.
        index: u32,
        /// Op kind code.
        kind: u16,
        /// What is wrong.
        problem: &'static str,
    },
    /// The arena given to `Session::new` is smaller than `Model::arena_size()`.
    ArenaTooSmall {
        /// Bytes the model needs.
        needed: usize,
        /// Bytes that were given.
        got: usize,
    },
    /// The arena is not aligned to 16 bytes.
    MisalignedArena,
    /// An input or output index is out of range.
    NoSuchTensor {
        /// The index asked for.
        index: usize,
    },
    /// A caller buffer has the wrong number of elements or the wrong element type.
    WrongLength {
        /// Graph input/output position.
        index: usize,
        /// Elements the model expects.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// The tensor's element type is not the one the accessor asked for.
    WrongDtype {
        /// Graph input/output position.
        index: usize,
    },
    /// An input value is NaN or infinite.
    NonFiniteInput {
        /// Graph input position.
        index: usize,
        /// Element index of the first bad value.
        element: usize,
    },
    /// The model's signature does not verify against the trusted key.
    BadSignature,
    /// An op index is out of range.
    NoSuchOp {
        /// The index asked for.
        index: usize,
        /// Number of ops in the model.
        ops: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { needed, got } => {
                write!(f, "file truncated: needs {needed} bytes, got {got}")
            }
            Error::BadMagic => write!(f, "not a .kiln model (bad magic)"),
            Error::UnsupportedVersion(v) => write!(
                f,
                "this file is .kiln format version {v}, but this kiln reads version {}: \
                 re-convert it from the source model (ONNX/TFLite) with this kiln",
                crate::format::VERSION
            ),
            Error::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: header says {stored:#010x}, contents give {computed:#010x}"
            ),
            Error::MisalignedBuffer => {
                write!(f, "model bytes must start at a 16-byte aligned address")
            }
            Error::Header(p) => write!(f, "bad header: {p}"),
            Error::Tensor { index, problem } => write!(f, "tensor #{index}: {problem}"),
            Error::Op {
                index,
                kind,
                problem,
            } => {
                let name = crate::ops::OpKind::from_u16(kind)
                    .map(|k| k.name())
                    .unwrap_or("unknown");
                write!(f, "op #{index} ({name}): {problem}")
            }
            Error::ArenaTooSmall { needed, got } => {
                write!(f, "arena too small: model needs {needed} bytes, got {got}")
            }
            Error::MisalignedArena => write!(f, "arena must start at a 16-byte aligned address"),
            Error::NoSuchTensor { index } => write!(f, "no graph input/output #{index}"),
            Error::WrongLength {
                index,
                expected,
                got,
            } => write!(
                f,
                "input/output #{index}: expected {expected} elements, got {got}"
            ),
            Error::WrongDtype { index } => {
                write!(f, "input/output #{index}: element type does not match")
            }
            Error::NonFiniteInput { index, element } => {
                write!(f, "input #{index}: element {element} is NaN or infinite")
            }
            Error::BadSignature => write!(f, "model signature does not verify"),
            Error::NoSuchOp { index, ops } => {
                write!(f, "no op #{index}: the model has {ops} ops")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Shorthand for results with the runtime's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
