//! Reduction over a set of axes: f32 mean, sum, max, min, product and mean of squares; int8
//! mean (TFLite's `QuantizedMeanOrSum`).
//!
//! Words: 0 reducer (0 mean, 1 sum, 2 max, 3 min, 4 prod, 5 mean of squares), 1 axis mask
//! (bit `a` = axis `a` is reduced), int8: 2 multiplier, 3 shift (both include `1 / count`).

use core::fmt;

use super::{no_kernel, per_tensor, Ctx, OpDef, OpShapes, View, Words};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut, bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::DType;
use crate::kernels::{reference_f32 as kf, reference_i8 as ki8};
use crate::model::TensorInfo;

crate::format::code_enum! {
    /// What a reduction computes (word 0).
    pub enum Reducer: i32, from_i32 {
        Mean = 0, "mean", "Arithmetic mean.";
        Sum = 1, "sum", "Sum.";
        Max = 2, "max", "Maximum.";
        Min = 3, "min", "Minimum.";
        Prod = 4, "prod", "Product.";
        MeanSquare = 5, "mean_sq", "Mean of the squares.";
    }
}

/// int8 mean requantization: `1 / count` times the input/output scale ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MeanQuant {
    /// Q0.31 multiplier.
    pub multiplier: i32,
    /// Shift (positive = left).
    pub shift: i32,
}

/// Parameters of [`super::OpKind::Reduce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReduceParams {
    /// The reducer.
    pub reducer: Reducer,
    /// Reduced axes, bit `a` for axis `a`.
    pub mask: u32,
    /// Requantization of the int8 mean (zero for float).
    pub quant: MeanQuant,
}

impl ReduceParams {
    /// A float reduction of the axes in `mask`.
    pub fn new(reducer: Reducer, mask: u32) -> Self {
        ReduceParams {
            reducer,
            mask,
            quant: MeanQuant::default(),
        }
    }
}

impl OpDef for ReduceParams {
    fn decode(w: &Words, _int8: bool) -> core::result::Result<Self, &'static str> {
        let reducer = Reducer::from_i32(w[0]).ok_or("unknown reducer")?;
        Ok(ReduceParams {
            reducer,
            mask: w[1] as u32,
            quant: MeanQuant {
                multiplier: w[2],
                shift: w[3],
            },
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        w[0] = self.reducer as i32;
        w[1] = self.mask as i32;
        w[2] = self.quant.multiplier;
        w[3] = self.quant.shift;
        w
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        write!(f, "{} mask {:#b}", self.reducer.name(), self.mask)
    }
}

pub(super) fn validate(c: &Ctx, p: &ReduceParams) -> Result<()> {
    c.arity(1, 1, 1)?;
    let (x, y) = (c.input(0)?, c.output(0));
    if x.dtype == DType::I8 {
        c.q8(&x)?;
        c.q8(&y)?;
        c.check(p.reducer == Reducer::Mean, "the int8 reducer is mean")?;
        c.check(
            p.quant.multiplier >= 0 && (-31..=30).contains(&p.quant.shift),
            "int8 mean multiplier out of range",
        )?;
    } else {
        c.all_f32()?;
    }
    c.check(
        p.mask != 0 && p.mask >> x.rank == 0,
        "reduction axes outside the input's rank",
    )?;
    let kept: usize = (0..x.rank)
        .filter(|a| p.mask & (1 << a) == 0)
        .map(|a| x.dims[a])
        .product();
    c.check(y.len() == kept, "output size does not match the reduction")
}

pub(super) fn run(v: &View, p: &ReduceParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    let xt = v.info(0)?;
    match xt.dtype {
        DType::I8 => {
            let x = bytes_as_i8(v.bytes(&xt)?);
            ki8::mean(
                x,
                xt.shape(),
                p.mask,
                bytes_as_i8_mut(out),
                per_tensor(&xt).1,
                p.quant.multiplier,
                p.quant.shift,
                per_tensor(yt).1,
            );
            Ok(())
        }
        DType::F32 if cfg!(feature = "float") => {
            let x = bytes_as_f32(v.bytes(&xt)?);
            kf::reduce(x, xt.shape(), p.mask, p.reducer, bytes_as_f32_mut(out));
            Ok(())
        }
        _ => no_kernel(v),
    }
}
