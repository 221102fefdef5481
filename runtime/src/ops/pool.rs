//! Max and average pooling over NHWC, f32 and int8 (input and output share quantization, as in
//! TFLite).
//!
//! Words: 0-1 stride h/w, 2-3 window h/w, 4-7 padding top/left/bottom/right, 8
//! `count_include_pad` (average, f32), 9-10 fused activation, 11 the rows and columns of
//! bottom/right padding added for ceil mode (`rows << 16 | cols`), which are never counted.

use core::fmt;

use super::{
    dims4, no_kernel, put_words, window_out, words_at, Act, Ctx, OpDef, OpKind, OpShapes, View,
    Words,
};
use crate::cast::{bytes_as_f32, bytes_as_f32_mut, bytes_as_i8, bytes_as_i8_mut};
use crate::error::Result;
use crate::format::DType;
use crate::kernels::{reference_f32 as kf, reference_i8 as ki8};
use crate::model::TensorInfo;

/// The window a pooling kernel slides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolWindow {
    /// Window (h, w).
    pub kernel: [usize; 2],
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Padding top, left, bottom, right.
    pub pad: [usize; 4],
    /// Rows/columns of the bottom/right padding added for ceil mode (never counted).
    pub ceil_extra: [usize; 2],
    /// Average pooling divides by the window size including padding.
    pub count_include_pad: bool,
}

impl PoolWindow {
    /// Where the window of output index `o` along `axis` (0 rows, 1 columns) starts (may be
    /// negative, in the padding), and the range of input indices inside an input of `len`.
    #[inline]
    pub fn span(&self, axis: usize, o: usize, len: usize) -> (isize, core::ops::Range<usize>) {
        let start = (o * self.stride[axis]) as isize - self.pad[axis] as isize;
        let end = start + self.kernel[axis] as isize;
        (
            start,
            start.max(0) as usize..end.min(len as isize).max(0) as usize,
        )
    }

    /// What average pooling divides by for the window that starts at `(y0, x0)` (from
    /// [`PoolWindow::span`]) and covers `rows × cols` input pixels of an `h × w` input: the
    /// window's size inside the padding too when `count_include_pad`, else the pixels.
    #[inline]
    pub fn count(
        &self,
        (y0, x0): (isize, isize),
        (rows, cols): (usize, usize),
        h: usize,
        w: usize,
    ) -> usize {
        if self.count_include_pad {
            let (y1, x1) = (y0 + self.kernel[0] as isize, x0 + self.kernel[1] as isize);
            let ylim = (h + self.pad[2] - self.ceil_extra[0]) as isize;
            let xlim = (w + self.pad[3] - self.ceil_extra[1]) as isize;
            ((y1.min(ylim) - y0).max(0) * (x1.min(xlim) - x0).max(0)) as usize
        } else {
            rows * cols
        }
    }
}

/// Parameters of [`OpKind::MaxPool`] and [`OpKind::AvgPool`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolParams {
    /// The window.
    pub window: PoolWindow,
    /// Fused activation.
    pub act: Act,
}

impl PoolParams {
    /// A float pool of `kernel` with `stride` and no padding or activation.
    pub fn new(kernel: [usize; 2], stride: [usize; 2]) -> Self {
        PoolParams {
            window: PoolWindow {
                kernel,
                stride,
                pad: [0; 4],
                ceil_extra: [0; 2],
                count_include_pad: false,
            },
            act: Act::NONE,
        }
    }
}

