//! Ops: one module per op, one table that ties them together.
//!
//! Each module under `ops/` owns one op (or a pair that shares parameters, like max/average
//! pooling): its typed parameters with `decode`/`encode` to and from the twelve parameter words
//! of the file (see `FORMAT.md`), its load-time validation against its tensors, its dispatch to
//! the reference and optimized kernels, its MAC count and its one-line description for
//! `kiln inspect`. The [`op_table!`] below lists every op once and generates [`OpKind`],
//! [`OpParams`] and the dispatch functions from that list; nothing outside this directory reads a
//! parameter word by its number.
//!
//! How to add an op: see "How to add an op" in `ARCHITECTURE.md`.

use core::fmt;

use crate::error::{Error, Result};
use crate::format::{DType, Storage, MAX_RANK, OP_PARAMS};
use crate::model::{Model, OpInfo, Quant, TensorInfo};

pub mod binary;
pub mod concat;
pub mod conv;
pub mod dense;
pub mod gather;
pub mod lut;
pub mod matmul;
pub mod pad;
pub mod pool;
pub mod prelu;
pub mod quantize;
pub mod reduce;
pub mod reshape;
pub mod resize;
pub mod select;
pub mod slice;
pub mod softmax;
pub mod transpose;
pub mod transpose_conv;
pub mod unary;

pub use binary::{AddQuant, BinaryKind, BinaryParams, BinaryQuant, MulQuant};
pub use concat::ConcatParams;
pub use conv::{ConvGeom, ConvParams};
pub use dense::DenseParams;
pub use gather::GatherParams;
pub use lut::LutParams;
pub use matmul::MatMulParams;
pub use pad::{PadMode, PadParams};
pub use pool::{PoolParams, PoolWindow};
pub use prelu::PreluParams;
pub use quantize::{DequantizeParams, QuantizeParams};
pub use reduce::{MeanQuant, ReduceParams, Reducer};
pub use reshape::ReshapeParams;
pub use resize::{NearestRounding, ResizeParams, Transform};
pub use select::{Compare, SelectParams};
pub use slice::SliceParams;
pub use softmax::{SoftmaxParams, SoftmaxQuant};
pub use transpose::TransposeParams;
pub use transpose_conv::TransposeConvParams;
pub use unary::{UnaryKind, UnaryParams};

/// The parameter words of one op record, as stored in the file.
pub type Words = [i32; OP_PARAMS];

/// Word holding a fused activation's lower bound (f32 bits, or an int8 clamp), for every op
/// that has one.
const ACT_MIN: usize = 9;
/// Word holding a fused activation's upper bound.
const ACT_MAX: usize = 10;

/// The words every encoder starts from: zeros, and "no clamp" (±inf) in the activation words.
/// Ops without an activation keep those two words as they are; readers ignore them.
fn base_words() -> Words {
    let mut w = [0; OP_PARAMS];
    w[ACT_MIN] = f32::NEG_INFINITY.to_bits() as i32;
    w[ACT_MAX] = f32::INFINITY.to_bits() as i32;
    w
}

/// A fused activation: a clamp of the output, in f32 for float ops, in the quantized domain for
/// int8 ops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// Clamp to `[lo, hi]` (`±inf` for none).
    Float {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// Clamp the int8 output to `[lo, hi]` (both in -128..=127).
    Int8 {
        /// Lower bound.
        lo: i32,
        /// Upper bound.
        hi: i32,
    },
}

impl Act {
    /// No clamp (float).
    pub const NONE: Act = Act::Float {
        lo: f32::NEG_INFINITY,
        hi: f32::INFINITY,
    };
    /// No clamp (int8: the whole range).
    pub const INT8_NONE: Act = Act::Int8 { lo: -128, hi: 127 };

    fn decode(w: &Words, int8: bool) -> Act {
        if int8 {
            Act::Int8 {
                lo: w[ACT_MIN],
                hi: w[ACT_MAX],
            }
        } else {
            Act::Float {
                lo: f32::from_bits(w[ACT_MIN] as u32),
                hi: f32::from_bits(w[ACT_MAX] as u32),
            }
        }
    }
    fn encode(self, w: &mut Words) {
        match self {
            Act::Float { lo, hi } => {
                w[ACT_MIN] = lo.to_bits() as i32;
                w[ACT_MAX] = hi.to_bits() as i32;
            }
            Act::Int8 { lo, hi } => {
                w[ACT_MIN] = lo;
                w[ACT_MAX] = hi;
            }
        }
    }
    /// The float bounds (no clamp for an int8 activation).
    pub fn f32_bounds(self) -> [f32; 2] {
        match self {
            Act::Float { lo, hi } => [lo, hi],
            Act::Int8 { .. } => [f32::NEG_INFINITY, f32::INFINITY],
        }
    }
    /// The int8 bounds (the whole range for a float activation).
    pub fn i8_bounds(self) -> [i32; 2] {
        match self {
            Act::Int8 { lo, hi } => [lo, hi],
            Act::Float { .. } => [-128, 127],
        }
    }
    /// Checks the bounds for an op whose input 0 is int8 (`int8`) or f32.
    fn check(self, c: &Ctx<'_, '_>) -> Result<()> {
        match self {
            Act::Float { lo, hi } => c.check(
                !lo.is_nan() && !hi.is_nan() && lo <= hi,
                "fused activation bounds are invalid",
            ),
            Act::Int8 { lo, hi } => c.check(
                (-128..=127).contains(&lo) && (-128..=127).contains(&hi) && lo <= hi,
                "int8 clamp is invalid",
            ),
        }
    }
}

