//! Broadcasting binary ops: f32 add, sub, mul, div, max, min, pow; int8 add and sub (TFLite's
//! general rescaling path) and mul.
//!
//! Words: 0 kind ([`BinaryKind`]), 9-10 fused activation; int8 add/sub: 1 left shift, 2-7 the
//! (multiplier, shift) pairs of a, b and the output; int8 mul: 2 multiplier, 3 shift, 11
//! rounding.

use core::fmt;

use super::{
    broadcast_ok, decode_rounding, encode_rounding, no_kernel, per_tensor, Act, Ctx, OpDef,
    OpShapes, Rounding, View, Words,
};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut, bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::DType;
use crate::kernels::{qs8, reference_f32 as kf, reference_i8 as ki8};
use crate::model::TensorInfo;

crate::format::code_enum! {
    /// Kinds of [`super::OpKind::Binary`] (word 0).
    pub enum BinaryKind: i32, from_i32 {
        Add = 0, "add", "a + b";
        Sub = 1, "sub", "a - b";
        Mul = 2, "mul", "a * b";
        Div = 3, "div", "a / b";
        Max = 4, "max", "max(a, b)";
        Min = 5, "min", "min(a, b)";
        Pow = 6, "pow", "a ^ b";
    }
}

/// int8 add/sub requantization (TFLite's `PrepareGeneralSubOp` parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AddQuant {
    /// Left shift applied to both inputs (20 for int8).
    pub left_shift: i32,
    /// (multiplier, shift) of a, b and the output.
    pub mult: [(i32, i32); 3],
}

/// int8 mul requantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MulQuant {
    /// Multiplier of `scale_a * scale_b / scale_out`.
    pub multiplier: i32,
    /// Its shift.
    pub shift: i32,
    /// Rescaling rounding.
    pub rounding: Rounding,
}

/// The requantization of a binary op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryQuant {
    /// Float op.
    None,
    /// int8 add or sub.
    Add(AddQuant),
    /// int8 mul.
    Mul(MulQuant),
}

/// Parameters of [`super::OpKind::Binary`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BinaryParams {
    /// What it computes.
    pub kind: BinaryKind,
    /// Fused activation.
    pub act: Act,
    /// int8 requantization.
    pub quant: BinaryQuant,
}

impl BinaryParams {
    /// A float op of `kind` without activation.
    pub fn new(kind: BinaryKind) -> Self {
        BinaryParams {
            kind,
            act: Act::NONE,
            quant: BinaryQuant::None,
        }
    }
}

impl OpDef for BinaryParams {
    fn decode(w: &Words, int8: bool) -> core::result::Result<Self, &'static str> {
        let kind = BinaryKind::from_i32(w[0]).ok_or("unknown binary kind")?;
        let quant = match (int8, kind) {
            (false, _) => BinaryQuant::None,
            (true, BinaryKind::Mul) => BinaryQuant::Mul(MulQuant {
                multiplier: w[2],
                shift: w[3],
                rounding: decode_rounding(w)?,
            }),
            (true, BinaryKind::Add | BinaryKind::Sub) => BinaryQuant::Add(AddQuant {
                left_shift: w[1],
                mult: [(w[2], w[3]), (w[4], w[5]), (w[6], w[7])],
            }),
            (true, _) => return Err("int8 binary ops are add, sub and mul"),
        };
        Ok(BinaryParams {
            kind,
            act: Act::decode(w, int8),
            quant,
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[0] = self.kind as i32;
        self.act.encode(&mut w);
        match self.quant {
            BinaryQuant::None => {}
            BinaryQuant::Add(q) => {
                w[1] = q.left_shift;
                for (k, (m, s)) in q.mult.iter().enumerate() {
                    w[2 + 2 * k] = *m;
                    w[3 + 2 * k] = *s;
                }
            }
            BinaryQuant::Mul(q) => {
                w[2] = q.multiplier;
                w[3] = q.shift;
                encode_rounding(q.rounding, &mut w);
            }
        }
        w
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        write!(f, "{}{}", self.kind.name(), self.act)
    }
}

pub(super) fn validate(c: &Ctx, p: &BinaryParams) -> Result<()> {
    c.arity(2, 2, 1)?;
    let (a, b, y) = (c.input(0)?, c.input(1)?, c.output(0));
    c.check(
        broadcast_ok(a.shape(), b.shape(), y.shape()),
        "shapes do not broadcast to the output",
    )?;
    if a.dtype != DType::I8 {
        c.all_f32()?;
        return c.act(p.act);
    }
    c.q8(&a)?;
    c.q8(&b)?;
    c.q8(&y)?;
    match p.quant {
        BinaryQuant::Mul(q) => c.check(
            q.multiplier >= 0 && (-31..=30).contains(&q.shift),
            "int8 mul multiplier out of range",
        )?,
        BinaryQuant::Add(q) => {
            c.check(
                (0..=20).contains(&q.left_shift),
                "int8 add left shift out of range",
            )?;
            for (m, s) in q.mult {
                c.check(
                    m >= 0 && (-31..=0).contains(&s),
                    "int8 add multiplier out of range",
                )?;
            }
        }
        BinaryQuant::None => return Err(c.err("int8 binary ops are add, sub and mul")),
    }
    c.act(p.act)
}

pub(super) fn run(v: &View, p: &BinaryParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    let (at, bt) = (v.info(0)?, v.info(1)?);
    match at.dtype {
        DType::I8 => {
            let (a, b) = (bytes_as_i8(v.bytes(&at)?), bytes_as_i8(v.bytes(&bt)?));
            let y = bytes_as_i8_mut(out);
            let zp = [per_tensor(&at).1, per_tensor(&bt).1, per_tensor(yt).1];
            let act = p.act.i8_bounds();
            let (sa, sb, sy) = (at.shape(), bt.shape(), yt.shape());
            match p.quant {
                BinaryQuant::Mul(q) => {
                    let mp = ki8::MulParams { zp, q, act };
                    ki8::broadcast_binary(a, sa, b, sb, y, sy, |a, b| ki8::mul_one(a, b, &mp));
                }
                BinaryQuant::Add(q) => {
                    let subtract = p.kind == BinaryKind::Sub;
                    let ap = ki8::AddParams {
                        zp,
                        q,
                        act,
                        subtract,
                    };
                    let same = sa == sy && sb == sy;
                    if !(same && !v.use_reference() && qs8::add_same_shape(a, b, y, &ap, v.isa)) {
                        ki8::broadcast_binary(a, sa, b, sb, y, sy, |a, b| ki8::add_one(a, b, &ap));
                    }
                }
                BinaryQuant::None => return no_kernel(v),
            }
            Ok(())
        }
        DType::F32 if cfg!(feature = "float") => {
            let (a, b) = (bytes_as_f32(v.bytes(&at)?), bytes_as_f32(v.bytes(&bt)?));
            kf::binary(
                p.kind,
                a,
                at.shape(),
                b,
                bt.shape(),
                bytes_as_f32_mut(out),
                yt.shape(),
                p.act.f32_bounds(),
            );
            Ok(())
        }
        _ => no_kernel(v),
    }
}
