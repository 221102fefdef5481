//! The only place the runtime reinterprets bytes as numbers. Every function checks alignment and
//! length, so callers stay in safe code.

/// Views `bytes` as `f32`s. Returns an empty slice if `bytes` is misaligned (never the case for
/// a validated model or arena, whose slots are 16-byte aligned).
pub fn bytes_as_f32(bytes: &[u8]) -> &[f32] {
    // SAFETY: every bit pattern is a valid f32; `align_to` only yields the middle part when it is
    // correctly aligned and sized, and we accept it only when nothing is left over on either side.
    let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
    if pre.is_empty() && post.is_empty() {
        mid
    } else {
        &[]
    }
}

/// Mutable variant of [`bytes_as_f32`].
pub fn bytes_as_f32_mut(bytes: &mut [u8]) -> &mut [f32] {
    // SAFETY: as in `bytes_as_f32`; the returned slice borrows `bytes` mutably, so no aliasing.
    let (pre, mid, post) = unsafe { bytes.align_to_mut::<f32>() };
    if pre.is_empty() && post.is_empty() {
        mid
    } else {
        &mut []
    }
}

/// An IEEE-754 binary16 value (compressed weights), widened to f32 when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct F16(pub u16);

impl From<F16> for f32 {
    #[inline]
    fn from(h: F16) -> f32 {
        let sign = ((h.0 >> 15) as u32) << 31;
        let exp = ((h.0 >> 10) & 0x1F) as u32;
        let mant = (h.0 & 0x3FF) as u32;
        let bits = match (exp, mant) {
            (0, 0) => sign,
            (0, m) => {
                // Subnormal half: renormalize.
                let shift = m.leading_zeros() - 21; // bring the top set bit to bit 10
                let m = (m << shift) & 0x3FF;
                sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
            }
            (31, m) => sign | 0x7F80_0000 | (m << 13),
            (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
        };
        f32::from_bits(bits)
    }
}

/// Views `bytes` as half floats (empty if misaligned).
pub fn bytes_as_f16(bytes: &[u8]) -> &[F16] {
    // SAFETY: F16 is a transparent u16, valid for every bit pattern; alignment and length are
    // checked as in `bytes_as_f32`.
    let (pre, mid, post) = unsafe { bytes.align_to::<F16>() };
    if pre.is_empty() && post.is_empty() {
        mid
    } else {
        &[]
    }
}

/// Views `bytes` as `i32`s (empty if misaligned).
pub fn bytes_as_i32(bytes: &[u8]) -> &[i32] {
    // SAFETY: every bit pattern is a valid i32; alignment and length are checked as above.
    let (pre, mid, post) = unsafe { bytes.align_to::<i32>() };
    if pre.is_empty() && post.is_empty() {
        mid
    } else {
        &[]
    }
}

/// Views `bytes` as `i16`s (empty if misaligned).
pub fn bytes_as_i16(bytes: &[u8]) -> &[i16] {
    // SAFETY: every bit pattern is a valid i16; alignment and length are checked as above.
    let (pre, mid, post) = unsafe { bytes.align_to::<i16>() };
    if pre.is_empty() && post.is_empty() {
        mid
    } else {
        &[]
    }
}

/// Views `bytes` as `i8`s (always possible).
pub fn bytes_as_i8(bytes: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size and alignment and every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(bytes.as_ptr() as *const i8, bytes.len()) }
}

/// Mutable variant of [`bytes_as_i8`].
pub fn bytes_as_i8_mut(bytes: &mut [u8]) -> &mut [i8] {
    // SAFETY: as in `bytes_as_i8`; the result borrows `bytes` mutably.
    unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut i8, bytes.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misaligned_views_are_empty() {
        let buf = [0u32; 4];
        // SAFETY: test-only view of a u32 array as bytes.
        let bytes = unsafe { core::slice::from_raw_parts(buf.as_ptr() as *const u8, 16) };
        assert_eq!(bytes_as_f32(bytes).len(), 4);
        assert_eq!(bytes_as_f32(&bytes[1..5]).len(), 0);
        assert_eq!(bytes_as_f32(&bytes[0..6]).len(), 0);
        assert_eq!(bytes_as_i32(&bytes[4..12]).len(), 2);
        assert_eq!(bytes_as_i8(&bytes[3..7]).len(), 4);
        assert_eq!(bytes_as_i16(&bytes[2..8]).len(), 3);
        assert_eq!(bytes_as_i16(&bytes[1..5]).len(), 0);
    }

    #[test]
    fn half_to_float() {
        for (h, f) in [
            (0x3C00u16, 1.0f32),
            (0xC000, -2.0),
            (0x0000, 0.0),
            (0x7BFF, 65504.0),
            (0x3555, 0.333_251_95),
            (0x0001, 5.960_464_5e-8),
            (0x0200, 3.051_757_8e-5),
        ] {
            assert_eq!(f32::from(F16(h)), f, "{h:#06x}");
        }
        assert!(f32::from(F16(0x7C00)).is_infinite());
        assert!(f32::from(F16(0x7E00)).is_nan());
    }
}