impl fmt::Display for Act {
    /// `""`, `" relu"`, `" relu6"`, `" clamp[lo,hi]"` or, for int8, `" clamp[lo,hi]q"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Act::Float { lo, hi } if lo == f32::NEG_INFINITY && hi == f32::INFINITY => Ok(()),
            Act::Float { lo, hi } if lo == 0.0 && hi == f32::INFINITY => f.write_str(" relu"),
            Act::Float { lo, hi } if lo == 0.0 && hi == 6.0 => f.write_str(" relu6"),
            Act::Float { lo, hi } => write!(f, " clamp[{lo},{hi}]"),
            Act::Int8 { lo: -128, hi: 127 } => Ok(()),
            Act::Int8 { lo, hi } => write!(f, " clamp[{lo},{hi}]q"),
        }
    }
}

/// How an int8 accumulator is rescaled (see [`crate::kernels::reference_i8::Rounding`]); word 11
/// of conv, dense and int8 mul: 0 double rounding, 1 single rounding.
pub use crate::kernels::reference_i8::Rounding;

const ROUNDING: usize = 11;

fn decode_rounding(w: &Words) -> core::result::Result<Rounding, &'static str> {
    match w[ROUNDING] {
        0 => Ok(Rounding::Double),
        1 => Ok(Rounding::Single),
        _ => Err("unknown requantization rounding"),
    }
}

fn encode_rounding(r: Rounding, w: &mut Words) {
    w[ROUNDING] = match r {
        Rounding::Double => 0,
        Rounding::Single => 1,
    };
}

/// Word 11 of conv and dense: the rounding in bits 0-7, the weight layout in bits 8-15 (0
/// natural; 1 packed for the op's kernel family: int8 `pack16x4` with a folded bias
/// ([`crate::kernels::qs8`]), f32 `pack16x1` ([`crate::kernels::f32gemm`]), depthwise
/// tap-major).
/// Whether this build reads sparse weights (feature `sparse-weights`): every sparse path is
/// `SPARSE && ..`, so a build without the feature carries none of their code.
pub(crate) const SPARSE: bool = cfg!(feature = "sparse-weights");

/// Rounding (low byte) and weight layout (the byte above: 0 natural, 1 packed, 2 sparse) of a
/// conv or dense; returns `(rounding, packed, sparse)`.
fn decode_rounding_layout(w: &Words) -> core::result::Result<(Rounding, bool, bool), &'static str> {
    let mut low = *w;
    low[ROUNDING] &= 0xFF;
    let (packed, sparse) = match w[ROUNDING] >> 8 {
        0 => (false, false),
        1 => (true, false),
        2 if SPARSE => (false, true),
        2 => {
            return Err(
                "sparse weights: this build of the runtime has no sparse kernels (feature \
                 `sparse-weights`)",
            )
        }
        _ => return Err("unknown weight layout"),
    };
    Ok((decode_rounding(&low)?, packed, sparse))
}

fn encode_rounding_layout(r: Rounding, packed: bool, sparse: bool, w: &mut Words) {
    encode_rounding(r, w);
    w[ROUNDING] |= if sparse { 2 } else { packed as i32 } << 8;
}

/// `N` consecutive words from `at`, each at least `min` (else the error `what`), as `usize`s.
fn words_at<const N: usize>(
    w: &Words,
    at: usize,
    min: i32,
    what: &'static str,
) -> core::result::Result<[usize; N], &'static str> {
    let mut out = [0; N];
    for (k, o) in out.iter_mut().enumerate() {
        let v = w[at + k];
        if v < min {
            return Err(what);
        }
        *o = v as usize;
    }
    Ok(out)
}

/// Writes `vals` into consecutive words from `at`.
fn put_words(w: &mut Words, at: usize, vals: &[usize]) {
    for (k, &v) in vals.iter().enumerate() {
        w[at + k] = v as i32;
    }
}

