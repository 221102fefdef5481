//! # kiln-converter
//!
//! Imports ONNX (through `tract-onnx`) and TFLite (a direct reader of the official schema)
//! models into kiln's graph, runs the optimization passes, plans the arena and writes `.kiln`
//! files. The `kiln` binary is the command-line front end.
#![forbid(unsafe_code)]
// Index loops over parallel arrays (shapes, strides, per-axis params) read better than zips.
#![allow(clippy::needless_range_loop)]

pub mod bench;
pub mod emit;
pub mod eval;
pub mod finetune;
pub mod fsutil;
pub mod input;
pub mod inspect;
pub mod ir;
pub mod lut;
pub mod npy;
pub mod onnx;
pub mod onnx_ml;
pub mod onnx_qop;
pub mod passes;
pub mod plan;
pub mod prune;
mod prune_ls;
pub mod prune_sweep;
pub mod ptq;
pub mod rnn;
pub mod tflite;
pub mod verify;

use anyhow::{bail, Context, Result};
use std::path::Path;

/// Source model formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// ONNX protobuf.
    Onnx,
    /// TFLite flatbuffer.
    Tflite,
}

/// Guesses the format from the extension, then from the content.
pub fn detect_format(path: &Path, bytes: &[u8]) -> Result<SourceFormat> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
    {
        Some(e) if e == "onnx" => return Ok(SourceFormat::Onnx),
        Some(e) if e == "tflite" => return Ok(SourceFormat::Tflite),
        _ => {}
    }
    if bytes.len() >= 8 && &bytes[4..8] == b"TFL3" {
        return Ok(SourceFormat::Tflite);
    }
    if bytes.first() == Some(&0x08) {
        return Ok(SourceFormat::Onnx);
    }
    bail!(
        "{}: cannot tell the model format (expected .onnx or .tflite)",
        path.display()
    )
}

/// Imports and optimizes a model file into a kiln graph.
pub fn import_file(path: &Path) -> Result<ir::Graph> {
    import_file_with(path, None)
}

/// As [`import_file`], with explicit input shapes (ONNX models with symbolic dims).
pub fn import_file_with(path: &Path, input_shapes: Option<&[Vec<usize>]>) -> Result<ir::Graph> {
    let bytes = fsutil::read_file(path)?;
    let mut g = match detect_format(path, &bytes)? {
        SourceFormat::Tflite => {
            if input_shapes.is_some() {
                bail!("--input-shape applies to ONNX models; TFLite shapes are fixed in the file");
            }
            tflite::import(&bytes)
        }
        SourceFormat::Onnx => onnx::import_with(path, input_shapes),
    }
    .with_context(|| format!("importing {}", path.display()))?;
    passes::optimize(&mut g)?;
    if g.source_weights == ir::SourceWeights::Fp16 {
        // The source's weights were half floats: storing them so again loses nothing.
        passes::fp16_weights::run(&mut g);
    }
    if !g.act_quant.is_empty() {
        // A quantized (QDQ) source: run it in int8 with its own parameters.
        g = ptq::lower_with_hints(&g)
            .with_context(|| format!("lowering {} to int8", path.display()))?;
    }
    g.check()
        .with_context(|| format!("importing {}", path.display()))?;
    Ok(g)
}

/// Imports, optimizes and serializes a model file.
pub fn convert_file(path: &Path) -> Result<Vec<u8>> {
    let g = import_file(path)?;
    Ok(emit::emit(&g)?.0)
}
