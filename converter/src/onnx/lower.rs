//! Lowering: each tract core op to kiln ops (the op mapping; layouts come from `layout`).

use super::layout::{identity, permute};
use super::{Imp, Val};
use crate::ir::{pool_op, Node};
use anyhow::{anyhow, bail, Result};
use kiln_runtime::format::MAX_RANK;
use kiln_runtime::ops::{
    self as kops, BinaryKind, BinaryParams, Compare, OpParams, UnaryKind, UnaryParams,
};
use kiln_runtime::{DType, OpKind};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::{
    Gather, GatherElements, MultiBroadcastTo, Pad, PadMode, Slice, Tile, TypedConcat,
};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::conv::KernelFormat;
use tract_onnx::tract_core::ops::cnn::{Conv, Deconv, MaxPool, PaddingSpec, PoolSpec, SumPool};
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::identity::Identity;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::logic::Iff;
use tract_onnx::tract_core::ops::nn::resize::{
    CoordTransformer, Interpolator, Nearest as CoreNearest, NearestUpsample, Resize as CoreResize,
};
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm, Softmax, SoftmaxKind};
use tract_onnx::tract_core::ops::quant::{DequantizeLinearF32, QuantizeLinearI8, QuantizeLinearU8};
use tract_onnx::tract_core::ops::source::TypedSource;
use tract_onnx::tract_hir::internal::DimLike;
use tract_onnx_opl::resize::{
    AspectRatio, CoordTransform, Nearest as OnnxNearest, Resize as OnnxResize,
};

pub(super) fn tensor_f32(t: &Tensor) -> Result<Vec<f32>> {
    let t = t.cast_to::<f32>().map_err(|e| anyhow!("{e:?}"))?;
    let view = t
        .to_plain_array_view::<f32>()
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(view.iter().copied().collect())
}

/// `Some(())` if kiln cannot import a tract op, `None` if its type is one kiln maps.
pub(super) fn unsupported_reason(model: &TypedModel, node: &TypedNode) -> Option<()> {
    let op = &node.op;
    let ok = op.downcast_ref::<TypedSource>().is_some()
        || prelu_pattern(model, node).is_some()
        || elu_pattern(model, node).is_some()
        || is_select_test(model, node)
        || is_select(model, node)
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
        || op.downcast_ref::<RmsNorm>().is_some()
        || op.downcast_ref::<Deconv>().is_some()
        || resize_spec(model, node).is_ok()
        || op.downcast_ref::<NearestUpsample>().is_some()
        || super::recurrent::scan_supported(model, node)
        || super::recurrent::gru_supported(model, node)
        || op
            .downcast_ref::<tract_onnx::tract_core::ops::lstm_cell::LstmEpilogue>()
            .is_some()
        || op
            .downcast_ref::<Tile>()
            .is_some_and(|t| t.multipliers.iter().all(|m| m.to_usize().is_ok()))
        || ((op.downcast_ref::<Gather>().is_some()
            || op.downcast_ref::<GatherElements>().is_some())
            && node
                .inputs
                .get(1)
                .is_some_and(|&i| model.outlet_fact(i).is_ok_and(|f| f.konst.is_some())))
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
    (!ok).then_some(())
}

/// The slope of a PRelu as tract expands it: `Iff(x < 0, x * slope, x)`, the test written
/// `GT(0, x)` (ONNX PRelu) or `LT(x, 0)` (the ONNX function body). Returns `(x, slope)`.
pub(super) fn prelu_pattern(model: &TypedModel, node: &TypedNode) -> Option<(OutletId, OutletId)> {
    let (_, product, x) = select_below_zero(model, node)?;
    let m = model.node(product.node);
    let mul = m.op.downcast_ref::<TypedBinOp>()?;
    let slope = match (mul.0.name(), &m.inputs[..]) {
        ("Mul", &[a, b]) if a == x => b,
        ("Mul", &[a, b]) if b == x => a,
        _ => return None,
    };
    Some((x, slope))
}