/// What every op's parameter type provides: the file's words in and out, and what `kiln inspect`
/// and reports show. (Validation and execution are each op module's `validate` and `run`.)
pub trait OpDef: Sized {
    /// Decodes the parameter words; `int8` says whether the op's input 0 is int8 (the activation
    /// words hold an int8 clamp then). A word out of its range is an error naming the problem.
    fn decode(w: &Words, int8: bool) -> core::result::Result<Self, &'static str>;
    /// The parameter words, as the file stores them.
    fn encode(&self) -> Words;
    /// Multiply-accumulates of one run (0 for ops without multiplies).
    fn macs(&self, _s: &OpShapes) -> u64 {
        0
    }
    /// A one-line description of the parameters for `kiln inspect` (empty for none).
    fn describe(&self, _s: &OpShapes, _f: &mut dyn fmt::Write) -> fmt::Result {
        Ok(())
    }
}

/// Implements [`OpDef`] for an op without parameter words.
macro_rules! no_params {
    ($t:ident) => {
        impl $crate::ops::OpDef for $t {
            fn decode(
                _w: &$crate::ops::Words,
                _int8: bool,
            ) -> core::result::Result<Self, &'static str> {
                Ok($t)
            }
            fn encode(&self) -> $crate::ops::Words {
                $crate::ops::base_words()
            }
        }
    };
}
use no_params;

/// Shapes an op's MAC count and description read: input 0, input 1 (weights) and the output;
/// an absent input is an empty slice.
#[derive(Clone, Copy, Debug)]
pub struct OpShapes<'a> {
    /// Shape of input 0.
    pub x: &'a [usize],
    /// Shape of input 1 (weights, second operand).
    pub w: &'a [usize],
    /// Shape of output 0.
    pub y: &'a [usize],
}

/// The op table: one row per op, `Kind = code, "name", module::ParamsType;`. It generates
/// [`OpKind`] (the codes in the file), [`OpParams`] (typed parameters of any op) and the
/// validate / run / MAC / describe dispatch, each arm calling the op module's function of that
/// name.
macro_rules! op_table {
    ($($(#[$m:meta])* $name:ident = $code:expr, $str:expr, $module:ident :: $ty:ident;)*) => {
        /// What an op computes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum OpKind { $($(#[$m])* $name = $code,)* }

        impl OpKind {
            /// Decodes an op kind code.
            pub fn from_u16(v: u16) -> Option<OpKind> {
                match v { $($code => Some(OpKind::$name),)* _ => None }
            }
            /// Short lower-case name, as `kiln inspect` prints it.
            pub fn name(self) -> &'static str {
                match self { $(OpKind::$name => $str,)* }
            }
            /// Every op kind.
            pub const ALL: &'static [OpKind] = &[$(OpKind::$name,)*];
        }

        /// The typed parameters of an op; the variant is the op's kind.
        #[derive(Clone, Copy, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum OpParams { $($(#[$m])* $name($module::$ty),)* }

        impl OpParams {
            /// The op kind these parameters belong to.
            pub fn kind(&self) -> OpKind {
                match self { $(OpParams::$name(_) => OpKind::$name,)* }
            }
            /// Decodes the parameter words of an op of `kind`; `int8` says whether the op's
            /// input 0 is int8 (the activation words hold an int8 clamp then).
            pub fn decode(
                kind: OpKind,
                w: &Words,
                int8: bool,
            ) -> core::result::Result<OpParams, &'static str> {
                match kind { $(OpKind::$name => <$module::$ty as OpDef>::decode(w, int8).map(OpParams::$name),)* }
            }
            /// The parameter words, as the file stores them.
            pub fn encode(&self) -> Words {
                match self { $(OpParams::$name(p) => p.encode(),)* }
            }
            /// Multiply-accumulates of one run of the op.
            pub fn macs(&self, s: &OpShapes<'_>) -> u64 {
                match self { $(OpParams::$name(p) => p.macs(s),)* }
            }
            /// Writes a one-line description (`k3x3 s2,2 … relu6`) for `kiln inspect`.
            pub fn describe(&self, s: &OpShapes<'_>, f: &mut dyn fmt::Write) -> fmt::Result {
                match self { $(OpParams::$name(p) => p.describe(s, f),)* }
            }
        }

        fn validate_params(c: &Ctx<'_, '_>, p: &OpParams) -> Result<()> {
            match p { $(OpParams::$name(p) => $module::validate(c, p),)* }
        }

        fn run_params(v: &View<'_, '_>, p: &OpParams, out: &mut [u8], yt: &TensorInfo<'_>) -> Result<()> {
            match p { $(OpParams::$name(p) => $module::run(v, p, out, yt),)* }
        }
    };
}

