//! Softmax and log-softmax along an axis: f32 (any axis, with beta) and int8 (last axis, output
//! scale 1/256 and zero point -128, TFLite's fixed-point algorithm).
//!
//! Words: 0 axis, 1 beta (f32 bits), 2 log-softmax when 1; int8: 3 input multiplier, 4 its
//! left shift, 5 `diff_min`.

use core::fmt;

use super::{no_kernel, words_at, Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut, bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::DType;
use crate::kernels::{reference_f32 as kf, reference_i8 as ki8};
use crate::model::{Quant, TensorInfo};

/// Fixed-point parameters of an int8 softmax (beta and the input scale folded in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SoftmaxQuant {
    /// Input multiplier (beta × input scale, Q5.26 after the shift).
    pub input_multiplier: i32,
    /// Left shift of the input multiplier.
    pub input_left_shift: i32,
    /// Differences below this are treated as -inf.
    pub diff_min: i32,
}

/// Parameters of [`super::OpKind::Softmax`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxParams {
    /// The axis normalized over.
    pub axis: usize,
    /// Inverse temperature.
    pub beta: f32,
    /// Log-softmax.
    pub log: bool,
    /// int8 fixed-point parameters (zero for float).
    pub quant: SoftmaxQuant,
}

impl SoftmaxParams {
    /// Float softmax (`log`: log-softmax) along `axis` with beta 1.
    pub fn new(axis: usize, log: bool) -> Self {
        SoftmaxParams {
            axis,
            beta: 1.0,
            log,
            quant: SoftmaxQuant::default(),
        }
    }
}

impl OpDef for SoftmaxParams {
    fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        Ok(SoftmaxParams {
            axis: words_at::<1>(w, 0, 0, "axis must be non-negative")?[0],
            beta: f32::from_bits(w[1] as u32),
            log: w[2] == 1,
            quant: SoftmaxQuant {
                input_multiplier: w[3],
                input_left_shift: w[4],
                diff_min: w[5],
            },
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[0] = self.axis as i32;
        w[1] = self.beta.to_bits() as i32;
        w[2] = self.log as i32;
        w[3] = self.quant.input_multiplier;
        w[4] = self.quant.input_left_shift;
        w[5] = self.quant.diff_min;
        w
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        write!(
            f,
            "axis {} beta {}{}",
            self.axis,
            self.beta,
            if self.log { " log" } else { "" }
        )
    }
}

pub(super) fn validate(c: &Ctx, p: &SoftmaxParams) -> Result<()> {
    c.arity(1, 1, 1)?;
    let (x, y) = (c.input(0)?, c.output(0));
    c.check(x.shape() == y.shape(), "softmax keeps the shape")?;
    if x.dtype == DType::I8 {
        c.q8(&x)?;
        c.check(
            y.dtype == DType::I8
                && y.quant
                    == Quant::PerTensor {
                        scale: 1.0 / 256.0,
                        zero_point: -128,
                    },
            "int8 softmax output must have scale 1/256 and zero point -128",
        )?;
        c.check(
            x.rank >= 1 && p.axis == x.rank - 1,
            "int8 softmax runs along the last axis",
        )?;
        c.check(!p.log, "int8 log-softmax is not supported")?;
        let q = &p.quant;
        return c.check(
            q.input_multiplier >= 0 && (0..=31).contains(&q.input_left_shift) && q.diff_min <= 0,
            "int8 softmax parameters out of range",
        );
    }
    c.all_f32()?;
    c.check(p.axis < x.rank, "axis outside the rank")?;
    c.check(p.beta.is_finite(), "beta must be finite")
}

pub(super) fn run(v: &View, p: &SoftmaxParams, out: &mut [u8], _yt: &TensorInfo) -> Result<()> {
    let xt = v.info(0)?;
    match xt.dtype {
        DType::I8 => {
            let sp = ki8::SoftmaxParams {
                input_multiplier: p.quant.input_multiplier,
                input_left_shift: p.quant.input_left_shift,
                diff_min: p.quant.diff_min,
            };
            let x = bytes_as_i8(v.bytes(&xt)?);
            ki8::softmax(x, bytes_as_i8_mut(out), xt.dims[xt.rank - 1], &sp);
            Ok(())
        }
        DType::F32 if cfg!(feature = "float") => {
            let x = bytes_as_f32(v.bytes(&xt)?);
            let outer: usize = xt.shape()[..p.axis].iter().product();
            let inner: usize = xt.shape()[p.axis + 1..].iter().product();
            kf::softmax(
                x,
                bytes_as_f32_mut(out),
                outer,
                xt.dims[p.axis],
                inner,
                p.beta,
                p.log,
            );
            Ok(())
        }
        _ => no_kernel(v),
    }
}
