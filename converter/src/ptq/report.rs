//! The per-layer error report: the same samples through the float and the int8 model, each
//! layer's output compared (SQNR).

use super::builder::Builder;
use super::calibrate::{inverse, observe};
use super::LayerError;
use crate::emit::emit_mapped;
use crate::ir::{Graph, TId};
use anyhow::Result;
use kiln_quantize::calibrate::sqnr_db;
use std::collections::{HashMap, HashSet};

/// SQNR of every float layer's output against its int8 counterpart, on at most 64 samples.
pub(super) fn layer_errors(
    g: &Graph,
    bytes: &[u8],
    file_to_graph: &HashMap<usize, TId>,
    graph: &Graph,
    q: &Builder,
    samples: &[Vec<Vec<f32>>],
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<LayerError>> {
    let (qbytes, _, qremap) = emit_mapped(graph)?;
    let qfile_to_graph = inverse(&qremap);
    let report_samples = &samples[..samples.len().min(64)];
    let mut float_vals: HashMap<(usize, TId), Vec<f32>> = HashMap::new();
    let wanted: HashSet<TId> = q.int8_of.keys().copied().collect();
    observe(
        bytes,
        file_to_graph,
        report_samples,
        |i, t, v| {
            if wanted.contains(&t) {
                float_vals.insert((i, t), v.to_vec());
            }
        },
        &mut |d, n| progress("measuring error", d, 2 * n),
    )?;
    let back: HashMap<TId, TId> = q.int8_of.iter().map(|(&f, &i)| (i, f)).collect();
    let mut acc: HashMap<TId, (Vec<f32>, Vec<f32>)> = HashMap::new();
    let n = report_samples.len();
    observe(
        &qbytes,
        &qfile_to_graph,
        report_samples,
        |i, t, v| {
            if let Some(&orig) = back.get(&t) {
                if let Some(fv) = float_vals.get(&(i, orig)) {
                    let e = acc.entry(orig).or_default();
                    e.0.extend_from_slice(fv);
                    e.1.extend_from_slice(v);
                }
            }
        },
        &mut |d, _| progress("measuring error", n + d, 2 * n),
    )?;
    let mut layers = Vec::new();
    for node in &g.nodes {
        let t = node.outputs[0];
        let int8 = q.int8_nodes.contains(&t);
        let sqnr = acc.get(&t).map_or(f64::NAN, |(r, x)| sqnr_db(r, x));
        layers.push(LayerError {
            name: node.name.clone(),
            op: node.kind().name().into(),
            int8,
            why_float: (!int8).then(|| {
                q.why_float
                    .get(&t)
                    .copied()
                    .unwrap_or("no int8 kernel")
                    .to_string()
            }),
            sqnr_db: sqnr,
        });
    }
    Ok(layers)
}