op_table! {
    /// 2-D convolution, NHWC input, OHWI weights, optional bias; groups cover depthwise.
    Conv2d = 1, "conv2d", conv::ConvParams;
    /// Fully connected: `[.., K] x [M, K]^T + bias[M]`.
    Dense = 2, "dense", dense::DenseParams;
    /// Max pooling, NHWC.
    MaxPool = 3, "max_pool", pool::PoolParams;
    /// Average pooling, NHWC.
    AvgPool = 4, "avg_pool", pool::PoolParams;
    /// Reduction over an axis mask (mean, sum, max, min, prod, mean of squares).
    Reduce = 5, "reduce", reduce::ReduceParams;
    /// Broadcasting binary op (see [`BinaryKind`]).
    Binary = 6, "binary", binary::BinaryParams;
    /// Concatenation along an axis.
    Concat = 7, "concat", concat::ConcatParams;
    /// Padding: constant, reflect or edge.
    Pad = 8, "pad", pad::PadParams;
    /// Same data, new shape; free when the planner aliases input and output.
    Reshape = 9, "reshape", reshape::ReshapeParams;
    /// Axis permutation.
    Transpose = 10, "transpose", transpose::TransposeParams;
    /// Element-wise function (see [`UnaryKind`]).
    Unary = 11, "unary", unary::UnaryParams;
    /// Softmax or log-softmax along an axis.
    Softmax = 12, "softmax", softmax::SoftmaxParams;
    /// Strided slice.
    Slice = 13, "slice", slice::SliceParams;
    /// Batched matrix product with broadcasting batch dims, optional bias over N.
    MatMul = 14, "matmul", matmul::MatMulParams;
    /// f32 -> int8 with the output tensor's scale and zero point.
    Quantize = 15, "quantize", quantize::QuantizeParams;
    /// int8 -> f32 with the input tensor's scale and zero point.
    Dequantize = 16, "dequantize", quantize::DequantizeParams;
    /// int8 -> int8 through a 256-entry table (input 1, indexed by the input byte): how int8
    /// logistic, tanh and other element-wise functions run, as in TFLite.
    Lut = 17, "lut", lut::LutParams;
    /// Parametric ReLU: `x >= 0 ? x : alpha * x`, slopes (input 1) broadcast to `x`.
    Prelu = 18, "prelu", prelu::PreluParams;
    /// Compare and select: `cmp(a, b) ? x : z`, all four broadcast to the output.
    Select = 19, "select", select::SelectParams;
    /// Gather along an axis with constant indices: whole slices or one element per index.
    Gather = 20, "gather", gather::GatherParams;
    /// Transposed 2-D convolution, NHWC input, `[O, KH, KW, I/groups]` weights, optional bias.
    TransposeConv = 21, "transpose_conv", transpose_conv::TransposeConvParams;
    /// Spatial resize of NHWC, nearest or bilinear.
    Resize = 22, "resize", resize::ResizeParams;
}

impl OpParams {
    /// The fused activation, for ops that have one.
    pub fn act(&self) -> Option<Act> {
        match self {
            OpParams::Conv2d(p) => Some(p.act),
            OpParams::TransposeConv(p) => Some(p.act),
            OpParams::Dense(p) => Some(p.act),
            OpParams::MaxPool(p) | OpParams::AvgPool(p) => Some(p.act),
            OpParams::Binary(p) => Some(p.act),
            OpParams::MatMul(p) => Some(p.act),
            _ => None,
        }
    }
    /// The fused activation, mutably, for ops that have one.
    pub fn act_mut(&mut self) -> Option<&mut Act> {
        match self {
            OpParams::Conv2d(p) => Some(&mut p.act),
            OpParams::TransposeConv(p) => Some(&mut p.act),
            OpParams::Dense(p) => Some(&mut p.act),
            OpParams::MaxPool(p) | OpParams::AvgPool(p) => Some(&mut p.act),
            OpParams::Binary(p) => Some(&mut p.act),
            OpParams::MatMul(p) => Some(&mut p.act),
            _ => None,
        }
    }
}

/// Decodes op `op`'s parameters (reads the dtype of its input 0 to tell int8 from float).
pub fn params_of(m: &Model<'_>, op: &OpInfo<'_>) -> core::result::Result<OpParams, &'static str> {
    let int8 = m
        .op_input(op, 0)
        .is_some_and(|t| m.tensor(t).dtype == DType::I8);
    OpParams::decode(op.kind, op.words(), int8)
}

/// The shapes [`OpParams::macs`] and [`OpParams::describe`] read, for op `op` of a model.
pub fn shapes_of<'a>(
    m: &Model<'_>,
    op: &OpInfo<'_>,
    buf: &'a mut [[usize; MAX_RANK]; 3],
) -> OpShapes<'a> {
    let mut ranks = [0usize; 3];
    for k in 0..2 {
        if let Some(t) = m.op_input(op, k) {
            let ti = m.tensor(t);
            buf[k] = ti.dims;
            ranks[k] = ti.rank;
        }
    }
    let y = m.tensor(m.op_output(op, 0));
    buf[2] = y.dims;
    ranks[2] = y.rank;
    let [x, w, yy] = buf;
    OpShapes {
        x: &x[..ranks[0]],
        w: &w[..ranks[1]],
        y: &yy[..ranks[2]],
    }
}

