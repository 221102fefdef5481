//! Element-wise f32 functions (see [`UnaryKind`]); int8 element-wise functions run as a
//! lookup table ([`super::OpKind::Lut`]).
//!
//! Words: 0 kind, 1 parameter `a` (f32 bits), 2 parameter `b` (f32 bits).

use core::fmt;

use super::{no_kernel, Ctx, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut};
use crate::error::Result;
use crate::format::DType;
use crate::model::TensorInfo;

/// Kinds of [`super::OpKind::Unary`].
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

impl UnaryKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        use UnaryKind::*;
        match self {
            Relu => "relu",
            Clip => "clip",
            LeakyRelu => "leakyrelu",
            Sigmoid => "sigmoid",
            Tanh => "tanh",
            HardSwish => "hardswish",
            HardSigmoid => "hardsigmoid",
            Exp => "exp",
            Abs => "abs",
            Neg => "neg",
            Sqrt => "sqrt",
            Elu => "elu",
            Log => "log",
            Reciprocal => "reciprocal",
            Floor => "floor",
            Ceil => "ceil",
            Softplus => "softplus",
            Identity => "identity",
            Selu => "selu",
            Rsqrt => "rsqrt",
            Square => "square",
            PowConst => "powconst",
            Silu => "silu",
            Gelu => "gelu",
            GeluTanh => "gelutanh",
            Sin => "sin",
            Cos => "cos",
            Tan => "tan",
            Erf => "erf",
        }
    }
}

/// Parameters of [`super::OpKind::Unary`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnaryParams {
    /// The function.
    pub kind: UnaryKind,
    /// Its first parameter (slope, lower bound, exponent…; see [`UnaryKind`]).
    pub a: f32,
    /// Its second parameter.
    pub b: f32,
}

impl UnaryParams {
    /// `kind` with both parameters 0.
    pub fn new(kind: UnaryKind) -> Self {
        UnaryParams {
            kind,
            a: 0.0,
            b: 0.0,
        }
    }
    /// Decodes the words (see the module docs).
    pub fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        Ok(UnaryParams {
            kind: UnaryKind::from_i32(w[0]).ok_or("unknown unary kind")?,
            a: f32::from_bits(w[1] as u32),
            b: f32::from_bits(w[2] as u32),
        })
    }
    /// The words.
    pub fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[0] = self.kind as i32;
        w[1] = self.a.to_bits() as i32;
        w[2] = self.b.to_bits() as i32;
        w
    }
}

pub(super) fn validate(c: &Ctx<'_, '_>, _p: &UnaryParams) -> Result<()> {
    c.arity(1, 1, 1)?;
    c.all_f32()?;
    let (x, y) = (c.input(0)?, c.output(0));
    c.check(x.shape() == y.shape(), "unary keeps the shape")
}

pub(super) fn run(
    v: &View<'_, '_>,
    p: &UnaryParams,
    out: &mut [u8],
    _yt: &TensorInfo<'_>,
) -> Result<()> {
    let xt = v.info(0)?;
    if xt.dtype != DType::F32 || !cfg!(feature = "float") {
        return no_kernel(v);
    }
    let x = bytes_as_f32(v.bytes(&xt)?);
    crate::kernels::reference_f32::unary(p.kind, x, bytes_as_f32_mut(out), p.a, p.b);
    Ok(())
}

pub(super) fn macs(_p: &UnaryParams, _s: &OpShapes<'_>) -> u64 {
    0
}

pub(super) fn describe(p: &UnaryParams, _s: &OpShapes<'_>, f: &mut dyn fmt::Write) -> fmt::Result {
    f.write_str(p.kind.name())
}
