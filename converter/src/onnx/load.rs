//! Loading: tract reads the protobuf (its panics caught), input shapes are made concrete, and
//! the model is typed and decluttered with the QDQ pairs kept (so int8 can be recovered).

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::quant::DequantizeLinearF32;
use tract_onnx::tract_core::optim::{Optimizer, OptimizerSession, TypedPass};
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

/// Loads an ONNX file as tract's typed, decluttered model with concrete input shapes.
/// `input_shapes` overrides the shape of each input; otherwise symbolic dims become 1.
///
/// tract's ONNX reader can panic on malformed protobufs (found by the `onnx_import` fuzz
/// target: a graph input whose name is missing from its value table). The panic is caught here
/// and returned as an error, so a bad file never takes the caller down.
pub fn load_typed(path: &Path, input_shapes: Option<&[Vec<usize>]>) -> Result<TypedModel> {
    match std::panic::catch_unwind(|| load_typed_inner(path, input_shapes)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            bail!(
                "{}: tract panicked while reading the ONNX file ({msg}); the file is malformed",
                path.display()
            )
        }
    }
}

pub(super) fn load_typed_inner(
    path: &Path,
    input_shapes: Option<&[Vec<usize>]>,
) -> Result<TypedModel> {
    let onnx = tract_onnx::onnx();
    let mut proto = onnx
        .proto_model_for_path(path)
        .map_err(|e| anyhow!("{e:?}"))
        .context("tract could not parse the ONNX file")?;
    check_single_writer(&proto)?;
    // QOperator models (QLinearConv, ...) become their QDQ equivalent first.
    if crate::onnx_qop::needs_rewrite(&proto) {
        crate::onnx_qop::rewrite(&mut proto)?;
    }
    // scikit-learn exports (skl2onnx): the ai.onnx.ml wrappers tract cannot read.
    if crate::onnx_ml::needs_rewrite(&proto) {
        for note in crate::onnx_ml::rewrite(&mut proto)? {
            eprintln!("note: {note}");
        }
    }
    // Symbolic input dims become concrete below; value_info annotations that still carry the
    // symbol (onnxruntime's pre-processing writes them) would then contradict the inference.
    let onnx = onnx.with_ignore_value_info(has_symbolic_input(&proto));
    let dir = path.parent().and_then(|d| d.to_str());
    let parsed = onnx
        .parse(&proto, dir)
        .map_err(|e| anyhow!("{e:?}"))
        .context("tract could not parse the ONNX file")?;
    if !parsed.unresolved_inputs.is_empty() {
        bail!(
            "the graph uses values nothing produces: {}",
            parsed.unresolved_inputs.join(", ")
        );
    }
    let mut model = parsed.model;
    // tract names an op it cannot read `Unimplemented(Attention)`: report the ONNX name.
    let unimplemented: Vec<String> = model
        .nodes()
        .iter()
        .filter(|n| n.op.name().contains("Unimplemented"))
        .map(|n| {
            let name = n.op.name();
            let op = name
                .strip_prefix("Unimplemented(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or(&name);
            format!("{op} (node '{}')", n.name)
        })
        .collect();
    if !unimplemented.is_empty() {
        bail!(
            "unsupported ONNX ops, tract cannot read them ({}):\n  {}",
            unimplemented.len(),
            unimplemented.join("\n  ")
        );
    }
    for i in 0..model.inputs.len() {
        let f = model.input_fact(i).map_err(|e| anyhow!("{e:?}"))?.clone();
        let dims: Vec<usize> = match input_shapes.and_then(|s| s.get(i)) {
            Some(s) => s.clone(),
            None => f
                .shape
                .dims()
                .map(|d| d.concretize().and_then(|d| d.to_usize().ok()).unwrap_or(1))
                .collect(),
        };
        let dt = f.datum_type.concretize().unwrap_or(f32::datum_type());
        model
            .set_input_fact(i, InferenceFact::dt_shape(dt, dims))
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    let mut typed = model
        .into_typed()
        .map_err(|e| anyhow!("{e:?}"))
        .context("tract could not type the model")?;
    // tract's usual declutter, except that a DequantizeLinear keeps its own identity: tract would
    // otherwise fold `dequantize -> op -> quantize` chains into lookup tables (even around a
    // softmax), while kiln lowers QDQ pairs to int8 kernels itself.
    let mut opt = Optimizer::declutter();
    for pass in opt.passes.iter_mut() {
        if format!("{pass:?}") == "declutter" {
            *pass = Box::new(DeclutterKeepingQdq(0));
        }
    }
    opt.optimize(&mut typed)
        .map_err(|e| anyhow!("{e:?}"))
        .context("tract could not declutter the model")?;
    Ok(typed)
}

/// The op type the ONNX file gives each node, by node name and by output name, so that errors
/// about a tract node name the op the user wrote.
#[derive(Clone, Debug, Default)]
pub struct SourceOps(std::collections::HashMap<String, String>);

impl SourceOps {
    /// The op types of the ONNX file at `path` (none if it cannot be read: errors then name
    /// tract's ops).
    pub fn read(path: &Path) -> SourceOps {
        let mut map = std::collections::HashMap::new();
        let proto = tract_onnx::onnx().proto_model_for_path(path);
        if let Ok(g) = proto.as_ref().map(|p| &p.graph) {
            for n in g.iter().flat_map(|g| &g.node) {
                for key in std::iter::once(&n.name).chain(&n.output) {
                    if !key.is_empty() {
                        map.entry(key.clone()).or_insert_with(|| n.op_type.clone());
                    }
                }
            }
        }
        SourceOps(map)
    }

    /// The ONNX op a tract node comes from: its name, or the longest prefix of it before a
    /// `.` (tract names the nodes it expands an op into `<node>.<part>`).
    pub fn source_of(&self, tract_name: &str) -> Option<&str> {
        let mut name = tract_name;
        loop {
            if let Some(op) = self.0.get(name) {
                return Some(op);
            }
            name = &name[..name.rfind('.')?];
        }
    }

    /// `ConvTranspose (node 'y', tract's Deconv)`, or `Deconv (node 'y')` when the source op is
    /// unknown or has tract's name.
    pub fn describe(&self, node: &TypedNode) -> String {
        let tract = node.op.name();
        match self.source_of(&node.name) {
            Some(op) if op != tract => format!("{op} (node '{}', tract's {tract})", node.name),
            _ => format!("{tract} (node '{}')", node.name),
        }
    }
}

/// ONNX graphs are in SSA form: every value has one writer (a graph input, an initializer or
/// one node output). onnxruntime refuses a graph that breaks this; so does kiln, naming both.
pub(super) fn check_single_writer(proto: &tract_onnx::pb::ModelProto) -> Result<()> {
    let Some(g) = &proto.graph else {
        return Ok(());
    };
    let mut writer: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for i in &g.input {
        writer.insert(i.name.as_str(), "the graph input".into());
    }
    for n in &g.node {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            let me = format!("node '{}' ({})", n.name, n.op_type);
            if let Some(first) = writer.insert(o.as_str(), me.clone()) {
                bail!("value '{o}' is written twice: by {first} and by {me} (an ONNX graph gives every value one writer)");
            }
        }
    }
    Ok(())
}

/// Whether a graph input has a symbolic (named) dimension.
pub(super) fn has_symbolic_input(proto: &tract_onnx::pb::ModelProto) -> bool {
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value as Dim, type_proto::Value};
    let Some(g) = &proto.graph else { return false };
    g.input.iter().any(|i| {
        let Some(Value::TensorType(t)) = i.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return false;
        };
        t.shape.as_ref().is_some_and(|s| {
            s.dim
                .iter()
                .any(|d| matches!(d.value, Some(Dim::DimParam(_))))
        })
    })
}

/// tract's per-op declutter pass, skipping `DequantizeLinearF32` nodes.
#[derive(Clone, Debug)]
struct DeclutterKeepingQdq(usize);

impl TypedPass for DeclutterKeepingQdq {
    fn reset(&mut self) -> TractResult<()> {
        self.0 = 0;
        Ok(())
    }

    fn next(
        &mut self,
        session: &mut OptimizerSession,
        model: &TypedModel,
    ) -> TractResult<Option<TypedModelPatch>> {
        for node in &model.nodes()[self.0.min(model.nodes().len())..] {
            if node.op_is::<DequantizeLinearF32>()
                || node.op_is::<tract_onnx::tract_core::ops::dummy::Dummy>()
            {
                continue;
            }
            if let Some(mut p) = node.op.declutter_with_session(session, model, node)? {
                p.push_context(format!("kiln declutter {node}"));
                self.0 = node.id + p.dont_apply_twice.is_some() as usize;
                return Ok(Some(p));
            }
        }
        Ok(None)
    }
}