impl OpDef for PoolParams {
    fn decode(w: &Words, int8: bool) -> core::result::Result<Self, &'static str> {
        let pad: [usize; 4] = words_at(w, 4, 0, "negative padding")?;
        if pad.iter().any(|&p| p >= 1 << 15) {
            return Err("padding too large");
        }
        let [extra] = words_at(w, 11, 0, "ceil-mode padding exceeds padding")?;
        let ceil_extra = [extra >> 16, extra & 0xFFFF];
        if ceil_extra[0] > pad[2] || ceil_extra[1] > pad[3] {
            return Err("ceil-mode padding exceeds padding");
        }
        Ok(PoolParams {
            window: PoolWindow {
                stride: words_at(w, 0, 1, "stride must be positive")?,
                kernel: words_at(w, 2, 1, "kernel must be positive")?,
                pad,
                ceil_extra,
                count_include_pad: w[8] != 0,
            },
            act: Act::decode(w, int8),
        })
    }
    fn encode(&self) -> Words {
        let mut w = super::base_words();
        let p = &self.window;
        put_words(&mut w, 0, &p.stride);
        put_words(&mut w, 2, &p.kernel);
        put_words(&mut w, 4, &p.pad);
        w[8] = p.count_include_pad as i32;
        self.act.encode(&mut w);
        w[11] = ((p.ceil_extra[0] << 16) | p.ceil_extra[1]) as i32;
        w
    }
    fn macs(&self, s: &OpShapes) -> u64 {
        let out: usize = s.y.iter().product();
        (out * self.window.kernel[0] * self.window.kernel[1]) as u64
    }
    fn describe(&self, _s: &OpShapes, f: &mut dyn fmt::Write) -> fmt::Result {
        let w = &self.window;
        write!(
            f,
            "k{}x{} s{},{} p{},{},{},{}{}",
            w.kernel[0],
            w.kernel[1],
            w.stride[0],
            w.stride[1],
            w.pad[0],
            w.pad[1],
            w.pad[2],
            w.pad[3],
            self.act
        )
    }
}

pub(super) fn validate(c: &Ctx, p: &PoolParams) -> Result<()> {
    c.arity(1, 1, 1)?;
    let (x, y) = (c.input(0)?, c.output(0));
    if x.dtype == DType::I8 {
        c.check(
            c.q8(&x)? == c.q8(&y)? && x.quant == y.quant,
            "int8 pooling keeps the input's quantization",
        )?;
        c.check(
            c.kind() == OpKind::MaxPool || !p.window.count_include_pad,
            "int8 average pooling counts the valid window only",
        )?;
    } else {
        c.all_f32()?;
    }
    c.check(x.rank == 4 && y.rank == 4, "pool tensors must be 4-D NHWC")?;
    let w = &p.window;
    let oh = window_out(x.dims[1], w.kernel[0], w.stride[0], 1, w.pad[0] + w.pad[2])
        .ok_or(c.err("window larger than padded input"))?;
    let ow = window_out(x.dims[2], w.kernel[1], w.stride[1], 1, w.pad[1] + w.pad[3])
        .ok_or(c.err("window larger than padded input"))?;
    c.check(
        y.shape() == [x.dims[0], oh, ow, x.dims[3]],
        "output shape does not match pool arithmetic",
    )?;
    c.act(p.act)
}

pub(super) fn run(v: &View, p: &PoolParams, out: &mut [u8], yt: &TensorInfo) -> Result<()> {
    let xt = v.info(0)?;
    let is_max = v.op.kind == OpKind::MaxPool;
    match xt.dtype {
        DType::I8 => {
            let x = bytes_as_i8(v.bytes(&xt)?);
            // int8 pooling never counts padding, so the ceil-mode rows need no special case.
            ki8::pool2d(
                x,
                dims4(&xt),
                bytes_as_i8_mut(out),
                dims4(yt),
                &p.window,
                p.act.i8_bounds(),
                is_max,
            );
            Ok(())
        }
        DType::F32 if cfg!(feature = "float") => {
            let x = bytes_as_f32(v.bytes(&xt)?);
            let (xs, ys, act) = (dims4(&xt), dims4(yt), p.act.f32_bounds());
            let y = bytes_as_f32_mut(out);
            if v.use_reference() {
                kf::pool2d(x, xs, y, ys, &p.window, act, is_max);
            } else {
                crate::kernels::f32gemm::pool2d(x, xs, y, ys, &p.window, act, is_max, v.isa);
            }
            Ok(())
        }
        _ => no_kernel(v),
    }
}
