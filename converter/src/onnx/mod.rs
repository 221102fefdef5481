//! ONNX import through `tract-onnx`: the model is loaded, made concrete (symbolic dims set to 1
//! unless given), typed and decluttered by tract (which folds constant shape arithmetic), then
//! each tract core op is mapped to kiln ops.
//!
//! Layout: ONNX graphs are NCHW, kiln kernels NHWC. Every activation carries a *physical
//! permutation* of its logical (ONNX) axes; transposes in the source graph only change that
//! permutation, and a real transpose op is emitted only where an op needs another layout (a
//! reshape across permuted axes, or a graph output).

mod einsum;
mod layout;
mod load;
mod lower;
mod recurrent;

use layout::identity;
pub use load::{load_typed, SourceOps};
use lower::unsupported_reason;

use crate::ir::{Graph, Node, TId};
use anyhow::{anyhow, bail, Context, Result};
use kiln_runtime::ops::{OpParams, UnaryKind, UnaryParams};
use kiln_runtime::DType;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::source::TypedSource;

/// Imports an ONNX file into a kiln graph.
pub fn import(path: &Path) -> Result<Graph> {
    import_with(path, None)
}

/// Imports an ONNX file with explicit input shapes.
pub fn import_with(path: &Path, input_shapes: Option<&[Vec<usize>]>) -> Result<Graph> {
    let model = load_typed(path, input_shapes)?;
    from_typed_named(&model, &SourceOps::read(path))
}

#[derive(Clone, Debug)]
enum Val {
    Const(Arc<Tensor>),
    /// The int8 quantization of f32 outlet `src` (an ONNX QuantizeLinear), not materialized:
    /// a following DequantizeLinear turns it back into `src` (a fake-quantize pair).
    QuantOf {
        src: OutletId,
        scale: f32,
        zero_point: i32,
    },
    /// An activation: kiln tensor `tid`, whose physical axis `i` is logical axis `perm[i]`.
    Act {
        tid: TId,
        perm: Vec<usize>,
    },
}

struct Imp<'t> {
    model: &'t TypedModel,
    g: Graph,
    vals: HashMap<OutletId, Val>,
    layouts: HashMap<(OutletId, Vec<usize>), TId>,
}

/// Converts a typed, decluttered tract model.
pub fn from_typed(model: &TypedModel) -> Result<Graph> {
    from_typed_named(model, &SourceOps::default())
}

/// Converts a typed, decluttered tract model; errors name each node's op as the source file
/// wrote it (`ConvTranspose`, not tract's `Deconv`), where `sources` knows it.
pub fn from_typed_named(model: &TypedModel, sources: &SourceOps) -> Result<Graph> {
    let order = model.eval_order().map_err(|e| anyhow!("{e:?}"))?;
    let unsupported: Vec<String> = order
        .iter()
        .filter_map(|&n| {
            let node = &model.nodes()[n];
            unsupported_reason(model, node).map(|_| sources.describe(node))
        })
        .collect();
    if !unsupported.is_empty() {
        bail!(
            "unsupported ops ({}):\n  {}",
            unsupported.len(),
            unsupported.join("\n  ")
        );
    }
    let mut imp = Imp {
        model,
        g: Graph::default(),
        vals: HashMap::new(),
        layouts: HashMap::new(),
    };
    let inputs = model
        .input_outlets()
        .map_err(|e| anyhow!("{e:?}"))?
        .to_vec();
    for o in &inputs {
        let shape = imp.shape(*o)?;
        let dt = model
            .outlet_fact(*o)
            .map_err(|e| anyhow!("{e:?}"))?
            .datum_type;
        let kdt = if dt == f32::datum_type() {
            DType::F32
        } else if dt == i8::datum_type() {
            DType::I8 // quantization set by the DequantizeLinear that reads it
        } else {
            bail!(
                "input '{}' is {dt:?}: only f32 and int8 inputs are supported",
                model.node(o.node).name
            );
        };
        let tid = imp
            .g
            .add_tensor(model.node(o.node).name.clone(), kdt, shape.clone());
        imp.g.inputs.push(tid);
        imp.vals.insert(
            *o,
            Val::Act {
                tid,
                perm: identity(shape.len()),
            },
        );
    }
    for &n in &order {
        let node = &model.nodes()[n];
        if node.op.downcast_ref::<TypedSource>().is_some() {
            continue;
        }
        imp.node(node)
            .with_context(|| format!("converting {}", sources.describe(node)))?;
    }
    let outputs = model
        .output_outlets()
        .map_err(|e| anyhow!("{e:?}"))?
        .to_vec();
    for o in outputs {
        let r = imp.shape(o)?.len();
        if matches!(imp.vals.get(&o), Some(Val::Const(_))) {
            bail!(
                "output '{}' is a constant: nothing to compute",
                model.node(o.node).name
            );
        }
        let mut tid = imp.act(o, &identity(r))?;
        if imp.g.inputs.contains(&tid) || imp.g.outputs.contains(&tid) {
            let name = format!("{}.out", imp.g.tensors[tid].name);
            let copy = imp
                .g
                .add_tensor(name.clone(), DType::F32, imp.g.tensors[tid].shape.clone());
            imp.g.push(Node::new(
                name,
                OpParams::Unary(UnaryParams::new(UnaryKind::Identity)),
                vec![Some(tid)],
                vec![copy],
            ));
            tid = copy;
        }
        let oname = model
            .outlet_label(o)
            .map(|s| s.to_string())
            .unwrap_or_else(|| model.node(o.node).name.clone());
        imp.g.tensors[tid].name = oname;
        imp.g.outputs.push(tid);
    }
    imp.g.check()?;
    Ok(imp.g)
}

#[cfg(test)]
mod tests {
    use super::layout::permute;

    #[test]
    fn permute_nchw_to_nhwc() {
        // [1, 2, 2, 2] NCHW -> NHWC
        let data: Vec<u32> = (0..8).collect();
        let (phys, out) = permute(&[1, 2, 2, 2], &data, &[0, 2, 3, 1]);
        assert_eq!(phys, vec![1, 2, 2, 2]);
        assert_eq!(out, vec![0, 4, 1, 5, 2, 6, 3, 7]);
    }
}
