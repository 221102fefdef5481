//! `kiln`: convert, quantize, inspect, run, evaluate, verify, export and sign edge models.
//!
//! One file per command under `cli/`. Exit status: 0 success, 1 an error (with a message that
//! names the file, op, tensor, dtype or shape), 2 bad arguments (from clap).
#![forbid(unsafe_code)]

/// `println!` that survives a closed pipe (see [`cli::common::out`]).
macro_rules! outln {
    ($($t:tt)*) => { $crate::cli::common::out(format_args!($($t)*)) };
}

mod cli;

use clap::{Parser, Subcommand};
use cli::common::parse_shape;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Edge inference: convert, quantize, inspect, run, evaluate, verify and export models"
)]
struct Cli {
    /// Largest file kiln reads, in bytes (default 1 GiB).
    #[arg(long, global = true, value_name = "BYTES")]
    max_file_size: Option<u64>,
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
    Quantize(cli::quantize::QuantizeArgs),
    /// Structured pruning: remove whole conv channels and dense units (by filter norm) to a
    /// weight sparsity, refit the next layers by least squares on calibration inputs.
    Prune(cli::prune::PruneArgs),
    /// Export a .kiln model for firmware: the model file, a Rust module with its sizes as
    /// constants (arena included), and optionally a recorded input with the host's output.
    Export(cli::export::ExportArgs),
    /// Make an ed25519 key pair: <NAME>.secret (keep it, mode 0600) and <NAME>.pub (give it to
    /// devices). Existing key files are never overwritten.
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
    /// Print a per-layer table of a .kiln file, with its format version and the scale and zero
    /// point of int8 inputs and outputs.
    Inspect {
        /// The .kiln model.
        model: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a .kiln model on inputs and print the top-k classes.
    Run(cli::run::RunArgs),
    /// Accuracy, per-class precision/recall/F1 and confusion matrix on a labelled data set.
    Eval(cli::eval::EvalArgs),
    /// Time a model: median/p10/p90 latency and a per-layer table (or tract on the ONNX model).
    Bench(cli::bench::BenchArgs),
    /// Run the same inputs through a reference engine (tract for ONNX, LiteRT's reference
    /// kernels for TFLite) and kiln; report errors per output (int8 outputs in LSBs).
    Verify(cli::verify::VerifyArgs),
    /// Fine-tune a model's last dense layers on labelled data (the runtime's on-device
    /// trainer), with a held-out split and early stopping; writes a new model file.
    Finetune(Box<cli::finetune::FinetuneArgs>),
}

fn main() {
    let cli = Cli::parse();
    if let Some(cap) = cli.max_file_size {
        kiln_converter::fsutil::set_max_read(cap);
    }
    let res = match cli.cmd {
        Cmd::Convert {
            model,
            output,
            input_shape,
            fp16,
            json,
        } => cli::convert::run(&model, output, &input_shape, fp16, json),
        Cmd::Quantize(a) => cli::quantize::run(a),
        Cmd::Prune(a) => cli::prune::run(a),
        Cmd::Export(a) => cli::export::run(a),
        Cmd::Keygen { name } => cli::keys::keygen(&name),
        Cmd::Sign { model, key, output } => cli::keys::sign(&model, &key, output),
        Cmd::CheckSignature { model, public } => cli::keys::check(&model, &public),
        Cmd::Inspect { model, json } => cli::inspect::run(&model, json),
        Cmd::Run(a) => cli::run::run(a),
        Cmd::Eval(a) => cli::eval::run(a),
        Cmd::Verify(a) => cli::verify::run(a),
        Cmd::Bench(a) => cli::bench::run(a),
        Cmd::Finetune(a) => cli::finetune::run(*a),
    };
    if let Err(e) = res {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
