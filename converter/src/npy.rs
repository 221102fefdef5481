//! `.npy` reading and writing (format versions 1-3, little-endian, C order).

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// An array read from a `.npy` file, converted to f32, with its original dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Shape.
    pub shape: Vec<usize>,
    /// numpy dtype descriptor, e.g. `<f4`, `|i1`.
    pub dtype: String,
    /// Values as f32.
    pub data: Vec<f32>,
}

fn field<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let k = format!("'{key}':");
    let at = header
        .find(&k)
        .ok_or_else(|| anyhow!("npy header has no '{key}'"))?;
    Ok(header[at + k.len()..].trim_start())
}

/// Parses `.npy` bytes.
pub fn parse(bytes: &[u8]) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not a .npy file (bad magic)");
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                bail!("truncated .npy header");
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => bail!("unsupported .npy version {v}"),
    };
    let header = bytes
        .get(hstart..hstart + hlen)
        .ok_or_else(|| anyhow!("truncated .npy header"))?;
    let header = std::str::from_utf8(header).context(".npy header is not text")?;
    let descr = field(header, "descr")?;
    let descr = descr.trim_start_matches('\'');
    let descr = &descr[..descr.find('\'').ok_or_else(|| anyhow!("bad descr"))?];
    if field(header, "fortran_order")?.starts_with("True") {
        bail!("Fortran-order .npy arrays are not supported");
    }
    let sh = field(header, "shape")?;
    let sh = &sh[1..sh.find(')').ok_or_else(|| anyhow!("bad shape"))?];
    let shape: Vec<usize> = sh
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| anyhow!("bad dimension '{s}' in .npy shape"))
        })
        .collect::<Result<_>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| anyhow!(".npy shape overflows"))?;
    let body = &bytes[hstart + hlen..];
    let (size, conv): (usize, fn(&[u8]) -> f32) = match descr {
        "<f4" => (4, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        "<f8" => (8, |c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            f64::from_le_bytes(a) as f32
        }),
        "|i1" => (1, |c| c[0] as i8 as f32),
        "|u1" => (1, |c| c[0] as f32),
        "<i4" => (4, |c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32),
        "<i8" => (8, |c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            i64::from_le_bytes(a) as f32
        }),
        "<f2" => (2, |c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        d => bail!("unsupported .npy dtype '{d}' (use float32, float64, int8, uint8, int32, int64 or float16)"),
    };
    let need = n
        .checked_mul(size)
        .ok_or_else(|| anyhow!(".npy size overflows"))?;
    if body.len() < need {
        bail!(
            ".npy data is truncated: shape {shape:?} needs {need} bytes, file has {}",
            body.len()
        );
    }
    let data = body[..need].chunks_exact(size).map(conv).collect();
    Ok(NpyArray {
        shape,
        dtype: descr.to_string(),
        data,
    })
}

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Serializes an f32 array as `.npy` version 1.
pub fn to_bytes_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_s}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.div_ceil(64) * 64 - total));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
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
        assert_eq!((10 + u16::from_le_bytes([b[8], b[9]]) as usize) % 64, 0);
    }

    #[test]
    fn truncated_is_an_error() {
        let b = to_bytes_f32(&[4], &[1.0; 4]);
        let err = parse(&b[..b.len() - 1]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
