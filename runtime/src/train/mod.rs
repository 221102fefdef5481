//! On-device fine-tuning of a small f32 head: forward with activations kept, backward, losses
//! (softmax cross-entropy, MSE, distillation), optimizers (SGD, SGD with momentum, RMSprop,
//! Adam; weight decay), mini-batches. No heap: every buffer is carved out of one caller-provided
//! byte slice whose size [`train_arena_size`] gives before anything runs.
//!
//! The arithmetic is the portable scalar f32 path on every target: plain `*` and `+` in a fixed
//! order (Rust never contracts them into FMA), `libm` for `exp`, `ln`, `sqrt` and `pow`. A
//! Cortex-M4F and an x86-64 host therefore compute the same bits from the same inputs, which
//! the firmware example checks.
//!
//! * [`Head`]: the trainable layers (dense, each with an activation), `inputs -> .. -> outputs`.
//! * [`ModelHead`]: finds the last N dense layers of a [`crate::Model`], reads their parameters
//!   as f32 (unpacking packed weights, dequantizing int8 ones) and runs the frozen backbone below
//!   them to produce the head's input features.
//! * [`Trainer`]: one training step per sample ([`Trainer::train_sample`]); the optimizer is
//!   applied when a mini-batch is complete (gradients averaged over it).
//! * [`store`] (feature `storage`): persists a tuned head through an `embedded-storage`
//!   `NorFlash` with a CRC, in two slots so a torn write keeps the previous head.

// The layer arithmetic indexes several parallel vectors by one math index (j: output, i: input).
#![allow(clippy::needless_range_loop)]

mod head;
#[cfg(feature = "storage")]
pub mod store;

pub use head::ModelHead;

use core::fmt;
use libm::{expf, logf, powf, sqrtf, tanhf};

/// Most dense layers a head may have.
pub const MAX_LAYERS: usize = 4;

