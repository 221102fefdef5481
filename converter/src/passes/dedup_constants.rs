//! Identical constants stored once: every op reading a constant whose dtype, shape,
//! quantization and bytes equal an earlier constant's reads that one instead (the copies are
//! then unused and not written). Unrolled recurrent layers read the same weights at every time
//! step, and their int8 form repeats the same 256-byte tables; a file should hold each once.

use crate::ir::{Graph, TId};
use std::collections::HashMap;

/// Rewrites op inputs to the first of each group of identical constants; returns how many
/// inputs were redirected.
pub fn run(g: &mut Graph) -> usize {
    let mut first: HashMap<(String, Vec<usize>, String, Vec<u8>), TId> = HashMap::new();
    let mut canon: HashMap<TId, TId> = HashMap::new();
    for (t, tensor) in g.tensors.iter().enumerate() {
        let Some(data) = &tensor.data else {
            continue;
        };
        let key = (
            format!("{:?}", tensor.dtype),
            tensor.shape.clone(),
            format!("{:?}", tensor.quant),
            data.to_bytes(),
        );
        let c = *first.entry(key).or_insert(t);
        if c != t {
            canon.insert(t, c);
        }
    }
    let mut redirected = 0;
    for n in &mut g.nodes {
        for i in n.inputs.iter_mut().flatten() {
            if let Some(&c) = canon.get(i) {
                *i = c;
                redirected += 1;
            }
        }
    }
    redirected
}
