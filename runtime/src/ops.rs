//! Op kinds, their parameter layout, and the load-time validation of each op against its tensors.
//!
//! Parameter words (`params[0..12]`, see `FORMAT.md`). Words 9 and 10 hold a fused activation
//! clamp `[min, max]` as f32 bits for every op that has one (conv, dense, pools, binary, matmul).

use crate::error::{Error, Result};
use crate::format::{DType, MAX_RANK};
use crate::model::{Model, OpInfo, Quant, TensorInfo};

/// Param word holding the fused activation's lower bound (f32 bits).
pub const P_ACT_MIN: usize = 9;
/// Param word holding the fused activation's upper bound (f32 bits).
pub const P_ACT_MAX: usize = 10;

macro_rules! op_kinds {
    ($($(#[$m:meta])* $name:ident = $code:expr, $str:expr;)*) => {
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
    };
}

op_kinds! {
    /// 2-D convolution, NHWC input, OHWI weights, optional bias; groups cover depthwise.
    /// Params: stride h/w, dilation h/w, pad top/left/bottom/right, groups, act min/max.
    Conv2d = 1, "conv2d";
    /// Fully connected: `[.., K] x [M, K]^T + bias[M]`. Params: act min/max.
    Dense = 2, "dense";
    /// Max pooling, NHWC. Params: stride h/w, kernel h/w, pads t/l/b/r, -, act min/max.
    MaxPool = 3, "max_pool";
    /// Average pooling, NHWC. As max pool, plus `count_include_pad` in word 8 and, in word 11,
    /// the rows/columns of bottom/right padding added for ceil mode (`rows << 16 | cols`), which
    /// are never counted.
    AvgPool = 4, "avg_pool";
    /// Reduction over an axis mask. Params: reducer (0 mean, 1 sum, 2 max, 3 min, 4 prod,
    /// 5 mean of squares), mask.
    Reduce = 5, "reduce";
    /// Broadcasting binary op. Params: kind (see [`BinaryKind`]), act min/max.
    Binary = 6, "binary";
    /// Concatenation along param 0.
    Concat = 7, "concat";
    /// Padding. Params: mode (0 constant, 1 reflect, 2 edge), value bits, then per axis
    /// `before << 16 | after`.
    Pad = 8, "pad";
    /// Same data, new shape; free when the planner aliases input and output.
    Reshape = 9, "reshape";
    /// Axis permutation; params 0..rank are the permutation.
    Transpose = 10, "transpose";
    /// Element-wise function. Params: kind (see [`UnaryKind`]), a bits, b bits.
    Unary = 11, "unary";
    /// Softmax along param 0, with beta (bits) in word 1 and log-softmax when word 2 is 1.
    Softmax = 12, "softmax";
    /// Strided slice: begin per axis in words 0..6, step in words 6..12.
    Slice = 13, "slice";
    /// Batched matrix product with broadcasting batch dims, optional bias over N. Params: act.
    MatMul = 14, "matmul";
    /// f32 -> int8 with the output tensor's scale and zero point.
    Quantize = 15, "quantize";
    /// int8 -> f32 with the input tensor's scale and zero point.
    Dequantize = 16, "dequantize";
    /// int8 -> int8 through a 256-entry table (input 1, indexed by the input byte): how int8
    /// logistic, tanh and other element-wise functions run, as in TFLite.
    Lut = 17, "lut";
}

/// Kinds of [`OpKind::Binary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum BinaryKind {
    /// a + b
    Add = 0,
    /// a - b
    Sub = 1,
    /// a * b
    Mul = 2,
    /// a / b
    Div = 3,
    /// max(a, b)
    Max = 4,
    /// min(a, b)
    Min = 5,
    /// a ^ b
    Pow = 6,
}

impl BinaryKind {
    /// Decodes the kind word.
    pub fn from_i32(v: i32) -> Option<BinaryKind> {
        use BinaryKind::*;
        Some(match v {
            0 => Add,
            1 => Sub,
            2 => Mul,
            3 => Div,
            4 => Max,
            5 => Min,
            6 => Pow,
            _ => return None,
        })
    }
}

/// Kinds of [`OpKind::Unary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum UnaryKind {
    /// max(x, 0)
    Relu = 0,
    /// clamp(x, a, b)
    Clip = 1,
    /// x if x >= 0 else a * x
    LeakyRelu = 2,
    /// 1 / (1 + e^-x)
    Sigmoid = 3,
    /// tanh(x)
    Tanh = 4,
    /// x * relu6(x + 3) / 6
    HardSwish = 5,
    /// clamp(a * x + b, 0, 1)
    HardSigmoid = 6,
    /// e^x
    Exp = 7,
    /// |x|
    Abs = 8,
    /// -x
    Neg = 9,
    /// sqrt(x)
    Sqrt = 10,
    /// x if x > 0 else a * (e^x - 1)
    Elu = 11,
    /// ln(x)
    Log = 12,
    /// 1 / x
    Reciprocal = 13,
    /// floor(x)
    Floor = 14,
    /// ceil(x)
    Ceil = 15,
    /// ln(1 + e^x)
    Softplus = 16,
    /// x (a copy)
    Identity = 17,
    /// b * (x if x > 0 else a * (e^x - 1))
    Selu = 18,
    /// 1 / sqrt(x)
    Rsqrt = 19,
    /// x * x
    Square = 20,
    /// x ^ a
    PowConst = 21,
    /// x * sigmoid(x)
    Silu = 22,
    /// x * (1 + erf(x / sqrt 2)) / 2
    Gelu = 23,
    /// GELU, tanh approximation
    GeluTanh = 24,
    /// sin(x)
    Sin = 25,
    /// cos(x)
    Cos = 26,
    /// tan(x)
    Tan = 27,
    /// erf(x)
    Erf = 28,
}