/// Output size of a sliding window along one axis, or `None` if the window does not fit.
pub fn window_out(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
) -> Option<usize> {
    let extent = dilation
        .checked_mul(kernel.checked_sub(1)?)?
        .checked_add(1)?;
    let padded = input.checked_add(pad)?;
    if stride == 0 || padded < extent {
        return None;
    }
    Some((padded - extent) / stride + 1)
}

/// Numpy broadcasting check: `a` and `b` right-aligned broadcast exactly to `y`.
pub fn broadcast_ok(a: &[usize], b: &[usize], y: &[usize]) -> bool {
    if a.len() > y.len() || b.len() > y.len() || y.len() > MAX_RANK {
        return false;
    }
    for i in 0..y.len() {
        let da = if i + a.len() >= y.len() {
            a[i + a.len() - y.len()]
        } else {
            1
        };
        let db = if i + b.len() >= y.len() {
            b[i + b.len() - y.len()]
        } else {
            1
        };
        let d = da.max(db);
        if (da != d && da != 1) || (db != d && db != 1) || y[i] != d {
            return false;
        }
    }
    true
}

/// Checks one op against its tensors: parameters, arity, dtypes and shapes.
pub fn validate(m: &Model<'_>, op: &OpInfo<'_>) -> Result<()> {
    let c = Ctx { m, op };
    let p = params_of(m, op).map_err(|problem| c.err(problem))?;
    validate_params(&c, &p)
}

/// Runs one op of a validated model: `out` is its output slot, `left`/`right` the arena on
/// either side of it.
pub(crate) fn run(v: &View<'_, '_>, out: &mut [u8], yt: &TensorInfo<'_>) -> Result<()> {
    // A validated op always decodes; reading its few words is the only per-op work here.
    let p = params_of(v.m, v.op).map_err(|problem| v.err(problem))?;
    run_params(v, &p, out, yt)
}

/// What validation sees of one op: the model and the op record.
pub(crate) struct Ctx<'a, 'm> {
    pub(crate) m: &'a Model<'m>,
    pub(crate) op: &'a OpInfo<'m>,
}

