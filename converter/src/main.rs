//! `kiln`: convert, inspect, run and verify edge models.
#![forbid(unsafe_code)]

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use kiln_converter::input::{self, ImageOpts};
use kiln_converter::{emit, eval, fsutil, inspect, npy, verify};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{DType, Model, Session};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Edge inference: convert, inspect, run and verify models"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Convert an ONNX or TFLite model into a .kiln file.
    Convert {
        /// Source model (.onnx or .tflite).
        model: PathBuf,
        /// Output file (default: the model's name with .kiln).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Concrete shape of each input, e.g. `1,3,32,32` (ONNX; repeat per input).
        #[arg(long = "input-shape", value_parser = parse_shape)]
        input_shape: Vec<Vec<usize>>,
        /// Store float conv/dense weights as 16-bit floats (half the size).
        #[arg(long)]
        fp16: bool,
        /// Print a machine-readable summary.
        #[arg(long)]
        json: bool,
    },
    /// Post-training int8 quantization of a float model, calibrated on sample inputs.
    Quantize {
        /// Float source model (.onnx, .tflite).
        model: PathBuf,
        /// Calibration inputs: .npy batches, raw f32 files or images (repeatable).
        #[arg(long, num_args = 1.., required = true)]
        calib: Vec<PathBuf>,
        /// Output file (default: the model's name with _int8.kiln).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Range method: minmax, percentile[:P], entropy, mse.
        #[arg(long, default_value = "minmax")]
        method: String,
        /// Use at most this many calibration samples.
        #[arg(long, default_value_t = 500)]
        max_samples: usize,
        /// Make the model's inputs and outputs int8 (the caller quantizes).
        #[arg(long)]
        int8_io: bool,
        /// Concrete input shape (ONNX; repeat per input).
        #[arg(long = "input-shape", value_parser = parse_shape)]
        input_shape: Vec<Vec<usize>>,
        #[command(flatten)]
        image: ImageArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export a .kiln model for firmware: the model file, a Rust module with its sizes as
    /// constants (arena included), and optionally a recorded input with the host's output.
    Export {
        /// The .kiln model.
        model: PathBuf,
        /// Output directory (created).
        #[arg(short, long)]
        out: PathBuf,
        /// A recorded input (.npy; int8 values for an int8 model) to embed with the expected output.
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Which row of a batched .npy input to record.
        #[arg(long, default_value_t = 0)]
        row: usize,
    },
    /// Make an ed25519 key pair: <NAME>.secret (keep it) and <NAME>.pub (give it to devices).
    Keygen {
        /// Path prefix of the two key files.
        name: PathBuf,
    },
    /// Sign a .kiln file so devices holding the public key accept it (and nothing else).
    Sign {
        /// The .kiln model.
        model: PathBuf,
        /// The secret key file (from `kiln keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Output file (default: <model>.signed.kiln).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check a signed .kiln file against a public key.
    CheckSignature {
        /// The signed .kiln model.
        model: PathBuf,
        /// The public key file.
        #[arg(long = "pub")]
        public: PathBuf,
    },
    /// Print a per-layer table of a .kiln file.
    Inspect {
        /// The .kiln model.
        model: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a .kiln model on inputs and print the top-k classes.
    Run {
        /// The .kiln model.
        model: PathBuf,
        /// Inputs: .npy (one input or a batch [B, ...]), raw f32 .bin, or images.
        #[arg(short, long, num_args = 1.., required = true)]
        input: Vec<PathBuf>,
        #[command(flatten)]
        image: ImageArgs,
        /// How many classes to print per input.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// A text file with one class name per line.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Write all outputs (output 0, stacked) to this .npy file.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Accuracy, per-class precision/recall/F1 and confusion matrix on a labelled data set.
    Eval {
        /// The .kiln models (classifiers: output 0 holds one score per class), side by side.
        #[arg(num_args = 1.., required = true)]
        models: Vec<PathBuf>,
        /// Inputs as one .npy batch [N, ...].
        #[arg(short, long)]
        input: PathBuf,
        /// Labels as .npy [N] (integer class indices).
        #[arg(short, long)]
        labels: PathBuf,
        /// Class names, one per line.
        #[arg(long)]
        names: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the same inputs through tract (source model) and kiln; report errors per output.
    Verify {
        /// Source model (.onnx or .tflite).
        source: PathBuf,
        /// The converted model (default: convert the source now).
        #[arg(long)]
        kiln: Option<PathBuf>,
        /// Inputs (.npy batch); default: random inputs in [-1, 1].
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Number of random inputs.
        #[arg(long, default_value_t = 8)]
        samples: usize,
        /// Fail (exit 1) if any output's max relative error exceeds this.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct ImageArgs {
    /// Per-channel mean subtracted after scaling to [0, 1] (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    mean: Vec<f32>,
    /// Per-channel standard deviation (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    std: Vec<f32>,
    /// Keep pixel values in [0, 255] instead of scaling to [0, 1].
    #[arg(long)]
    no_scale: bool,
    /// Invert gray levels before normalizing.
    #[arg(long)]
    invert: bool,
}

fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad dimension '{d}' in shape '{s}'"))
        })
        .filter(|r| !matches!(r, Ok(0)))
        .collect()
}

/// Reads a `.kiln` file. A signed file is verified against `$KILN_TRUSTED_KEY` (a public key
/// file) when that is set, and read without verification otherwise (host tools; devices verify
/// with `kiln_runtime::signature::from_signed_bytes`).
fn load_model_bytes(path: &Path) -> Result<AlignedBuf> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let signed =
        bytes.len() > SIG_TRAILER && bytes[bytes.len() - SIG_TRAILER..].starts_with(b"KSIG");
    let bytes = if signed {
        if let Some(key) = std::env::var_os("KILN_TRUSTED_KEY") {
            let pk = read_key::<32>(Path::new(&key))?;
            let buf = AlignedBuf::new(&bytes);
            kiln_runtime::signature::from_signed_bytes(buf.as_slice(), &pk).map_err(|e| {
                anyhow!(
                    "{}: {e} (trusted key {})",
                    path.display(),
                    Path::new(&key).display()
                )
            })?;
        }
        bytes[..bytes.len() - SIG_TRAILER].to_vec()
    } else {
        bytes
    };
    let buf = AlignedBuf::new(&bytes);
    Model::from_bytes(buf.as_slice()).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(buf)
}

const SIG_TRAILER: usize = kiln_runtime::signature::TRAILER_LEN;

/// Reads a hex key file of `N` bytes.
fn read_key<const N: usize>(path: &Path) -> Result<[u8; N]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if hex.len() != 2 * N {
        bail!(
            "{}: expected {N} bytes of hex, found {} characters",
            path.display(),
            hex.len()
        );
    }
    let mut key = [0u8; N];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| anyhow!("{}: not hex", path.display()))?;
    }
    Ok(key)
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<String>() + "\n"
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Convert {
            model,
            output,
            input_shape,
            fp16,
            json,
        } => {
            let shapes = (!input_shape.is_empty()).then_some(input_shape.as_slice());
            let t0 = Instant::now();
            let mut g = kiln_converter::import_file_with(&model, shapes)?;
            if fp16 {
                kiln_converter::passes::fp16_weights::run(&mut g);
            }
            let (bytes, plan) = emit::emit(&g)?;
            let out = output.unwrap_or_else(|| model.with_extension("kiln"));
            fsutil::write_atomic(&out, &bytes)?;
            let buf = AlignedBuf::new(&bytes);
            let m = Model::from_bytes(buf.as_slice()).map_err(|e| anyhow!("{e}"))?;
            let r = inspect::report(&m);
            let src_len = std::fs::metadata(&model).map(|m| m.len()).unwrap_or(0);
            if json {
                println!(
                    "{}",
                    json!({"source": model, "output": out, "source_bytes": src_len, "bytes": bytes.len(),
                        "ops": r.layers.len(), "weight_bytes": r.weight_bytes, "arena_bytes": plan.arena_size,
                        "arena_lower_bound": plan.lower_bound, "macs": r.macs, "seconds": t0.elapsed().as_secs_f64()})
                );
            } else {
                println!(
                    "converted {} -> {}: {} ops, {} MACs, file {} bytes (source {}), arena {} bytes (lower bound {}), {:.2}s",
                    model.display(),
                    out.display(),
                    r.layers.len(),
                    r.macs,
                    bytes.len(),
                    src_len,
                    plan.arena_size,
                    plan.lower_bound,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        Cmd::Export {
            model,
            out,
            input,
            row,
        } => export_cmd(&model, &out, input.as_deref(), row)?,
        Cmd::Keygen { name } => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness for the key: {e}"))?;
            let (sk, pk) = kiln_runtime::signature::keypair_from_seed(&seed);
            let secret = name.with_extension("secret");
            let public = name.with_extension("pub");
            fsutil::write_atomic(&secret, to_hex(&sk).as_bytes())?;
            fsutil::write_atomic(&public, to_hex(&pk).as_bytes())?;
            println!(
                "wrote {} (secret) and {} (public)",
                secret.display(),
                public.display()
            );
        }
        Cmd::Sign { model, key, output } => {
            let sk = read_key::<64>(&key)?;
            let bytes =
                std::fs::read(&model).with_context(|| format!("reading {}", model.display()))?;
            let buf = AlignedBuf::new(&bytes);
            Model::from_bytes(buf.as_slice()).map_err(|e| anyhow!("{}: {e}", model.display()))?;
            let signed = kiln_runtime::signature::sign(&bytes, &sk).map_err(|e| anyhow!("{e}"))?;
            let out = output.unwrap_or_else(|| model.with_extension("signed.kiln"));
            fsutil::write_atomic(&out, &signed)?;
            println!(
                "signed {} -> {} (key id {})",
                model.display(),
                out.display(),
                to_hex(&sk[32..40]).trim()
            );
        }
        Cmd::CheckSignature { model, public } => {
            let pk = read_key::<32>(&public)?;
            let bytes =
                std::fs::read(&model).with_context(|| format!("reading {}", model.display()))?;
            let buf = AlignedBuf::new(&bytes);
            match kiln_runtime::signature::from_signed_bytes(buf.as_slice(), &pk) {
                Ok(m) => println!("{}: signature OK ({} ops)", model.display(), m.num_ops()),
                Err(e) => bail!("{}: {e}", model.display()),
            }
        }
        Cmd::Inspect { model, json } => {
            let buf = load_model_bytes(&model)?;
            let m = Model::from_bytes(buf.as_slice()).map_err(|e| anyhow!("{e}"))?;
            let r = inspect::report(&m);
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", inspect::render(&r));
            }
        }
        Cmd::Run {
            model,
            input,
            image,
            top_k,
            labels,
            save,
            json,
        } => {
            let buf = load_model_bytes(&model)?;
            let m = Model::from_bytes(buf.as_slice()).map_err(|e| anyhow!("{e}"))?;
            if m.num_inputs() != 1 {
                bail!(
                    "`kiln run` feeds one input; this model has {}",
                    m.num_inputs()
                );
            }
            let it = m.tensor(m.input_tensor(0).map_err(|e| anyhow!("{e}"))?);
            if it.dtype != DType::F32 {
                bail!(
                    "input '{}' is {}: only f32 inputs are fed by `kiln run` so far",
                    it.name,
                    it.dtype.name()
                );
            }
            let opts = ImageOpts {
                scale01: !image.no_scale,
                mean: image.mean,
                std: image.std,
                invert: image.invert,
            };
            let mut rows = Vec::new();
            for p in &input {
                rows.extend(input::load_batch(p, it.shape(), &opts)?);
            }
            let names: Vec<String> = match &labels {
                Some(p) => std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .lines()
                    .map(|s| s.trim().to_string())
                    .collect(),
                None => vec![],
            };
            let mut arena = AlignedBuf::zeroed(m.arena_size());
            let mut s = Session::new(&m, arena.as_mut_slice()).map_err(|e| anyhow!("{e}"))?;
            let mut all = Vec::new();
            let mut results = Vec::new();
            let t0 = Instant::now();
            for (i, row) in rows.iter().enumerate() {
                s.set_input_f32(0, row)
                    .map_err(|e| anyhow!("input #{i}: {e}"))?;
                s.invoke().map_err(|e| anyhow!("{e}"))?;
                let y = s.output_f32(0).map_err(|e| anyhow!("{e}"))?.to_vec();
                let mut idx: Vec<usize> = (0..y.len()).collect();
                idx.sort_by(|&a, &b| y[b].total_cmp(&y[a]));
                let top: Vec<(usize, f32)> = idx.iter().take(top_k).map(|&k| (k, y[k])).collect();
                results.push(top);
                all.extend(y);
            }
            let secs = t0.elapsed().as_secs_f64();
            if let Some(p) = save {
                let per = all.len() / rows.len().max(1);
                fsutil::write_atomic(&p, &npy::to_bytes_f32(&[rows.len(), per], &all))?;
            }
            let label = |k: usize| names.get(k).cloned().unwrap_or_else(|| k.to_string());
            if json {
                let v: Vec<_> = results
                    .iter()
                    .map(|t| {
                        t.iter()
                            .map(|&(k, p)| json!({"class": k, "label": label(k), "score": p}))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                println!("{}", json!({"results": v, "seconds": secs}));
            } else {
                for (i, t) in results.iter().enumerate() {
                    let s: Vec<String> = t
                        .iter()
                        .map(|&(k, p)| format!("{} {:.4}", label(k), p))
                        .collect();
                    println!("#{i}: {}", s.join(", "));
                }
                eprintln!(
                    "{} inference(s) in {:.3} ms each",
                    rows.len(),
                    secs * 1e3 / rows.len().max(1) as f64
                );
            }
        }
        Cmd::Quantize {
            model,
            calib,
            output,
            method,
            max_samples,
            int8_io,
            input_shape,
            image,
            json,
        } => quantize_cmd(QuantizeArgs {
            model,
            calib,
            output,
            method,
            max_samples,
            int8_io,
            input_shape,
            image,
            json,
        })?,
        Cmd::Eval {
            models,
            input,
            labels,
            names,
            json,
        } => {
            let mut results = Vec::new();
            for model in &models {
                results.push(eval_one(model, &input, &labels)?);
            }
            let names: Vec<String> = match names {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .lines()
                    .map(String::from)
                    .collect(),
                None => vec![],
            };
            if json {
                let v: Vec<_> = models
                    .iter()
                    .zip(&results)
                    .map(|(p, r)| json!({"model": p, "metrics": r.metrics, "seconds": r.seconds, "model_bytes": r.bytes, "arena_bytes": r.arena}))
                    .collect();
                println!("{}", if v.len() == 1 { v[0].clone() } else { json!(v) });
            } else if results.len() == 1 {
                let r = &results[0];
                print!("{}", eval::render(&r.metrics, &names));
                println!(
                    "{:.1} us per inference",
                    r.seconds * 1e6 / r.metrics.samples.max(1) as f64
                );
            } else {
                println!(
                    "{:<40} {:>9} {:>12} {:>12} {:>14}",
                    "model", "accuracy", "file bytes", "arena bytes", "us/inference"
                );
                for (p, r) in models.iter().zip(&results) {
                    println!(
                        "{:<40} {:>8.2}% {:>12} {:>12} {:>14.1}",
                        p.display().to_string(),
                        r.metrics.accuracy * 100.0,
                        r.bytes,
                        r.arena,
                        r.seconds * 1e6 / r.metrics.samples.max(1) as f64
                    );
                }
                let base = &results[0].metrics;
                for (p, r) in models.iter().zip(&results).skip(1) {
                    let agree = r
                        .predictions
                        .iter()
                        .zip(&results[0].predictions)
                        .filter(|(a, b)| a == b)
                        .count();
                    println!(
                        "{}: {:+.2} accuracy points vs {}; top-1 agrees on {agree}/{}",
                        p.display(),
                        (r.metrics.accuracy - base.accuracy) * 100.0,
                        models[0].display(),
                        r.predictions.len()
                    );
                }
            }
        }
        Cmd::Verify {
            source,
            kiln,
            input,
            samples,
            tolerance,
            json,
        } => {
            let bytes = match &kiln {
                Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
                None => kiln_converter::convert_file(&source)?,
            };
            let buf = AlignedBuf::new(&bytes);
            let m = Model::from_bytes(buf.as_slice()).map_err(|e| anyhow!("{e}"))?;
            let mut shapes = Vec::new();
            for k in 0..m.num_inputs() {
                shapes.push(
                    m.tensor(m.input_tensor(k).map_err(|e| anyhow!("{e}"))?)
                        .shape()
                        .to_vec(),
                );
            }
            let names: Vec<String> = (0..m.num_outputs())
                .map(|k| {
                    m.output_tensor(k)
                        .map(|t| m.tensor(t).name.to_string())
                        .unwrap_or_default()
                })
                .collect();
            let samples: Vec<Vec<Vec<f32>>> = match &input {
                Some(p) => {
                    if shapes.len() != 1 {
                        bail!("--input feeds one input; this model has {}", shapes.len());
                    }
                    input::load_batch(p, &shapes[0], &ImageOpts::default())?
                        .into_iter()
                        .map(|r| vec![r])
                        .collect()
                }
                None => verify::random_inputs(&shapes, samples, 0x1234_5678),
            };
            let want = verify::run_tract(&source, &shapes, &samples)?;
            let got = verify::run_kiln(&bytes, &samples)?;
            let errs = verify::compare(&names, &got, &want)?;
            let ok = errs.iter().all(|e| e.max_rel <= tolerance);
            if json {
                println!(
                    "{}",
                    json!({"samples": samples.len(), "outputs": errs, "tolerance": tolerance, "ok": ok})
                );
            } else {
                println!("{} input(s) through tract and kiln:", samples.len());
                for e in &errs {
                    println!(
                        "  {:<30} max abs {:.3e}  max rel {:.3e}",
                        e.name, e.max_abs, e.max_rel
                    );
                }
                println!("{}", if ok { "OK" } else { "MISMATCH" });
            }
            if !ok {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

struct EvalResult {
    metrics: eval::Metrics,
    predictions: Vec<usize>,
    seconds: f64,
    bytes: usize,
    arena: usize,
}

fn eval_one(model: &Path, input: &Path, labels: &Path) -> Result<EvalResult> {
    let buf = load_model_bytes(model)?;
    let m = Model::from_bytes(buf.as_slice()).map_err(|e| anyhow!("{e}"))?;
    let it = m.tensor(m.input_tensor(0).map_err(|e| anyhow!("{e}"))?);
    let rows = input::load_batch(input, it.shape(), &ImageOpts::default())?;
    let truth: Vec<usize> = npy::read(labels)?
        .data
        .iter()
        .map(|&v| {
            if v >= 0.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                Err(anyhow!("label {v} is not a class index"))
            }
        })
        .collect::<Result<_>>()?;
    if truth.len() != rows.len() {
        bail!("{} inputs but {} labels", rows.len(), truth.len());
    }
    let samples: Vec<Vec<Vec<f32>>> = rows.into_iter().map(|r| vec![r]).collect();
    let t0 = Instant::now();
    let outs = verify::run_kiln(buf.as_slice(), &samples)?;
    let seconds = t0.elapsed().as_secs_f64();
    let classes = outs.first().map_or(0, |o| o[0].len());
    let predictions: Vec<usize> = outs.iter().map(|o| eval::argmax(&o[0])).collect();
    let metrics = eval::metrics(&predictions, &truth, classes);
    Ok(EvalResult {
        metrics,
        predictions,
        seconds,
        bytes: buf.as_slice().len(),
        arena: m.arena_size(),
    })
}

struct QuantizeArgs {
    model: PathBuf,
    calib: Vec<PathBuf>,
    output: Option<PathBuf>,
    method: String,
    max_samples: usize,
    int8_io: bool,
    input_shape: Vec<Vec<usize>>,
    image: ImageArgs,
    json: bool,
}

/// A progress bar on stderr: redrawn in place on a terminal, every 10% otherwise.
fn progress_bar() -> impl FnMut(&str, usize, usize) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    move |stage: &str, done: usize, total: usize| {
        let width = 30;
        let filled = done * width / total.max(1);
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
        } else if done == total {
            eprintln!("{bar}");
        }
    }
}

fn quantize_cmd(a: QuantizeArgs) -> Result<()> {
    let method = kiln_quantize::calibrate::Method::parse(&a.method).ok_or_else(|| {
        anyhow!(
            "unknown --method '{}' (minmax, percentile[:P], entropy, mse)",
            a.method
        )
    })?;
    let shapes = (!a.input_shape.is_empty()).then_some(a.input_shape.as_slice());
    let g = kiln_converter::import_file_with(&a.model, shapes)?;
    if g.inputs.len() != 1 {
        bail!(
            "calibration feeds one input; this model has {}",
            g.inputs.len()
        );
    }
    let in_shape = g.tensors[g.inputs[0]].shape.clone();
    let opts = ImageOpts {
        scale01: !a.image.no_scale,
        mean: a.image.mean,
        std: a.image.std,
        invert: a.image.invert,
    };
    let mut rows = Vec::new();
    for p in &a.calib {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file())
                .collect();
            files.sort();
            for f in files {
                rows.extend(input::load_batch(&f, &in_shape, &opts)?);
            }
        } else {
            rows.extend(input::load_batch(p, &in_shape, &opts)?);
        }
    }
    rows.truncate(a.max_samples);
    if rows.is_empty() {
        bail!("no calibration samples in {:?}", a.calib);
    }
    let samples: Vec<Vec<Vec<f32>>> = rows.into_iter().map(|r| vec![r]).collect();
    let (float_bytes, _) = emit::emit(&g)?;
    let mut bar = progress_bar();
    let t0 = Instant::now();
    let res = kiln_converter::ptq::quantize(
        &g,
        &samples,
        &kiln_converter::ptq::PtqOptions {
            method,
            int8_io: a.int8_io,
        },
        &mut bar,
    )?;
    let (bytes, plan) = emit::emit(&res.graph)?;
    let out = a.output.unwrap_or_else(|| {
        let stem = a
            .model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        a.model.with_file_name(format!("{stem}_int8.kiln"))
    });
    fsutil::write_atomic(&out, &bytes)?;
    let float_ops = res.layers.iter().filter(|l| !l.int8).count();
    if a.json {
        println!(
            "{}",
            json!({"output": out, "method": a.method, "samples": samples.len(), "float_bytes": float_bytes.len(),
                "int8_bytes": bytes.len(), "arena_bytes": plan.arena_size, "float_ops": float_ops,
                "layers": res.layers, "seconds": t0.elapsed().as_secs_f64()})
        );
    } else {
        println!(
            "{:>3}  {:<10} {:<40} {:>6} {:>10}",
            "#", "op", "name", "dtype", "SQNR dB"
        );
        for (i, l) in res.layers.iter().enumerate() {
            let name: String = if l.name.chars().count() > 40 {
                format!("…{}", &l.name[l.name.len() - 39..])
            } else {
                l.name.clone()
            };
            let sq = if l.sqnr_db.is_nan() {
                "-".to_string()
            } else {
                format!("{:.1}", l.sqnr_db)
            };
            println!(
                "{i:>3}  {:<10} {:<40} {:>6} {:>10}",
                l.op,
                name,
                if l.int8 { "int8" } else { "f32" },
                sq
            );
        }
        println!(
            "quantized {} -> {}: {} calibration samples ({}), size {} -> {} bytes ({:.1}%), arena {} bytes, {} op(s) kept in float, {:.2}s",
            a.model.display(),
            out.display(),
            samples.len(),
            a.method,
            float_bytes.len(),
            bytes.len(),
            100.0 * bytes.len() as f64 / float_bytes.len() as f64,
            plan.arena_size,
            float_ops,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `kiln export`: model bytes + a generated Rust module for firmware.
fn export_cmd(model: &Path, out: &Path, input: Option<&Path>, row: usize) -> Result<()> {
    let buf = load_model_bytes(model)?;
    let m = Model::from_bytes(buf.as_slice()).map_err(|e| anyhow!("{e}"))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    fsutil::write_atomic(&out.join("model.kiln"), buf.as_slice())?;
    let it = m.tensor(m.input_tensor(0).map_err(|e| anyhow!("{e}"))?);
    let ot = m.tensor(m.output_tensor(0).map_err(|e| anyhow!("{e}"))?);
    let mut rs = format!(
        "// Generated by `kiln export {}`: do not edit.\n\
         /// Bytes of the model file.\npub const MODEL_LEN: usize = {};\n\
         /// Bytes of arena the model needs (`Model::arena_size()`), known at compile time.\npub const ARENA_SIZE: usize = {};\n\
         /// Bytes of input 0 ({} {:?}).\npub const INPUT_BYTES: usize = {};\n\
         /// Bytes of output 0 ({} {:?}).\npub const OUTPUT_BYTES: usize = {};\n\
         /// The model, 16-byte aligned as `Model::from_bytes` requires.\n\
         pub static MODEL: kiln_runtime::AlignedBytes<MODEL_LEN> = kiln_runtime::AlignedBytes(*include_bytes!(\"model.kiln\"));\n",
        model.display(),
        buf.as_slice().len(),
        m.arena_size(),
        it.dtype.name(),
        it.shape(),
        it.byte_len,
        ot.dtype.name(),
        ot.shape(),
        ot.byte_len
    );
    if let Some(p) = input {
        let arr = npy::read(p)?;
        let n = it.len();
        if arr.data.len() < (row + 1) * n {
            bail!("{}: no row {row} of {n} values", p.display());
        }
        let x = &arr.data[row * n..(row + 1) * n];
        let in_bytes: Vec<u8> = match it.dtype {
            DType::I8 => x.iter().map(|&v| v as i8 as u8).collect(),
            DType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
            d => bail!("inputs of type {} are not exported", d.name()),
        };
        let mut arena = AlignedBuf::zeroed(m.arena_size());
        let mut s = Session::new(&m, arena.as_mut_slice()).map_err(|e| anyhow!("{e}"))?;
        s.input_bytes_mut(0)
            .map_err(|e| anyhow!("{e}"))?
            .copy_from_slice(&in_bytes);
        s.invoke().map_err(|e| anyhow!("{e}"))?;
        let expected = s.output_bytes(0).map_err(|e| anyhow!("{e}"))?.to_vec();
        fsutil::write_atomic(&out.join("input.bin"), &in_bytes)?;
        fsutil::write_atomic(&out.join("expected.bin"), &expected)?;
        rs.push_str(
            "/// The recorded input.\npub static INPUT: [u8; INPUT_BYTES] = *include_bytes!(\"input.bin\");\n\
             /// The host runtime's output on `INPUT`, to compare bit for bit.\n\
             pub static EXPECTED: [u8; OUTPUT_BYTES] = *include_bytes!(\"expected.bin\");\n",
        );
    }
    fsutil::write_atomic(&out.join("model.rs"), rs.as_bytes())?;
    println!(
        "exported {} -> {}: model {} bytes, arena {} bytes{}",
        model.display(),
        out.display(),
        buf.as_slice().len(),
        m.arena_size(),
        if input.is_some() {
            ", with a recorded input and the expected output"
        } else {
            ""
        }
    );
    Ok(())
}
