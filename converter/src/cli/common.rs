//! What every command shares: reading models (with the signature policy), keys, image options,
//! progress, and stdout that survives a closed pipe.

use anyhow::{anyhow, bail, Result};
use kiln_converter::fsutil;
use kiln_converter::input::{ImageOpts, InputSpec, Layout};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::Model;
use std::io::Write;
use std::path::Path;

/// Writes one line to stdout. A closed pipe (`kiln eval … | head -1`) ends the process quietly
/// with status 141, as a shell reports SIGPIPE; any other write error is reported.
pub fn out(args: std::fmt::Arguments<'_>) {
    let mut so = std::io::stdout().lock();
    if let Err(e) = so.write_fmt(args).and_then(|_| so.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints a note about a conversion kiln made, on stderr.
pub fn note(n: &str) {
    eprintln!("note: {n}");
}

const SIG_TRAILER: usize = kiln_runtime::signature::TRAILER_LEN;

/// Reads a `.kiln` file's bytes (not yet validated: see [`open_model`]).
///
/// When `$KILN_TRUSTED_KEY` names a public key file, only files signed by that key are read:
/// an unsigned file is refused, as is one whose signature does not verify. Without it, a
/// signature trailer is dropped unverified (host tools; devices verify with
/// `kiln_runtime::signature::from_signed_bytes`).
pub fn load_model_bytes(path: &Path) -> Result<AlignedBuf> {
    let bytes = fsutil::read_file(path)?;
    let signed =
        bytes.len() > SIG_TRAILER && bytes[bytes.len() - SIG_TRAILER..].starts_with(b"KSIG");
    if let Some(key) = std::env::var_os("KILN_TRUSTED_KEY") {
        let pk = read_key::<32>(Path::new(&key))?;
        if !signed {
            bail!(
                "{}: refused: the file is not signed and KILN_TRUSTED_KEY ({}) requires a signature",
                path.display(),
                Path::new(&key).display()
            );
        }
        let buf = AlignedBuf::new(&bytes);
        kiln_runtime::signature::from_signed_bytes(buf.as_slice(), &pk).map_err(|e| {
            anyhow!(
                "{}: refused: {e} (trusted key {})",
                path.display(),
                Path::new(&key).display()
            )
        })?;
    }
    let model = if signed {
        &bytes[..bytes.len() - SIG_TRAILER]
    } else {
        &bytes[..]
    };
    Ok(AlignedBuf::new(model))
}

/// Validates the bytes of a model read from `path`; errors name the file.
pub fn open_model<'b>(buf: &'b AlignedBuf, path: &Path) -> Result<Model<'b>> {
    Model::from_bytes(buf.as_slice()).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The one input a command feeds; a model with several is refused, naming the file.
pub fn single_input(m: &Model<'_>, path: &Path, command: &str) -> Result<InputSpec> {
    if m.num_inputs() != 1 {
        bail!(
            "{}: `{command}` feeds one input; this model has {}",
            path.display(),
            m.num_inputs()
        );
    }
    InputSpec::of(m, 0)
}

/// Reads a hex key file of `N` bytes.
pub fn read_key<const N: usize>(path: &Path) -> Result<[u8; N]> {
    let text = fsutil::read_text(path)?;
    let hex: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if hex.len() != 2 * N || !hex.iter().all(u8::is_ascii_hexdigit) {
        bail!(
            "{}: expected a key of {N} bytes as {} hex digits",
            path.display(),
            2 * N
        );
    }
    let mut key = [0u8; N];
    for (k, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        let s = std::str::from_utf8(pair).map_err(|_| anyhow!("{}: not hex", path.display()))?;
        *k = u8::from_str_radix(s, 16).map_err(|_| anyhow!("{}: not hex", path.display()))?;
    }
    Ok(key)
}

/// Lower-case hex of `b` with a newline.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<String>() + "\n"
}

/// Options for image and array inputs shared by `run`, `eval`, `export` and `quantize`.
#[derive(clap::Args, Clone)]
pub struct ImageArgs {
    /// Per-channel mean subtracted after scaling to [0, 1] (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub std: Vec<f32>,
    /// Keep pixel values in [0, 255] instead of scaling to [0, 1].
    #[arg(long)]
    pub no_scale: bool,
    /// Invert gray levels before normalizing.
    #[arg(long)]
    pub invert: bool,
    /// Layout of the given arrays when it differs from the model's (nhwc or nchw): kiln
    /// transposes them and says so.
    #[arg(long, default_value = "model")]
    pub layout: Layout,
}