/// Why a trainer could not be built or a step could not be taken.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum TrainError {
    /// The memory given to [`Trainer::new`] is smaller than [`train_arena_size`].
    ArenaTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// The memory given to [`Trainer::new`] is not 4-byte aligned.
    MisalignedArena,
    /// A head needs 1 to [`MAX_LAYERS`] layers, each with at least one input and output, each
    /// layer's inputs equal to the previous layer's outputs.
    BadHead(&'static str),
    /// An optimizer or loss hyperparameter is out of range.
    BadHyperparameter(&'static str),
    /// A buffer has the wrong number of elements.
    WrongLength {
        /// What the buffer is.
        what: &'static str,
        /// Elements expected.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// A class label is not below the head's number of outputs.
    LabelOutOfRange {
        /// The label.
        label: usize,
        /// The number of classes (head outputs).
        classes: usize,
    },
    /// The loss was NaN or infinite at this step (counted from 1); parameters are unchanged.
    NonFiniteLoss {
        /// Sample step.
        step: u64,
    },
    /// An input feature, target or teacher value is NaN or infinite.
    NonFiniteInput {
        /// What the buffer is.
        what: &'static str,
        /// Element index of the first bad value.
        element: usize,
    },
    /// The model's last layers cannot form a head (the message says which op and why).
    Model {
        /// Op index in the model.
        op: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// Running the backbone failed.
    Runtime(crate::Error),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::ArenaTooSmall { needed, got } => write!(
                f,
                "training memory is {got} bytes; this head, optimizer and batch need {needed}"
            ),
            TrainError::MisalignedArena => write!(f, "training memory must be 4-byte aligned"),
            TrainError::BadHead(p) => write!(f, "bad head: {p}"),
            TrainError::BadHyperparameter(p) => write!(f, "bad hyperparameter: {p}"),
            TrainError::WrongLength {
                what,
                expected,
                got,
            } => write!(f, "{what}: {got} values, expected {expected}"),
            TrainError::LabelOutOfRange { label, classes } => write!(
                f,
                "label {label} is out of range: the head has {classes} classes (0..{classes})"
            ),
            TrainError::NonFiniteLoss { step } => write!(
                f,
                "the loss is NaN or infinite at step {step} (learning rate too high?); \
                 parameters left as they were before that step"
            ),
            TrainError::NonFiniteInput { what, element } => {
                write!(f, "{what}: element {element} is NaN or infinite")
            }
            TrainError::Model { op, problem } => write!(f, "op #{op}: {problem}"),
            TrainError::Runtime(e) => write!(f, "backbone: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TrainError {}

impl From<crate::Error> for TrainError {
    fn from(e: crate::Error) -> Self {
        TrainError::Runtime(e)
    }
}

/// Result of the training API.
pub type TrainResult<T> = core::result::Result<T, TrainError>;

/// A layer's activation, applied to `z = W·x + b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `a = z`.
    Identity,
    /// `a = clamp(z, lo, hi)` (ReLU is `[0, inf]`, ReLU6 `[0, 6]`); the gradient passes where
    /// `lo < z < hi` (0 at the bounds, as PyTorch's ReLU at 0).
    Clamp {
        /// Lower bound (`-inf` for none).
        lo: f32,
        /// Upper bound (`inf` for none).
        hi: f32,
    },
    /// `a = tanh(z)`.
    Tanh,
    /// `a = 1 / (1 + e^-z)`.
    Sigmoid,
}

impl Activation {
    fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Identity => z,
            Activation::Clamp { lo, hi } => z.max(lo).min(hi),
            Activation::Tanh => tanhf(z),
            Activation::Sigmoid => 1.0 / (1.0 + expf(-z)),
        }
    }
    /// `da/dz` from `z` and `a`.
    fn slope(self, z: f32, a: f32) -> f32 {
        match self {
            Activation::Identity => 1.0,
            Activation::Clamp { lo, hi } => {
                if z > lo && z < hi {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Tanh => 1.0 - a * a,
            Activation::Sigmoid => a * (1.0 - a),
        }
    }
}

/// One dense layer: `a = act(W·x + b)`, `W` `[outputs, inputs]` row-major.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layer {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// Activation.
    pub act: Activation,
}

/// The trainable layers, first to last. Their parameters are one f32 vector: per layer, `W`
/// (`outputs × inputs`, row-major) then `b` (`outputs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Head {
    layers: [Layer; MAX_LAYERS],
    len: usize,
}

impl Head {
    /// A head of `layers` (1 to [`MAX_LAYERS`], chained widths).
    pub fn new(layers: &[Layer]) -> TrainResult<Head> {
        if layers.is_empty() || layers.len() > MAX_LAYERS {
            return Err(TrainError::BadHead("a head has 1 to 4 dense layers"));
        }
        let mut h = Head {
            layers: [Layer {
                inputs: 1,
                outputs: 1,
                act: Activation::Identity,
            }; MAX_LAYERS],
            len: layers.len(),
        };
        for (i, l) in layers.iter().enumerate() {
            if l.inputs == 0 || l.outputs == 0 {
                return Err(TrainError::BadHead("a layer has no inputs or no outputs"));
            }
            if i > 0 && l.inputs != layers[i - 1].outputs {
                return Err(TrainError::BadHead(
                    "a layer's inputs differ from the previous layer's outputs",
                ));
            }
            if let Activation::Clamp { lo, hi } = l.act {
                if lo.is_nan() || hi.is_nan() || lo >= hi {
                    return Err(TrainError::BadHead("a clamp needs lo < hi"));
                }
            }
            h.layers[i] = *l;
        }
        Ok(h)
    }
    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers[..self.len]
    }
    /// Input width (features).
    pub fn inputs(&self) -> usize {
        self.layers[0].inputs
    }
    /// Output width (classes or regression targets).
    pub fn outputs(&self) -> usize {
        self.layers[self.len - 1].outputs
    }
    /// Number of f32 parameters.
    pub fn num_params(&self) -> usize {
        self.layers()
            .iter()
            .map(|l| l.outputs * (l.inputs + 1))
            .sum()
    }
    /// Offset of layer `l`'s weights in the parameter vector (its bias follows them).
    pub fn param_offset(&self, l: usize) -> usize {
        self.layers[..l]
            .iter()
            .map(|l| l.outputs * (l.inputs + 1))
            .sum()
    }
    fn widest_output(&self) -> usize {
        self.layers().iter().map(|l| l.outputs).max().unwrap_or(0)
    }
    fn activations(&self) -> usize {
        self.layers().iter().map(|l| l.outputs).sum()
    }
}

/// An optimizer and its hyperparameters. `weight_decay` adds `weight_decay · w` to every
/// gradient (L2, coupled, as PyTorch's `weight_decay`); it applies to biases too.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `v = momentum·v + g; w -= lr·v` (plain SGD when `momentum` is 0: no state kept).
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum (0 for none).
        momentum: f32,
        /// L2 weight decay.
        weight_decay: f32,
    },
    /// `s = alpha·s + (1 - alpha)·g²; w -= lr·g / (sqrt(s) + eps)`.
    RmsProp {
        /// Learning rate.
        lr: f32,
        /// Smoothing constant.
        alpha: f32,
        /// Added to the denominator.
        eps: f32,
        /// L2 weight decay.
        weight_decay: f32,
    },
    /// `m = b1·m + (1 - b1)·g; v = b2·v + (1 - b2)·g²;
    /// w -= lr·(m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
    Adam {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
        /// L2 weight decay.
        weight_decay: f32,
    },
}

