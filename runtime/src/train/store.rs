//! Persists a fine-tuned head's parameters in NOR flash through the `embedded-storage` traits
//! (feature `storage`), so a device keeps what it learned across resets.
//!
//! The region is split into two slots of whole erase sectors. A save erases the slot that does
//! not hold the newest record, writes the parameters, then the 16-byte header last: magic
//! `KHD1`, a sequence number, the payload length and a CRC-32 of sequence, length and payload.
//! A write cut short leaves that slot without a valid header, so [`HeadStore::load`] still finds
//! the previous head in the other slot. Parameters are stored as little-endian f32.

use core::fmt;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

use crate::format::crc32_update;

const MAGIC: u32 = u32::from_le_bytes(*b"KHD1");
const HEADER: usize = 16;
/// Bytes moved per flash call (a multiple of every supported read and write size).
const CHUNK: usize = 64;

/// Why a head could not be saved or loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError<E> {
    /// The flash reported an error.
    Flash(E),
    /// The region cannot hold two slots of this many parameters.
    RegionTooSmall {
        /// Bytes needed (two slots).
        needed: usize,
        /// Bytes in the region.
        got: usize,
    },
    /// The region's start or length is not a multiple of the erase sector.
    Unaligned,
    /// The flash's read or write granularity does not divide 16 bytes.
    Granularity,
    /// A buffer has the wrong number of parameters.
    WrongLength {
        /// Parameters expected.
        expected: usize,
        /// Parameters given.
        got: usize,
    },
}

impl<E: fmt::Debug> fmt::Display for StoreError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Flash(e) => write!(f, "flash error: {e:?}"),
            StoreError::RegionTooSmall { needed, got } => write!(
                f,
                "flash region is {got} bytes; two slots of this head need {needed}"
            ),
            StoreError::Unaligned => {
                write!(f, "flash region must start and end on erase sectors")
            }
            StoreError::Granularity => {
                write!(f, "flash read/write size must divide 16 bytes")
            }
            StoreError::WrongLength { expected, got } => {
                write!(f, "{got} parameters, the store holds {expected}")
            }
        }
    }
}

/// Two slots in a flash region holding one head's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadStore {
    start: u32,
    slot: u32,
    params: usize,
}

fn payload_len(params: usize) -> usize {
    params * 4
}

impl HeadStore {
    /// A store for `params` parameters in `len` bytes of `flash` from `start` (both whole
    /// erase sectors).
    pub fn new<F: NorFlash>(
        flash: &F,
        start: u32,
        len: u32,
        params: usize,
    ) -> Result<HeadStore, StoreError<F::Error>> {
        let erase = F::ERASE_SIZE as u32;
        if !HEADER.is_multiple_of(F::WRITE_SIZE) || !HEADER.is_multiple_of(F::READ_SIZE) {
            return Err(StoreError::Granularity);
        }
        if erase == 0 || !start.is_multiple_of(erase) || !len.is_multiple_of(erase) {
            return Err(StoreError::Unaligned);
        }
        let record = (HEADER + payload_len(params)).div_ceil(F::ERASE_SIZE) * F::ERASE_SIZE;
        let end = start as usize + len as usize;
        if 2 * record > len as usize || end > flash.capacity() {
            return Err(StoreError::RegionTooSmall {
                needed: 2 * record,
                got: (len as usize).min(flash.capacity().saturating_sub(start as usize)),
            });
        }
        Ok(HeadStore {
            start,
            slot: record as u32,
            params,
        })
    }

    fn slot_at(&self, s: u32) -> u32 {
        self.start + s * self.slot
    }

    /// The sequence number of slot `s`'s record if its header and CRC are valid.
    fn valid<F: ReadNorFlash>(&self, flash: &mut F, s: u32) -> Result<Option<u32>, F::Error> {
        let at = self.slot_at(s);
        let mut h = [0u8; HEADER];
        flash.read(at, &mut h)?;
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        if word(0) != MAGIC || word(8) as usize != payload_len(self.params) {
            return Ok(None);
        }
        let mut crc = crc32_update(0, &h[4..12]);
        let mut buf = [0u8; CHUNK];
        let mut done = 0;
        let total = payload_len(self.params).div_ceil(F::READ_SIZE) * F::READ_SIZE;
        while done < total {
            let n = (total - done).min(CHUNK);
            flash.read(at + (HEADER + done) as u32, &mut buf[..n])?;
            let take = n.min(payload_len(self.params).saturating_sub(done));
            crc = crc32_update(crc, &buf[..take]);
            done += n;
        }
        Ok((crc == word(12)).then_some(word(4)))
    }

    /// The slot and sequence number of the newest valid record (sequence numbers compared
    /// modulo 2^32).
    fn newest<F: ReadNorFlash>(&self, flash: &mut F) -> Result<Option<(u32, u32)>, F::Error> {
        Ok(match (self.valid(flash, 0)?, self.valid(flash, 1)?) {
            (None, None) => None,
            (Some(x), None) => Some((0, x)),
            (None, Some(y)) => Some((1, y)),
            (Some(x), Some(y)) => Some(if y.wrapping_sub(x) as i32 > 0 {
                (1, y)
            } else {
                (0, x)
            }),
        })
    }

