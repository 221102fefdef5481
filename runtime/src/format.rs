//! The `.kiln` file layout (version 3). `runtime/FORMAT.md` is the prose specification; this
//! module is its single source of truth in code: offsets, sizes and codes used by both the reader
//! ([`crate::Model`]) and the writer ([`crate::writer`]).

use crate::error::{Error, Result};

/// The first four bytes of every `.kiln` file.
pub const MAGIC: [u8; 4] = *b"KILN";
/// The format version this runtime reads and writes.
pub const VERSION: u16 = 4;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 80;
/// Size of one tensor descriptor in bytes (its dims live in the shared dims table).
pub const TENSOR_DESC_LEN: usize = 32;
/// Size of one op record in bytes.
pub const OP_RECORD_LEN: usize = 64;
/// Number of `i32` parameter words in an op record.
pub const OP_PARAMS: usize = 12;
/// Alignment of constant data in the file and of tensors in the arena.
pub const ALIGN: usize = 16;
/// Highest tensor rank the format stores.
pub const MAX_RANK: usize = 6;
/// Marker for "no tensor" in an op's input list (an absent optional input such as a bias).
pub const NO_TENSOR: u32 = u32::MAX;
/// Largest number of elements a single tensor may have (keeps all index math in `u32`/`usize`
/// without overflow on 32-bit targets).
pub const MAX_ELEMENTS: usize = 1 << 28;
/// Largest number of ops a model may have (op indices are stored as `u16`; the two highest
/// values are the [`LIFE_INPUT`] and [`LIFE_NONE`] markers).
pub const MAX_OPS: usize = 0xFFF0;
/// Largest number of arena tensors that may be live at once: the validator checks slot overlap
/// with a fixed stack array of this many entries, so loading needs no heap and stays linear.
pub const MAX_LIVE: usize = 64;
/// `producer` marker of a graph input (written by the caller before op 0); `last_use` marker of
/// a graph input that no op reads (dead before op 0).
pub const LIFE_INPUT: u16 = 0xFFFE;
/// `producer` marker of a tensor no op writes (constants); `last_use` marker of a tensor that is
/// live until the end (graph outputs) or not an arena tensor.
pub const LIFE_NONE: u16 = 0xFFFF;

/// Byte offsets of the header fields.
pub mod header {
    /// `[u8; 4]` magic.
    pub const MAGIC: usize = 0;
    /// `u16` format version.
    pub const VERSION: usize = 4;
    /// `u16` header length (64).
    pub const HEADER_LEN: usize = 6;
    /// `u32` total file length.
    pub const FILE_LEN: usize = 8;
    /// `u32` CRC-32 (IEEE) of bytes `16..file_len`.
    pub const CRC: usize = 12;
    /// `u32` number of tensor descriptors.
    pub const NUM_TENSORS: usize = 16;
    /// `u32` offset of the tensor table.
    pub const TENSORS_OFF: usize = 20;
    /// `u32` number of op records.
    pub const NUM_OPS: usize = 24;
    /// `u32` offset of the op list.
    pub const OPS_OFF: usize = 28;
    /// `u32` offset of the io index list (`u32` tensor indices).
    pub const IO_OFF: usize = 32;
    /// `u32` number of entries in the io index list.
    pub const IO_LEN: usize = 36;
    /// `u16` number of graph inputs (the first entries of the io list).
    pub const NUM_INPUTS: usize = 40;
    /// `u16` number of graph outputs (the entries after the inputs).
    pub const NUM_OUTPUTS: usize = 42;
    /// `u32` arena size in bytes.
    pub const ARENA_SIZE: usize = 44;
    /// `u32` offset of the string section.
    pub const STRINGS_OFF: usize = 48;
    /// `u32` length of the string section.
    pub const STRINGS_LEN: usize = 52;
    /// `u32` offset of the constant data section.
    pub const DATA_OFF: usize = 56;
    /// `u32` length of the constant data section.
    pub const DATA_LEN: usize = 60;
    /// `u32` offset of the dims table (`u32` entries; tensors point at runs of `rank` dims).
    pub const DIMS_OFF: usize = 64;
    /// `u32` number of entries in the dims table.
    pub const DIMS_LEN: usize = 68;
}

/// Byte offsets inside a tensor descriptor.
pub mod tensor {
    /// `u8` dtype code.
    pub const DTYPE: usize = 0;
    /// `u8` rank.
    pub const RANK: usize = 1;
    /// `u8` storage: 0 arena, 1 constant.
    pub const STORAGE: usize = 2;
    /// `u8` quantization kind: 0 none, 1 per-tensor, 2 per-axis.
    pub const QUANT: usize = 3;
    /// `u32` data offset (file offset for constants, arena offset otherwise).
    pub const OFFSET: usize = 4;
    /// `u32` index of the tensor's first dim in the dims table (`rank` entries follow).
    pub const DIMS: usize = 8;
    /// `u32` name offset in the string section.
    pub const NAME_OFF: usize = 12;
    /// `u16` name length.
    pub const NAME_LEN: usize = 16;
    /// `u16` quantized axis (per-axis quantization).
    pub const QUANT_AXIS: usize = 18;
    /// `f32` scale (per-tensor quantization).
    pub const SCALE: usize = 20;
    /// `u32` index of the constant f32 tensor holding per-axis scales (per-axis quantization;
    /// shares the word with `SCALE`).
    pub const QUANT_SCALES: usize = 20;
    /// `i32` zero point (per-tensor quantization).
    pub const ZERO_POINT: usize = 24;
    /// `u16` index of the op that writes the tensor ([`super::LIFE_INPUT`] for a graph input,
    /// [`super::LIFE_NONE`] for constants).
    pub const PRODUCER: usize = 28;
    /// `u16` index of the last op that reads the tensor (its own producer when nothing reads
    /// it; [`super::LIFE_INPUT`] for a graph input no op reads, which is dead before op 0;
    /// [`super::LIFE_NONE`] for graph outputs, which stay live after the last op, and for
    /// constants).
    pub const LAST_USE: usize = 30;
}

