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
    }
}
