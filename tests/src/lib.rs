//! Shared helpers for kiln's integration tests.
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{Model, Session};
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Number of ops of `g` whose first input is int8, i.e. that run an int8 kernel.
pub fn int8_op_count(g: &kiln_converter::ir::Graph) -> usize {
    g.nodes
        .iter()
        .filter(|n| {
            n.inputs
                .first()
                .copied()
                .flatten()
                .is_some_and(|t| g.tensors[t].dtype == kiln_runtime::DType::I8)
        })
        .count()
}

/// A data directory named by the environment variable `var`, or `default` (relative to the
/// workspace) when it is unset. When the variable is set the directory must hold `marker`
/// (tests fail rather than skip); when unset, `None` means "not available on this machine".
pub fn data_dir(var: &str, default: &str, marker: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(
                p.join(marker).is_file(),
                "{var}={} is set but holds no {marker}",
                p.display()
            );
            Some(p)
        }
        None => {
            let p = workspace().join(default);
            p.join(marker).is_file().then_some(p)
        }
    }
}

/// `../shared/assets`, or `$KILN_ASSETS` (see [`data_dir`]).
pub fn assets() -> Option<PathBuf> {
    data_dir("KILN_ASSETS", "../shared/assets", "MANIFEST.md")
}

/// Runs a `.kiln` model on one f32 input and returns output 0.
pub fn run_f32(bytes: &[u8], input: &[f32]) -> Result<Vec<f32>> {
    let buf = AlignedBuf::new(bytes);
    let model = Model::from_bytes(buf.as_slice()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut arena = AlignedBuf::zeroed(model.arena_size());
    let mut s = Session::new(&model, arena.as_mut_slice()).map_err(|e| anyhow::anyhow!("{e}"))?;
    s.set_input_f32(0, input)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    s.invoke().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(s.output_f32(0)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_vec())
}

/// `max |a - b| / max |b|`: the error measure used against reference engines.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Loads an `.npy` file with context.
pub fn npy(path: &Path) -> Result<kiln_converter::npy::NpyArray> {
    if !path.is_file() {
        bail!("missing test data {}", path.display());
    }
    kiln_converter::npy::read(path).with_context(|| format!("loading {}", path.display()))
}

/// Runs a `.kiln` model on one int8 input and returns output 0 as int8.
pub fn run_i8(bytes: &[u8], input: &[i8]) -> Result<Vec<i8>> {
    run_i8_multi(bytes, &[input.to_vec()])
}

/// Runs a `.kiln` model on int8 inputs (one per graph input) and returns output 0 as int8.
pub fn run_i8_multi(bytes: &[u8], inputs: &[Vec<i8>]) -> Result<Vec<i8>> {
    let buf = AlignedBuf::new(bytes);
    let model = Model::from_bytes(buf.as_slice()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut arena = AlignedBuf::zeroed(model.arena_size());
    let mut s = Session::new(&model, arena.as_mut_slice()).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (k, input) in inputs.iter().enumerate() {
        let dst = s.input_bytes_mut(k).map_err(|e| anyhow::anyhow!("{e}"))?;
        if dst.len() != input.len() {
            bail!(
                "model input {k} has {} bytes, sample {}",
                dst.len(),
                input.len()
            );
        }
        for (d, &v) in dst.iter_mut().zip(input) {
            *d = v as u8;
        }
    }
    s.invoke().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(s.output_bytes(0)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .iter()
        .map(|&b| b as i8)
        .collect())
}
