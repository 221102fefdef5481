//! Input loading for `kiln run`/`verify`/`eval`: `.npy`, raw little-endian f32, or an image file
//! (PNG, JPEG, BMP, PNM through the `image` crate) resized and normalized to the model's input.

use crate::npy;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// How to turn an image into a tensor.
#[derive(Clone, Debug)]
pub struct ImageOpts {
    /// Divide pixel values by 255 first (so they lie in [0, 1]).
    pub scale01: bool,
    /// Per-channel mean subtracted after scaling (one value or one per channel).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by after the mean (one value or one per channel).
    pub std: Vec<f32>,
    /// Invert the gray levels (white digit on black, as scikit-learn's digits).
    pub invert: bool,
}

impl Default for ImageOpts {
    fn default() -> Self {
        ImageOpts {
            scale01: true,
            mean: vec![0.0],
            std: vec![1.0],
            invert: false,
        }
    }
}

/// Where channels and spatial dims sit in a model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Channels (1 or 3).
    pub c: usize,
    /// Channels first (NCHW / CHW).
    pub channels_first: bool,
}

/// Guesses the image layout of a model input shape: `[1,H,W,C]`, `[1,C,H,W]`, `[H,W,C]`,
/// `[C,H,W]`, `[1,H,W]` or `[H,W]`, with C in {1, 3}.
pub fn image_layout(shape: &[usize]) -> Result<ImageLayout> {
    let s: Vec<usize> = if shape.len() == 4 && shape[0] == 1 {
        shape[1..].to_vec()
    } else {
        shape.to_vec()
    };
    let l = match s.as_slice() {
        [h, w, c] if *c == 1 || *c == 3 => ImageLayout { h: *h, w: *w, c: *c, channels_first: false },
        [c, h, w] if *c == 1 || *c == 3 => ImageLayout { h: *h, w: *w, c: *c, channels_first: true },
        [1, h, w] | [h, w] if *h > 1 && *w > 1 => ImageLayout { h: *h, w: *w, c: 1, channels_first: false },
        _ => bail!("model input shape {shape:?} does not look like an image (expected [1,H,W,C] or [1,C,H,W] with C = 1 or 3)"),
    };
    Ok(l)
}

fn per_channel(v: &[f32], c: usize, what: &str) -> Result<Vec<f32>> {
    match v.len() {
        1 => Ok(vec![v[0]; c]),
        n if n == c => Ok(v.to_vec()),
        n => bail!("--{what} has {n} values; the model has {c} channels"),
    }
}

/// Loads an image file and converts it to the model's input layout.
pub fn load_image(path: &Path, layout: ImageLayout, opts: &ImageOpts) -> Result<Vec<f32>> {
    let img = image::open(path).with_context(|| format!("reading image {}", path.display()))?;
    let img = img.resize_exact(
        layout.w as u32,
        layout.h as u32,
        image::imageops::FilterType::Triangle,
    );
    let (mean, std) = (
        per_channel(&opts.mean, layout.c, "mean")?,
        per_channel(&opts.std, layout.c, "std")?,
    );
    if std.contains(&0.0) {
        bail!("--std must not be zero");
    }
    let px: Vec<u8> = if layout.c == 1 {
        img.to_luma8().into_raw()
    } else {
        img.to_rgb8().into_raw()
    };
    let (h, w, c) = (layout.h, layout.w, layout.c);
    let mut out = vec![0.0; h * w * c];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let mut v = px[(y * w + x) * c + ch] as f32;
                if opts.invert {
                    v = 255.0 - v;
                }
                if opts.scale01 {
                    v /= 255.0;
                }
                v = (v - mean[ch]) / std[ch];
                let at = if layout.channels_first {
                    (ch * h + y) * w + x
                } else {
                    (y * w + x) * c + ch
                };
                out[at] = v;
            }
        }
    }
    Ok(out)
}

/// Loads raw little-endian f32 values.
pub fn load_raw(path: &Path) -> Result<Vec<f32>> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if b.len() % 4 != 0 {
        bail!(
            "{}: raw input has {} bytes, not a whole number of f32 values",
            path.display(),
            b.len()
        );
    }
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Loads a batch of inputs for a model input of `per_item` elements: `.npy` (shape
/// `[B, ...]` or exactly one input), raw `.bin`/`.raw`, or an image. Returns the rows.
pub fn load_batch(path: &Path, model_shape: &[usize], opts: &ImageOpts) -> Result<Vec<Vec<f32>>> {
    let per_item: usize = model_shape.iter().product();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let data = match ext.as_str() {
        "npy" => npy::read(path)?.data,
        "bin" | "raw" | "f32" => load_raw(path)?,
        "png" | "jpg" | "jpeg" | "bmp" | "pgm" | "ppm" | "pnm" => {
            return Ok(vec![load_image(path, image_layout(model_shape)?, opts)?]);
        }
        _ => bail!(
            "{}: unknown input type '.{ext}' (use .npy, .bin/.raw or an image)",
            path.display()
        ),
    };
    if data.is_empty() || data.len() % per_item != 0 {
        bail!(
            "{}: {} values is not a whole number of inputs of shape {model_shape:?} ({per_item} values each)",
            path.display(),
            data.len()
        );
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(anyhow!("{}: value #{i} is NaN or infinite", path.display()));
    }
    Ok(data.chunks(per_item).map(|c| c.to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(
            image_layout(&[1, 28, 28, 1]).unwrap(),
            ImageLayout {
                h: 28,
                w: 28,
                c: 1,
                channels_first: false
            }
        );
        assert_eq!(
            image_layout(&[1, 3, 32, 32]).unwrap(),
            ImageLayout {
                h: 32,
                w: 32,
                c: 3,
                channels_first: true
            }
        );
        assert!(image_layout(&[1, 640]).is_err());
    }

    #[test]
    fn image_round_trip() {
        let dir = std::env::temp_dir().join(format!("kiln-img-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.png");
        let img = image::GrayImage::from_fn(4, 4, |x, y| image::Luma([(x * 16 + y) as u8 * 4]));
        img.save(&p).unwrap();
        let l = ImageLayout {
            h: 4,
            w: 4,
            c: 1,
            channels_first: false,
        };
        let v = load_image(&p, l, &ImageOpts::default()).unwrap();
        assert_eq!(v.len(), 16);
        assert!((v[1] - 64.0 / 255.0).abs() < 1e-6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