impl<'m> Ctx<'_, 'm> {
    pub(crate) fn err(&self, problem: &'static str) -> Error {
        Error::Op {
            index: self.op.index,
            kind: self.op.kind as u16,
            problem,
        }
    }
    pub(crate) fn check(&self, ok: bool, problem: &'static str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.err(problem))
        }
    }
    pub(crate) fn kind(&self) -> OpKind {
        self.op.kind
    }
    pub(crate) fn num_inputs(&self) -> usize {
        self.op.num_inputs()
    }
    pub(crate) fn input(&self, k: usize) -> Result<TensorInfo<'m>> {
        self.m
            .op_input(self.op, k)
            .map(|t| self.m.tensor(t))
            .ok_or(self.err("a required input is missing"))
    }
    pub(crate) fn opt_input(&self, k: usize) -> Option<TensorInfo<'m>> {
        self.m.op_input(self.op, k).map(|t| self.m.tensor(t))
    }
    pub(crate) fn output(&self, k: usize) -> TensorInfo<'m> {
        self.m.tensor(self.m.op_output(self.op, k))
    }
    pub(crate) fn arity(&self, min_in: usize, max_in: usize, out: usize) -> Result<()> {
        let n = self.op.num_inputs();
        self.check(n >= min_in && n <= max_in, "wrong number of inputs")?;
        self.check(self.op.num_outputs() == out, "wrong number of outputs")
    }
    pub(crate) fn act(&self, act: Act) -> Result<()> {
        act.check(self)
    }
    /// An int8 activation with per-tensor quantization; returns its zero point.
    pub(crate) fn q8(&self, t: &TensorInfo<'_>) -> Result<i32> {
        match (t.dtype, t.quant) {
            (DType::I8, Quant::PerTensor { zero_point, .. })
                if (-128..=127).contains(&zero_point) =>
            {
                Ok(zero_point)
            }
            _ => Err(self.err("int8 activations need per-tensor quantization")),
        }
    }
    /// Requantization tables (inputs `k`, `k + 1`): multipliers (i32 Q0.31, or i16 holding the
    /// top 16 bits of one) and shifts (i32 or i8), one per output channel or one for all.
    pub(crate) fn requant_tables(&self, k: usize, channels: usize) -> Result<()> {
        use crate::cast::{bytes_as_i16, bytes_as_i32, bytes_as_i8};
        self.check(
            self.input(k)?.len() == self.input(k + 1)?.len(),
            "requantization multipliers and shifts differ in length",
        )?;
        for t in [k, k + 1] {
            let ti = self.input(t)?;
            let dtype_ok = ti.dtype == DType::I32
                || (t == k && ti.dtype == DType::I16)
                || (t == k + 1 && ti.dtype == DType::I8);
            self.check(
                dtype_ok && ti.storage == Storage::Constant,
                "requantization tables must be constants (i32 or i16 multipliers, i32 or i8 shifts)",
            )?;
            self.check(
                ti.len() == channels || ti.len() == 1,
                "requantization tables must have one entry per output channel",
            )?;
            let bytes = self.m.constant_bytes(&ti);
            let ok = if t == k && ti.dtype == DType::I16 {
                bytes_as_i16(bytes).iter().all(|&m| m >= 0)
            } else if t == k {
                bytes_as_i32(bytes).iter().all(|&m| m >= 0)
            } else if ti.dtype == DType::I8 {
                bytes_as_i8(bytes).iter().all(|&s| (-31..=30).contains(&s))
            } else {
                bytes_as_i32(bytes).iter().all(|&s| (-31..=30).contains(&s))
            };
            self.check(ok, "requantization multiplier or shift out of range")?;
        }
        Ok(())
    }
    /// Constant int8 weights quantized per tensor or along `channels` output channels.
    pub(crate) fn q8_weights(&self, w: &TensorInfo<'_>, channels: usize) -> Result<()> {
        self.check(
            w.dtype == DType::I8 && w.storage == Storage::Constant,
            "int8 ops need constant int8 weights",
        )?;
        match w.quant {
            Quant::PerTensor { zero_point, .. } => self.check(
                (-128..=127).contains(&zero_point),
                "weight zero point out of range",
            ),
            Quant::PerAxis { axis, .. } => self.check(
                axis == 0 && w.dims[0] == channels,
                "per-axis weights must be quantized along the output channels",
            ),
            // Symmetric weights whose scales live only in the requantization multipliers.
            Quant::None => Ok(()),
        }
    }
    /// An optional i32 bias `[channels]` at input `k`.
    pub(crate) fn q8_bias(&self, k: usize, channels: usize) -> Result<()> {
        if let Some(b) = self.opt_input(k) {
            self.check(
                b.dtype == DType::I32 && b.rank == 1 && b.dims[0] == channels,
                "int8 bias must be i32 [out_channels]",
            )?;
        }
        Ok(())
    }
    /// The operands of a weighted op (conv, dense): int8 `x, w, bias?, multipliers, shifts`
    /// (per-tensor activations, weights of rank `rank` quantized along their output channels,
    /// requantization tables) or float `x, w, bias?` (f32, or f16 constant weights, with a bias
    /// `[out_channels]`). Returns whether the op is int8.
    pub(crate) fn weighted(&self, rank: usize, sparse: bool) -> Result<bool> {
        let (x, w, y) = (self.input(0)?, self.input(1)?, self.output(0));
        self.check(w.rank == rank, "weights have the wrong rank")?;
        if SPARSE && sparse {
            return self.sparse_weights();
        }
        let channels = w.dims[0];
        if x.dtype == DType::I8 {
            self.arity(5, 5, 1)?;
            self.q8(&x)?;
            self.q8(&y)?;
            self.q8_weights(&w, channels)?;
            self.q8_bias(2, channels)?;
            self.requant_tables(3, channels)?;
            return Ok(true);
        }
        self.arity(2, 3, 1)?;
        self.f32_with_weights()?;
        if let Some(b) = self.opt_input(2) {
            self.check(
                b.rank == 1 && b.dims[0] == channels,
                "bias must be [out_channels]",
            )?;
        }
        Ok(false)
    }
    /// The rules of sparse weights (see [`crate::kernels::sparse`]): int8 activations, a
    /// constant u8 blob, a bias (holding the folded zero-point terms), per-channel
    /// requantization for the output's channels. The blob itself is checked by the op.
    fn sparse_weights(&self) -> Result<bool> {
        let (x, w, y) = (self.input(0)?, self.input(1)?, self.output(0));
        self.check(
            x.dtype == DType::I8 && w.dtype == DType::U8 && w.storage == Storage::Constant,
            "sparse weights are a constant u8 blob of an int8 layer",
        )?;
        let channels = y.dims[y.rank.max(1) - 1];
        self.arity(5, 5, 1)?;
        self.q8(&x)?;
        self.q8(&y)?;
        self.check(self.opt_input(2).is_some(), "sparse weights need a bias")?;
        self.q8_bias(2, channels)?;
        self.requant_tables(3, channels)?;
        Ok(true)
    }
    /// The extra rules of packed weights: f32 weights (`pack16x1`), or int8 with weight zero
    /// point 0 and a bias, which holds the folded zero-point terms (`pack16x4`).
    pub(crate) fn packed_weights(&self, int8: bool) -> Result<()> {
        let w = self.input(1)?;
        if !int8 {
            // f32: `pack16x1`, any bias.
            return self.check(w.dtype == DType::F32, "packed float weights must be f32");
        }
        self.check(
            !matches!(w.quant, Quant::PerTensor { zero_point, .. } if zero_point != 0),
            "packed weights need weight zero point 0",
        )?;
        self.check(self.opt_input(2).is_some(), "packed weights need a bias")
    }
    /// Data movement (slice, transpose): f32 in and out, or int8 in and out with the same
    /// quantization.
    pub(crate) fn same_type_move(&self) -> Result<()> {
        let (x, y) = (self.input(0)?, self.output(0));
        match x.dtype {
            DType::I8 => {
                self.q8(&x)?;
                self.check(
                    y.dtype == DType::I8 && x.quant == y.quant,
                    "int8 data movement keeps the quantization",
                )
            }
            _ => self.all_f32(),
        }
    }
    /// f32 activations and bias; weights (input 1) in f32 or f16.
    pub(crate) fn f32_with_weights(&self) -> Result<()> {
        self.float_enabled()?;
        for k in 0..self.op.num_inputs() {
            if let Some(t) = self.opt_input(k) {
                let ok = t.dtype == DType::F32
                    || (k == 1 && t.dtype == DType::F16 && t.storage == Storage::Constant);
                self.check(
                    ok,
                    "float ops take f32 tensors (and f32 or f16 constant weights)",
                )?;
            }
        }
        self.check(self.output(0).dtype == DType::F32, "float ops write f32")
    }
    /// Select, gather, transposed conv and resize need the `extended-ops` feature compiled in.
    pub(crate) fn extended_enabled(&self) -> Result<()> {
        self.check(
            cfg!(feature = "extended-ops"),
            "op not compiled in (kiln-runtime feature `extended-ops`)",
        )
    }
    /// Float ops need the `float` feature (the f32 kernels) compiled in.
    pub(crate) fn float_enabled(&self) -> Result<()> {
        self.check(
            cfg!(feature = "float"),
            "float kernels are not compiled in (kiln-runtime feature `float`)",
        )
    }
    /// Every input and output is f32.
    pub(crate) fn all_f32(&self) -> Result<()> {
        self.float_enabled()?;
        for k in 0..self.op.num_inputs() {
            if let Some(t) = self.opt_input(k) {
                self.check(
                    t.dtype == DType::F32,
                    "only f32 tensors are supported by this op",
                )?;
            }
        }
        for k in 0..self.op.num_outputs() {
            self.check(
                self.output(k).dtype == DType::F32,
                "only f32 tensors are supported by this op",
            )?;
        }
        Ok(())
    }
}

