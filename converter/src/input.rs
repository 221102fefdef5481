//! Input loading for `kiln run`/`verify`/`eval`: `.npy`, raw little-endian f32, or an image file
//! (PNG, JPEG, BMP, PNM through the `image` crate) resized and normalized to the model's input.

use crate::npy::{self, NpyKind};
use anyhow::{anyhow, bail, Result};
use kiln_runtime::{DType, Model, Quant};
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
    let bytes = crate::fsutil::read_file(path)?;
    // The decoder's message is given once, without its source chain (which repeats it).
    let img = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| anyhow!("{}: cannot read image: {e}", path.display()))?
        .decode()
        .map_err(|e| anyhow!("{}: cannot decode image: {e}", path.display()))?;
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
    let b = crate::fsutil::read_file(path)?;
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

/// What a model input takes: its name, dtype, shape and (int8) quantization.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Scale and zero point of an int8 input.
    pub quant: Option<(f32, i32)>,
}

impl InputSpec {
    /// Graph input `k` of `m`.
    pub fn of(m: &Model<'_>, k: usize) -> Result<InputSpec> {
        let t = m.tensor(m.input_tensor(k)?);
        Ok(InputSpec {
            name: t.name().to_string(),
            dtype: t.dtype,
            shape: t.shape().to_vec(),
            quant: match t.quant {
                Quant::PerTensor { scale, zero_point } => Some((scale, zero_point)),
                _ => None,
            },
        })
    }

    fn describe(&self) -> String {
        format!(
            "input '{}' ({} {:?})",
            self.name,
            self.dtype.name(),
            self.shape
        )
    }
}

/// The memory layout of the arrays a user gives, when it differs from the model's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// The arrays have the model's own layout (the default).
    #[default]
    AsModel,
    /// The arrays are channels-last (`[N, H, W, C]`).
    Nhwc,
    /// The arrays are channels-first (`[N, C, H, W]`).
    Nchw,
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Layout, String> {
        match s.to_ascii_lowercase().as_str() {
            "nhwc" => Ok(Layout::Nhwc),
            "nchw" => Ok(Layout::Nchw),
            "model" => Ok(Layout::AsModel),
            _ => Err(format!("unknown layout '{s}' (nhwc, nchw or model)")),
        }
    }
}

/// Inputs ready for a model input: one byte row per sample in the model's dtype, and what was
/// converted on the way (to tell the user).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Rows in the model input's dtype (little-endian f32 or int8).
    pub rows: Vec<Vec<u8>>,
    /// The same rows as real values (int8 rows dequantized), for float references.
    pub values: Vec<Vec<f32>>,
    /// Conversions made, one sentence each.
    pub notes: Vec<String>,
}

impl Batch {
    /// Appends another batch.
    pub fn extend(&mut self, other: Batch) {
        self.rows.extend(other.rows);
        self.values.extend(other.values);
        for n in other.notes {
            if !self.notes.contains(&n) {
                self.notes.push(n);
            }
        }
    }
}

/// The element family of a source array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Float,
    Int8,
    Other(&'static str),
}

/// Loads `path` for model input `spec` under the one rule every command follows: the array's
/// dtype and shape must match the input, or kiln converts explicitly and says so in
/// [`Batch::notes`] (float data for an int8 input is quantized with the input's scale and zero
/// point; int8 data for an int8 input is taken as is; `layout` transposes NHWC/NCHW), or it
/// refuses with an error naming the expected and given dtype and shape.
pub fn load_inputs(
    path: &Path,
    spec: &InputSpec,
    opts: &ImageOpts,
    layout: Layout,
) -> Result<Batch> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let per_item: usize = spec.shape.iter().product();
    let mut notes = Vec::new();
    let (values, source) = match ext.as_str() {
        "npy" => {
            let a = npy::read(path)?;
            let source = match a.kind {
                NpyKind::Float => Source::Float,
                NpyKind::Int8 => Source::Int8,
                NpyKind::UInt8 => Source::Other("uint8"),
                NpyKind::OtherInt => Source::Other("an integer type"),
                NpyKind::Bool => Source::Other("bool"),
            };
            let rows = rows_for_shape(path, &a.shape, a.data, spec, layout, &mut notes)?;
            (rows, source)
        }
        "bin" | "raw" | "f32" => {
            let data = load_raw(path)?;
            if data.is_empty() || data.len() % per_item != 0 {
                bail!(
                    "{}: {} f32 values is not a whole number of {} ({per_item} values each)",
                    path.display(),
                    data.len(),
                    spec.describe()
                );
            }
            let rows = data.chunks(per_item).map(<[f32]>::to_vec).collect();
            (rows, Source::Float)
        }
        "png" | "jpg" | "jpeg" | "bmp" | "pgm" | "ppm" | "pnm" => {
            let l = image_layout(&spec.shape)?;
            let v = load_image(path, l, opts)?;
            if l.c == 1 && !opts.invert {
                let mean = v.iter().sum::<f32>() / v.len().max(1) as f32;
                let light = if opts.scale01 { 0.5 } else { 127.5 };
                if mean > light && opts.mean.iter().all(|&m| m == 0.0) {
                    notes.push(format!(
                        "{} is mostly light (mean {mean:.2}): models trained on light-on-dark \
                         digits (MNIST, scikit-learn's digits) need --invert",
                        path.display()
                    ));
                }
            }
            (vec![v], Source::Float)
        }
        _ => bail!(
            "{}: unknown input type '.{ext}' (use .npy, .bin/.raw or an image)",
            path.display()
        ),
    };
    if source == Source::Float {
        for (r, row) in values.iter().enumerate() {
            if let Some(i) = row.iter().position(|v| !v.is_finite()) {
                bail!(
                    "{}: value #{} is NaN or infinite",
                    path.display(),
                    r * per_item + i
                );
            }
        }
    }
    encode(path, spec, values, source, notes)
}

