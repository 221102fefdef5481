//! Fully connected: `y[.., m] = bias[m] + Σ_k x[.., k] · w[m, k]`, f32 (f32 or f16 weights) and
//! int8 (per-channel requantization, as TFLite).
//!
//! Words: 9-10 fused activation, 11 requantization rounding (int8).

use core::fmt;

use super::{
    decode_rounding_layout, encode_rounding_layout, no_kernel, Act, Ctx, OpDef, OpShapes, Rounding,
    View, Words,
};
use crate::cast::{bytes_as_f16, bytes_as_f32, bytes_as_f32_mut, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::DType;
use crate::kernels::{
    f32gemm as f32k, optimized_i8 as opt8, qs8, reference_f32 as kf, reference_i8 as ki8,
};
use crate::model::TensorInfo;

/// Parameters of [`super::OpKind::Dense`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DenseParams {
    /// Fused activation.
    pub act: Act,
    /// Requantization rounding (int8).
    pub rounding: Rounding,
    /// int8 weights in the `pack16x4` layout with a folded bias ([`crate::kernels::qs8`]).
    pub packed: bool,
    /// int8 weights as a sparse blob (a u8 tensor `[1, L]`) with a folded bias
    /// ([`crate::kernels::sparse`]).
    pub sparse: bool,
}

impl Default for DenseParams {
    fn default() -> Self {
        DenseParams {
            act: Act::NONE,
            rounding: Rounding::Double,
            packed: false,
            sparse: false,
        }
    }
}

impl OpDef for DenseParams {
    fn decode(w: &Words, int8: bool) -> core::result::Result<Self, &'static str> {
        let (rounding, packed, sparse) = decode_rounding_layout(w)?;
        Ok(DenseParams {
            act: Act::decode(w, int8),
            rounding,
            packed,
            sparse,
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        self.act.encode(&mut w);
        encode_rounding_layout(self.rounding, self.packed, self.sparse, &mut w);
        w
    }
    fn macs(&self, s: &OpShapes) -> u64 {
        let out: usize = s.y.iter().product();
        // Sparse: the dense layer's MACs, K from the input.
        let k = if self.sparse { s.x.last() } else { s.w.get(1) };
        k.map_or(0, |&k| (out * k) as u64)
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        write!(
            f,
            "{}{}",
            self.act,
            if self.sparse {
                " sparse"
            } else if self.packed {
                " packed"
            } else {
                ""
            }
        )
    }
}

pub(super) fn validate(c: &Ctx, p: &DenseParams) -> Result<()> {
    let sparse = super::SPARSE && p.sparse;
    let int8 = c.weighted(2, sparse)?;
    if p.packed {
        c.packed_weights(int8)?;
    }
    let (x, w, y) = (c.input(0)?, c.input(1)?, c.output(0));
    c.check(
        x.rank >= 1 && y.rank == x.rank,
        "dense expects x [.., K], w [M, K]",
    )?;
    let (mo, k) = if sparse {
        // The blob `[1, L]`: M from the output, K from the input.
        let (mo, k) = (y.dims[y.rank - 1], x.dims[x.rank - 1]);
        c.check(
            k <= crate::kernels::sparse::MAX_K
                && crate::kernels::sparse::validate(c.m.constant_bytes(&w), mo, k),
            "sparse weights: malformed blob (counts, gaps or columns out of range)",
        )?;
        (mo, k)
    } else {
        (w.dims[0], w.dims[1])
    };
    c.check(
        x.dims[x.rank - 1] == k,
        "input's last dim does not match weights",
    )?;
    c.check(
        y.dims[y.rank - 1] == mo && y.shape()[..y.rank - 1] == x.shape()[..x.rank - 1],
        "output shape does not match dense arithmetic",
    )?;
    c.act(p.act)
}

pub(super) fn run(v: &View, p: &DenseParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    let xt = v.info(0)?;
    let wt = v.info(1)?;
    let wb = v.bytes(&wt)?;
    let (m, k) = if super::SPARSE && p.sparse {
        (yt.dims[yt.rank - 1], xt.dims[xt.rank - 1])
    } else {
        (wt.dims[0], wt.dims[1])
    };
    match xt.dtype {
        DType::I8 => {
            let o = super::conv::int8_operands(v, (&xt, &wt), yt, p.act, p.rounding)?;
            let y = bytes_as_i8_mut(out);
            if super::SPARSE && p.sparse {
                let bias = o.bias.ok_or(v.err("sparse weights need a bias"))?;
                crate::kernels::sparse::dense(o.x, k, wb, m, bias, y, &o.q);
            } else if p.packed {
                let bias = o.bias.ok_or(v.err("packed weights need a bias"))?;
                if v.use_reference() {
                    qs8::reference_dense(o.x, k, o.w, m, bias, y, &o.q);
                } else {
                    qs8::dense(o.x, k, o.w, m, bias, y, &o.q, v.isa);
                }
            } else if v.use_reference() {
                ki8::dense(o.x, k, o.w, m, o.bias, y, &o.q);
            } else {
                opt8::dense(o.x, k, o.w, m, o.bias, y, &o.q);
            }
            Ok(())
        }
        DType::F32 if cfg!(feature = "float") => {
            let (x, bias) = (bytes_as_f32(v.bytes(&xt)?), v.opt_f32(2)?);
            let (y, act) = (bytes_as_f32_mut(out), p.act.f32_bounds());
            if p.packed {
                let w = bytes_as_f32(wb);
                if v.use_reference() {
                    f32k::reference_dense(x, k, w, m, bias, y, act);
                } else {
                    f32k::dense(x, k, w, m, bias, y, act, v.isa);
                }
            } else if wt.dtype == DType::F16 {
                kf::dense(x, k, bytes_as_f16(wb), m, bias, y, act);
            } else {
                kf::dense(x, k, bytes_as_f32(wb), m, bias, y, act);
            }
            Ok(())
        }
        _ => no_kernel(v),
    }
}