impl ImageArgs {
    /// The image options.
    pub fn opts(&self) -> Result<ImageOpts> {
        if self.std.contains(&0.0) || self.std.iter().chain(&self.mean).any(|v| !v.is_finite()) {
            bail!("--mean and --std must be finite, and --std non-zero");
        }
        Ok(ImageOpts {
            scale01: !self.no_scale,
            mean: self.mean.clone(),
            std: self.std.clone(),
            invert: self.invert,
        })
    }
}

/// A progress bar on stderr: redrawn in place on a terminal, one line per 10% otherwise.
pub fn progress_bar() -> impl FnMut(&str, usize, usize) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let mut last_decile = usize::MAX;
    move |stage: &str, done: usize, total: usize| {
        let width = 30;
        let filled = done.min(total) * width / total.max(1);
        let bar = format!(
            "{:<12} [{}{}] {done}/{total}",
            stage,
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        if tty {
            eprint!("\r{bar}");
            if done == total {
                eprintln!();
            }
        } else {
            let decile = done.min(total) * 10 / total.max(1);
            if decile != last_decile {
                last_decile = decile;
                eprintln!("{bar}");
            }
        }
    }
}

/// Parses `1,3,32,32`: every dimension at least 1, and the shape within the runtime's element
/// limit.
pub fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    let dims: Vec<usize> = s
        .split(',')
        .map(|d| {
            let d = d.trim();
            match d.parse::<usize>() {
                Ok(0) => Err(format!(
                    "dimension 0 in shape '{s}': every dimension must be at least 1"
                )),
                Ok(v) => Ok(v),
                Err(_) => Err(format!("bad dimension '{d}' in shape '{s}'")),
            }
        })
        .collect::<Result<_, _>>()?;
    let max = kiln_runtime::format::MAX_ELEMENTS;
    match dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n <= max => Ok(dims),
        _ => Err(format!(
            "shape '{s}' has more than {max} elements, the most one tensor may have"
        )),
    }
}

/// Refuses to write `out` over `source` (the user would lose the source model).
pub fn not_the_source(out: &Path, source: &Path) -> Result<()> {
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(out), std::fs::canonicalize(source)) {
        if a == b {
            bail!(
                "{}: the output would replace the source model; choose another -o",
                out.display()
            );
        }
    }
    Ok(())
}

/// Sample rows for a model input of `shape` from `.npy` batches, raw f32 files, images or
/// directories of them (sorted), at most `max`: what `kiln quantize --calib` and
/// `kiln prune --calib` read.
pub fn load_samples(
    paths: &[std::path::PathBuf],
    shape: &[usize],
    opts: &kiln_converter::input::ImageOpts,
    max: usize,
) -> Result<Vec<Vec<f32>>> {
    use anyhow::Context;
    let mut rows = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file())
                .collect();
            files.sort();
            for f in files {
                rows.extend(kiln_converter::input::load_batch(&f, shape, opts)?);
            }
        } else {
            rows.extend(kiln_converter::input::load_batch(p, shape, opts)?);
        }
    }
    rows.truncate(max);
    Ok(rows)
}

/// The float graph of a source model (.onnx, .tflite; `shapes` for symbolic ONNX inputs) or of a
/// `.kiln` file (a pruned model quantized next, say).
pub fn load_float_graph(
    path: &std::path::Path,
    shapes: Option<&[Vec<usize>]>,
) -> Result<kiln_converter::ir::Graph> {
    if path.extension().is_some_and(|e| e == "kiln") {
        let bytes = kiln_converter::fsutil::read_file(path)?;
        let buf = kiln_runtime::writer::AlignedBuf::new(&bytes);
        let m = kiln_runtime::Model::from_bytes(buf.as_slice())
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let mut g = kiln_converter::finetune::graph_from_model(&m)?;
        kiln_converter::passes::unpack_weights::run(&mut g)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        return Ok(g);
    }
    kiln_converter::import_file_with(path, shapes)
}

/// The output path: `output` if given, else `<model stem><suffix>` beside the model; refused if
/// it is the model itself.
pub fn output_beside(
    model: &std::path::Path,
    output: Option<std::path::PathBuf>,
    suffix: &str,
) -> Result<std::path::PathBuf> {
    let out = output.unwrap_or_else(|| {
        let stem = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        model.with_file_name(format!("{stem}{suffix}"))
    });
    not_the_source(&out, model)?;
    Ok(out)
}