impl UnaryKind {
    /// Decodes the kind word.
    pub fn from_i32(v: i32) -> Option<UnaryKind> {
        use UnaryKind::*;
        Some(match v {
            0 => Relu,
            1 => Clip,
            2 => LeakyRelu,
            3 => Sigmoid,
            4 => Tanh,
            5 => HardSwish,
            6 => HardSigmoid,
            7 => Exp,
            8 => Abs,
            9 => Neg,
            10 => Sqrt,
            11 => Elu,
            12 => Log,
            13 => Reciprocal,
            14 => Floor,
            15 => Ceil,
            16 => Softplus,
            17 => Identity,
            18 => Selu,
            19 => Rsqrt,
            20 => Square,
            21 => PowConst,
            22 => Silu,
            23 => Gelu,
            24 => GeluTanh,
            25 => Sin,
            26 => Cos,
            27 => Tan,
            28 => Erf,
            _ => return None,
        })
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

struct Ctx<'a, 'm> {
    m: &'a Model<'m>,
    op: &'a OpInfo<'m>,
}

impl<'m> Ctx<'_, 'm> {
    fn err(&self, problem: &'static str) -> Error {
        Error::Op {
            index: self.op.index,
            kind: self.op.kind as u16,
            problem,
        }
    }
    fn check(&self, ok: bool, problem: &'static str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.err(problem))
        }
    }
    fn input(&self, k: usize) -> Result<TensorInfo<'m>> {
        self.m
            .op_input(self.op, k)
            .map(|t| self.m.tensor(t))
            .ok_or(self.err("a required input is missing"))
    }
    fn opt_input(&self, k: usize) -> Option<TensorInfo<'m>> {
        self.m.op_input(self.op, k).map(|t| self.m.tensor(t))
    }
    fn output(&self, k: usize) -> TensorInfo<'m> {
        self.m.tensor(self.m.op_output(self.op, k))
    }
    fn arity(&self, min_in: usize, max_in: usize, out: usize) -> Result<()> {
        let n = self.op.num_inputs();
        self.check(n >= min_in && n <= max_in, "wrong number of inputs")?;
        self.check(self.op.num_outputs() == out, "wrong number of outputs")
    }
    fn p(&self, i: usize) -> i32 {
        self.op.params[i]
    }
    fn pos(&self, i: usize, what: &'static str) -> Result<usize> {
        let v = self.p(i);
        self.check(v > 0, what)?;
        Ok(v as usize)
    }
    fn nonneg(&self, i: usize, what: &'static str) -> Result<usize> {
        let v = self.p(i);
        self.check(v >= 0, what)?;
        Ok(v as usize)
    }
    fn act(&self) -> Result<()> {
        let lo = self.op.param_f32(P_ACT_MIN);
        let hi = self.op.param_f32(P_ACT_MAX);
        self.check(
            !lo.is_nan() && !hi.is_nan() && lo <= hi,
            "fused activation bounds are invalid",
        )
    }
    /// An int8 activation with per-tensor quantization.
    fn q8(&self, t: &TensorInfo<'_>) -> Result<i32> {
        match (t.dtype, t.quant) {
            (DType::I8, Quant::PerTensor { zero_point, .. })
                if (-128..=127).contains(&zero_point) =>
            {
                Ok(zero_point)
            }
            _ => Err(self.err("int8 activations need per-tensor quantization")),
        }
    }
    fn int_act(&self) -> Result<()> {
        let (lo, hi) = (self.p(P_ACT_MIN), self.p(P_ACT_MAX));
        self.check(
            (-128..=127).contains(&lo) && (-128..=127).contains(&hi) && lo <= hi,
            "int8 clamp is invalid",
        )
    }
    /// Requantization tables (inputs `k`, `k + 1`): multipliers (i32 Q0.31, or i16 holding the
    /// top 16 bits of one) and shifts (i32 or i8), one per output channel or one for all.
    fn requant_tables(&self, k: usize, channels: usize) -> Result<()> {
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
                dtype_ok && ti.storage == crate::format::Storage::Constant,
                "requantization tables must be constants (i32 or i16 multipliers, i32 or i8 shifts)",
            )?;
            self.check(
                ti.len() == channels || ti.len() == 1,
                "requantization tables must have one entry per output channel",
            )?;
            let bytes = self.m.constant_bytes(&ti);
            let ok = if t == k && ti.dtype == DType::I16 {
                crate::cast::bytes_as_i16(bytes).iter().all(|&m| m >= 0)
            } else if t == k {
                crate::cast::bytes_as_i32(bytes).iter().all(|&m| m >= 0)
            } else if ti.dtype == DType::I8 {
                crate::cast::bytes_as_i8(bytes)
                    .iter()
                    .all(|&s| (-31..=30).contains(&s))
            } else {
                crate::cast::bytes_as_i32(bytes)
                    .iter()
                    .all(|&s| (-31..=30).contains(&s))
            };
            self.check(ok, "requantization multiplier or shift out of range")?;
        }
        Ok(())
    }
    fn q8_weights(&self, w: &TensorInfo<'_>, channels: usize) -> Result<()> {
        self.check(
            w.dtype == DType::I8 && w.storage == crate::format::Storage::Constant,
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
    fn q8_bias(&self, k: usize, channels: usize) -> Result<()> {
        if let Some(b) = self.opt_input(k) {
            self.check(
                b.dtype == DType::I32 && b.rank == 1 && b.dims[0] == channels,
                "int8 bias must be i32 [out_channels]",
            )?;
        }
        Ok(())
    }
    /// Data movement (slice, transpose): f32 in and out, or int8 in and out with the same
    /// quantization.
    fn same_type_move(&self) -> Result<()> {
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
    fn f32_with_weights(&self) -> Result<()> {
        self.float_enabled()?;
        for k in 0..self.op.num_inputs() {
            if let Some(t) = self.opt_input(k) {
                let ok = t.dtype == DType::F32
                    || (k == 1
                        && t.dtype == DType::F16
                        && t.storage == crate::format::Storage::Constant);
                self.check(
                    ok,
                    "float ops take f32 tensors (and f32 or f16 constant weights)",
                )?;
            }
        }
        self.check(self.output(0).dtype == DType::F32, "float ops write f32")
    }
    /// Float ops need the `float` feature (the f32 kernels) compiled in.
    fn float_enabled(&self) -> Result<()> {
        self.check(
            cfg!(feature = "float"),
            "float kernels are not compiled in (kiln-runtime feature `float`)",
        )
    }
    fn all_f32(&self) -> Result<()> {
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

/// Checks one op against its tensors: arity, dtypes, shapes and parameters.
pub fn validate(m: &Model<'_>, op: &OpInfo<'_>) -> Result<()> {
    let c = Ctx { m, op };
    match op.kind {
        OpKind::Conv2d => {
            let quantized = c.input(0)?.dtype == DType::I8;
            if quantized {
                c.arity(5, 5, 1)?;
                let (x, w, y) = (c.input(0)?, c.input(1)?, c.output(0));
                c.q8(&x)?;
                c.q8(&y)?;
                c.check(w.rank == 4, "conv weights must be 4-D")?;
                c.q8_weights(&w, w.dims[0])?;
                c.q8_bias(2, w.dims[0])?;
                c.requant_tables(3, w.dims[0])?;
                c.int_act()?;
                c.check(matches!(c.p(11), 0 | 1), "unknown requantization rounding")?;
            } else {
                c.arity(2, 3, 1)?;
                c.f32_with_weights()?;
            }
            let (x, w, y) = (c.input(0)?, c.input(1)?, c.output(0));
            c.check(
                x.rank == 4 && w.rank == 4 && y.rank == 4,
                "conv tensors must be 4-D (NHWC, OHWI)",
            )?;
            let sh = c.pos(0, "stride must be positive")?;
            let sw = c.pos(1, "stride must be positive")?;
            let dh = c.pos(2, "dilation must be positive")?;
            let dw = c.pos(3, "dilation must be positive")?;
            let pads = [
                c.nonneg(4, "negative padding")?,
                c.nonneg(5, "negative padding")?,
                c.nonneg(6, "negative padding")?,
                c.nonneg(7, "negative padding")?,
            ];
            let g = c.pos(8, "groups must be positive")?;
            let [n, h, wd, ci] = [x.dims[0], x.dims[1], x.dims[2], x.dims[3]];
            let [co, kh, kw, cig] = [w.dims[0], w.dims[1], w.dims[2], w.dims[3]];
            c.check(
                ci % g == 0 && co % g == 0 && cig * g == ci,
                "channels do not match groups and weights",
            )?;
            let oh = window_out(h, kh, sh, dh, pads[0] + pads[2])
                .ok_or(c.err("kernel larger than padded input"))?;
            let ow = window_out(wd, kw, sw, dw, pads[1] + pads[3])
                .ok_or(c.err("kernel larger than padded input"))?;
            c.check(
                y.shape() == [n, oh, ow, co],
                "output shape does not match conv arithmetic",
            )?;
            if quantized {
                return Ok(());
            }
            if let Some(b) = c.opt_input(2) {
                c.check(
                    b.rank == 1 && b.dims[0] == co,
                    "bias must be [out_channels]",
                )?;
            }
            c.act()
        }
        OpKind::Dense => {
            let quantized = c.input(0)?.dtype == DType::I8;
            let (x, w, y) = (c.input(0)?, c.input(1)?, c.output(0));
            if quantized {
                c.arity(5, 5, 1)?;
                c.q8(&x)?;
                c.q8(&y)?;
                c.check(w.rank == 2, "dense weights must be 2-D")?;
                c.q8_weights(&w, w.dims[0])?;
                c.q8_bias(2, w.dims[0])?;
                c.requant_tables(3, w.dims[0])?;
                c.int_act()?;
                c.check(matches!(c.p(11), 0 | 1), "unknown requantization rounding")?;
            } else {
                c.arity(2, 3, 1)?;
                c.f32_with_weights()?;
            }
            c.check(
                w.rank == 2 && x.rank >= 1 && y.rank == x.rank,
                "dense expects x [.., K], w [M, K]",
            )?;
            let (mo, k) = (w.dims[0], w.dims[1]);
            c.check(
                x.dims[x.rank - 1] == k,
                "input's last dim does not match weights",
            )?;
            c.check(
                y.dims[y.rank - 1] == mo && y.shape()[..y.rank - 1] == x.shape()[..x.rank - 1],
                "output shape does not match dense arithmetic",
            )?;
            if quantized {
                return Ok(());
            }
            if let Some(b) = c.opt_input(2) {
                c.check(
                    b.rank == 1 && b.dims[0] == mo,
                    "bias must be [out_features]",
                )?;
            }
            c.act()
        }
        OpKind::MaxPool | OpKind::AvgPool => {
            c.arity(1, 1, 1)?;
            let (x, y) = (c.input(0)?, c.output(0));
            let quantized = x.dtype == DType::I8;
            if quantized {
                c.check(
                    c.q8(&x)? == c.q8(&y)? && x.quant == y.quant,
                    "int8 pooling keeps the input's quantization",
                )?;
                c.check(
                    op.kind == OpKind::MaxPool || c.p(8) == 0,
                    "int8 average pooling counts the valid window only",
                )?;
            } else {
                c.all_f32()?;
            }
            c.check(x.rank == 4 && y.rank == 4, "pool tensors must be 4-D NHWC")?;
            let sh = c.pos(0, "stride must be positive")?;
            let sw = c.pos(1, "stride must be positive")?;
            let kh = c.pos(2, "kernel must be positive")?;
            let kw = c.pos(3, "kernel must be positive")?;
            let pads = [
                c.nonneg(4, "negative padding")?,
                c.nonneg(5, "negative padding")?,
                c.nonneg(6, "negative padding")?,
                c.nonneg(7, "negative padding")?,
            ];
            c.check(pads.iter().all(|&p| p < 1 << 15), "padding too large")?;
            let extra = c.p(11);
            c.check(
                extra >= 0
                    && (extra >> 16) as usize <= pads[2]
                    && (extra & 0xFFFF) as usize <= pads[3],
                "ceil-mode padding exceeds padding",
            )?;
            let oh = window_out(x.dims[1], kh, sh, 1, pads[0] + pads[2])
                .ok_or(c.err("window larger than padded input"))?;
            let ow = window_out(x.dims[2], kw, sw, 1, pads[1] + pads[3])
                .ok_or(c.err("window larger than padded input"))?;
            c.check(
                y.shape() == [x.dims[0], oh, ow, x.dims[3]],
                "output shape does not match pool arithmetic",
            )?;
            if quantized {
                c.int_act()
            } else {
                c.act()
            }
        }
        OpKind::Reduce => {
            c.arity(1, 1, 1)?;
            let (x, y) = (c.input(0)?, c.output(0));
            if x.dtype == DType::I8 {
                c.q8(&x)?;
                c.q8(&y)?;
                c.check(c.p(0) == 0, "the int8 reducer is mean")?;
                c.check(
                    c.p(2) >= 0 && (-31..=30).contains(&c.p(3)),
                    "int8 mean multiplier out of range",
                )?;
            } else {
                c.all_f32()?;
            }
            c.check((0..=5).contains(&c.p(0)), "unknown reducer")?;
            let mask = c.p(1) as u32;
            c.check(
                mask != 0 && mask >> x.rank == 0,
                "reduction axes outside the input's rank",
            )?;
            let kept: usize = (0..x.rank)
                .filter(|a| mask & (1 << a) == 0)
                .map(|a| x.dims[a])
                .product();
            c.check(y.len() == kept, "output size does not match the reduction")?;
            Ok(())
        }
        OpKind::Binary => {
            c.arity(2, 2, 1)?;
            let kind = BinaryKind::from_i32(c.p(0)).ok_or(c.err("unknown binary kind"))?;
            let (a, b, y) = (c.input(0)?, c.input(1)?, c.output(0));
            c.check(
                broadcast_ok(a.shape(), b.shape(), y.shape()),
                "shapes do not broadcast to the output",
            )?;
            if a.dtype == DType::I8 {
                c.q8(&a)?;
                c.q8(&b)?;
                c.q8(&y)?;
                if kind == BinaryKind::Mul {
                    c.check(
                        c.p(2) >= 0 && (-31..=30).contains(&c.p(3)),
                        "int8 mul multiplier out of range",
                    )?;
                    c.check(matches!(c.p(11), 0 | 1), "unknown requantization rounding")?;
                    return c.int_act();
                }
                c.check(
                    matches!(kind, BinaryKind::Add | BinaryKind::Sub),
                    "int8 binary ops are add, sub and mul",
                )?;
                c.check(
                    (0..=20).contains(&c.p(1)),
                    "int8 add left shift out of range",
                )?;
                for k in 0..3 {
                    c.check(
                        c.p(2 + 2 * k) >= 0 && (-31..=0).contains(&c.p(3 + 2 * k)),
                        "int8 add multiplier out of range",
                    )?;
                }
                return c.int_act();
            }
            c.all_f32()?;
            c.act()
        }
        OpKind::Concat => {
            c.check(
                op.num_inputs() >= 1 && op.num_outputs() == 1,
                "wrong number of inputs/outputs",
            )?;
            let y = c.output(0);
            if y.dtype == DType::I8 {
                c.q8(&y)?;
                for k in 0..op.num_inputs() {
                    let x = c.input(k)?;
                    c.check(
                        x.dtype == DType::I8 && x.quant == y.quant,
                        "int8 concat inputs must share the output's quantization",
                    )?;
                }
            } else {
                c.all_f32()?;
            }
            let axis = c.nonneg(0, "axis must be non-negative")?;
            c.check(axis < y.rank, "axis outside the rank")?;
            let mut sum = 0;
            for k in 0..op.num_inputs() {
                let x = c.input(k)?;
                c.check(x.rank == y.rank, "inputs must have the output's rank")?;
                for d in 0..y.rank {
                    c.check(
                        d == axis || x.dims[d] == y.dims[d],
                        "inputs differ outside the concat axis",
                    )?;
                }
                sum += x.dims[axis];
            }
            c.check(sum == y.dims[axis], "concat axis sizes do not add up")
        }
        OpKind::Pad => {
            c.arity(1, 1, 1)?;
            c.all_f32()?;
            let (x, y) = (c.input(0)?, c.output(0));
            let mode = c.p(0);
            c.check((0..=2).contains(&mode), "unknown pad mode")?;
            c.check(x.rank == y.rank, "pad keeps the rank")?;
            for d in 0..x.rank {
                let (b, a) = pad_pair(c.p(2 + d));
                c.check(
                    y.dims[d] == x.dims[d] + b + a,
                    "output shape does not match pads",
                )?;
                if mode == 1 {
                    c.check(
                        b < x.dims[d] && a < x.dims[d],
                        "reflect pads must be smaller than the input",
                    )?;
                }
            }
            Ok(())
        }
        OpKind::Reshape => {
            c.arity(1, 1, 1)?;
            let (x, y) = (c.input(0)?, c.output(0));
            c.check(x.dtype == y.dtype, "reshape keeps the dtype")?;
            c.check(x.len() == y.len(), "reshape keeps the element count")
        }
        OpKind::Transpose => {
            c.arity(1, 1, 1)?;
            c.same_type_move()?;
            let (x, y) = (c.input(0)?, c.output(0));
            c.check(x.rank == y.rank, "transpose keeps the rank")?;
            let mut seen = 0u32;
            for d in 0..x.rank {
                let p = c.p(d);
                c.check(
                    p >= 0 && (p as usize) < x.rank && seen & (1 << p) == 0,
                    "not a permutation",
                )?;
                seen |= 1 << p;
                c.check(
                    y.dims[d] == x.dims[p as usize],
                    "output shape does not match the permutation",
                )?;
            }
            Ok(())
        }
        OpKind::Unary => {
            c.arity(1, 1, 1)?;
            c.all_f32()?;
            c.check(UnaryKind::from_i32(c.p(0)).is_some(), "unknown unary kind")?;
            let (x, y) = (c.input(0)?, c.output(0));
            c.check(x.shape() == y.shape(), "unary keeps the shape")
        }
        OpKind::Softmax => {
            c.arity(1, 1, 1)?;
            let (x, y) = (c.input(0)?, c.output(0));
            if x.dtype == DType::I8 {
                c.q8(&x)?;
                c.check(
                    y.quant
                        == Quant::PerTensor {
                            scale: 1.0 / 256.0,
                            zero_point: -128,
                        }
                        && y.dtype == DType::I8,
                    "int8 softmax output must have scale 1/256 and zero point -128",
                )?;
                c.check(
                    x.rank >= 1 && c.p(0) as usize == x.rank - 1,
                    "int8 softmax runs along the last axis",
                )?;
                c.check(
                    c.p(3) >= 0 && (0..=31).contains(&c.p(4)) && c.p(5) <= 0,
                    "int8 softmax parameters out of range",
                )?;
                return c.check(x.shape() == y.shape(), "softmax keeps the shape");
            }
            c.all_f32()?;
            c.check(x.shape() == y.shape(), "softmax keeps the shape")?;
            let axis = c.nonneg(0, "axis must be non-negative")?;
            c.check(axis < x.rank, "axis outside the rank")?;
            c.check(op.param_f32(1).is_finite(), "beta must be finite")
        }
        OpKind::Slice => {
            c.arity(1, 1, 1)?;
            c.same_type_move()?;
            let (x, y) = (c.input(0)?, c.output(0));
            c.check(x.rank == y.rank, "slice keeps the rank")?;
            for d in 0..x.rank {
                let (b, s) = (c.p(d) as i64, c.p(6 + d) as i64);
                c.check(s != 0, "slice step is zero")?;
                let last = b + (y.dims[d] as i64 - 1) * s;
                let n = x.dims[d] as i64;
                c.check(
                    (0..n).contains(&b) && (0..n).contains(&last),
                    "slice reads outside the input",
                )?;
            }
            Ok(())
        }
        OpKind::Lut => {
            c.arity(2, 2, 1)?;
            let (x, t, y) = (c.input(0)?, c.input(1)?, c.output(0));
            c.q8(&x)?;
            c.q8(&y)?;
            c.check(
                t.dtype == DType::I8
                    && t.len() == 256
                    && t.storage == crate::format::Storage::Constant,
                "lookup table must be a constant int8 [256]",
            )?;
            c.check(x.shape() == y.shape(), "lookup keeps the shape")
        }
        OpKind::Quantize | OpKind::Dequantize => {
            c.arity(1, 1, 1)?;
            let (x, y) = (c.input(0)?, c.output(0));
            c.check(x.len() == y.len(), "quantize keeps the element count")?;
            if op.kind == OpKind::Quantize {
                c.check(x.dtype == DType::F32, "quantize reads f32")?;
                c.q8(&y)?;
            } else {
                c.check(y.dtype == DType::F32, "dequantize writes f32")?;
                c.q8(&x)?;
            }
            Ok(())
        }
        OpKind::MatMul => {
            c.arity(2, 3, 1)?;
            c.all_f32()?;
            let (a, b, y) = (c.input(0)?, c.input(1)?, c.output(0));
            c.check(
                a.rank >= 2 && b.rank >= 2 && y.rank == a.rank.max(b.rank),
                "matmul operands must be at least 2-D",
            )?;
            let (m, k) = (a.dims[a.rank - 2], a.dims[a.rank - 1]);
            let (k2, n) = (b.dims[b.rank - 2], b.dims[b.rank - 1]);
            c.check(k == k2, "inner dimensions differ")?;
            c.check(
                y.dims[y.rank - 2] == m && y.dims[y.rank - 1] == n,
                "output shape does not match",
            )?;
            c.check(
                broadcast_ok(
                    &a.shape()[..a.rank - 2],
                    &b.shape()[..b.rank - 2],
                    &y.shape()[..y.rank - 2],
                ),
                "batch dims do not broadcast",
            )?;
            if let Some(bias) = c.opt_input(2) {
                c.check(bias.rank == 1 && bias.dims[0] == n, "bias must be [N]")?;
            }
            c.act()
        }
    }
}

/// Splits a packed pad word into `(before, after)`.
pub fn pad_pair(w: i32) -> (usize, usize) {
    (((w as u32) >> 16) as usize, (w as u32 & 0xFFFF) as usize)
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
