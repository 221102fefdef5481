//! A model's last dense layers as a trainable [`Head`]: where they are, their parameters as f32,
//! and the frozen backbone's features for one input.

use super::{Activation, Head, Layer, TrainError, TrainResult, MAX_LAYERS};
use crate::cast::{bytes_as_f16, bytes_as_f32, bytes_as_i16, bytes_as_i32, bytes_as_i8};
use crate::format::{DType, Storage};
use crate::kernels::{f32gemm, qs8};
use crate::model::{Model, Quant, TensorInfo};
use crate::ops::{Act, OpKind, OpParams, UnaryKind};
use crate::session::Session;

/// Where one head layer's parameters are in the model.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Source {
    op: usize,
    weights: usize,
    bias: Option<usize>,
    packed: bool,
}

/// The last `n` dense layers of a model, as a trainable head over the rest (the backbone).
///
/// The ops from [`ModelHead::first_op`] to the end must be: dense layers (f32, f16 or int8
/// weights, packed or not), reshapes, ReLU / tanh / sigmoid activations between them, and
/// optionally a softmax (beta 1, last axis) and a dequantize at the end. The head is trained on
/// the outputs of its last layer (after that layer's activation, if it has one) as logits or
/// regression values; a model's final softmax is the cross-entropy's. An int8 head is trained
/// in f32: weights and biases dequantized with their scales, the int8 saturation of the
/// intermediate outputs dropped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelHead {
    /// The head's layers.
    pub head: Head,
    /// Index of the head's first dense op: ops `0..first_op` are the backbone.
    pub first_op: usize,
    /// The tensor the head reads (the first dense layer's input).
    pub features: usize,
    /// Scale and zero point of int8 features (`None`: f32).
    pub feature_quant: Option<(f32, i32)>,
    /// Whether the model ends with a softmax over the head's outputs.
    pub softmax: bool,
    sources: [Option<Source>; MAX_LAYERS],
}

fn err(op: usize, problem: &'static str) -> TrainError {
    TrainError::Model { op, problem }
}

fn per_tensor(t: &TensorInfo<'_>) -> Option<(f32, i32)> {
    match t.quant {
        Quant::PerTensor { scale, zero_point } => Some((scale, zero_point)),
        _ => None,
    }
}

fn activation(act: Act, out: &TensorInfo<'_>) -> Activation {
    let (lo, hi) = match act {
        Act::Float { lo, hi } => (lo, hi),
        Act::Int8 { lo, hi } => {
            let (s, z) = per_tensor(out).unwrap_or((1.0, 0));
            let f = |q: i32, edge: i32, inf: f32| {
                if q == edge {
                    inf
                } else {
                    s * (q - z) as f32
                }
            };
            (f(lo, -128, f32::NEG_INFINITY), f(hi, 127, f32::INFINITY))
        }
    };
    if lo == f32::NEG_INFINITY && hi == f32::INFINITY {
        Activation::Identity
    } else {
        Activation::Clamp { lo, hi }
    }
}

