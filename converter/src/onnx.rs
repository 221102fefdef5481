//! ONNX import through `tract-onnx`: the model is loaded, made concrete (symbolic dims set to 1
//! unless given), typed and decluttered by tract (which folds constant shape arithmetic), then
//! each tract core op is mapped to kiln ops.
//!
//! Layout: ONNX graphs are NCHW, kiln kernels NHWC. Every activation carries a *physical
//! permutation* of its logical (ONNX) axes; transposes in the source graph only change that
//! permutation, and a real transpose op is emitted only where an op needs another layout (a
//! reshape across permuted axes, or a graph output).

use crate::ir::{pool_op, Graph, Node, TId};
use anyhow::{anyhow, bail, Context, Result};
use kiln_runtime::format::MAX_RANK;
use kiln_runtime::ops::{
    self as kops, BinaryKind, BinaryParams, OpParams, ReshapeParams, TransposeParams, UnaryKind,
    UnaryParams,
};
use kiln_runtime::{DType, OpKind};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::{MultiBroadcastTo, Pad, PadMode, Slice, TypedConcat};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::conv::KernelFormat;
use tract_onnx::tract_core::ops::cnn::{Conv, MaxPool, PaddingSpec, PoolSpec, SumPool};
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::identity::Identity;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::nn::{DataFormat, Reduce, Reducer, Softmax, SoftmaxKind};
use tract_onnx::tract_core::ops::quant::{DequantizeLinearF32, QuantizeLinearI8, QuantizeLinearU8};
use tract_onnx::tract_core::ops::source::TypedSource;
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

