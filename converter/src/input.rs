//! Input loading for `kiln run`/`verify`: `.npy`, raw little-endian f32, or an image file.