/// What a kernel dispatch sees of one op at run time: the model, the op, and the arena on either
/// side of the op's output slot (validation guarantees no input overlaps it).
pub(crate) struct View<'v, 'm> {
    pub(crate) m: &'v Model<'m>,
    pub(crate) left: &'v [u8],
    pub(crate) right: &'v [u8],
    pub(crate) right_start: usize,
    pub(crate) op: &'v OpInfo<'m>,
    /// Run the portable reference int8 kernels (a constant `false` without `kernel-choice`).
    pub(crate) reference: bool,
    /// The instruction set the optimized kernels use (chosen when the session was built).
    pub(crate) isa: crate::kernels::isa::Isa,
    /// The session's worker threads (feature `std`, after `Session::set_threads`).
    #[cfg(feature = "std")]
    pub(crate) pool: Option<&'v crate::pool::Pool>,
}

/// Layers with fewer multiply-accumulates than this run on one thread: below it, handing part
/// of the layer to a worker costs more than it saves.
pub const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Splits `y` into one part of whole units (`unit` elements: one output pixel) per thread and
/// runs `f(part, first unit)` on each, over the session's pool when it has one and the layer
/// has at least [`PARALLEL_MIN_MACS`] multiply-accumulates (else `f(y, 0)`). Every unit is
/// computed by the same code whatever the split, so the bytes are those of one thread.
pub(crate) fn parallel<T: Send>(
    v: &View<'_, '_>,
    macs: usize,
    y: &mut [T],
    unit: usize,
    f: impl Fn(&mut [T], usize) + Sync,
) {
    #[cfg(feature = "std")]
    if let Some(pool) = v.pool {
        let units = y.len() / unit.max(1);
        let t = pool.threads().min(units).min(MAX_PARTS);
        if macs >= PARALLEL_MIN_MACS && t > 1 {
            let per = units.div_ceil(t);
            let parts: [Slot<'_, T>; MAX_PARTS] =
                core::array::from_fn(|_| std::sync::Mutex::new(None));
            let (mut rest, mut u0, mut n) = (y, 0, 0);
            while !rest.is_empty() {
                let (part, tail) = rest.split_at_mut((per * unit).min(rest.len()));
                *parts[n].lock().unwrap_or_else(|e| e.into_inner()) = Some((part, u0));
                (rest, u0, n) = (tail, u0 + per, n + 1);
            }
            pool.run(n, &|i| {
                let job = parts[i].lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some((part, first)) = job {
                    f(part, first);
                }
            });
            return;
        }
    }
    let _ = (v, macs, unit);
    f(y, 0)
}

/// Most parts one layer is split into.
#[cfg(feature = "std")]
const MAX_PARTS: usize = 16;

/// One part of a split layer, taken by the thread that computes it.
#[cfg(feature = "std")]
type Slot<'a, T> = std::sync::Mutex<Option<(&'a mut [T], usize)>>;