fn load_typed_inner(path: &Path, input_shapes: Option<&[Vec<usize>]>) -> Result<TypedModel> {
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
    let unimplemented: Vec<String> = model
        .nodes()
        .iter()
        .filter(|n| n.op.name().contains("Unimplemented"))
        .map(|n| format!("{} (node '{}')", n.op.name(), n.name))
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

/// ONNX graphs are in SSA form: every value has one writer (a graph input, an initializer or
/// one node output). onnxruntime refuses a graph that breaks this; so does kiln, naming both.
fn check_single_writer(proto: &tract_onnx::pb::ModelProto) -> Result<()> {
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
fn has_symbolic_input(proto: &tract_onnx::pb::ModelProto) -> bool {
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

/// Imports an ONNX file into a kiln graph.
pub fn import(path: &Path) -> Result<Graph> {
    import_with(path, None)
}

/// Imports an ONNX file with explicit input shapes.
pub fn import_with(path: &Path, input_shapes: Option<&[Vec<usize>]>) -> Result<Graph> {
    let model = load_typed(path, input_shapes)?;
    from_typed(&model)
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

fn identity(r: usize) -> Vec<usize> {
    (0..r).collect()
}

/// Permutes row-major `data` of logical shape `shape` so physical axis `i` is logical `perm[i]`.
fn permute<T: Copy>(shape: &[usize], data: &[T], perm: &[usize]) -> (Vec<usize>, Vec<T>) {
    let r = shape.len();
    let phys: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return (phys, data.to_vec());
    }
    let mut st = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; r];
    for _ in 0..data.len() {
        let src: usize = (0..r).map(|i| idx[i] * st[perm[i]]).sum();
        out.push(data[src]);
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < phys[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    (phys, out)
}

fn tensor_f32(t: &Tensor) -> Result<Vec<f32>> {
    let t = t.cast_to::<f32>().map_err(|e| anyhow!("{e:?}"))?;
    let view = t
        .to_plain_array_view::<f32>()
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(view.iter().copied().collect())
}

/// Why a tract op cannot be imported, or `None` if its type is one kiln maps.
fn unsupported_reason(node: &TypedNode) -> Option<String> {
    let op = &node.op;
    let ok = op.downcast_ref::<TypedSource>().is_some()
        || op.downcast_ref::<Const>().is_some()
        || op
            .downcast_ref::<Conv>()
            .is_some_and(|c| c.q_params.is_none())
        || op
            .downcast_ref::<MaxPool>()
            .is_some_and(|m| m.with_index_outputs.is_none())
        || op.downcast_ref::<SumPool>().is_some_and(|s| s.normalize)
        || op
            .downcast_ref::<TypedBinOp>()
            .is_some_and(|b| binary_kind(b).is_some())
        || op
            .downcast_ref::<ElementWiseOp>()
            .is_some_and(|e| unary_kind(e).is_some())
        || op.downcast_ref::<Softmax>().is_some()
        || op.downcast_ref::<Reduce>().is_some_and(|r| {
            matches!(
                r.reducer,
                Reducer::Sum | Reducer::Max | Reducer::Min | Reducer::Prod | Reducer::MeanOfSquares
            )
        })
        || op.downcast_ref::<AxisOp>().is_some()
        || op.downcast_ref::<TypedConcat>().is_some()
        || op.downcast_ref::<Pad>().is_some()
        || op.downcast_ref::<Slice>().is_some()
        || op.downcast_ref::<Downsample>().is_some()
        || op
            .downcast_ref::<EinSum>()
            .is_some_and(|e| e.q_params.is_none())
        || op.downcast_ref::<MultiBroadcastTo>().is_some()
        || op.downcast_ref::<Identity>().is_some()
        || op.downcast_ref::<DequantizeLinearF32>().is_some()
        || op.downcast_ref::<ElementWiseOp>().is_some_and(|e| {
            e.0.downcast_ref::<QuantizeLinearI8>().is_some()
                || e.0.downcast_ref::<QuantizeLinearU8>().is_some()
        })
        || op
            .downcast_ref::<Cast>()
            .is_some_and(|c| c.to == f32::datum_type());
    (!ok).then(|| format!("{} (node '{}')", op.name(), node.name))
}

fn binary_kind(b: &TypedBinOp) -> Option<BinaryKind> {
    Some(match b.0.name() {
        "Add" => BinaryKind::Add,
        "Sub" => BinaryKind::Sub,
        "Mul" => BinaryKind::Mul,
        "Div" => BinaryKind::Div,
        "Max" => BinaryKind::Max,
        "Min" => BinaryKind::Min,
        "Pow" => BinaryKind::Pow,
        _ => return None,
    })
}

fn unary_kind(e: &ElementWiseOp) -> Option<(UnaryKind, f32, f32)> {
    use tract_onnx::tract_core::ops::math::PowConst;
    use tract_onnx::tract_core::ops::nn::GeluApproximate;
    use tract_onnx::tract_core::ops::nn::LeakyRelu;
    if let Some(l) = e.0.downcast_ref::<LeakyRelu>() {
        return Some((UnaryKind::LeakyRelu, l.alpha, 0.0));
    }
    if let Some(p) = e.0.downcast_ref::<PowConst>() {
        return Some((UnaryKind::PowConst, p.exponent, 0.0));
    }
    if e.0.downcast_ref::<GeluApproximate>().is_some() {
        return Some((UnaryKind::GeluTanh, 0.0, 0.0));
    }
    Some(match e.0.name().as_str() {
        "Sigmoid" => (UnaryKind::Sigmoid, 0.0, 0.0),
        "Tanh" => (UnaryKind::Tanh, 0.0, 0.0),
        "HardSwish" => (UnaryKind::HardSwish, 0.0, 0.0),
        "Exp" => (UnaryKind::Exp, 0.0, 0.0),
        "Abs" => (UnaryKind::Abs, 0.0, 0.0),
        "Neg" => (UnaryKind::Neg, 0.0, 0.0),
        "Sqrt" => (UnaryKind::Sqrt, 0.0, 0.0),
        "Ln" => (UnaryKind::Log, 0.0, 0.0),
        "Recip" => (UnaryKind::Reciprocal, 0.0, 0.0),
        "Floor" => (UnaryKind::Floor, 0.0, 0.0),
        "Ceil" => (UnaryKind::Ceil, 0.0, 0.0),
        "Rsqrt" => (UnaryKind::Rsqrt, 0.0, 0.0),
        "Square" => (UnaryKind::Square, 0.0, 0.0),
        "Silu" => (UnaryKind::Silu, 0.0, 0.0),
        "GeluExact" => (UnaryKind::Gelu, 0.0, 0.0),
        "Sin" => (UnaryKind::Sin, 0.0, 0.0),
        "Cos" => (UnaryKind::Cos, 0.0, 0.0),
        "Tan" => (UnaryKind::Tan, 0.0, 0.0),
        "Erf" => (UnaryKind::Erf, 0.0, 0.0),
        _ => return None,
    })
}

struct Imp<'t> {
    model: &'t TypedModel,
    g: Graph,
    vals: HashMap<OutletId, Val>,
    layouts: HashMap<(OutletId, Vec<usize>), TId>,
}

/// Converts a typed, decluttered tract model.
pub fn from_typed(model: &TypedModel) -> Result<Graph> {
    let order = model.eval_order().map_err(|e| anyhow!("{e:?}"))?;
    let unsupported: Vec<String> = order
        .iter()
        .filter_map(|&n| unsupported_reason(&model.nodes()[n]))
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
            .with_context(|| format!("converting {} (node '{}')", node.op.name(), node.name))?;
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

impl Imp<'_> {
    fn shape(&self, o: OutletId) -> Result<Vec<usize>> {
        let f = self.model.outlet_fact(o).map_err(|e| anyhow!("{e:?}"))?;
        let s = f.shape.as_concrete().map(|s| s.to_vec()).ok_or_else(|| {
            anyhow!(
                "shape of '{}' is not concrete: {:?}",
                self.model.node(o.node).name,
                f.shape
            )
        })?;
        if s.contains(&0) {
            bail!(
                "'{}' has shape {s:?}: zero-sized tensors are not supported",
                self.model.node(o.node).name
            );
        }
        Ok(s)
    }

    fn val(&self, o: OutletId) -> Result<Val> {
        if let Some(v) = self.vals.get(&o) {
            return Ok(v.clone());
        }
        let f = self.model.outlet_fact(o).map_err(|e| anyhow!("{e:?}"))?;
        if let Some(k) = &f.konst {
            return Ok(Val::Const(k.clone()));
        }
        bail!(
            "internal: value of '{}' not computed",
            self.model.node(o.node).name
        )
    }

    fn const_of(&self, o: OutletId) -> Option<Arc<Tensor>> {
        match self.val(o) {
            Ok(Val::Const(t)) => Some(t),
            _ => None,
        }
    }

    fn perm_of(&self, o: OutletId) -> Option<Vec<usize>> {
        match self.val(o) {
            Ok(Val::Act { perm, .. }) => Some(perm),
            _ => None,
        }
    }

    /// Tensor `o` laid out with physical axis `i` = logical axis `want[i]`.
    fn act(&mut self, o: OutletId, want: &[usize]) -> Result<TId> {
        if let Some(&t) = self.layouts.get(&(o, want.to_vec())) {
            return Ok(t);
        }
        let shape = self.shape(o)?;
        let name = self.model.node(o.node).name.clone();
        let t = match self.val(o)? {
            Val::QuantOf { .. } => {
                self.any_act(o)?;
                return self.act(o, want);
            }
            Val::Const(k) => {
                let v = tensor_f32(&k)?;
                let shape = if shape.is_empty() { vec![] } else { shape };
                let (phys, data) = permute(&shape, &v, want);
                let phys = if phys.is_empty() { vec![1] } else { phys };
                self.g.add_const_f32(name, phys, data)
            }
            Val::Act { tid, perm } => {
                if perm == want {
                    return Ok(tid);
                }
                // physical out axis i reads physical in axis j where perm[j] == want[i]
                let tp: Vec<usize> = want
                    .iter()
                    .map(|w| perm.iter().position(|p| p == w).unwrap_or(0))
                    .collect();
                let phys: Vec<usize> = want.iter().map(|&w| shape[w]).collect();
                // Moving only size-1 axes keeps the element order: a free reshape.
                let big = |order: &[usize]| {
                    order
                        .iter()
                        .copied()
                        .filter(|&l| shape[l] != 1)
                        .collect::<Vec<_>>()
                };
                if big(&perm) == big(want) {
                    let out = self.reshape(tid, phys, format!("{name}.relayout"));
                    self.layouts.insert((o, want.to_vec()), out);
                    return Ok(out);
                }
                // Layout changes keep the dtype (and an int8 tensor's quantization).
                let out = self.g.add_tensor(
                    format!("{name}.transposed"),
                    self.g.tensors[tid].dtype,
                    phys,
                );
                self.g.tensors[out].quant = self.g.tensors[tid].quant;
                self.g.push(Node::new(
                    format!("{name}.transpose"),
                    OpParams::Transpose(TransposeParams::new(&tp)),
                    vec![Some(tid)],
                    vec![out],
                ));
                out
            }
        };
        self.layouts.insert((o, want.to_vec()), t);
        Ok(t)
    }

    fn set_act(&mut self, node: &TypedNode, tid: TId, perm: Vec<usize>) {
        let o = OutletId::new(node.id, 0);
        self.layouts.insert((o, perm.clone()), tid);
        self.vals.insert(o, Val::Act { tid, perm });
    }

    fn new_tensor(&mut self, name: String, shape: Vec<usize>) -> TId {
        self.g.add_tensor(name, DType::F32, shape)
    }

    /// Adds a reshape `x -> shape` (free: the planner aliases it).
    fn reshape(&mut self, x: TId, shape: Vec<usize>, name: String) -> TId {
        if self.g.tensors[x].shape == shape {
            return x;
        }
        let y = self
            .g
            .add_tensor(name.clone(), self.g.tensors[x].dtype, shape);
        self.g.tensors[y].quant = self.g.tensors[x].quant;
        self.g.push(Node::new(
            format!("{name}.reshape"),
            OpParams::Reshape(ReshapeParams),
            vec![Some(x)],
            vec![y],
        ));
        y
    }

    fn node(&mut self, node: &TypedNode) -> Result<()> {
        let op = &node.op;
        let name = node.name.clone();
        let out = OutletId::new(node.id, 0);
        if let Some(k) = op.downcast_ref::<Const>() {
            let _ = k;
            let f = self.model.outlet_fact(out).map_err(|e| anyhow!("{e:?}"))?;
            let t = f
                .konst
                .clone()
                .ok_or_else(|| anyhow!("constant without a value"))?;
            self.vals.insert(out, Val::Const(t));
            return Ok(());
        }
        // Fold any op whose inputs are all constants with tract itself.
        if !node.inputs.is_empty() && node.inputs.iter().all(|i| self.const_of(*i).is_some()) {
            let ins: TVec<TValue> = node
                .inputs
                .iter()
                .map(|i| self.const_of(*i).unwrap().into_tvalue())
                .collect();
            if let Some(res) = op.eval_out_of_plan(ins).map_err(|e| anyhow!("{e:?}"))? {
                self.vals
                    .insert(out, Val::Const(res[0].clone().into_arc_tensor()));
                return Ok(());
            }
        }
        if op.downcast_ref::<Identity>().is_some() || op.downcast_ref::<Cast>().is_some() {
            let v = self.val(node.inputs[0])?;
            self.vals.insert(out, v);
            return Ok(());
        }
        if let Some(c) = op.downcast_ref::<Conv>() {
            return self.conv(node, c);
        }
        if let Some(m) = op.downcast_ref::<MaxPool>() {
            return self.pool(node, &m.pool_spec, OpKind::MaxPool, false);
        }
        if let Some(s) = op.downcast_ref::<SumPool>() {
            return self.pool(node, &s.pool_spec, OpKind::AvgPool, s.count_include_pad);
        }
        if let Some(b) = op.downcast_ref::<TypedBinOp>() {
            return self.binary(
                node,
                binary_kind(b).ok_or_else(|| anyhow!("unsupported binary op"))?,
            );
        }
        if let Some(dq) = op.downcast_ref::<DequantizeLinearF32>() {
            return self.dequantize(node, dq.scale, dq.zero_point);
        }
        if let Some(q) = op
            .downcast_ref::<ElementWiseOp>()
            .and_then(|e| e.0.downcast_ref::<QuantizeLinearU8>())
        {
            // uint8: the same real values as int8 with the zero point moved by -128.
            self.vals.insert(
                out,
                Val::QuantOf {
                    src: node.inputs[0],
                    scale: 1.0 / q.scale,
                    zero_point: q.zero_point as i32 - 128,
                },
            );
            return Ok(());
        }
        if let Some(q) = op
            .downcast_ref::<ElementWiseOp>()
            .and_then(|e| e.0.downcast_ref::<QuantizeLinearI8>())
        {
            // tract stores the reciprocal of the scale; the DequantizeLinear that usually
            // follows carries the exact one.
            self.vals.insert(
                out,
                Val::QuantOf {
                    src: node.inputs[0],
                    scale: 1.0 / q.scale,
                    zero_point: q.zero_point as i32,
                },
            );
            return Ok(());
        }
        if let Some(e) = op.downcast_ref::<ElementWiseOp>() {
            let (kind, a, b) =
                unary_kind(e).ok_or_else(|| anyhow!("unsupported element-wise op"))?;
            let (x, perm) = self.any_act(node.inputs[0])?;
            let y = self.new_tensor(name.clone(), self.g.tensors[x].shape.clone());
            self.g.push(Node::new(
                name,
                OpParams::Unary(UnaryParams { kind, a, b }),
                vec![Some(x)],
                vec![y],
            ));
            self.set_act(node, y, perm);
            return Ok(());
        }
        if let Some(s) = op.downcast_ref::<Softmax>() {
            return self.softmax(node, s);
        }
        if let Some(r) = op.downcast_ref::<Reduce>() {
            let reducer = match r.reducer {
                Reducer::Sum => kops::Reducer::Sum,
                Reducer::Max => kops::Reducer::Max,
                Reducer::Min => kops::Reducer::Min,
                Reducer::Prod => kops::Reducer::Prod,
                Reducer::MeanOfSquares => kops::Reducer::MeanSquare,
                _ => bail!("unsupported reducer"),
            };
            if r.axes.is_empty() {
                let v = self.val(node.inputs[0])?;
                self.vals.insert(out, v);
                return Ok(());
            }
            let (x, perm) = self.any_act(node.inputs[0])?;
            let mut mask = 0u32;
            let mut shape = self.g.tensors[x].shape.clone();
            for &a in &r.axes {
                let p = perm
                    .iter()
                    .position(|&q| q == a)
                    .ok_or_else(|| anyhow!("bad axis"))?;
                mask |= 1 << p;
                shape[p] = 1;
            }
            let y = self.new_tensor(name.clone(), shape);
            self.g.push(Node::new(
                name,
                OpParams::Reduce(kops::ReduceParams::new(reducer, mask)),
                vec![Some(x)],
                vec![y],
            ));
            self.set_act(node, y, perm);
            return Ok(());
        }
        if let Some(a) = op.downcast_ref::<AxisOp>() {
            return self.axis_op(node, a);
        }
        if let Some(c) = op.downcast_ref::<TypedConcat>() {
            let perm = node
                .inputs
                .iter()
                .find_map(|i| self.perm_of(*i))
                .ok_or_else(|| anyhow!("no activation input"))?;
            let mut ins = Vec::new();
            for i in &node.inputs {
                ins.push(Some(self.act(*i, &perm)?));
            }
            let axis = perm
                .iter()
                .position(|&p| p == c.axis)
                .ok_or_else(|| anyhow!("bad axis"))?;
            let shape = self.shape(out)?;
            let phys: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            let y = self.new_tensor(name.clone(), phys);
            self.g.push(Node::new(
                name,
                OpParams::Concat(kops::ConcatParams { axis }),
                ins,
                vec![y],
            ));
            self.set_act(node, y, perm);
            return Ok(());
        }
        if let Some(p) = op.downcast_ref::<Pad>() {
            let (x, perm) = self.any_act(node.inputs[0])?;
            let mode = match &p.mode {
                PadMode::Constant(v) => {
                    kops::PadMode::Constant(tensor_f32(v)?.first().copied().unwrap_or(0.0))
                }
                PadMode::Reflect => kops::PadMode::Reflect,
                PadMode::Edge => kops::PadMode::Edge,
            };
            if perm.len() > MAX_RANK {
                bail!("pad of a rank-{} tensor (at most {MAX_RANK})", perm.len());
            }
            let mut pp = kops::PadParams {
                mode,
                pads: [(0, 0); MAX_RANK],
            };
            let mut shape = self.g.tensors[x].shape.clone();
            for (i, &l) in perm.iter().enumerate() {
                let (b, a) = p.pads[l];
                if b >= 1 << 15 || a >= 1 << 15 {
                    bail!("padding ({b}, {a}) too large");
                }
                pp.pads[i] = (b, a);
                shape[i] += b + a;
            }
            let y = self.new_tensor(name.clone(), shape);
            self.g
                .push(Node::new(name, OpParams::Pad(pp), vec![Some(x)], vec![y]));
            self.set_act(node, y, perm);
            return Ok(());
        }
        if let Some(s) = op.downcast_ref::<Slice>() {
            let start = s.start.to_i64().map_err(|e| anyhow!("{e:?}"))?;
            return self.slice(node, s.axis, start, 1);
        }
        if let Some(d) = op.downcast_ref::<Downsample>() {
            let in_dim = self.shape(node.inputs[0])?[d.axis] as i64;
            let begin = if d.stride > 0 {
                d.modulo as i64
            } else {
                in_dim - 1 - d.modulo as i64
            };
            return self.slice(node, d.axis, begin, d.stride as i64);
        }
        if let Some(e) = op.downcast_ref::<EinSum>() {
            return self.einsum(node, e);
        }
        if op.downcast_ref::<MultiBroadcastTo>().is_some() {
            let target = self.shape(out)?;
            let (mut x, mut perm) = self.any_act(node.inputs[0])?;
            if perm.len() < target.len() {
                // Lower rank: go to the logical layout and add leading unit axes.
                let r = perm.len();
                let xi = self.act(node.inputs[0], &identity(r))?;
                let mut s = vec![1; target.len() - r];
                s.extend(self.shape(node.inputs[0])?);
                x = self.reshape(xi, s, format!("{name}.rank"));
                perm = identity(target.len());
            }
            let phys: Vec<usize> = perm.iter().map(|&p| target[p]).collect();
            let xs = self.g.tensors[x].shape.clone();
            let zshape: Vec<usize> = xs
                .iter()
                .zip(&phys)
                .map(|(&a, &b)| if a == b { 1 } else { b })
                .collect();
            let zn: usize = zshape.iter().product();
            let z = self
                .g
                .add_const_f32(format!("{name}.zeros"), zshape, vec![0.0; zn]);
            let y = self.new_tensor(name.clone(), phys);
            self.g.push(Node::new(
                name,
                OpParams::Binary(BinaryParams::new(BinaryKind::Add)),
                vec![Some(x), Some(z)],
                vec![y],
            ));
            self.set_act(node, y, perm);
            return Ok(());
        }
        bail!("unsupported op")
    }

    /// A DequantizeLinear: the end of a fake-quantize pair (its f32 source carries on, with the
    /// pair's parameters recorded), or a real int8 -> f32 conversion (of a graph input).
    fn dequantize(&mut self, node: &TypedNode, scale: f32, zero_point: i32) -> Result<()> {
        let out = OutletId::new(node.id, 0);
        if let Val::QuantOf {
            src,
            zero_point: qzp,
            ..
        } = self.val(node.inputs[0])?
        {
            // The pair's zero point as int8 (the QuantizeLinear's, already moved for uint8).
            let zero_point = qzp;
            let v = self.val(src)?;
            if let Val::Act { tid, .. } = &v {
                self.g.act_quant.insert(*tid, (scale, zero_point));
            }
            self.vals.insert(out, v);
            return Ok(());
        }
        // A uint8 tensor is carried as int8 with the zero point moved by -128.
        let zero_point = match self.model.outlet_fact(node.inputs[0]) {
            Ok(f) if f.datum_type == u8::datum_type() => zero_point - 128,
            _ => zero_point,
        };
        let (x, perm) = self.any_act(node.inputs[0])?;
        let xt = &mut self.g.tensors[x];
        if xt.dtype != DType::I8 {
            bail!("DequantizeLinear of a non-int8 tensor is not supported");
        }
        let q = kiln_runtime::Quant::PerTensor { scale, zero_point };
        match xt.quant {
            kiln_runtime::Quant::None => xt.quant = q,
            existing if existing == q => {}
            _ => bail!(
                "int8 tensor '{}' is dequantized with two different parameters",
                xt.name
            ),
        }
        let y = self.new_tensor(node.name.clone(), self.g.tensors[x].shape.clone());
        self.g.push(Node::new(
            node.name.clone(),
            OpParams::Dequantize(kops::DequantizeParams),
            vec![Some(x)],
            vec![y],
        ));
        self.g.act_quant.insert(y, (scale, zero_point));
        self.set_act(node, y, perm);
        Ok(())
    }

    /// The activation input as it is laid out now.
    fn any_act(&mut self, o: OutletId) -> Result<(TId, Vec<usize>)> {
        match self.val(o)? {
            Val::Act { tid, perm } => Ok((tid, perm)),
            Val::QuantOf {
                src,
                scale,
                zero_point,
            } => {
                let (x, perm) = self.any_act(src)?;
                let name = format!("{}.quantized", self.g.tensors[x].name);
                let q = self
                    .g
                    .add_tensor(name.clone(), DType::I8, self.g.tensors[x].shape.clone());
                self.g.tensors[q].quant = kiln_runtime::Quant::PerTensor { scale, zero_point };
                self.g.push(Node::new(
                    name,
                    OpParams::Quantize(kops::QuantizeParams),
                    vec![Some(x)],
                    vec![q],
                ));
                self.vals.insert(
                    o,
                    Val::Act {
                        tid: q,
                        perm: perm.clone(),
                    },
                );
                Ok((q, perm))
            }
            Val::Const(_) => {
                let r = self.shape(o)?.len();
                let t = self.act(o, &identity(r))?;
                Ok((t, identity(r)))
            }
        }
    }

    fn slice(&mut self, node: &TypedNode, axis: usize, begin: i64, step: i64) -> Result<()> {
        let (x, perm) = self.any_act(node.inputs[0])?;
        let out_shape = self.shape(OutletId::new(node.id, 0))?;
        let phys: Vec<usize> = perm.iter().map(|&p| out_shape[p]).collect();
        let pa = perm
            .iter()
            .position(|&p| p == axis)
            .ok_or_else(|| anyhow!("bad axis"))?;
        if pa >= MAX_RANK {
            bail!("slice of a rank-{} tensor (at most {MAX_RANK})", perm.len());
        }
        let mut sp = kops::SliceParams::default();
        sp.begin[pa] = i32::try_from(begin)?;
        sp.step[pa] = i32::try_from(step)?;
        let y = self.new_tensor(node.name.clone(), phys);
        self.g.push(Node::new(
            node.name.clone(),
            OpParams::Slice(sp),
            vec![Some(x)],
            vec![y],
        ));
        self.set_act(node, y, perm);
        Ok(())
    }

    fn binary(&mut self, node: &TypedNode, kind: BinaryKind) -> Result<()> {
        let name = node.name.clone();
        let (a, b) = (node.inputs[0], node.inputs[1]);
        // max(x, c) / min(x, c) with a single constant: a clamp (how ReLU and Clip arrive).
        if matches!(kind, BinaryKind::Max | BinaryKind::Min) {
            let (x, c) = if self.const_of(b).is_some() {
                (a, b)
            } else {
                (b, a)
            };
            if let Some(k) = self.const_of(c) {
                let v = tensor_f32(&k)?;
                let out_shape = self.shape(OutletId::new(node.id, 0))?;
                if !v.is_empty() && v.iter().all(|&e| e == v[0]) && self.shape(x)? == out_shape {
                    let (xt, perm) = self.any_act(x)?;
                    let (lo, hi) = if kind == BinaryKind::Max {
                        (v[0], f32::INFINITY)
                    } else {
                        (f32::NEG_INFINITY, v[0])
                    };
                    let kind = if lo == 0.0 && hi == f32::INFINITY {
                        UnaryKind::Relu
                    } else {
                        UnaryKind::Clip
                    };
                    let y = self.new_tensor(name.clone(), self.g.tensors[xt].shape.clone());
                    self.g.push(Node::new(
                        name,
                        OpParams::Unary(UnaryParams { kind, a: lo, b: hi }),
                        vec![Some(xt)],
                        vec![y],
                    ));
                    self.set_act(node, y, perm);
                    return Ok(());
                }
            }
        }
        let perm = self
            .perm_of(a)
            .or_else(|| self.perm_of(b))
            .ok_or_else(|| anyhow!("no activation input"))?;
        let at = self.act(a, &perm)?;
        let bt = self.act(b, &perm)?;
        let out_shape = self.shape(OutletId::new(node.id, 0))?;
        let phys: Vec<usize> = perm.iter().map(|&p| out_shape[p]).collect();
        let y = self.new_tensor(name.clone(), phys);
        self.g.push(Node::new(
            name,
            OpParams::Binary(BinaryParams::new(kind)),
            vec![Some(at), Some(bt)],
            vec![y],
        ));
        self.set_act(node, y, perm);
        Ok(())
    }

    fn softmax(&mut self, node: &TypedNode, s: &Softmax) -> Result<()> {
        let name = node.name.clone();
        let log = matches!(s.kind, SoftmaxKind::LogSoftmax);
        let shape = self.shape(node.inputs[0])?;
        if s.axes.len() == 1 {
            let (x, perm) = self.any_act(node.inputs[0])?;
            let axis = perm
                .iter()
                .position(|&p| p == s.axes[0])
                .ok_or_else(|| anyhow!("bad axis"))?;
            let y = self.new_tensor(name.clone(), self.g.tensors[x].shape.clone());
            self.g.push(Node::new(
                name,
                OpParams::Softmax(kops::SoftmaxParams::new(axis, log)),
                vec![Some(x)],
                vec![y],
            ));
            self.set_act(node, y, perm);
            return Ok(());
        }
        // Several (contiguous, trailing) axes: flatten them, softmax, restore.
        let mut axes = s.axes.to_vec();
        axes.sort();
        if axes.windows(2).any(|w| w[1] != w[0] + 1) {
            bail!("softmax over non-contiguous axes {axes:?}");
        }
        let r = shape.len();
        let x = self.act(node.inputs[0], &identity(r))?;
        let outer: usize = shape[..axes[0]].iter().product();
        let n: usize = axes.iter().map(|&a| shape[a]).product();
        let inner: usize = shape[axes[axes.len() - 1] + 1..].iter().product();
        let x3 = self.reshape(x, vec![outer, n, inner], format!("{name}.flat"));
        let y3 = self.new_tensor(format!("{name}.flat_out"), vec![outer, n, inner]);
        self.g.push(Node::new(
            name.clone(),
            OpParams::Softmax(kops::SoftmaxParams::new(1, log)),
            vec![Some(x3)],
            vec![y3],
        ));
        let y = self.reshape(y3, shape, name);
        self.set_act(node, y, identity(r));
        Ok(())
    }

    fn axis_op(&mut self, node: &TypedNode, a: &AxisOp) -> Result<()> {
        let name = node.name.clone();
        let out_shape = self.shape(OutletId::new(node.id, 0))?;
        let (x, perm) = self.any_act(node.inputs[0])?;
        let r = perm.len();
        let new_perm: Vec<usize> = match a {
            AxisOp::Move(from, to) => {
                // logical: out axis j <- in axis src[j]
                let mut src: Vec<usize> = (0..r).collect();
                let v = src.remove(*from);
                src.insert(*to, v);
                let inv: Vec<usize> = (0..r)
                    .map(|l| src.iter().position(|&s| s == l).unwrap_or(0))
                    .collect();
                let p: Vec<usize> = perm.iter().map(|&l| inv[l]).collect();
                self.set_act(node, x, p);
                return Ok(());
            }
            AxisOp::Add(at) => {
                let mut p: Vec<usize> = perm
                    .iter()
                    .map(|&l| if l >= *at { l + 1 } else { l })
                    .collect();
                let pos = if perm == identity(r) { *at } else { p.len() };
                p.insert(pos, *at);
                p
            }
            AxisOp::Rm(at) => perm
                .iter()
                .filter(|&&l| l != *at)
                .map(|&l| if l > *at { l - 1 } else { l })
                .collect(),
            AxisOp::Reshape(at, from, to) => {
                let from_len = from.len();
                let to_len = to.len();
                // Works in place when the reshaped logical block is contiguous and in order in
                // the physical layout; otherwise go through the logical layout first.
                let start = perm.iter().position(|&l| l == *at);
                let in_place = match start {
                    Some(s) => (0..from_len).all(|k| perm.get(s + k) == Some(&(at + k))),
                    None => from_len == 0,
                };
                let (x, perm) = if in_place {
                    (x, perm.clone())
                } else {
                    (self.act(node.inputs[0], &identity(r))?, identity(r))
                };
                let s = perm.iter().position(|&l| l == *at).unwrap_or(*at);
                let mut p = Vec::new();
                for &l in &perm[..s] {
                    p.push(if l > *at { l + to_len - from_len } else { l });
                }
                p.extend(*at..at + to_len);
                for &l in &perm[s + from_len..] {
                    p.push(if l >= at + from_len {
                        l + to_len - from_len
                    } else {
                        l
                    });
                }
                let phys: Vec<usize> = p.iter().map(|&l| out_shape[l]).collect();
                let y = self.reshape(x, phys, name);
                self.set_act(node, y, p);
                return Ok(());
            }
        };
        let phys: Vec<usize> = new_perm.iter().map(|&l| out_shape[l]).collect();
        let y = self.reshape(x, phys, name);
        self.set_act(node, y, new_perm);
        Ok(())
    }

    /// Physical layout for a conv/pool input: `[N?] + spatial + [C]`, reshaped to 4-D NHWC.
    fn nhwc_in(
        &mut self,
        o: OutletId,
        spec: &PoolSpec,
        name: &str,
    ) -> Result<(TId, Vec<usize>, [usize; 4])> {
        let shape = self.shape(o)?;
        let r = shape.len();
        let sp = spec.kernel_shape.len();
        if sp > 2 || sp == 0 {
            bail!("{sp}-D convolution/pooling is not supported (1-D and 2-D are)");
        }
        let fmt = spec.data_format;
        let has_n = fmt.has_n();
        let c_axis = match fmt {
            DataFormat::NCHW => 1,
            DataFormat::CHW => 0,
            _ => r - 1,
        };
        let spatial: Vec<usize> = match fmt {
            DataFormat::NCHW => (2..r).collect(),
            DataFormat::CHW => (1..r).collect(),
            DataFormat::NHWC => (1..r - 1).collect(),
            DataFormat::HWC => (0..r - 1).collect(),
        };
        let mut want = Vec::new();
        if has_n {
            want.push(0);
        }
        want.extend(&spatial);
        want.push(c_axis);
        let x = self.act(o, &want)?;
        let n = if has_n { shape[0] } else { 1 };
        let (h, w) = if sp == 1 {
            (1, shape[spatial[0]])
        } else {
            (shape[spatial[0]], shape[spatial[1]])
        };
        let dims = [n, h, w, shape[c_axis]];
        let x4 = self.reshape(x, dims.to_vec(), format!("{name}.nhwc"));
        Ok((x4, want, dims))
    }

    /// Explicit (top, left, bottom, right) padding and output (h, w).
    fn padding(
        spec: &PoolSpec,
        hw: [usize; 2],
        dil: [usize; 2],
        out_hw: [usize; 2],
    ) -> Result<[usize; 4]> {
        let sp = spec.kernel_shape.len();
        let k = |i: usize| {
            if sp == 1 {
                if i == 0 {
                    1
                } else {
                    spec.kernel_shape[0]
                }
            } else {
                spec.kernel_shape[i]
            }
        };
        let st = |i: usize| {
            if sp == 1 && i == 0 {
                1
            } else {
                spec.strides()
                    .get(if sp == 1 { 0 } else { i })
                    .copied()
                    .unwrap_or(1)
            }
        };
        let ax = |v: &TVec<usize>, i: usize| -> usize {
            if sp == 1 {
                if i == 0 {
                    0
                } else {
                    v[0]
                }
            } else {
                v[i]
            }
        };
        let mut p = [0usize; 4];
        for i in 0..2 {
            let (before, after) = match &spec.padding {
                PaddingSpec::Valid => (0, 0),
                PaddingSpec::Explicit(b, a) | PaddingSpec::ExplicitOnnxPool(b, a, _) => {
                    (ax(b, i), ax(a, i))
                }
                PaddingSpec::SameUpper | PaddingSpec::SameLower => {
                    let extent = (k(i) - 1) * dil[i] + 1;
                    let total = ((out_hw[i] - 1) * st(i) + extent).saturating_sub(hw[i]);
                    if matches!(spec.padding, PaddingSpec::SameUpper) {
                        (total / 2, total - total / 2)
                    } else {
                        (total - total / 2, total / 2)
                    }
                }
            };
            p[i] = before;
            p[i + 2] = after;
        }
        Ok(p)
    }

    fn conv(&mut self, node: &TypedNode, c: &Conv) -> Result<()> {
        let name = node.name.clone();
        let spec = &c.pool_spec;
        let (x, want, [n, h, w, ci]) = self.nhwc_in(node.inputs[0], spec, &name)?;
        let k = self
            .const_of(node.inputs[1])
            .ok_or_else(|| anyhow!("non-constant conv weights are not supported"))?;
        let kv = tensor_f32(&k)?;
        let ks = k.shape().to_vec();
        let g = c.group;
        let sp = spec.kernel_shape.len();
        // Bring the kernel to [O, KH, KW, I/g].
        let (o, kh, kw, ig, ohwi): (usize, usize, usize, usize, Vec<f32>) = {
            let (perm, o, i): (Vec<usize>, usize, usize) = match c.kernel_fmt {
                KernelFormat::OIHW => {
                    let mut p = vec![0];
                    p.extend(2..2 + sp);
                    p.push(1);
                    (p, ks[0], ks[1])
                }
                KernelFormat::HWIO => {
                    let mut p = vec![sp + 1];
                    p.extend(0..sp);
                    p.push(sp);
                    (p, ks[sp + 1], ks[sp])
                }
                KernelFormat::OHWI => ((0..sp + 2).collect(), ks[0], ks[sp + 1]),
            };
            let (phys, data) = permute(&ks, &kv, &perm);
            let (kh, kw) = if sp == 1 {
                (1, phys[1])
            } else {
                (phys[1], phys[2])
            };
            // HWIO with groups stores O as the last axis with I per group: same element order.
            (o, kh, kw, i, data)
        };
        if ig * g != ci {
            bail!(
                "weights expect {} input channels x {g} groups, input has {ci}",
                ig
            );
        }
        let wt = self
            .g
            .add_const_f32(format!("{name}.weights"), vec![o, kh, kw, ig], ohwi);
        let bias = match self.const_of(node.inputs[2]) {
            Some(b) => {
                let bv = tensor_f32(&b)?;
                let bv = if bv.len() == 1 { vec![bv[0]; o] } else { bv };
                if bv.len() != o {
                    bail!("bias has {} values for {o} output channels", bv.len());
                }
                if bv.iter().all(|&v| v == 0.0) {
                    None
                } else {
                    Some(self.g.add_const_f32(format!("{name}.bias"), vec![o], bv))
                }
            }
            None => bail!("non-constant conv bias is not supported"),
        };
        let out_shape = self.shape(OutletId::new(node.id, 0))?;
        let out_phys: Vec<usize> = want.iter().map(|&l| out_shape[l]).collect();
        let (oh, ow) = if sp == 1 {
            (1, out_phys[out_phys.len() - 2])
        } else {
            (out_phys[out_phys.len() - 3], out_phys[out_phys.len() - 2])
        };
        let dil: Vec<usize> = spec.dilations().to_vec();
        let st: Vec<usize> = spec.strides().to_vec();
        let (dh, dw, sh, sw) = if sp == 1 {
            (1, dil[0], 1, st[0])
        } else {
            (dil[0], dil[1], st[0], st[1])
        };
        let pads = Self::padding(spec, [h, w], [dh, dw], [oh, ow])?;
        let y4 = self.new_tensor(format!("{name}.nhwc_out"), vec![n, oh, ow, o]);
        let geom = kops::ConvGeom {
            stride: [sh, sw],
            dilation: [dh, dw],
            pad: pads,
            groups: g,
        };
        self.g.push(Node::new(
            name.clone(),
            OpParams::Conv2d(kops::ConvParams::new(geom)),
            vec![Some(x), Some(wt), bias],
            vec![y4],
        ));
        let y = self.reshape(y4, out_phys, name);
        self.set_act(node, y, want);
        Ok(())
    }

    fn pool(
        &mut self,
        node: &TypedNode,
        spec: &PoolSpec,
        kind: OpKind,
        count_include_pad: bool,
    ) -> Result<()> {
        let name = node.name.clone();
        if spec.dilations().iter().any(|&d| d != 1) {
            bail!("dilated pooling is not supported");
        }
        let (x, want, [n, h, w, c]) = self.nhwc_in(node.inputs[0], spec, &name)?;
        let sp = spec.kernel_shape.len();
        let (kh, kw) = if sp == 1 {
            (1, spec.kernel_shape[0])
        } else {
            (spec.kernel_shape[0], spec.kernel_shape[1])
        };
        let st: Vec<usize> = spec.strides().to_vec();
        let (sh, sw) = if sp == 1 { (1, st[0]) } else { (st[0], st[1]) };
        let out_shape = self.shape(OutletId::new(node.id, 0))?;
        let out_phys: Vec<usize> = want.iter().map(|&l| out_shape[l]).collect();
        let (oh, ow) = if sp == 1 {
            (1, out_phys[out_phys.len() - 2])
        } else {
            (out_phys[out_phys.len() - 3], out_phys[out_phys.len() - 2])
        };
        let mut pads = Self::padding(spec, [h, w], [1, 1], [oh, ow])?;
        // Ceil mode: extend the bottom/right padding so the floor formula yields tract's output
        // size; the extension is never counted by average pooling.
        let need_b = ((oh - 1) * sh + kh).saturating_sub(h + pads[0]);
        let need_r = ((ow - 1) * sw + kw).saturating_sub(w + pads[1]);
        let extra_b = need_b.saturating_sub(pads[2]);
        let extra_r = need_r.saturating_sub(pads[3]);
        pads[2] += extra_b;
        pads[3] += extra_r;
        let y4 = self.new_tensor(format!("{name}.nhwc_out"), vec![n, oh, ow, c]);
        if pads.iter().any(|&p| p >= 1 << 15) {
            bail!("pooling padding {pads:?} too large");
        }
        let mut p = kops::PoolParams::new([kh, kw], [sh, sw]);
        p.window.pad = pads;
        p.window.ceil_extra = [extra_b, extra_r];
        p.window.count_include_pad = count_include_pad;
        self.g.push(Node::new(
            name.clone(),
            pool_op(kind == OpKind::MaxPool, p),
            vec![Some(x)],
            vec![y4],
        ));
        let y = self.reshape(y4, out_phys, name);
        self.set_act(node, y, want);
        Ok(())
    }

    fn einsum(&mut self, node: &TypedNode, e: &EinSum) -> Result<()> {
        let name = node.name.clone();
        if node.inputs.len() != 2 {
            bail!("einsum with {} inputs", node.inputs.len());
        }
        let (ia, ib) = (node.inputs[0], node.inputs[1]);
        let (sa, sb) = (self.shape(ia)?, self.shape(ib)?);
        let so = self.shape(OutletId::new(node.id, 0))?;
        #[derive(Clone, Copy)]
        struct Ax {
            a: Option<usize>,
            b: Option<usize>,
            o: Option<usize>,
        }
        let mut axes = Vec::new();
        for ax in e.axes.iter_all_axes() {
            let one = |v: &TVec<usize>| -> Result<Option<usize>> {
                match v.len() {
                    0 => Ok(None),
                    1 => Ok(Some(v[0])),
                    _ => bail!("einsum with a repeated axis (diagonal) is not supported"),
                }
            };
            axes.push(Ax {
                a: one(&ax.inputs[0])?,
                b: one(&ax.inputs[1])?,
                o: one(&ax.outputs[0])?,
            });
        }
        let size = |x: &Ax| {
            x.o.map(|i| so[i])
                .or(x.a.map(|i| sa[i]))
                .or(x.b.map(|i| sb[i]))
                .unwrap_or(1)
        };
        for x in &axes {
            let single = (x.a.is_some() as u8 + x.b.is_some() as u8) == 1 && x.o.is_none();
            if single && size(x) != 1 {
                bail!("einsum summing an axis of a single operand is not supported");
            }
        }
        let mut batch: Vec<Ax> = axes
            .iter()
            .copied()
            .filter(|x| x.a.is_some() && x.b.is_some() && x.o.is_some())
            .collect();
        batch.sort_by_key(|x| x.o);
        let mut m: Vec<Ax> = axes
            .iter()
            .copied()
            .filter(|x| x.a.is_some() && x.b.is_none() && x.o.is_some())
            .collect();
        m.sort_by_key(|x| x.o);
        let mut nn: Vec<Ax> = axes
            .iter()
            .copied()
            .filter(|x| x.a.is_none() && x.b.is_some() && x.o.is_some())
            .collect();
        nn.sort_by_key(|x| x.o);
        let k: Vec<Ax> = axes
            .iter()
            .copied()
            .filter(|x| x.a.is_some() && x.b.is_some() && x.o.is_none())
            .collect();
        let a_rest: Vec<usize> = axes
            .iter()
            .filter(|x| x.a.is_some() && x.b.is_none() && x.o.is_none())
            .filter_map(|x| x.a)
            .collect();
        let b_rest: Vec<usize> = axes
            .iter()
            .filter(|x| x.b.is_some() && x.a.is_none() && x.o.is_none())
            .filter_map(|x| x.b)
            .collect();
        let o_only: Vec<usize> = axes
            .iter()
            .filter(|x| x.o.is_some() && x.a.is_none() && x.b.is_none())
            .filter_map(|x| x.o)
            .collect();
        let prod = |v: &[Ax], s: &[usize], f: fn(&Ax) -> Option<usize>| -> usize {
            v.iter().map(|x| f(x).map_or(1, |i| s[i])).product()
        };
        let (mm, kk, nsz) = (
            prod(&m, &sa, |x| x.a),
            prod(&k, &sa, |x| x.a),
            prod(&nn, &sb, |x| x.b),
        );
        let a_is_const = self.const_of(ia).is_some();
        let b_is_const = self.const_of(ib).is_some();
        // Output physical order and its logical positions.
        let (flat, order): (TId, Vec<Ax>) = if batch.is_empty() && (b_is_const || a_is_const) {
            let (xo, wo, xrows, wrows, xsz, wsz, rows, cols) = if b_is_const {
                (ia, ib, &m, &nn, &sa, &sb, mm, nsz)
            } else {
                (ib, ia, &nn, &m, &sb, &sa, nsz, mm)
            };
            let x_is_a = b_is_const;
            let pick = |x: &Ax, is_a: bool| if is_a { x.a } else { x.b };
            let mut want_x: Vec<usize> = xrows.iter().filter_map(|x| pick(x, x_is_a)).collect();
            want_x.extend(k.iter().filter_map(|x| pick(x, x_is_a)));
            want_x.extend(if x_is_a { &a_rest } else { &b_rest });
            let mut want_w: Vec<usize> = wrows.iter().filter_map(|x| pick(x, !x_is_a)).collect();
            want_w.extend(k.iter().filter_map(|x| pick(x, !x_is_a)));
            want_w.extend(if x_is_a { &b_rest } else { &a_rest });
            let _ = (xsz, wsz);
            let xt = self.act(xo, &want_x)?;
            let xt = self.reshape(xt, vec![rows, kk], format!("{name}.rows"));
            let wk = self
                .const_of(wo)
                .ok_or_else(|| anyhow!("weights not constant"))?;
            let (_, wdata) = permute(&self.shape(wo)?, &tensor_f32(&wk)?, &want_w);
            let wt = self
                .g
                .add_const_f32(format!("{name}.weights"), vec![cols, kk], wdata);
            let y = self.new_tensor(format!("{name}.flat"), vec![rows, cols]);
            self.g.push(Node::new(
                name.clone(),
                OpParams::Dense(kops::DenseParams::default()),
                vec![Some(xt), Some(wt), None],
                vec![y],
            ));
            let mut order = xrows.clone();
            order.extend(wrows.iter().copied());
            (y, order)
        } else {
            let mut want_a: Vec<usize> = batch.iter().filter_map(|x| x.a).collect();
            want_a.extend(m.iter().filter_map(|x| x.a));
            want_a.extend(k.iter().filter_map(|x| x.a));
            want_a.extend(&a_rest);
            let mut want_b: Vec<usize> = batch.iter().filter_map(|x| x.b).collect();
            want_b.extend(k.iter().filter_map(|x| x.b));
            want_b.extend(nn.iter().filter_map(|x| x.b));
            want_b.extend(&b_rest);
            let at = self.act(ia, &want_a)?;
            let bt = self.act(ib, &want_b)?;
            let mut ashape: Vec<usize> = batch.iter().map(|x| x.a.map_or(1, |i| sa[i])).collect();
            ashape.extend([mm, kk]);
            let mut bshape: Vec<usize> = batch.iter().map(|x| x.b.map_or(1, |i| sb[i])).collect();
            bshape.extend([kk, nsz]);
            let mut yshape: Vec<usize> = batch.iter().map(size).collect();
            yshape.extend([mm, nsz]);
            if yshape.len() > 6 {
                bail!("einsum with more than 4 batch axes");
            }
            let at = self.reshape(at, ashape, format!("{name}.a"));
            let bt = self.reshape(bt, bshape, format!("{name}.b"));
            let y = self.new_tensor(format!("{name}.flat"), yshape);
            self.g.push(Node::new(
                name.clone(),
                OpParams::MatMul(kops::MatMulParams::default()),
                vec![Some(at), Some(bt), None],
                vec![y],
            ));
            let mut order = batch.clone();
            order.extend(m.iter().copied());
            order.extend(nn.iter().copied());
            (y, order)
        };
        let mut perm: Vec<usize> = order.iter().filter_map(|x| x.o).collect();
        perm.extend(&o_only);
        let phys: Vec<usize> = perm.iter().map(|&l| so[l]).collect();
        let y = self.reshape(flat, phys, name);
        self.set_act(node, y, perm);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::permute;

    #[test]
    fn permute_nchw_to_nhwc() {
        // [1, 2, 2, 2] NCHW -> NHWC
        let data: Vec<u32> = (0..8).collect();
        let (phys, out) = permute(&[1, 2, 2, 2], &data, &[0, 2, 3, 1]);
        assert_eq!(phys, vec![1, 2, 2, 2]);
        assert_eq!(out, vec![0, 4, 1, 5, 2, 6, 3, 7]);
    }
}
