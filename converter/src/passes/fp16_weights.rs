//! Stores the weights of float convolutions and dense layers as IEEE half floats (`half`):
//! half the weight bytes; the runtime widens them to f32 as it reads them.

use crate::ir::{Data, Graph};
use kiln_runtime::{DType, OpKind};

/// Runs the pass; returns how many weight tensors were converted.
pub fn run(g: &mut Graph) -> usize {
    let mut converted = 0;
    for i in 0..g.nodes.len() {
        if !matches!(g.nodes[i].kind(), OpKind::Conv2d | OpKind::Dense) {
            continue;
        }
        let Some(wt) = g.nodes[i].input(1) else {
            continue;
        };
        let Some(w) = g.const_f32(wt) else { continue };
        if g.nodes[i]
            .input(0)
            .is_none_or(|x| g.tensors[x].dtype != DType::F32)
        {
            continue;
        }
        let bytes: Vec<u8> = w
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let name = format!("{}.weights_f16", g.nodes[i].name);
        let shape = g.tensors[wt].shape.clone();
        let id = g.add_tensor(name, DType::F16, shape);
        g.tensors[id].data = Some(Data::Raw(bytes));
        g.nodes[i].inputs[1] = Some(id);
        converted += 1;
    }
    converted
}
