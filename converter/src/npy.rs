//! `.npy` reading and writing through the `npyz` crate (format versions 1-3, C order).

use crate::fsutil;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// The element type family of an array, as far as kiln's input rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyKind {
    /// float16/32/64.
    Float,
    /// int8: taken as is by int8 model inputs.
    Int8,
    /// uint8 (typically raw pixels).
    UInt8,
    /// Any other integer width (labels, indices).
    OtherInt,
    /// bool.
    Bool,
}

/// An array read from a `.npy` file, converted to f32, with its original dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Shape.
    pub shape: Vec<usize>,
    /// numpy dtype descriptor, e.g. `<f4`, `|i1`.
    pub dtype: String,
    /// Element family.
    pub kind: NpyKind,
    /// Values as f32 (exact for every int8/uint8/int16 value and for integers below 2^24).
    pub data: Vec<f32>,
}

fn into_f32<T>(npy: npyz::NpyFile<&[u8]>, f: fn(T) -> f32) -> Result<Vec<f32>>
where
    T: npyz::Deserialize,
{
    Ok(npy
        .into_vec::<T>()
        .context("reading .npy data")?
        .into_iter()
        .map(f)
        .collect())
}

/// Refuses a header whose declared shape multiplies past u64 before `npyz` reads it: `npyz`
/// multiplies the dims unchecked (a panic in debug builds, a wrapped count in release).
fn check_declared_shape(bytes: &[u8]) -> Result<()> {
    let head = &bytes[..bytes.len().min(65_536)];
    let text = String::from_utf8_lossy(head);
    let Some(at) = text.find("'shape'") else {
        return Ok(()); // npyz reports the missing key
    };
    let rest = &text[at..];
    let (Some(open), Some(close)) = (rest.find('('), rest.find(')')) else {
        return Ok(());
    };
    if close < open {
        return Ok(());
    }
    let mut count: u64 = 1;
    for d in rest[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        if let Ok(d) = d.parse::<u64>() {
            count = count
                .checked_mul(d)
                .ok_or_else(|| anyhow!(".npy shape ({}) overflows", &rest[open + 1..close]))?;
        }
    }
    Ok(())
}