/// Turns real-valued rows into the model input's dtype, under the rule of [`load_inputs`].
fn encode(
    path: &Path,
    spec: &InputSpec,
    values: Vec<Vec<f32>>,
    source: Source,
    mut notes: Vec<String>,
) -> Result<Batch> {
    let given = match source {
        Source::Float => "float",
        Source::Int8 => "int8",
        Source::Other(t) => t,
    };
    match (spec.dtype, source) {
        (DType::F32 | DType::I8, Source::Float) => {
            let mut b = encode_float(spec, values)?;
            if spec.dtype == DType::I8 {
                let (scale, zp) = spec.quant.unwrap_or((1.0, 0));
                notes.push(format!(
                    "{}: float values quantized to int8 for {} with its scale {scale:e} and zero point {zp}",
                    path.display(),
                    spec.describe()
                ));
            }
            b.notes = notes;
            Ok(b)
        }
        (DType::I8, Source::Int8) => {
            let (scale, zp) = spec.quant.unwrap_or((1.0, 0));
            Ok(Batch {
                rows: values
                    .iter()
                    .map(|r| r.iter().map(|&v| v as i8 as u8).collect())
                    .collect(),
                values: values
                    .iter()
                    .map(|r| r.iter().map(|&v| scale * (v - zp as f32)).collect())
                    .collect(),
                notes,
            })
        }
        (DType::F32, _) => bail!(
            "{}: the array is {given} but {} takes float values: convert it first \
             (for example x.astype(np.float32), divided by 255 if the model was trained on [0, 1] pixels)",
            path.display(),
            spec.describe()
        ),
        (DType::I8, _) => bail!(
            "{}: the array is {given} but {} takes int8 values (or float values, which kiln \
             quantizes with the input's scale and zero point)",
            path.display(),
            spec.describe()
        ),
        (d, _) => bail!(
            "{}: {} is {}; kiln feeds f32 and int8 inputs only",
            path.display(),
            spec.describe(),
            d.name()
        ),
    }
}

/// Encodes real-valued rows for model input `spec`: little-endian f32 for a float input; for an
/// int8 input, quantized (saturating) with its scale and zero point, `values` then holding what
/// the int8 rows mean.
pub fn encode_float(spec: &InputSpec, values: Vec<Vec<f32>>) -> Result<Batch> {
    match spec.dtype {
        DType::F32 => Ok(Batch {
            rows: values
                .iter()
                .map(|r| r.iter().flat_map(|v| v.to_le_bytes()).collect())
                .collect(),
            values,
            notes: vec![],
        }),
        DType::I8 => {
            let (scale, zp) = spec
                .quant
                .ok_or_else(|| anyhow!("{} has no per-tensor quantization", spec.describe()))?;
            let mut b = Batch::default();
            for r in &values {
                let mut q = vec![0i8; r.len()];
                kiln_runtime::kernels::reference_i8::quantize(r, &mut q, scale, zp);
                b.values
                    .push(q.iter().map(|&v| scale * (v as i32 - zp) as f32).collect());
                b.rows.push(q.iter().map(|&v| v as u8).collect());
            }
            Ok(b)
        }
        d => bail!(
            "{} is {}; kiln feeds f32 and int8 inputs only",
            spec.describe(),
            d.name()
        ),
    }
}

