//! The only place the runtime reinterprets bytes as numbers, through `bytemuck`'s checked casts:
//! a view of misaligned or odd-length bytes is empty, never undefined behaviour, so callers stay
//! in safe code (validated models and arenas keep every slot 16-byte aligned, so the empty case
//! does not arise for them).

use bytemuck::Pod;

/// IEEE-754 binary16 weights (`half::f16`), widened to f32 when read.
pub use half::f16 as F16;

/// Views `bytes` as `T`s, or an empty slice if they are misaligned or not a whole number of `T`.
#[inline]
pub fn view<T: Pod>(bytes: &[u8]) -> &[T] {
    bytemuck::try_cast_slice(bytes).unwrap_or(&[])
}

/// Mutable variant of [`view`].
#[inline]
pub fn view_mut<T: Pod>(bytes: &mut [u8]) -> &mut [T] {
    bytemuck::try_cast_slice_mut(bytes).unwrap_or(&mut [])
}

/// Views `bytes` as `f32`s (empty if misaligned).
#[inline]
pub fn bytes_as_f32(bytes: &[u8]) -> &[f32] {
    view(bytes)
}

/// Mutable variant of [`bytes_as_f32`].
#[inline]
pub fn bytes_as_f32_mut(bytes: &mut [u8]) -> &mut [f32] {
    view_mut(bytes)
}

/// Views `bytes` as half floats (empty if misaligned).
#[inline]
pub fn bytes_as_f16(bytes: &[u8]) -> &[F16] {
    view(bytes)
}

/// Views `bytes` as `i32`s (empty if misaligned).
#[inline]
pub fn bytes_as_i32(bytes: &[u8]) -> &[i32] {
    view(bytes)
}

/// Views `bytes` as `i16`s (empty if misaligned).
#[inline]
pub fn bytes_as_i16(bytes: &[u8]) -> &[i16] {
    view(bytes)
}

/// Views `bytes` as `i8`s (always possible).
#[inline]
pub fn bytes_as_i8(bytes: &[u8]) -> &[i8] {
    view(bytes)
}

/// Mutable variant of [`bytes_as_i8`].
#[inline]
pub fn bytes_as_i8_mut(bytes: &mut [u8]) -> &mut [i8] {
    view_mut(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misaligned_views_are_empty() {
        let buf = [0u32; 4];
        let bytes: &[u8] = bytemuck::cast_slice(&buf);
        assert_eq!(bytes_as_f32(bytes).len(), 4);
        assert_eq!(bytes_as_f32(&bytes[1..5]).len(), 0);
        assert_eq!(bytes_as_f32(&bytes[0..6]).len(), 0);
        assert_eq!(bytes_as_i32(&bytes[4..12]).len(), 2);
        assert_eq!(bytes_as_i8(&bytes[3..7]).len(), 4);
        assert_eq!(bytes_as_i16(&bytes[2..8]).len(), 3);
        assert_eq!(bytes_as_i16(&bytes[1..5]).len(), 0);
        let mut buf = [0u32; 2];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
        assert_eq!(bytes_as_f32_mut(&mut bytes[1..5]).len(), 0);
        assert_eq!(bytes_as_f32_mut(bytes).len(), 2);
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
            assert_eq!(f32::from(F16::from_bits(h)), f, "{h:#06x}");
        }
        assert!(f32::from(F16::from_bits(0x7C00)).is_infinite());
        assert!(f32::from(F16::from_bits(0x7E00)).is_nan());
    }
}