/// Parses `.npy` bytes.
pub fn parse(bytes: &[u8]) -> Result<NpyArray> {
    check_declared_shape(bytes)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| anyhow!("not a valid .npy file: {e}"))?;
    if npy.order() == npyz::Order::Fortran {
        bail!("Fortran-order .npy arrays are not supported (save with np.ascontiguousarray)");
    }
    let npyz::DType::Plain(ts) = npy.dtype() else {
        bail!("structured or array dtypes are not supported in .npy inputs");
    };
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| anyhow!(".npy dimension {d} is too large")))
        .collect::<Result<_>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| anyhow!(".npy shape {shape:?} overflows"))?;
    let size = ts.size_field() as usize;
    use npyz::TypeChar::{Bool, Float, Int, Uint};
    let descr = ts.to_string();
    let supported = matches!(
        (ts.type_char(), size),
        (Float, 2 | 4 | 8) | (Int | Uint, 1 | 2 | 4 | 8) | (Bool, 1)
    );
    if !supported {
        bail!(
            "unsupported .npy dtype '{descr}' (use float16/32/64, int8/16/32/64, uint8/16/32/64 or bool)"
        );
    }
    // npyz is lenient with the shape entry of the header: insist on a tuple of numbers, as
    // numpy writes it.
    let header_end = match bytes[6] {
        1 => 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        _ => 12 + u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
    };
    let header = String::from_utf8_lossy(&bytes[..header_end.min(bytes.len())]);
    let shape_ok = header.split("'shape':").nth(1).is_some_and(|rest| {
        let rest = rest.trim_start();
        rest.starts_with('(')
            && rest[1..].split(')').next().is_some_and(|inner| {
                inner
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
            })
            && rest.contains(')')
    });
    if !shape_ok {
        bail!("not a valid .npy file: the header's shape is not a tuple of sizes");
    }
    // Check the declared size against the bytes present before anything is allocated for it.
    let have = bytes.len().saturating_sub(header_end);
    let need = count
        .checked_mul(size)
        .ok_or_else(|| anyhow!(".npy shape {shape:?} overflows"))?;
    if need > have {
        bail!(".npy data is truncated: shape {shape:?} of {ts} needs {need} bytes, the file has {have}");
    }
    let (kind, data) = match (ts.type_char(), size) {
        (Float, 2) => (NpyKind::Float, into_f32::<half::f16>(npy, |v| v.to_f32())?),
        (Float, 4) => (NpyKind::Float, into_f32::<f32>(npy, |v| v)?),
        (Float, _) => (NpyKind::Float, into_f32::<f64>(npy, |v| v as f32)?),
        (Int, 1) => (NpyKind::Int8, into_f32::<i8>(npy, |v| v as f32)?),
        (Uint, 1) => (NpyKind::UInt8, into_f32::<u8>(npy, |v| v as f32)?),
        (Int, 2) => (NpyKind::OtherInt, into_f32::<i16>(npy, |v| v as f32)?),
        (Uint, 2) => (NpyKind::OtherInt, into_f32::<u16>(npy, |v| v as f32)?),
        (Int, 4) => (NpyKind::OtherInt, into_f32::<i32>(npy, |v| v as f32)?),
        (Uint, 4) => (NpyKind::OtherInt, into_f32::<u32>(npy, |v| v as f32)?),
        (Int, _) => (NpyKind::OtherInt, into_f32::<i64>(npy, |v| v as f32)?),
        (Uint, _) => (NpyKind::OtherInt, into_f32::<u64>(npy, |v| v as f32)?),
        (Bool, _) => (NpyKind::Bool, into_f32::<bool>(npy, |v| v as u8 as f32)?),
        _ => bail!("unsupported .npy dtype '{descr}'"),
    };
    if data.len() != count {
        bail!(
            ".npy data holds {} values; its shape {shape:?} needs {count}",
            data.len()
        );
    }
    Ok(NpyArray {
        shape,
        dtype: descr,
        kind,
        data,
    })
}

/// Reads a `.npy` file (a regular file of at most the CLI's size cap).
pub fn read(path: &Path) -> Result<NpyArray> {
    let bytes = fsutil::read_file(path)?;
    parse(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn to_bytes<T: npyz::AutoSerialize + Copy>(shape: &[usize], data: &[T]) -> Vec<u8> {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut out)
        .begin_nd()
        .expect("writing .npy to memory");
    w.extend(data.iter().copied())
        .expect("writing .npy to memory");
    w.finish().expect("writing .npy to memory");
    out
}

/// Serializes an f32 array as `.npy`.
pub fn to_bytes_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    to_bytes(shape, data)
}

/// Serializes an int8 array as `.npy`.
pub fn to_bytes_i8(shape: &[usize], data: &[i8]) -> Vec<u8> {
    to_bytes(shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = to_bytes_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        let a = parse(&b).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data[5], 6.5);
        assert_eq!(a.kind, NpyKind::Float);
        let b = to_bytes_i8(&[3], &[-128, 0, 127]);
        let a = parse(&b).unwrap();
        assert_eq!((a.kind, a.data), (NpyKind::Int8, vec![-128.0, 0.0, 127.0]));
    }

    #[test]
    fn truncated_is_an_error() {
        let b = to_bytes_f32(&[4], &[1.0; 4]);
        let err = parse(&b[..b.len() - 1]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    /// A version-1 `.npy` with a header written by hand (as numpy writes it) and 8 data bytes.
    fn with_shape(shape: &str) -> Vec<u8> {
        let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&[0u8; 8]);
        b
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        assert_eq!(parse(&with_shape("(2,)")).unwrap().data, vec![0.0, 0.0]);
        for bad_shape in [
            "), }",
            "(é,)",
            "(18446744073709551615, 4)",
            "(-1,)",
            "(2",
            "é",
        ] {
            assert!(parse(&with_shape(bad_shape)).is_err(), "{bad_shape}");
        }
        // A huge declared shape with no data behind it is refused before any allocation.
        let err = parse(&with_shape("(1000000000000,)"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