    /// Loads the newest valid record into `params`; returns its sequence number, or `None`
    /// (and leaves `params` alone) when neither slot holds one.
    pub fn load<F: ReadNorFlash>(
        &self,
        flash: &mut F,
        params: &mut [f32],
    ) -> Result<Option<u32>, StoreError<F::Error>> {
        if params.len() != self.params {
            return Err(StoreError::WrongLength {
                expected: self.params,
                got: params.len(),
            });
        }
        let Some((slot, seq)) = self.newest(flash).map_err(StoreError::Flash)? else {
            return Ok(None);
        };
        let at = self.slot_at(slot) + HEADER as u32;
        let mut buf = [0u8; CHUNK];
        let mut i = 0;
        while i < params.len() {
            let n = (params.len() - i).min(CHUNK / 4);
            let bytes = (n * 4).div_ceil(F::READ_SIZE) * F::READ_SIZE;
            flash
                .read(at + (i * 4) as u32, &mut buf[..bytes])
                .map_err(StoreError::Flash)?;
            for (k, p) in params[i..i + n].iter_mut().enumerate() {
                *p = f32::from_le_bytes([
                    buf[4 * k],
                    buf[4 * k + 1],
                    buf[4 * k + 2],
                    buf[4 * k + 3],
                ]);
            }
            i += n;
        }
        Ok(Some(seq))
    }

    /// Saves `params` as a new record in the slot not holding the newest one; returns its
    /// sequence number. If it is interrupted, [`HeadStore::load`] returns the previous record.
    pub fn save<F: NorFlash>(
        &self,
        flash: &mut F,
        params: &[f32],
    ) -> Result<u32, StoreError<F::Error>> {
        if params.len() != self.params {
            return Err(StoreError::WrongLength {
                expected: self.params,
                got: params.len(),
            });
        }
        let (slot, seq) = match self.newest(flash).map_err(StoreError::Flash)? {
            None => (0, 1),
            Some((s, q)) => (1 - s, q.wrapping_add(1)),
        };
        let at = self.slot_at(slot);
        flash.erase(at, at + self.slot).map_err(StoreError::Flash)?;
        let len = payload_len(self.params) as u32;
        let mut crc = crc32_update(0, &seq.to_le_bytes());
        crc = crc32_update(crc, &len.to_le_bytes());
        // Payload in chunks, the last one padded with erased bytes to the write size.
        let mut buf = [0xFFu8; CHUNK];
        let mut i = 0;
        while i < params.len() {
            let n = (params.len() - i).min(CHUNK / 4);
            for (k, p) in params[i..i + n].iter().enumerate() {
                buf[4 * k..4 * k + 4].copy_from_slice(&p.to_le_bytes());
            }
            crc = crc32_update(crc, &buf[..n * 4]);
            let bytes = (n * 4).div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE;
            buf[n * 4..bytes].fill(0xFF);
            flash
                .write(at + (HEADER + i * 4) as u32, &buf[..bytes])
                .map_err(StoreError::Flash)?;
            i += n;
        }
        let mut h = [0u8; HEADER];
        h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        h[4..8].copy_from_slice(&seq.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&crc.to_le_bytes());
        flash.write(at, &h).map_err(StoreError::Flash)?;
        Ok(seq)
    }
}

/// NOR flash semantics over a RAM buffer (erase sets 0xFF, a write can only clear bits), for
/// tests and for boards, such as QEMU's, whose persistent storage is RAM that survives a reset.
pub struct RamNorFlash<'a> {
    mem: &'a mut [u8],
}

impl<'a> RamNorFlash<'a> {
    /// Flash over `mem` (its contents are kept: they are what survived the last reset).
    pub fn new(mem: &'a mut [u8]) -> Self {
        RamNorFlash { mem }
    }
}

/// Errors of [`RamNorFlash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamFlashError {
    /// Offset or length outside the flash or not aligned.
    Bounds(NorFlashErrorKind),
    /// A write tried to set a bit that is clear (the sector was not erased).
    NotErased,
}

impl NorFlashError for RamFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            RamFlashError::Bounds(k) => *k,
            RamFlashError::NotErased => NorFlashErrorKind::Other,
        }
    }
}

impl ErrorType for RamNorFlash<'_> {
    type Error = RamFlashError;
}

impl ReadNorFlash for RamNorFlash<'_> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        embedded_storage::nor_flash::check_read(self, offset, bytes.len())
            .map_err(RamFlashError::Bounds)?;
        bytes.copy_from_slice(&self.mem[offset as usize..offset as usize + bytes.len()]);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl NorFlash for RamNorFlash<'_> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        embedded_storage::nor_flash::check_erase(self, from, to).map_err(RamFlashError::Bounds)?;
        self.mem[from as usize..to as usize].fill(0xFF);
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        embedded_storage::nor_flash::check_write(self, offset, bytes.len())
            .map_err(RamFlashError::Bounds)?;
        let dst = &mut self.mem[offset as usize..offset as usize + bytes.len()];
        if dst.iter().zip(bytes).any(|(&o, &n)| o & n != n) {
            return Err(RamFlashError::NotErased);
        }
        dst.copy_from_slice(bytes);
        Ok(())
    }
}
