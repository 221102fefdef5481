//! Element-wise f32 functions (see [`UnaryKind`]); int8 element-wise functions run as a
//! lookup table ([`super::OpKind::Lut`]).
//!
//! Words: 0 kind, 1 parameter `a` (f32 bits), 2 parameter `b` (f32 bits).

use core::fmt;

use super::{no_kernel, Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut};
use crate::error::Result;
use crate::format::DType;
use crate::model::TensorInfo;

crate::format::code_enum! {
    /// Kinds of [`super::OpKind::Unary`] (word 0); `a` and `b` are words 1 and 2.
    pub enum UnaryKind: i32, from_i32 {
        Relu = 0, "relu", "max(x, 0)";
        Clip = 1, "clip", "clamp(x, a, b)";
        LeakyRelu = 2, "leakyrelu", "x if x >= 0 else a * x";
        Sigmoid = 3, "sigmoid", "1 / (1 + e^-x)";
        Tanh = 4, "tanh", "tanh(x)";
        HardSwish = 5, "hardswish", "x * relu6(x + 3) / 6";
        HardSigmoid = 6, "hardsigmoid", "clamp(a * x + b, 0, 1)";
        Exp = 7, "exp", "e^x";
        Abs = 8, "abs", "|x|";
        Neg = 9, "neg", "-x";
        Sqrt = 10, "sqrt", "sqrt(x)";
        Elu = 11, "elu", "x if x > 0 else a * (e^x - 1)";
        Log = 12, "log", "ln(x)";
        Reciprocal = 13, "reciprocal", "1 / x";
        Floor = 14, "floor", "floor(x)";
        Ceil = 15, "ceil", "ceil(x)";
        Softplus = 16, "softplus", "ln(1 + e^x)";
        Identity = 17, "identity", "x (a copy)";
        Selu = 18, "selu", "b * (x if x > 0 else a * (e^x - 1))";
        Rsqrt = 19, "rsqrt", "1 / sqrt(x)";
        Square = 20, "square", "x * x";
        PowConst = 21, "powconst", "x ^ a";
        Silu = 22, "silu", "x * sigmoid(x)";
        Gelu = 23, "gelu", "x * (1 + erf(x / sqrt 2)) / 2";
        GeluTanh = 24, "gelutanh", "GELU, tanh approximation";
        Sin = 25, "sin", "sin(x)";
        Cos = 26, "cos", "cos(x)";
        Tan = 27, "tan", "tan(x)";
        Erf = 28, "erf", "erf(x)";
        Asin = 29, "asin", "arcsin(x)";
        Acos = 30, "acos", "arccos(x)";
        Atan = 31, "atan", "arctan(x)";
        Sinh = 32, "sinh", "sinh(x)";
        Cosh = 33, "cosh", "cosh(x)";
        Asinh = 34, "asinh", "arsinh(x)";
        Acosh = 35, "acosh", "arcosh(x)";
        Atanh = 36, "atanh", "artanh(x)";
        Sign = 37, "sign", "-1, 0 or 1 by the sign of x";
        Round = 38, "round", "x rounded to the nearest integer, ties to even";
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
}

impl OpDef for UnaryParams {
    fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        Ok(UnaryParams {
            kind: UnaryKind::from_i32(w[0]).ok_or("unknown unary kind")?,
            a: f32::from_bits(w[1] as u32),
            b: f32::from_bits(w[2] as u32),
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[0] = self.kind as i32;
        w[1] = self.a.to_bits() as i32;
        w[2] = self.b.to_bits() as i32;
        w
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        f.write_str(self.kind.name())
    }
}

pub(super) fn validate(c: &Ctx, _p: &UnaryParams) -> Result<()> {
    c.arity(1, 1, 1)?;
    c.all_f32()?;
    let (x, y) = (c.input(0)?, c.output(0));
    c.check(x.shape() == y.shape(), "unary keeps the shape")
}

pub(super) fn run(v: &View, p: &UnaryParams, out: &mut [u8], _yt: &TensorInfo) -> Result<()> {
    let xt = v.info(0)?;
    if xt.dtype != DType::F32 || !cfg!(feature = "float") {
        return no_kernel(v);
    }
    let x = bytes_as_f32(v.bytes(&xt)?);
    crate::kernels::reference_f32::unary(p.kind, x, bytes_as_f32_mut(out), p.a, p.b);
    Ok(())
}