/// Byte offsets inside an op record.
pub mod op {
    /// `u16` op kind.
    pub const KIND: usize = 0;
    /// `u8` number of inputs.
    pub const N_IN: usize = 2;
    /// `u8` number of outputs.
    pub const N_OUT: usize = 3;
    /// `u32` first entry in the io list (inputs, then outputs).
    pub const IO_START: usize = 4;
    /// `u32` name offset in the string section.
    pub const NAME_OFF: usize = 8;
    /// `u32` name length.
    pub const NAME_LEN: usize = 12;
    /// `[i32; 12]` kind-specific parameters.
    pub const PARAMS: usize = 16;
}

/// An enum stored as a number in the file: one line per variant (`Name = code, "name", "doc";`)
/// gives the enum, its decoder (`None` for an unknown code), its lower-case name and `ALL`.
macro_rules! code_enum {
    ($(#[$m:meta])* pub enum $e:ident: $repr:ty, $from:ident {
        $($v:ident = $code:literal, $name:literal, $doc:literal;)*
    }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $e { $(#[doc = $doc] $v = $code,)* }
        impl $e {
            /// Every variant.
            pub const ALL: &'static [$e] = &[$($e::$v,)*];
            /// Decodes a code (`None` if unknown).
            pub fn $from(v: $repr) -> Option<$e> {
                match v { $($code => Some($e::$v),)* _ => None }
            }
            /// Lower-case name.
            pub fn name(self) -> &'static str {
                match self { $($e::$v => $name,)* }
            }
        }
    };
}
pub(crate) use code_enum;

code_enum! {
    /// Element types.
    pub enum DType: u8, from_u8 {
        F32 = 1, "f32", "IEEE-754 binary32.";
        I8 = 2, "i8", "Signed 8-bit integer (quantized activations and weights).";
        I32 = 3, "i32", "Signed 32-bit integer (biases, requantization tables).";
        U8 = 4, "u8", "Unsigned 8-bit integer.";
        F16 = 5, "f16", "IEEE-754 binary16 (compressed weights).";
        I16 = 6, "i16", "Signed 16-bit integer.";
    }
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::I8 | DType::U8 => 1,
            DType::F16 | DType::I16 => 2,
        }
    }
}

/// Where a tensor's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// In the caller's arena at the planned offset.
    Arena,
    /// In the model file (weights, biases, tables).
    Constant,
}

/// Reads a little-endian `u16` at `off`; the caller has checked bounds.
#[inline]
pub(crate) fn rd_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Reads a little-endian `u32` at `off`; the caller has checked bounds.
#[inline]
pub(crate) fn rd_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads a little-endian `i32` at `off`; the caller has checked bounds.
#[inline]
pub(crate) fn rd_i32(b: &[u8], off: usize) -> i32 {
    rd_u32(b, off) as i32
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE 802.3, as zlib and PNG use) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

/// Continues a CRC-32: `crc32_update(crc32(a), b) == crc32(a ++ b)` (start from 0).
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// Checks that `off..off+len` lies within `total` without overflow.
#[inline]
pub(crate) fn range_ok(off: usize, len: usize, total: usize) -> bool {
    match off.checked_add(len) {
        Some(end) => end <= total,
        None => false,
    }
}

/// Reads the declared file length and checks magic, version and header length; used by the reader
/// before anything else.
pub(crate) fn check_header(bytes: &[u8]) -> Result<usize> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::Truncated {
            needed: HEADER_LEN,
            got: bytes.len(),
        });
    }
    if bytes[0..4] != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = rd_u16(bytes, header::VERSION);
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    if rd_u16(bytes, header::HEADER_LEN) as usize != HEADER_LEN {
        return Err(Error::Header("header length is not 80"));
    }
    let file_len = rd_u32(bytes, header::FILE_LEN) as usize;
    if file_len < HEADER_LEN {
        return Err(Error::Header(
            "declared file length is shorter than the header",
        ));
    }
    if bytes.len() < file_len {
        return Err(Error::Truncated {
            needed: file_len,
            got: bytes.len(),
        });
    }
    if bytes.len() > file_len {
        return Err(Error::Header(
            "trailing bytes after the declared file length",
        ));
    }
    let stored = rd_u32(bytes, header::CRC);
    let computed = crc32(&bytes[16..file_len]);
    if stored != computed {
        return Err(Error::ChecksumMismatch { stored, computed });
    }
    Ok(file_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        // Reference values from zlib's crc32().
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }
}