/// The constant values of `o`, if it is a constant.
fn konst_f32(model: &TypedModel, o: OutletId) -> Option<Vec<f32>> {
    model
        .outlet_fact(o)
        .ok()
        .and_then(|f| f.konst.clone())
        .and_then(|k| tensor_f32(&k).ok())
}

/// `Iff(x < 0, t, x)` (or `0 > x`), or `Iff(x > 0, x, t)` (or `0 < x`): the shapes tract gives
/// PRelu and Elu (both branches agree at 0). Returns the test, `t` (the value for negative x)
/// and `x`.
fn select_below_zero(
    model: &TypedModel,
    node: &TypedNode,
) -> Option<(OutletId, OutletId, OutletId)> {
    node.op.downcast_ref::<Iff>()?;
    let [test, a, b] = node.inputs[..] else {
        return None;
    };
    if test.slot != 0 || a.slot != 0 || b.slot != 0 {
        return None;
    }
    let t = model.node(test.node);
    let cmp = t.op.downcast_ref::<TypedBinOp>()?;
    let is_zero = |o: OutletId| konst_f32(model, o).is_some_and(|v| v.iter().all(|&e| e == 0.0));
    match (cmp.0.name(), &t.inputs[..]) {
        // x < 0: the negative branch is `then`.
        ("GT", &[zero, v]) | ("LT", &[v, zero]) if is_zero(zero) && v == b => Some((test, a, b)),
        // x > 0: the negative branch is `else`.
        ("GT", &[v, zero]) | ("LT", &[zero, v]) if is_zero(zero) && v == a => Some((test, b, a)),
        _ => None,
    }
}

/// ONNX Elu as tract expands it: `Iff(0 < x, x, alpha · (exp(x) - 1))`, `alpha` a scalar
/// constant (either orientation of the test). Returns `x` and `alpha`.
pub(super) fn elu_pattern(model: &TypedModel, node: &TypedNode) -> Option<(OutletId, f32)> {
    let (_, then, x) = select_below_zero(model, node)?;
    let scalar = |o: OutletId| match konst_f32(model, o)?[..] {
        [v] => Some(v),
        _ => None,
    };
    let m = model.node(then.node);
    let (alpha, diff) = match (m.op.downcast_ref::<TypedBinOp>()?.0.name(), &m.inputs[..]) {
        ("Mul", &[a, b]) => match (scalar(a), scalar(b)) {
            (Some(v), None) => (v, b),
            (None, Some(v)) => (v, a),
            _ => return None,
        },
        _ => return None,
    };
    let d = model.node(diff.node);
    let e = match (d.op.downcast_ref::<TypedBinOp>()?.0.name(), &d.inputs[..]) {
        ("Sub", &[e, one]) if scalar(one) == Some(1.0) => e,
        _ => return None,
    };
    let en = model.node(e.node);
    let exp = en.op.downcast_ref::<ElementWiseOp>()?;
    (exp.0.name() == "Exp" && en.inputs[..] == [x]).then_some((x, alpha))
}