impl ModelHead {
    /// Finds the last `n` dense layers of `model` (1 to [`MAX_LAYERS`]).
    pub fn find(model: &Model<'_>, n: usize) -> TrainResult<ModelHead> {
        if n == 0 || n > MAX_LAYERS {
            return Err(TrainError::BadHead("a head has 1 to 4 dense layers"));
        }
        if model.num_outputs() != 1 || model.num_ops() == 0 {
            return Err(TrainError::BadHead(
                "fine-tuning needs a model with one output",
            ));
        }
        let last = model.num_ops() - 1;
        if model.op_output(&model.op(last), 0) != model.output_tensor(0)? {
            return Err(err(last, "the last op does not write the model's output"));
        }
        let mut i = last as isize;
        let mut softmax = false;
        // The tensor the op after the current one reads: the chain must be unbroken.
        let mut wanted: Option<usize> = None;
        // Trailing dequantize / softmax.
        if model.op(last).kind == OpKind::Dequantize {
            wanted = model.op_input(&model.op(last), 0);
            i -= 1;
        }
        if i >= 0 && model.op(i as usize).kind == OpKind::Softmax {
            let op = model.op(i as usize);
            let OpParams::Softmax(p) = model.op_params(&op)? else {
                return Err(err(i as usize, "unreadable softmax"));
            };
            let y = model.tensor(model.op_output(&op, 0));
            if p.log || p.beta != 1.0 || p.axis + 1 != y.rank {
                return Err(err(
                    i as usize,
                    "the final softmax must be a plain softmax (beta 1) over the last axis",
                ));
            }
            if wanted.is_some_and(|w| w != model.op_output(&op, 0)) {
                return Err(err(i as usize, "the head's ops do not form one chain"));
            }
            wanted = model.op_input(&op, 0);
            softmax = true;
            i -= 1;
        }
        let mut layers = [Layer {
            inputs: 1,
            outputs: 1,
            act: Activation::Identity,
        }; MAX_LAYERS];
        let mut sources = [None; MAX_LAYERS];
        let mut found = 0;
        let mut pending: Option<Activation> = None;
        let mut first_op = 0;
        while found < n {
            if i < 0 {
                return Err(TrainError::BadHead(
                    "the model has fewer dense layers at its end than the head asks for",
                ));
            }
            let k = i as usize;
            let op = model.op(k);
            let out = model.op_output(&op, 0);
            if let Some(w) = wanted {
                if w != out {
                    return Err(err(k, "the head's ops do not form one chain"));
                }
            }
            let x = model
                .op_input(&op, 0)
                .ok_or(err(k, "a head op without an input"))?;
            match model.op_params(&op)? {
                OpParams::Reshape(_) => {}
                OpParams::Unary(u) => {
                    if model.tensor(x).dtype != DType::F32 {
                        return Err(err(k, "int8 activations inside a head are not supported"));
                    }
                    let a = match u.kind {
                        UnaryKind::Relu => Activation::Clamp {
                            lo: 0.0,
                            hi: f32::INFINITY,
                        },
                        UnaryKind::Tanh => Activation::Tanh,
                        UnaryKind::Sigmoid => Activation::Sigmoid,
                        _ => {
                            return Err(err(
                                k,
                                "only relu, tanh and sigmoid may sit between head layers",
                            ))
                        }
                    };
                    if pending.replace(a).is_some() {
                        return Err(err(k, "two activations in a row inside the head"));
                    }
                }
                OpParams::Dense(p) if p.sparse => {
                    return Err(err(
                        k,
                        "a head layer with sparse weights cannot be trained (quantize it with \
                         --sparse off)",
                    ));
                }
                OpParams::Dense(p) => {
                    let (xt, wt, yt) = (model.tensor(x), model.op_input(&op, 1), model.tensor(out));
                    let wt = wt.ok_or(err(k, "dense without weights"))?;
                    let w = model.tensor(wt);
                    let (m, kk) = (w.dims[0], w.dims[1]);
                    if xt.len() != kk || yt.len() != m {
                        return Err(err(
                            k,
                            "head layers must act on one vector (a batch of 1, [1, K])",
                        ));
                    }
                    let mut act = activation(p.act, &yt);
                    if let Some(a) = pending.take() {
                        if act != Activation::Identity {
                            return Err(err(k, "a dense layer with two activations"));
                        }
                        act = a;
                    }
                    layers[n - 1 - found] = Layer {
                        inputs: kk,
                        outputs: m,
                        act,
                    };
                    sources[n - 1 - found] = Some(Source {
                        op: k,
                        weights: wt,
                        bias: model.op_input(&op, 2),
                        packed: p.packed,
                    });
                    found += 1;
                    first_op = k;
                }
                _ => {
                    return Err(err(
                        k,
                        "only dense layers, reshapes, relu/tanh/sigmoid and a final softmax \
                         may follow the backbone",
                    ))
                }
            }
            wanted = Some(x);
            i -= 1;
        }
        if pending.is_some() {
            return Err(err(
                first_op,
                "an activation directly on the backbone's features belongs to the backbone: \
                 choose a head that starts at a dense layer",
            ));
        }
        let first = model.op(first_op);
        let features = model
            .op_input(&first, 0)
            .ok_or(err(first_op, "dense without input"))?;
        let ft = model.tensor(features);
        if ft.storage != Storage::Arena {
            return Err(err(first_op, "the head's input is a constant"));
        }
        let feature_quant = match ft.dtype {
            DType::F32 => None,
            DType::I8 => Some(per_tensor(&ft).ok_or(err(
                first_op,
                "int8 features need a per-tensor scale and zero point",
            ))?),
            _ => return Err(err(first_op, "the head's input must be f32 or int8")),
        };
        Ok(ModelHead {
            head: Head::new(&layers[..n])?,
            first_op,
            features,
            feature_quant,
            softmax,
            sources,
        })
    }

