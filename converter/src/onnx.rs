//! ONNX import (placeholder while the TFLite path is brought up).
use anyhow::{bail, Result};
use std::path::Path;
/// Imports an ONNX file.
pub fn import(_path: &Path) -> Result<crate::ir::Graph> {
    bail!("todo")
}