impl<'m> View<'_, 'm> {
    pub(crate) fn err(&self, problem: &'static str) -> Error {
        Error::Op {
            index: self.op.index,
            kind: self.op.kind as u16,
            problem,
        }
    }
    pub(crate) fn bytes(&self, t: &TensorInfo<'_>) -> Result<&[u8]> {
        self.bytes_at(t.storage, t.offset, t.byte_len)
    }
    /// The bytes of a tensor given by where it is ([`Model::tensor_loc`]).
    #[inline]
    pub(crate) fn bytes_at(&self, storage: Storage, offset: usize, len: usize) -> Result<&[u8]> {
        match storage {
            Storage::Constant => Ok(self.m.constant_at(storage, offset, len)),
            Storage::Arena => {
                let end = offset + len;
                if end <= self.left.len() {
                    Ok(&self.left[offset..end])
                } else if offset >= self.right_start {
                    Ok(&self.right[offset - self.right_start..end - self.right_start])
                } else {
                    Err(self.err("input overlaps the output slot"))
                }
            }
        }
    }
    /// Input `k`'s data and element type, if the op has that input (without decoding its
    /// whole descriptor).
    pub(crate) fn opt_data(&self, k: usize) -> Result<Option<(&[u8], DType)>> {
        match self.m.op_input(self.op, k) {
            None => Ok(None),
            Some(t) => {
                let l = self.m.tensor_loc(t);
                Ok(Some((
                    self.bytes_at(l.storage, l.offset, l.byte_len)?,
                    l.dtype,
                )))
            }
        }
    }
    /// Input `k`'s data and element type (required).
    pub(crate) fn data(&self, k: usize) -> Result<(&[u8], DType)> {
        self.opt_data(k)?
            .ok_or(self.err("a required input is missing"))
    }
    pub(crate) fn num_inputs(&self) -> usize {
        self.op.num_inputs()
    }
    /// Whether to run the reference kernels: a constant `false` without `kernel-choice`, so the
    /// reference kernels are not even linked into firmware.
    #[inline(always)]
    pub(crate) fn use_reference(&self) -> bool {
        cfg!(feature = "kernel-choice") && self.reference
    }
    pub(crate) fn info(&self, k: usize) -> Result<TensorInfo<'m>> {
        self.m
            .op_input(self.op, k)
            .map(|t| self.m.tensor(t))
            .ok_or(self.err("a required input is missing"))
    }
    pub(crate) fn opt_f32(&self, k: usize) -> Result<Option<&[f32]>> {
        Ok(self.opt_data(k)?.map(|(b, _)| crate::cast::bytes_as_f32(b)))
    }
    pub(crate) fn opt_i32(&self, k: usize) -> Result<Option<&[i32]>> {
        Ok(self.opt_data(k)?.map(|(b, _)| crate::cast::bytes_as_i32(b)))
    }
}

/// The first four dims of a (4-D) tensor.
pub(crate) fn dims4(t: &TensorInfo<'_>) -> [usize; 4] {
    [t.dims[0], t.dims[1], t.dims[2], t.dims[3]]
}

/// `(scale, zero point)` of a per-tensor quantized tensor (`(1, 0)` otherwise).
pub(crate) fn per_tensor(t: &TensorInfo<'_>) -> (f32, i32) {
    match t.quant {
        Quant::PerTensor { scale, zero_point } => (scale, zero_point),
        _ => (1.0, 0),
    }
}

/// Reports that an op has no kernel for the dtype it was given (unreachable for a validated
/// model; an error rather than a panic all the same).
pub(crate) fn no_kernel(v: &View<'_, '_>) -> Result<()> {
    Err(v.err("op has no kernel for this dtype"))
}