/// What kiln's resize needs from a tract Resize (the core op or ONNX's own): bilinear or
/// nearest, the transform and rounding, and per axis the ONNX scale (given, or output / input
/// length when sizes were given). An error names what kiln does not run.
pub(super) fn resize_spec(
    model: &TypedModel,
    node: &TypedNode,
) -> Result<(bool, kops::Transform, kops::NearestRounding, Vec<f32>)> {
    use kops::{NearestRounding as R, Transform as T};
    let konst = |ix: Option<usize>| {
        ix.and_then(|i| node.inputs.get(i))
            .and_then(|&o| konst_f32(model, o))
            .filter(|v| !v.is_empty())
    };
    let (ct, interp, rounding, scales, axes) = if let Some(r) = node.op.downcast_ref::<CoreResize>()
    {
        let rounding = match r.nearest {
            CoreNearest::Floor => R::Floor,
            CoreNearest::RoundPreferCeil => R::RoundPreferCeil,
        };
        (
            r.coord_transformer.clone(),
            r.interpolator.clone(),
            rounding,
            konst(r.optional_scales_input),
            None,
        )
    } else if let Some(r) = node.op.downcast_ref::<OnnxResize>() {
        if r.antialias || r.exclude_outside || r.keep_aspect_ratio_policy != AspectRatio::Stretch {
            bail!("Resize with antialias, exclude_outside or keep_aspect_ratio_policy is not supported");
        }
        let CoordTransform::Plain(ct) = &r.coord_transformer else {
            bail!("Resize with tf_crop_and_resize is not supported");
        };
        let rounding = match r.nearest {
            OnnxNearest::Floor => R::Floor,
            OnnxNearest::Ceil => R::Ceil,
            OnnxNearest::RoundPreferFloor => R::RoundPreferFloor,
            OnnxNearest::RoundPreferCeil => R::RoundPreferCeil,
        };
        (
            ct.clone(),
            r.interpolator.clone(),
            rounding,
            konst(r.optional_scales_input),
            r.axes.clone(),
        )
    } else {
        bail!("not a resize");
    };
    let bilinear = match interp {
        Interpolator::Nearest => false,
        Interpolator::Linear => true,
        Interpolator::Cubic => bail!("cubic Resize is not supported (nearest and linear are)"),
    };
    let transform = match ct {
        CoordTransformer::HalfPixel => T::HalfPixel,
        CoordTransformer::AlignCorners => T::AlignCorners,
        CoordTransformer::Asymmetric => T::Asymmetric,
        CoordTransformer::PytorchHalfPixel => T::PytorchHalfPixel,
        other => bail!(
            "Resize with coordinate_transformation_mode {} is not supported",
            other.as_str()
        ),
    };
    let xs = model
        .outlet_fact(node.inputs[0])
        .ok()
        .and_then(|f| f.shape.as_concrete().map(|s| s.to_vec()))
        .ok_or_else(|| anyhow!("Resize of a tensor without a concrete shape"))?;
    let ys = model
        .outlet_fact(OutletId::new(node.id, 0))
        .ok()
        .and_then(|f| f.shape.as_concrete().map(|s| s.to_vec()))
        .ok_or_else(|| anyhow!("Resize without a concrete output shape"))?;
    if xs.len() != 4 {
        bail!(
            "Resize of a rank-{} tensor is not supported (4-D NCHW is)",
            xs.len()
        );
    }
    let r = xs.len() as i64;
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&a| a.rem_euclid(r) as usize).collect(),
        None => (0..xs.len()).collect(),
    };
    let mut per_axis: Vec<f32> = (0..xs.len()).map(|a| ys[a] as f32 / xs[a] as f32).collect();
    if let Some(sc) = scales {
        if sc.len() != axes.len() {
            bail!("Resize scales do not match its axes");
        }
        for (&a, &v) in axes.iter().zip(&sc) {
            per_axis[a] = v;
        }
    }
    if xs[0] != ys[0] || xs[1] != ys[1] {
        bail!("Resize of the batch or channel axis is not supported (height and width are)");
    }
    if !per_axis[2..].iter().all(|s| s.is_finite() && *s > 0.0) {
        bail!("Resize scales must be positive");
    }
    Ok((bilinear, transform, rounding, per_axis[2..].to_vec()))
}

/// kiln's [`Compare`] for a tract comparison op (`LT`, `LTE`, `GT`, `GTE`, `Eq`, `NE`).
fn compare_kind(node: &TypedNode) -> Option<Compare> {
    Some(match node.op.downcast_ref::<TypedBinOp>()?.0.name() {
        "LT" => Compare::Lt,
        "LTE" => Compare::Le,
        "GT" => Compare::Gt,
        "GTE" => Compare::Ge,
        "Eq" => Compare::Eq,
        "NE" => Compare::Ne,
        _ => return None,
    })
}

