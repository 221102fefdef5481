//! A minimal, bounds-checked FlatBuffers reader: just what reading a TFLite file needs. Every
//! access is checked; a corrupt file is an error naming the offset, never a panic.

use anyhow::{bail, Result};

/// A table inside a buffer.
#[derive(Clone, Copy)]
pub struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

/// A vector inside a buffer: `len` elements starting at `pos`.
#[derive(Clone, Copy)]
pub struct Vector<'a> {
    buf: &'a [u8],
    pos: usize,
    len: usize,
}

fn read<const N: usize>(buf: &[u8], pos: usize) -> Result<[u8; N]> {
    match pos.checked_add(N).and_then(|end| buf.get(pos..end)) {
        Some(s) => {
            let mut a = [0u8; N];
            a.copy_from_slice(s);
            Ok(a)
        }
        None => bail!(
            "corrupt flatbuffer: read of {N} bytes at offset {pos} is past the end ({} bytes)",
            buf.len()
        ),
    }
}

fn u32_at(buf: &[u8], pos: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(read::<4>(buf, pos)?))
}

impl<'a> Table<'a> {
    /// The root table of a buffer.
    pub fn root(buf: &'a [u8]) -> Result<Table<'a>> {
        let off = u32_at(buf, 0)? as usize;
        Table::at(buf, off)
    }

    fn at(buf: &'a [u8], pos: usize) -> Result<Table<'a>> {
        let soff = i32::from_le_bytes(read::<4>(buf, pos)?) as i64;
        let vtable = pos as i64 - soff;
        if vtable < 0 || vtable as usize >= buf.len() {
            bail!("corrupt flatbuffer: vtable of table at {pos} is out of bounds");
        }
        let vtable = vtable as usize;
        let vtable_len = u16::from_le_bytes(read::<2>(buf, vtable)?) as usize;
        if vtable_len < 4 || vtable.checked_add(vtable_len).is_none_or(|e| e > buf.len()) {
            bail!("corrupt flatbuffer: bad vtable at {vtable}");
        }
        Ok(Table {
            buf,
            pos,
            vtable,
            vtable_len,
        })
    }

    fn field(&self, id: usize) -> Result<Option<usize>> {
        let slot = 4 + 2 * id;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        let off = u16::from_le_bytes(read::<2>(self.buf, self.vtable + slot)?) as usize;
        Ok((off != 0).then_some(self.pos + off))
    }

    /// A scalar field of `N` bytes, or `None` when absent.
    fn scalar<const N: usize>(&self, id: usize) -> Result<Option<[u8; N]>> {
        match self.field(id)? {
            Some(p) => Ok(Some(read::<N>(self.buf, p)?)),
            None => Ok(None),
        }
    }

    /// `u8`/`i8`/`bool` field.
    pub fn u8(&self, id: usize, default: u8) -> Result<u8> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0]))
    }
    /// `i32` field.
    /// A bool field (a byte, non-zero is true).
    pub fn bool(&self, id: usize, default: bool) -> Result<bool> {
        Ok(self.u8(id, default as u8)? != 0)
    }
    pub fn i32(&self, id: usize, default: i32) -> Result<i32> {
        Ok(self.scalar::<4>(id)?.map_or(default, i32::from_le_bytes))
    }
    /// `u32` field.
    pub fn u32(&self, id: usize, default: u32) -> Result<u32> {
        Ok(self.scalar::<4>(id)?.map_or(default, u32::from_le_bytes))
    }
    /// `f32` field.
    pub fn f32(&self, id: usize, default: f32) -> Result<f32> {
        Ok(self.scalar::<4>(id)?.map_or(default, f32::from_le_bytes))
    }
    /// `u64` field.
    pub fn u64(&self, id: usize, default: u64) -> Result<u64> {
        Ok(self.scalar::<8>(id)?.map_or(default, u64::from_le_bytes))
    }

    fn indirect(&self, id: usize) -> Result<Option<usize>> {
        match self.field(id)? {
            Some(p) => {
                let target = p.checked_add(u32_at(self.buf, p)? as usize);
                match target {
                    Some(t) if t < self.buf.len() => Ok(Some(t)),
                    _ => bail!("corrupt flatbuffer: offset at {p} points past the end"),
                }
            }
            None => Ok(None),
        }
    }

    /// A sub-table field.
    pub fn table(&self, id: usize) -> Result<Option<Table<'a>>> {
        match self.indirect(id)? {
            Some(p) => Ok(Some(Table::at(self.buf, p)?)),
            None => Ok(None),
        }
    }

    /// A vector field of elements of `elem` bytes each.
    pub fn vector(&self, id: usize, elem: usize) -> Result<Option<Vector<'a>>> {
        match self.indirect(id)? {
            Some(p) => {
                let len = u32_at(self.buf, p)? as usize;
                let start = p + 4;
                if len
                    .checked_mul(elem)
                    .and_then(|b| b.checked_add(start))
                    .is_none_or(|e| e > self.buf.len())
                {
                    bail!("corrupt flatbuffer: vector at {p} ({len} x {elem} bytes) runs past the end");
                }
                Ok(Some(Vector {
                    buf: self.buf,
                    pos: start,
                    len,
                }))
            }
            None => Ok(None),
        }
    }

    /// A string field.
    pub fn string(&self, id: usize) -> Result<Option<&'a str>> {
        match self.vector(id, 1)? {
            Some(v) => match std::str::from_utf8(&self.buf[v.pos..v.pos + v.len]) {
                Ok(s) => Ok(Some(s)),
                Err(_) => bail!("corrupt flatbuffer: string at {} is not UTF-8", v.pos),
            },
            None => Ok(None),
        }
    }
}

impl<'a> Vector<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Raw bytes of the vector's elements.
    pub fn bytes(&self, elem: usize) -> &'a [u8] {
        &self.buf[self.pos..self.pos + self.len * elem]
    }
    /// Element `i` of a vector of tables.
    pub fn table(&self, i: usize) -> Result<Table<'a>> {
        if i >= self.len {
            bail!(
                "corrupt flatbuffer: table index {i} past vector length {}",
                self.len
            );
        }
        let p = self.pos + 4 * i;
        let target = p + u32_at(self.buf, p)? as usize;
        Table::at(self.buf, target)
    }
    /// The elements of an `[int]` vector.
    pub fn i32s(&self) -> Vec<i32> {
        self.bytes(4)
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
    /// The elements of a `[float]` vector.
    pub fn f32s(&self) -> Vec<f32> {
        self.bytes(4)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
    /// The elements of a `[long]` vector.
    pub fn i64s(&self) -> Vec<i64> {
        self.bytes(8)
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                i64::from_le_bytes(a)
            })
            .collect()
    }
}
