//! `kiln convert`.

use super::common::not_the_source;
use anyhow::Result;
use kiln_converter::ir::SourceWeights;
use kiln_converter::{emit, fsutil, inspect};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::Model;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Imports `model`, writes the `.kiln` file and prints a summary.
pub fn run(
    model: &Path,
    output: Option<PathBuf>,
    input_shape: &[Vec<usize>],
    fp16: bool,
    json: bool,
) -> Result<()> {
    let shapes = (!input_shape.is_empty()).then_some(input_shape);
    let out = output.unwrap_or_else(|| model.with_extension("kiln"));
    not_the_source(&out, model)?;
    let t0 = Instant::now();
    let mut g = kiln_converter::import_file_with(model, shapes)?;
    match g.source_weights {
        SourceWeights::Fp16 => eprintln!(
            "note: {} stores its weights as float16; kiln keeps them so (no rounding: they \
             were half floats already)",
            model.display()
        ),
        SourceWeights::Int8DynamicRange => {
            eprintln!(
            "note: {} is a dynamic-range model (int8 weights, float activations): kiln runs it \
             in float with every weight dequantized exactly, so its weights take four times \
             the bytes. --fp16 halves that (each weight rounded to 11 significant bits); \
             `kiln quantize` on the float model gives a full int8 model, the smallest and \
             fastest{}",
            model.display(),
            if fp16 { " (--fp16 given: half floats)" } else { "" }
        )
        }
        SourceWeights::Float => {}
    }
    if fp16 {
        kiln_converter::passes::fp16_weights::run(&mut g);
    }
    let (bytes, plan) = emit::emit(&g)?;
    fsutil::write_atomic(&out, &bytes)?;
    let buf = AlignedBuf::new(&bytes);
    let m = Model::from_bytes(buf.as_slice())?;
    let r = inspect::report(&m);
    let src_len = std::fs::metadata(model).map(|m| m.len()).unwrap_or(0);
    if json {
        outln!(
            "{}",
            json!({"source": model, "output": out, "source_bytes": src_len, "bytes": bytes.len(),
                "ops": r.layers.len(), "weight_bytes": r.weight_bytes, "arena_bytes": plan.arena_size,
                "arena_lower_bound": plan.lower_bound, "macs": r.macs, "seconds": t0.elapsed().as_secs_f64()})
        );
    } else {
        outln!(
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
    Ok(())
}