/// A comparison whose only readers are `Iff`s that test it (ONNX `Where`, and the functions
/// tract expands into one): it is folded into the reader, a PRelu or Elu pattern or kiln's
/// select op, and emits nothing itself.
fn is_select_test(model: &TypedModel, node: &TypedNode) -> bool {
    if compare_kind(node).is_none() {
        return false;
    }
    let float = node.inputs.iter().all(|&i| {
        model
            .outlet_fact(i)
            .is_ok_and(|f| f.datum_type == f32::datum_type())
    });
    let readers = &node.outputs[0].successors;
    float
        && !readers.is_empty()
        && readers.iter().all(|r| {
            let n = model.node(r.node);
            n.op.downcast_ref::<Iff>().is_some() && r.slot == 0
        })
}

/// Whether an `Iff` can be a select: its test is a comparison of f32 values, or a constant.
fn is_select(model: &TypedModel, node: &TypedNode) -> bool {
    node.op.downcast_ref::<Iff>().is_some()
        && node.inputs.first().is_some_and(|&c| {
            is_select_test(model, model.node(c.node))
                || model.outlet_fact(c).is_ok_and(|f| f.konst.is_some())
        })
}

pub(super) fn binary_kind(b: &TypedBinOp) -> Option<BinaryKind> {
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

pub(super) fn unary_kind(e: &ElementWiseOp) -> Option<(UnaryKind, f32, f32)> {
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
        "Asin" => (UnaryKind::Asin, 0.0, 0.0),
        "Acos" => (UnaryKind::Acos, 0.0, 0.0),
        "Atan" => (UnaryKind::Atan, 0.0, 0.0),
        "Sinh" => (UnaryKind::Sinh, 0.0, 0.0),
        "Cosh" => (UnaryKind::Cosh, 0.0, 0.0),
        "Asinh" => (UnaryKind::Asinh, 0.0, 0.0),
        "Acosh" => (UnaryKind::Acosh, 0.0, 0.0),
        "Atanh" => (UnaryKind::Atanh, 0.0, 0.0),
        "Sign" => (UnaryKind::Sign, 0.0, 0.0),
        "RoundHalfToEven" => (UnaryKind::Round, 0.0, 0.0),
        _ => return None,
    })
}
impl Imp<'_> {
    pub(super) fn node(&mut self, node: &TypedNode) -> Result<()> {
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
        if let Some(d) = op.downcast_ref::<Deconv>() {
            return self.deconv(node, d);
        }
        if let Some(m) = op.downcast_ref::<MaxPool>() {
            return self.pool(node, &m.pool_spec, OpKind::MaxPool, false);
        }
        if let Some(s) = op.downcast_ref::<SumPool>() {
            return self.pool(node, &s.pool_spec, OpKind::AvgPool, s.count_include_pad);
        }
        if is_select_test(self.model, node) {
            return Ok(()); // read by the Iff that tests it (a prelu, elu or select below)
        }
        // PRelu with constant slopes; other slopes run as the select below.
        let prelu = prelu_pattern(self.model, node).filter(|&(_, s)| self.const_of(s).is_some());
        if let Some((x, slope)) = prelu {
            let (xt, perm) = self.any_act(x)?;
            let st = self.act(slope, &perm)?;
            let shape = self.shape_of(xt);
            let op = OpParams::Prelu(kops::PreluParams);
            return self.emit(node, op, vec![Some(xt), Some(st)], shape, perm);
        }
        if let Some((x, alpha)) = elu_pattern(self.model, node) {
            let (xt, perm) = self.any_act(x)?;
            let shape = self.shape_of(xt);
            let op = OpParams::Unary(kops::UnaryParams {
                kind: kops::UnaryKind::Elu,
                a: alpha,
                b: 0.0,
            });
            return self.emit(node, op, vec![Some(xt)], shape, perm);
        }
        if is_select(self.model, node) {
            return self.select(node);
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
        // tract stores the reciprocal of the scale; the DequantizeLinear that usually follows
        // carries the exact one. uint8 is the same real values as int8 with the zero point
        // moved by -128.
        let quantize = op.downcast_ref::<ElementWiseOp>().and_then(|e| {
            let (u8, i8) = (
                e.0.downcast_ref::<QuantizeLinearU8>(),
                e.0.downcast_ref::<QuantizeLinearI8>(),
            );
            u8.map(|q| (q.scale, q.zero_point as i32 - 128))
                .or(i8.map(|q| (q.scale, q.zero_point as i32)))
        });
        if let Some((inv_scale, zero_point)) = quantize {
            self.vals.insert(
                out,
                Val::QuantOf {
                    src: node.inputs[0],
                    scale: 1.0 / inv_scale,
                    zero_point,
                },
            );
            return Ok(());
        }
        if let Some(e) = op.downcast_ref::<ElementWiseOp>() {
            let (kind, a, b) =
                unary_kind(e).ok_or_else(|| anyhow!("unsupported element-wise op"))?;
            let (x, perm) = self.any_act(node.inputs[0])?;
            let (op, shape) = (
                OpParams::Unary(UnaryParams { kind, a, b }),
                self.shape_of(x),
            );
            return self.emit(node, op, vec![Some(x)], shape, perm);
        }
        if let Some(s) = op.downcast_ref::<Softmax>() {
            return self.softmax(node, s);
        }
        if let Some(r) = op.downcast_ref::<RmsNorm>() {
            return self.rms_norm(node, r);
        }
        if op.downcast_ref::<CoreResize>().is_some() || op.downcast_ref::<OnnxResize>().is_some() {
            return self.resize(node);
        }
        if let Some(s) = op.downcast_ref::<tract_onnx::tract_core::ops::scan::Scan>() {
            return self.scan(node, s);
        }
        if let Some(e) = op.downcast_ref::<tract_onnx::tract_core::ops::lstm_cell::LstmEpilogue>() {
            return self.lstm_epilogue(node, e);
        }
        if let Some(g) = op.downcast_ref::<tract_onnx::tract_core::ops::gru_seq::GruSeq>() {
            return self.gru_seq(node, g);
        }
        if let Some(u) = op.downcast_ref::<NearestUpsample>() {
            // Integer factors: every element repeated, as gathers in x's layout.
            let (x, perm) = self.any_act(node.inputs[0])?;
            let phys: Vec<usize> = perm.iter().map(|&l| u.scales[l]).collect();
            let y = self.g.repeat(x, &phys, &name, None);
            self.set_act(node, y, perm);
            return Ok(());
        }
        if let Some(t) = op.downcast_ref::<Tile>() {
            let reps: Vec<usize> = t
                .multipliers
                .iter()
                .map(|m| m.to_usize().map_err(|e| anyhow!("{e:?}")))
                .collect::<Result<_>>()?;
            let (x, perm) = self.any_act(node.inputs[0])?;
            // Repeats in the physical order of x's layout.
            let phys: Vec<usize> = perm.iter().map(|&l| reps[l]).collect();
            // Nothing repeated: the input itself, as an Identity.
            let y = self.g.tile(x, &phys, &name, None);
            self.set_act(node, y, perm);
            return Ok(());
        }
        if let Some(g) = op.downcast_ref::<Gather>() {
            return self.gather(node, g.axis, false);
        }
        if let Some(g) = op.downcast_ref::<GatherElements>() {
            return self.gather(node, g.axis, true);
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
            let op = OpParams::Reduce(kops::ReduceParams::new(reducer, mask));
            return self.emit(node, op, vec![Some(x)], shape, perm);
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
    pub(super) fn dequantize(
        &mut self,
        node: &TypedNode,
        scale: f32,
        zero_point: i32,
    ) -> Result<()> {
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

    pub(super) fn slice(
        &mut self,
        node: &TypedNode,
        axis: usize,
        begin: i64,
        step: i64,
    ) -> Result<()> {
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

    pub(super) fn binary(&mut self, node: &TypedNode, kind: BinaryKind) -> Result<()> {
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

    /// `Iff(test, x, z)` as kiln's select: `cmp(a, b) ? x : z` for a test `a cmp b`, or
    /// `mask != 0 ? x : z` for a constant test.
    fn select(&mut self, node: &TypedNode) -> Result<()> {
        let name = node.name.clone();
        let [c, x, z] = node.inputs[..] else {
            bail!("Iff with {} inputs", node.inputs.len());
        };
        let test = self.model.node(c.node);
        let (cmp, a, b) = match compare_kind(test) {
            Some(k) if self.const_of(c).is_none() => (k, test.inputs[0], Some(test.inputs[1])),
            _ => (Compare::Ne, c, None),
        };
        let operands = [Some(a), b, Some(x), Some(z)];
        let perm = operands
            .iter()
            .flatten()
            .find_map(|&o| self.perm_of(o))
            .ok_or_else(|| anyhow!("no activation input"))?;
        let mut ins = Vec::new();
        for o in operands {
            ins.push(Some(match o {
                Some(o) => self.act(o, &perm)?,
                None => self
                    .g
                    .add_const_f32(format!("{name}.zero"), vec![1], vec![0.0]),
            }));
        }
        let out_shape = self.shape(OutletId::new(node.id, 0))?;
        let phys: Vec<usize> = perm.iter().map(|&p| out_shape[p]).collect();
        let op = OpParams::Select(kops::SelectParams { cmp });
        self.emit(node, op, ins, phys, perm)
    }

    /// ONNX `Gather` (`elements` false) or `GatherElements` with constant indices, as kiln's
    /// gather on the data in its logical layout. Negative indices count from the end; a scalar
    /// index gathers one slice and drops the axis (a reshape after the gather).
    fn gather(&mut self, node: &TypedNode, axis: usize, elements: bool) -> Result<()> {
        let name = node.name.clone();
        let what = if elements { "GatherElements" } else { "Gather" };
        let k = self
            .const_of(node.inputs[1])
            .ok_or_else(|| anyhow!("{what} with non-constant indices is not supported"))?;
        let xs = self.shape(node.inputs[0])?;
        let n = xs[axis] as i64;
        let k = k.cast_to::<i64>().map_err(|e| anyhow!("{e:?}"))?;
        let mut idx = Vec::with_capacity(k.len());
        let view = k
            .to_plain_array_view::<i64>()
            .map_err(|e| anyhow!("{e:?}"))?;
        for &i in view.iter() {
            let j = if i < 0 { i + n } else { i };
            if !(0..n).contains(&j) {
                bail!("{what} index {i} is outside the {n} entries of axis {axis}");
            }
            idx.push(j as i32);
        }
        let mut ishape = k.shape().to_vec();
        let out = self.shape(OutletId::new(node.id, 0))?;
        let mut yshape = out.clone();
        if ishape.is_empty() {
            ishape = vec![1];
            yshape.insert(axis, 1);
        }
        if xs.len() > MAX_RANK || yshape.len() > MAX_RANK || ishape.len() > MAX_RANK {
            bail!(
                "{what} of rank {} is not supported (kiln tensors have at most {MAX_RANK} axes)",
                yshape.len()
            );
        }
        let r = xs.len();
        let x = self.act(node.inputs[0], &identity(r))?;
        let it = self.g.add_const_i32(format!("{name}.indices"), idx);
        self.g.tensors[it].shape = ishape;
        let dtype = self.g.tensors[x].dtype;
        let y = self.g.add_tensor(name.clone(), dtype, yshape);
        self.g.tensors[y].quant = self.g.tensors[x].quant;
        self.g.push(Node::new(
            name.clone(),
            OpParams::Gather(kops::GatherParams { axis, elements }),
            vec![Some(x), Some(it)],
            vec![y],
        ));
        let y = self.reshape(y, out.clone(), format!("{name}.squeeze"));
        self.set_act(node, y, identity(out.len()));
        Ok(())
    }

    /// ONNX Resize (NCHW, height and width) as kiln's resize on the NHWC layout.
    fn resize(&mut self, node: &TypedNode) -> Result<()> {
        let (bilinear, transform, rounding, scale) = resize_spec(self.model, node)?;
        let want = vec![0, 2, 3, 1];
        let x = self.act(node.inputs[0], &want)?;
        let out = self.shape(OutletId::new(node.id, 0))?;
        let phys: Vec<usize> = want.iter().map(|&a| out[a]).collect();
        let p = kops::ResizeParams {
            bilinear,
            transform,
            rounding,
            scale: [scale[0], scale[1]],
        };
        self.emit(node, OpParams::Resize(p), vec![Some(x)], phys, want)
    }

    /// tract's `RmsNorm` (how it reads ONNX LayerNormalization, after subtracting the mean, and
    /// RMSNormalization): `x / sqrt(mean(x², axis) + eps)`, as kiln's mean-of-squares reduce,
    /// an add of eps, rsqrt and a broadcasting multiply.
    fn rms_norm(&mut self, node: &TypedNode, r: &RmsNorm) -> Result<()> {
        let name = node.name.clone();
        let eps = match tensor_f32(&r.eps)?[..] {
            [e] => e,
            _ => bail!("RmsNorm epsilon is not a scalar"),
        };
        let (x, perm) = self.any_act(node.inputs[0])?;
        let p = perm
            .iter()
            .position(|&q| q == r.axis)
            .ok_or_else(|| anyhow!("bad axis"))?;
        let xshape = self.shape_of(x);
        let mut shape = xshape.clone();
        shape[p] = 1;
        let ms = self.new_tensor(format!("{name}.mean_sq"), shape.clone());
        let reduce = kops::ReduceParams::new(kops::Reducer::MeanSquare, 1 << p);
        self.g.push(Node::new(
            format!("{name}.mean_sq"),
            OpParams::Reduce(reduce),
            vec![Some(x)],
            vec![ms],
        ));
        let e = self
            .g
            .add_const_f32(format!("{name}.eps"), vec![1], vec![eps]);
        let var = self.new_tensor(format!("{name}.var"), shape.clone());
        self.g.push(Node::new(
            format!("{name}.var"),
            OpParams::Binary(BinaryParams::new(BinaryKind::Add)),
            vec![Some(ms), Some(e)],
            vec![var],
        ));
        let inv = self.new_tensor(format!("{name}.inv_rms"), shape);
        self.g.push(Node::new(
            format!("{name}.inv_rms"),
            OpParams::Unary(UnaryParams::new(UnaryKind::Rsqrt)),
            vec![Some(var)],
            vec![inv],
        ));
        let op = OpParams::Binary(BinaryParams::new(BinaryKind::Mul));
        self.emit(node, op, vec![Some(x), Some(inv)], xshape, perm)
    }

    pub(super) fn softmax(&mut self, node: &TypedNode, s: &Softmax) -> Result<()> {
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

    /// ONNX ConvTranspose (tract's `Deconv`, kernel regrouped to `[O, I/groups, KH, KW]`) as kiln's
    /// transpose_conv: weights rearranged to `[O, KH, KW, I/groups]`, the padding before each
    /// axis from tract's deconvolution arithmetic, the output size (output padding, explicit
    /// output shape) from the output tensor.
    fn deconv(&mut self, node: &TypedNode, d: &Deconv) -> Result<()> {
        let name = node.name.clone();
        let spec = &d.pool_spec;
        let (x, want, [n, h, w, ci]) = self.nhwc_in(node.inputs[0], spec, &name)?;
        if d.kernel_format != KernelFormat::OIHW {
            bail!(
                "ConvTranspose with a {:?} kernel is not supported",
                d.kernel_format
            );
        }
        let k = self
            .const_of(node.inputs[1])
            .ok_or_else(|| anyhow!("ConvTranspose with non-constant weights is not supported"))?;
        let (kv, ks) = (tensor_f32(&k)?, k.shape().to_vec());
        let sp = spec.kernel_shape.len();
        let g = d.group;
        // tract has already regrouped ONNX's [I, O/g, k..] kernel as [O, I/g, k..].
        let (o, cig) = (ks[0], ks[1]);
        let (kh, kw) = if sp == 1 { (1, ks[2]) } else { (ks[2], ks[3]) };
        if cig * g != ci || o % g != 0 {
            bail!("ConvTranspose weights expect {cig} input channels x {g} groups, the input has {ci}");
        }
        let mut perm = vec![0];
        perm.extend(2..2 + sp);
        perm.push(1);
        let (_, ohwi) = permute(&ks, &kv, &perm);
        let wt = self
            .g
            .add_const_f32(format!("{name}.weights"), vec![o, kh, kw, cig], ohwi);
        let bias = match self.const_of(node.inputs[2]) {
            Some(b) => {
                let bv = tensor_f32(&b)?;
                let bv = if bv.len() == 1 { vec![bv[0]; o] } else { bv };
                if bv.len() != o {
                    bail!("bias has {} values for {o} output channels", bv.len());
                }
                (!bv.iter().all(|&v| v == 0.0))
                    .then(|| self.g.add_const_f32(format!("{name}.bias"), vec![o], bv))
            }
            None => bail!("ConvTranspose with a non-constant bias is not supported"),
        };
        let (out_phys, [oh, ow]) = self.nhwc_out(node, &want, sp)?;
        let dil = spec.dilations().to_vec();
        let st = spec.strides().to_vec();
        let hw: Vec<usize> = if sp == 1 { vec![w] } else { vec![h, w] };
        let dims = spec
            .padding
            .compute_for_deconv(&hw, &spec.kernel_shape, &dil, &st, &d.adjustments)
            .map_err(|e| anyhow!("{e:?}"))?;
        let before: Vec<usize> = dims.iter().map(|c| c.pad_before).collect();
        let (sh, sw, dh, dw, pt, pl) = if sp == 1 {
            (1, st[0], 1, dil[0], 0, before[0])
        } else {
            (st[0], st[1], dil[0], dil[1], before[0], before[1])
        };
        let y4 = self.new_tensor(format!("{name}.nhwc_out"), vec![n, oh, ow, o]);
        let geom = kops::ConvGeom {
            stride: [sh, sw],
            dilation: [dh, dw],
            pad: [pt, pl, 0, 0],
            groups: g,
        };
        let params = kops::TransposeConvParams {
            geom,
            act: kops::Act::NONE,
            rounding: kops::Rounding::Double,
        };
        self.g.push(Node::new(
            name.clone(),
            OpParams::TransposeConv(params),
            vec![Some(x), Some(wt), bias],
            vec![y4],
        ));
        let y = self.reshape(y4, out_phys, name);
        self.set_act(node, y, want);
        Ok(())
    }

    /// The output of a conv/pool in the physical layout `want`, and its spatial size (h, w)
    /// for `sp` spatial axes (a 1-D op is one row).
    fn nhwc_out(
        &self,
        node: &TypedNode,
        want: &[usize],
        sp: usize,
    ) -> Result<(Vec<usize>, [usize; 2])> {
        let out_shape = self.shape(OutletId::new(node.id, 0))?;
        let phys: Vec<usize> = want.iter().map(|&l| out_shape[l]).collect();
        let n = phys.len();
        let hw = if sp == 1 {
            [1, phys[n - 2]]
        } else {
            [phys[n - 3], phys[n - 2]]
        };
        Ok((phys, hw))
    }

    /// Explicit (top, left, bottom, right) padding and output (h, w).
    pub(super) fn padding(
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

    pub(super) fn conv(&mut self, node: &TypedNode, c: &Conv) -> Result<()> {
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
        let (out_phys, [oh, ow]) = self.nhwc_out(node, &want, sp)?;
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

    pub(super) fn pool(
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
        let (out_phys, [oh, ow]) = self.nhwc_out(node, &want, sp)?;
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
}
