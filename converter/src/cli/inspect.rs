//! `kiln inspect`.

use super::common::{load_model_bytes, open_model};
use anyhow::Result;
use kiln_converter::inspect;
use std::path::Path;

/// Prints the per-layer table (or JSON) of a `.kiln` file; the model is validated once.
pub fn run(model: &Path, json: bool) -> Result<()> {
    let buf = load_model_bytes(model)?;
    let m = open_model(&buf, model)?;
    let r = inspect::report(&m);
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        outln!("{}", inspect::render(&r).trim_end());
    }
    Ok(())
}