    /// Op index of dense layer `l` of the head.
    pub fn layer_op(&self, l: usize) -> Option<usize> {
        self.sources.get(l).copied().flatten().map(|s| s.op)
    }

    /// Writes the head's parameters, as f32 in the [`Head`] layout, into `out`
    /// ([`Head::num_params`] values).
    pub fn load_params(&self, model: &Model<'_>, out: &mut [f32]) -> TrainResult<()> {
        if out.len() != self.head.num_params() {
            return Err(TrainError::WrongLength {
                what: "parameters",
                expected: self.head.num_params(),
                got: out.len(),
            });
        }
        for (l, layer) in self.head.layers().iter().enumerate() {
            let s = self.sources[l].ok_or(TrainError::BadHead("missing layer"))?;
            let (m, k) = (layer.outputs, layer.inputs);
            let off = self.head.param_offset(l);
            let (w_out, rest) = out[off..].split_at_mut(m * k);
            let b_out = &mut rest[..m];
            let wt = model.tensor(s.weights);
            let wb = model.constant_bytes(&wt);
            let op = model.op(s.op);
            let x = model.tensor(model.op_input(&op, 0).unwrap_or(0));
            match wt.dtype {
                DType::F32 => {
                    let w = bytes_as_f32(wb);
                    for c in 0..m {
                        for kk in 0..k {
                            w_out[c * k + kk] = if s.packed {
                                w[f32gemm::packed_offset(m, k, c, kk)]
                            } else {
                                w[c * k + kk]
                            };
                        }
                    }
                }
                DType::F16 => {
                    for (o, v) in w_out.iter_mut().zip(bytes_as_f16(wb)) {
                        *o = v.to_f32();
                    }
                }
                DType::I8 => {
                    let w = bytes_as_i8(wb);
                    let (sx, zx) = per_tensor(&x).ok_or(err(s.op, "int8 input without scale"))?;
                    let (scales, zw) = match wt.quant {
                        Quant::PerAxis { scales, .. } => {
                            (model.constant_f32(&model.tensor(scales as usize)), 0)
                        }
                        Quant::PerTensor { zero_point, .. } => (&[][..], zero_point),
                        Quant::None => (&[][..], 0),
                    };
                    // Weights without a stored scale (kiln's own quantizer folds it into the
                    // requantization): s_w = M·s_y / s_x, M = m·2^shift / 2^31 per channel.
                    // The tensors are looked up once; `folded(c)` only indexes them.
                    let sy = per_tensor(&model.tensor(model.op_output(&op, 0))).map_or(0.0, |q| q.0)
                        as f64;
                    let requant = match (model.op_input(&op, 3), model.op_input(&op, 4)) {
                        (Some(mt), Some(st)) => Some((model.tensor(mt), model.tensor(st))),
                        _ => None,
                    };
                    let folded = |c: usize| -> f32 {
                        let Some((mt, st)) = &requant else {
                            return 0.0;
                        };
                        let (mb, sb) = (model.constant_bytes(mt), model.constant_bytes(st));
                        let pick = |n: usize| if n == 1 { 0 } else { c };
                        let mult = match mt.dtype {
                            DType::I16 => bytes_as_i16(mb)
                                .get(pick(mt.len()))
                                .map(|&v| (v as i64) << 16),
                            _ => bytes_as_i32(mb).get(pick(mt.len())).map(|&v| v as i64),
                        };
                        let shift = match st.dtype {
                            DType::I8 => bytes_as_i8(sb).get(pick(st.len())).map(|&v| v as i32),
                            _ => bytes_as_i32(sb).get(pick(st.len())).copied(),
                        };
                        match (mult, shift) {
                            (Some(m), Some(sh)) => {
                                (libm::ldexp(m as f64, sh - 31) * sy / sx as f64) as f32
                            }
                            _ => 0.0,
                        }
                    };
                    let scale = |c: usize| match wt.quant {
                        Quant::PerTensor { scale, .. } => scale,
                        Quant::PerAxis { .. } => scales.get(c).copied().unwrap_or(0.0),
                        Quant::None => folded(c),
                    };
                    if (0..m).any(|c| {
                        let sc = scale(c);
                        !(sc.is_finite() && sc > 0.0)
                    }) {
                        return Err(err(s.op, "cannot recover the int8 weights' scales"));
                    }
                    let bias: &[i32] = match s.bias {
                        Some(b) => bytes_as_i32(model.constant_bytes(&model.tensor(b))),
                        None => &[],
                    };
                    for c in 0..m {
                        let sc = scale(c);
                        let mut sum = 0i32;
                        for kk in 0..k {
                            let q = if s.packed {
                                w[qs8::packed_offset(m, k, c, kk)]
                            } else {
                                w[c * k + kk]
                            } as i32
                                - zw;
                            sum = sum.wrapping_add(q);
                            w_out[c * k + kk] = sc * q as f32;
                        }
                        // Packed weights carry bias - (z_x + 128)·Σw: unfold it.
                        let bq = bias.get(c).copied().unwrap_or(0);
                        let bq = if s.packed {
                            bq.wrapping_add((zx + 128).wrapping_mul(sum))
                        } else {
                            bq
                        };
                        b_out[c] = (bq as f64 * sx as f64 * sc as f64) as f32;
                    }
                    continue;
                }
                _ => return Err(err(s.op, "weights must be f32, f16 or int8")),
            }
            match s.bias {
                Some(b) => {
                    let bt = model.tensor(b);
                    let bv = model.constant_f32(&bt);
                    if bv.len() != m {
                        return Err(err(s.op, "f32 bias of the wrong length"));
                    }
                    b_out.copy_from_slice(bv);
                }
                None => b_out.fill(0.0),
            }
        }
        Ok(())
    }

    /// Runs the backbone on the input already in `session` (ops `0..first_op`) and writes the
    /// head's input features as f32 into `out` (int8 features dequantized as the runtime's
    /// dequantize op does).
    pub fn features(&self, session: &mut Session<'_, '_>, out: &mut [f32]) -> TrainResult<()> {
        if out.len() != self.head.inputs() {
            return Err(TrainError::WrongLength {
                what: "features",
                expected: self.head.inputs(),
                got: out.len(),
            });
        }
        session.invoke_ops(0..self.first_op)?;
        let bytes = session.arena_tensor(self.features)?;
        match self.feature_quant {
            None => out.copy_from_slice(bytes_as_f32(bytes)),
            Some((scale, zp)) => {
                crate::kernels::reference_i8::dequantize(bytes_as_i8(bytes), out, scale, zp)
            }
        }
        Ok(())
    }
}