/// Splits an array of shape `given` into rows for `spec`: the array is one input (the model's
/// shape, with or without its leading 1s) or a batch of them (`[N, ...]`), transposed when
/// `layout` says its channels sit elsewhere than the model's.
fn rows_for_shape(
    path: &Path,
    given: &[usize],
    data: Vec<f32>,
    spec: &InputSpec,
    layout: Layout,
    notes: &mut Vec<String>,
) -> Result<Vec<Vec<f32>>> {
    let model = &spec.shape;
    // The model's shape with none, some or all of its leading 1s: `[1, 1, 8, 8]` takes
    // `[1, 1, 8, 8]`, `[1, 8, 8]` or `[8, 8]` items.
    let lead = model.iter().take_while(|&&d| d == 1).count();
    let items: Vec<&[usize]> = (0..=lead.min(model.len().saturating_sub(1)))
        .map(|k| &model[k..])
        .collect();
    let trimmed = items[items.len() - 1];
    let n_rows = |item: &[usize]| -> Option<usize> {
        if given == item {
            Some(1)
        } else if given.len() == item.len() + 1 && &given[1..] == item && given[0] > 0 {
            Some(given[0])
        } else {
            None
        }
    };
    // The model's layout, when its input looks like an image.
    let model_first = image_layout(model).ok().map(|l| (l, l.channels_first));
    let wants_transpose = match (layout, model_first) {
        (Layout::Nhwc, Some((_, true))) | (Layout::Nchw, Some((_, false))) => true,
        (Layout::AsModel, _) => false,
        (_, Some(_)) => false,
        (_, None) => bail!(
            "--layout applies to image inputs; {} is not one",
            spec.describe()
        ),
    };
    let rows_of = |data: Vec<f32>, n: usize| -> Vec<Vec<f32>> {
        data.chunks(data.len() / n.max(1))
            .map(<[f32]>::to_vec)
            .collect()
    };
    if !wants_transpose {
        if let Some(n) = items.iter().find_map(|item| n_rows(item)) {
            return Ok(rows_of(data, n));
        }
    }
    if let Some((l, first)) = model_first {
        let (h, w, c) = (l.h, l.w, l.c);
        let other: Vec<usize> = if first { vec![h, w, c] } else { vec![c, h, w] };
        let n = if given == other.as_slice() {
            Some(1)
        } else if given.len() == 4 && given[1..] == other[..] && given[0] > 0 {
            Some(given[0])
        } else {
            None
        };
        if let Some(n) = n {
            let (theirs, ours) = if first {
                ("NHWC", "NCHW")
            } else {
                ("NCHW", "NHWC")
            };
            if !wants_transpose {
                bail!(
                    "{}: shape {given:?} looks {theirs} but {} is {ours}: pass --layout {} to transpose it",
                    path.display(),
                    spec.describe(),
                    theirs.to_ascii_lowercase()
                );
            }
            notes.push(format!(
                "{}: transposed {theirs} {given:?} to the model's {ours} layout",
                path.display()
            ));
            let mut rows = Vec::with_capacity(n);
            for item in data.chunks(h * w * c) {
                let mut out = vec![0f32; h * w * c];
                for y in 0..h {
                    for x in 0..w {
                        for ch in 0..c {
                            let (src, dst) = if first {
                                ((y * w + x) * c + ch, (ch * h + y) * w + x)
                            } else {
                                ((ch * h + y) * w + x, (y * w + x) * c + ch)
                            };
                            out[dst] = item[src];
                        }
                    }
                }
                rows.push(out);
            }
            return Ok(rows);
        }
    }
    bail!(
        "{}: shape {given:?} does not match {} (give {model:?}, {trimmed:?} or a batch [N, ...] of them)",
        path.display(),
        spec.describe()
    )
}

/// Loads a batch of f32 inputs for a model input of shape `model_shape` (calibration data and
/// float references): `.npy` (one input or a batch `[N, ...]`), raw `.bin`/`.raw`, or an image.
pub fn load_batch(path: &Path, model_shape: &[usize], opts: &ImageOpts) -> Result<Vec<Vec<f32>>> {
    let spec = InputSpec {
        name: "input".into(),
        dtype: DType::F32,
        shape: model_shape.to_vec(),
        quant: None,
    };
    Ok(load_inputs(path, &spec, opts, Layout::AsModel)?.values)
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