impl Optimizer {
    /// Plain SGD.
    pub fn sgd(lr: f32) -> Optimizer {
        Optimizer::Sgd {
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
    /// SGD with momentum.
    pub fn momentum(lr: f32, momentum: f32) -> Optimizer {
        Optimizer::Sgd {
            lr,
            momentum,
            weight_decay: 0.0,
        }
    }
    /// RMSprop with PyTorch's defaults (`alpha` 0.99, `eps` 1e-8).
    pub fn rmsprop(lr: f32) -> Optimizer {
        Optimizer::RmsProp {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
    /// Adam with PyTorch's defaults (`beta1` 0.9, `beta2` 0.999, `eps` 1e-8).
    pub fn adam(lr: f32) -> Optimizer {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
    /// The same optimizer with L2 weight decay `wd`.
    pub fn with_weight_decay(mut self, wd: f32) -> Optimizer {
        match &mut self {
            Optimizer::Sgd { weight_decay, .. }
            | Optimizer::RmsProp { weight_decay, .. }
            | Optimizer::Adam { weight_decay, .. } => *weight_decay = wd,
        }
        self
    }
    /// f32 state vectors the size of the parameters (0, 1 or 2).
    pub fn state_vectors(&self) -> usize {
        match self {
            Optimizer::Sgd { momentum, .. } if *momentum == 0.0 => 0,
            Optimizer::Sgd { .. } | Optimizer::RmsProp { .. } => 1,
            Optimizer::Adam { .. } => 2,
        }
    }
    fn check(&self) -> TrainResult<()> {
        let unit = |v: f32| (0.0..1.0).contains(&v);
        let ok = match *self {
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
            } => lr > 0.0 && lr.is_finite() && unit(momentum) && weight_decay >= 0.0,
            Optimizer::RmsProp {
                lr,
                alpha,
                eps,
                weight_decay,
            } => lr > 0.0 && lr.is_finite() && unit(alpha) && eps > 0.0 && weight_decay >= 0.0,
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                lr > 0.0
                    && lr.is_finite()
                    && unit(beta1)
                    && unit(beta2)
                    && eps > 0.0
                    && weight_decay >= 0.0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(TrainError::BadHyperparameter(
                "lr must be > 0 and finite, momentum/alpha/betas in [0, 1), eps > 0, \
                 weight decay >= 0",
            ))
        }
    }
}

/// What the head's outputs are trained toward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Softmax cross-entropy on the outputs as logits, with a class label.
    CrossEntropy,
    /// Mean squared error against a target vector.
    Mse,
    /// Knowledge distillation (Hinton et al.): `(1 - alpha)·CE(label) + alpha·T²·KL(softmax(t/T)
    /// ‖ softmax(s/T))`, `t` the teacher's logits for the same input, `s` the head's.
    Distill {
        /// Softening temperature `T` (> 0).
        temperature: f32,
        /// Weight of the teacher term, in `[0, 1]`.
        alpha: f32,
    },
}

impl Loss {
    fn check(&self) -> TrainResult<()> {
        match *self {
            Loss::Distill { temperature, alpha }
                if !(temperature > 0.0
                    && temperature.is_finite()
                    && (0.0..=1.0).contains(&alpha)) =>
            {
                Err(TrainError::BadHyperparameter(
                    "distillation needs a temperature > 0 and alpha in [0, 1]",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// What one sample is trained toward: a class ([`Loss::CrossEntropy`], [`Loss::Distill`]) or a
/// vector ([`Loss::Mse`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target<'t> {
    /// Class index.
    Class(usize),
    /// Target values, one per output.
    Values(&'t [f32]),
}

/// Bytes of training memory for `head` trained with `opt` in mini-batches of `batch` samples:
/// the parameters, a gradient accumulator when `batch > 1` (batch 1 applies each gradient as it
/// is computed), the optimizer's state, and one sample's activations and deltas.
pub fn train_arena_size(head: &Head, opt: &Optimizer, batch: usize) -> usize {
    let p = head.num_params();
    let grads = if batch > 1 { p } else { 0 };
    let floats = p
        + grads
        + opt.state_vectors() * p
        + 2 * head.activations()
        + 2 * head.widest_output()
        + 2 * head.outputs();
    floats * 4
}

/// Where [`Trainer::backward`] puts each parameter's gradient.
enum Sink<'s> {
    /// Apply the optimizer at once (batch 1), with Adam's bias corrections.
    Apply((f32, f32)),
    /// Add to the mini-batch accumulator.
    Accumulate,
    /// Write to the caller's buffer.
    Out(&'s mut [f32]),
}

/// Trains a [`Head`] inside caller memory.
pub struct Trainer<'a> {
    head: Head,
    opt: Optimizer,
    loss: Loss,
    batch: usize,
    params: &'a mut [f32],
    grads: &'a mut [f32],
    s1: &'a mut [f32],
    s2: &'a mut [f32],
    z: &'a mut [f32],
    a: &'a mut [f32],
    d0: &'a mut [f32],
    d1: &'a mut [f32],
    p: &'a mut [f32],
    q: &'a mut [f32],
    pending: usize,
    updates: u32,
    samples: u64,
}

fn take<'a>(rest: &mut &'a mut [f32], n: usize) -> &'a mut [f32] {
    let (a, b) = core::mem::take(rest).split_at_mut(n);
    *rest = b;
    a
}

fn finite(what: &'static str, v: &[f32]) -> TrainResult<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(element) => Err(TrainError::NonFiniteInput { what, element }),
    }
}

/// Checks a caller's vector of `n` finite values (a target, a teacher's logits).
fn output_sized(what: &'static str, v: &[f32], n: usize) -> TrainResult<()> {
    if v.len() != n {
        return Err(TrainError::WrongLength {
            what,
            expected: n,
            got: v.len(),
        });
    }
    finite(what, v)
}

/// `out = softmax(x / t)`; returns `max(x / t)` and `ln Σ exp(x/t - max)` (the log-normalizer
/// is their sum).
fn softmax(x: &[f32], t: f32, out: &mut [f32]) -> (f32, f32) {
    let m = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v / t));
    let mut s = 0.0f32;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = expf(v / t - m);
        s += *o;
    }
    for o in out.iter_mut() {
        *o /= s;
    }
    (m, logf(s))
}

/// Softmax cross-entropy of logits `out` with class `c`: returns the loss and writes
/// `weight · (softmax(out) - onehot(c))` into `d` (`p`: scratch for the probabilities).
fn cross_entropy(out: &[f32], c: usize, weight: f32, p: &mut [f32], d: &mut [f32]) -> f32 {
    let (max, lse) = softmax(out, 1.0, p);
    for (j, (d, p)) in d.iter_mut().zip(p.iter()).enumerate() {
        *d = weight * (p - if j == c { 1.0 } else { 0.0 });
    }
    lse + max - out[c]
}

impl<'a> Trainer<'a> {
    /// A trainer for `head` in `mem` (at least [`train_arena_size`] bytes, 4-byte aligned).
    /// The parameters start at zero: copy the model's in with [`Trainer::params_mut`]
    /// (or [`ModelHead::load_params`]).
    pub fn new(
        head: Head,
        opt: Optimizer,
        loss: Loss,
        batch: usize,
        mem: &'a mut [u8],
    ) -> TrainResult<Trainer<'a>> {
        opt.check()?;
        loss.check()?;
        if batch == 0 {
            return Err(TrainError::BadHyperparameter("batch must be at least 1"));
        }
        let needed = train_arena_size(&head, &opt, batch);
        if mem.len() < needed {
            return Err(TrainError::ArenaTooSmall {
                needed,
                got: mem.len(),
            });
        }
        let floats: &mut [f32] = bytemuck::try_cast_slice_mut(&mut mem[..needed])
            .map_err(|_| TrainError::MisalignedArena)?;
        floats.fill(0.0);
        let np = head.num_params();
        let mut rest = floats;
        let params = take(&mut rest, np);
        let grads = take(&mut rest, if batch > 1 { np } else { 0 });
        let s1 = take(&mut rest, if opt.state_vectors() >= 1 { np } else { 0 });
        let s2 = take(&mut rest, if opt.state_vectors() >= 2 { np } else { 0 });
        let z = take(&mut rest, head.activations());
        let a = take(&mut rest, head.activations());
        let d0 = take(&mut rest, head.widest_output());
        let d1 = take(&mut rest, head.widest_output());
        let p = take(&mut rest, head.outputs());
        let q = take(&mut rest, head.outputs());
        Ok(Trainer {
            head,
            opt,
            loss,
            batch,
            params,
            grads,
            s1,
            s2,
            z,
            a,
            d0,
            d1,
            p,
            q,
            pending: 0,
            updates: 0,
            samples: 0,
        })
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }
    /// The parameters (layout: see [`Head`]).
    pub fn params(&self) -> &[f32] {
        self.params
    }
    /// The parameters, to load or reset them.
    pub fn params_mut(&mut self) -> &mut [f32] {
        self.params
    }
    /// Samples trained on so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }
    /// Optimizer updates applied so far.
    pub fn updates(&self) -> u32 {
        self.updates
    }
    /// Changes the learning rate (a schedule).
    pub fn set_lr(&mut self, lr: f32) -> TrainResult<()> {
        let mut o = self.opt;
        match &mut o {
            Optimizer::Sgd { lr: l, .. }
            | Optimizer::RmsProp { lr: l, .. }
            | Optimizer::Adam { lr: l, .. } => *l = lr,
        }
        o.check()?;
        self.opt = o;
        Ok(())
    }

    fn act_range(&self, l: usize) -> core::ops::Range<usize> {
        let start: usize = self.head.layers[..l].iter().map(|l| l.outputs).sum();
        start..start + self.head.layers[l].outputs
    }

    /// Runs the head on `x` and returns its outputs (logits for a classifier).
    pub fn forward(&mut self, x: &[f32]) -> TrainResult<&[f32]> {
        if x.len() != self.head.inputs() {
            return Err(TrainError::WrongLength {
                what: "features",
                expected: self.head.inputs(),
                got: x.len(),
            });
        }
        finite("features", x)?;
        for l in 0..self.head.len {
            let layer = self.head.layers[l];
            let off = self.head.param_offset(l);
            let (k, m) = (layer.inputs, layer.outputs);
            let w = &self.params[off..off + m * k];
            let b = &self.params[off + m * k..off + m * k + m];
            let r = self.act_range(l);
            let below = if l > 0 { self.act_range(l - 1) } else { 0..0 };
            let (before, cur) = self.a.split_at_mut(r.start);
            let input: &[f32] = if l == 0 { x } else { &before[below] };
            let z = &mut self.z[r.clone()];
            let out = &mut cur[..m];
            for j in 0..m {
                let row = &w[j * k..j * k + k];
                let mut s = 0.0f32;
                for (wv, xv) in row.iter().zip(input) {
                    s += wv * xv;
                }
                z[j] = s + b[j];
                out[j] = layer.act.apply(z[j]);
            }
        }
        Ok(&self.a[self.act_range(self.head.len - 1)])
    }

    /// The loss of the last [`Trainer::forward`]'s outputs, and its gradient in `self.d0`.
    fn loss_and_grad(&mut self, target: Target<'_>, teacher: Option<&[f32]>) -> TrainResult<f32> {
        let n = self.head.outputs();
        let y = self.act_range(self.head.len - 1);
        let out = &self.a[y];
        let d = &mut self.d0[..n];
        let class = |label: usize| {
            if label < n {
                Ok(label)
            } else {
                Err(TrainError::LabelOutOfRange { label, classes: n })
            }
        };
        match (self.loss, target) {
            (Loss::CrossEntropy, Target::Class(label)) => {
                let c = class(label)?;
                Ok(cross_entropy(out, c, 1.0, self.p, d))
            }
            (Loss::Mse, Target::Values(t)) => {
                output_sized("target", t, n)?;
                let mut s = 0.0f32;
                for j in 0..n {
                    let e = out[j] - t[j];
                    s += e * e;
                    d[j] = 2.0 * e / n as f32;
                }
                Ok(s / n as f32)
            }
            (Loss::Distill { temperature, alpha }, Target::Class(label)) => {
                let c = class(label)?;
                let t = teacher.ok_or(TrainError::BadHyperparameter(
                    "distillation needs the teacher's logits for every sample",
                ))?;
                output_sized("teacher logits", t, n)?;
                let hard = cross_entropy(out, c, 1.0 - alpha, self.p, d);
                // Soft term: T²·Σ q_t (ln q_t - ln q_s), gradient T·(q_s - q_t).
                let (ms, ls) = softmax(out, temperature, self.p);
                let (mt, lt) = softmax(t, temperature, self.q);
                let mut kl = 0.0f32;
                for j in 0..n {
                    if self.q[j] > 0.0 {
                        let log_qt = t[j] / temperature - mt - lt;
                        let log_qs = out[j] / temperature - ms - ls;
                        kl += self.q[j] * (log_qt - log_qs);
                    }
                    d[j] += alpha * temperature * (self.p[j] - self.q[j]);
                }
                Ok((1.0 - alpha) * hard + alpha * temperature * temperature * kl)
            }
            (Loss::Mse, Target::Class(_)) => Err(TrainError::BadHyperparameter(
                "MSE needs a target vector, not a class",
            )),
            (_, Target::Values(_)) => Err(TrainError::BadHyperparameter(
                "cross-entropy and distillation need a class label, not a vector",
            )),
        }
    }

    /// The loss of `x` against `target` without training (for validation).
    pub fn loss(
        &mut self,
        x: &[f32],
        target: Target<'_>,
        teacher: Option<&[f32]>,
    ) -> TrainResult<f32> {
        self.forward(x)?;
        self.loss_and_grad(target, teacher)
    }

    /// One training sample: forward, loss, backward. Gradients are applied at once when the
    /// batch is 1, otherwise accumulated and applied (averaged) when `batch` samples have been
    /// seen. Returns the sample's loss (before the update). A NaN or infinite loss is an error
    /// and changes nothing.
    pub fn train_sample(
        &mut self,
        x: &[f32],
        target: Target<'_>,
        teacher: Option<&[f32]>,
    ) -> TrainResult<f32> {
        self.forward(x)?;
        let loss = self.loss_and_grad(target, teacher)?;
        if !loss.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                step: self.samples + 1,
            });
        }
        self.samples += 1;
        if self.batch == 1 {
            let hyper = self.begin_update();
            self.backward(x, &mut Sink::Apply(hyper));
        } else {
            self.backward(x, &mut Sink::Accumulate);
            self.pending += 1;
            if self.pending == self.batch {
                self.finish_batch();
            }
        }
        Ok(loss)
    }

    /// The loss of `x` and its gradient with respect to every parameter (into `grad`, in the
    /// [`Head`] layout), without changing anything: what the gradient checks compare with
    /// finite differences.
    pub fn gradient(
        &mut self,
        x: &[f32],
        target: Target<'_>,
        teacher: Option<&[f32]>,
        grad: &mut [f32],
    ) -> TrainResult<f32> {
        if grad.len() != self.params.len() {
            return Err(TrainError::WrongLength {
                what: "gradient",
                expected: self.params.len(),
                got: grad.len(),
            });
        }
        let loss = self.loss(x, target, teacher)?;
        self.backward(x, &mut Sink::Out(grad));
        Ok(loss)
    }

    /// Backpropagates `self.d0` (dL/d outputs, from [`Trainer::loss_and_grad`]) through the
    /// layers, last first, handing each parameter's gradient to `sink`. Each layer's dL/dx is
    /// computed before its weights are updated, so a fused update sees the forward weights.
    fn backward(&mut self, x: &[f32], sink: &mut Sink<'_>) {
        for l in (0..self.head.len).rev() {
            let layer = self.head.layers[l];
            let (k, m) = (layer.inputs, layer.outputs);
            let r = self.act_range(l);
            for j in 0..m {
                let (z, a) = (self.z[r.start + j], self.a[r.start + j]);
                self.d0[j] *= layer.act.slope(z, a);
            }
            let off = self.head.param_offset(l);
            if l > 0 {
                for i in 0..k {
                    let mut s = 0.0f32;
                    for j in 0..m {
                        s += self.params[off + j * k + i] * self.d0[j];
                    }
                    self.d1[i] = s;
                }
            }
            let below = if l > 0 { self.act_range(l - 1) } else { 0..0 };
            for j in 0..m {
                let dz = self.d0[j];
                for i in 0..k {
                    let xi = if l > 0 { self.a[below.start + i] } else { x[i] };
                    self.gradient_to(off + j * k + i, dz * xi, sink);
                }
                self.gradient_to(off + m * k + j, dz, sink);
            }
            if l > 0 {
                let (d0, d1) = (&mut *self.d0, &mut *self.d1);
                d0[..k].copy_from_slice(&d1[..k]);
            }
        }
    }

    /// Applies the gradients of a partial mini-batch (averaged over the samples it has); a
    /// no-op when none are pending. Call it at the end of an epoch.
    pub fn finish_batch(&mut self) {
        if self.pending == 0 {
            return;
        }
        let hyper = self.begin_update();
        let inv = 1.0 / self.pending as f32;
        for i in 0..self.params.len() {
            let g = self.grads[i] * inv;
            self.grads[i] = 0.0;
            self.step(i, g, hyper);
        }
        self.pending = 0;
    }

    /// Counts an update and returns Adam's bias corrections `(1 - b1^t, 1 - b2^t)`.
    fn begin_update(&mut self) -> (f32, f32) {
        self.updates += 1;
        match self.opt {
            Optimizer::Adam { beta1, beta2, .. } => {
                let t = self.updates as f32;
                (1.0 - powf(beta1, t), 1.0 - powf(beta2, t))
            }
            _ => (1.0, 1.0),
        }
    }

    #[inline]
    fn gradient_to(&mut self, i: usize, g: f32, sink: &mut Sink<'_>) {
        match sink {
            Sink::Apply(h) => self.step(i, g, *h),
            Sink::Accumulate => self.grads[i] += g,
            Sink::Out(out) => out[i] = g,
        }
    }

    /// The optimizer's update of parameter `i` with gradient `g`.
    #[inline]
    fn step(&mut self, i: usize, g: f32, (bc1, bc2): (f32, f32)) {
        let w = self.params[i];
        match self.opt {
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
            } => {
                let g = g + weight_decay * w;
                if momentum == 0.0 {
                    self.params[i] = w - lr * g;
                } else {
                    let v = momentum * self.s1[i] + g;
                    self.s1[i] = v;
                    self.params[i] = w - lr * v;
                }
            }
            Optimizer::RmsProp {
                lr,
                alpha,
                eps,
                weight_decay,
            } => {
                let g = g + weight_decay * w;
                let s = alpha * self.s1[i] + (1.0 - alpha) * g * g;
                self.s1[i] = s;
                self.params[i] = w - lr * g / (sqrtf(s) + eps);
            }
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let g = g + weight_decay * w;
                let m = beta1 * self.s1[i] + (1.0 - beta1) * g;
                let v = beta2 * self.s2[i] + (1.0 - beta2) * g * g;
                self.s1[i] = m;
                self.s2[i] = v;
                self.params[i] = w - lr * (m / bc1) / (sqrtf(v / bc2) + eps);
            }
        }
    }

    /// Index of the largest output of the last [`Trainer::forward`] (a classifier's answer).
    pub fn argmax(&self) -> usize {
        let y = &self.a[self.act_range(self.head.len - 1)];
        let mut best = 0;
        for (j, &v) in y.iter().enumerate() {
            if v > y[best] {
                best = j;
            }
        }
        best
    }
}
