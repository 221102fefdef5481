//! Portable f32 reference kernels (NHWC). These are the specification every optimized kernel is
//! tested against: plain loops, obviously right, no unsafe.

use crate::format::MAX_RANK;
use crate::ops::{BinaryKind, Compare, ConvGeom, PoolWindow, Reducer, UnaryKind};

#[inline]
pub(crate) fn clamp(v: f32, act: [f32; 2]) -> f32 {
    // `max`/`min` rather than `clamp` so that NaN stays NaN-free only when bounds are finite.
    v.max(act[0]).min(act[1])
}

/// 2-D convolution. `x` is `[n, h, w, ci]`, `w` is `[co, kh, kw, ci/groups]`, `y` is
/// `[n, oh, ow, co]`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d<W: Copy + Into<f32>>(
    x: &[f32],
    xs: [usize; 4],
    w: &[W],
    ws: [usize; 4],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ys: [usize; 4],
    p: &ConvGeom,
    act: [f32; 2],
) {
    let [n, h, wd, ci] = xs;
    let [co, kh, kw, cig] = ws;
    let [_, oh, ow, _] = ys;
    let cog = co / p.groups;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let out = &mut y[((b * oh + oy) * ow + ox) * co..][..co];
                for (oc, o) in out.iter_mut().enumerate() {
                    let g = oc / cog;
                    let mut acc = bias.map_or(0.0, |bb| bb[oc]);
                    p.taps((oy, ox), [h, wd], [kh, kw], |ky, kx, iy, ix| {
                        let xrow = &x[((b * h + iy) * wd + ix) * ci + g * cig..][..cig];
                        let wrow = &w[((oc * kh + ky) * kw + kx) * cig..][..cig];
                        for (a, &bw) in xrow.iter().zip(wrow) {
                            acc += a * bw.into();
                        }
                    });
                    *o = clamp(acc, act);
                }
            }
        }
    }
}

/// Transposed 2-D convolution, NHWC / `[O, KH, KW, I/groups]`: each output pixel sums the
/// taps that reach it ([`ConvGeom::transposed_taps`]).
#[allow(clippy::too_many_arguments)]
pub fn transpose_conv<W: Copy + Into<f32>>(
    x: &[f32],
    xs: [usize; 4],
    w: &[W],
    ws: [usize; 4],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ys: [usize; 4],
    p: &ConvGeom,
    act: [f32; 2],
) {
    let [_, h, wd, ci] = xs;
    let [co, kh, kw, cig] = ws;
    let [n, oh, ow, _] = ys;
    let cog = co / p.groups;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let out = &mut y[((b * oh + oy) * ow + ox) * co..][..co];
                for (oc, o) in out.iter_mut().enumerate() {
                    let g = oc / cog;
                    let mut acc = bias.map_or(0.0, |bb| bb[oc]);
                    p.transposed_taps((oy, ox), [h, wd], [kh, kw], |ky, kx, iy, ix| {
                        let xrow = &x[((b * h + iy) * wd + ix) * ci + g * cig..][..cig];
                        let wrow = &w[((oc * kh + ky) * kw + kx) * cig..][..cig];
                        for (a, &bw) in xrow.iter().zip(wrow) {
                            acc += a * bw.into();
                        }
                    });
                    *o = clamp(acc, act);
                }
            }
        }
    }
}

/// Fully connected: `y[r, m] = bias[m] + sum_k x[r, k] * w[m, k]`.
pub fn dense<W: Copy + Into<f32>>(
    x: &[f32],
    k: usize,
    w: &[W],
    m: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    act: [f32; 2],
) {
    for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(m)) {
        for (j, o) in yr.iter_mut().enumerate() {
            let wr = &w[j * k..][..k];
            let mut acc = bias.map_or(0.0, |b| b[j]);
            for (a, &b) in xr.iter().zip(wr) {
                acc += a * b.into();
            }
            *o = clamp(acc, act);
        }
    }
}

/// Max (`is_max`) or average pooling over NHWC.
pub fn pool2d(
    x: &[f32],
    xs: [usize; 4],
    y: &mut [f32],
    ys: [usize; 4],
    p: &PoolWindow,
    act: [f32; 2],
    is_max: bool,
) {
    let [n, h, w, c] = xs;
    let [_, oh, ow, _] = ys;
    for b in 0..n {
        for oy in 0..oh {
            let (y0, rows) = p.span(0, oy, h);
            for ox in 0..ow {
                let (x0, cols) = p.span(1, ox, w);
                let count = p.count((y0, x0), (rows.len(), cols.len()), h, w);
                // Channels innermost, in chunks (each channel's sum in the same order).
                const CHUNK: usize = 64;
                let out = &mut y[((b * oh + oy) * ow + ox) * c..][..c];
                for (c0, out) in (0..c).step_by(CHUNK).zip(out.chunks_mut(CHUNK)) {
                    let nc = out.len();
                    let mut acc = [if is_max { f32::NEG_INFINITY } else { 0.0 }; CHUNK];
                    for iy in rows.clone() {
                        for ix in cols.clone() {
                            let xs = &x[((b * h + iy) * w + ix) * c + c0..][..nc];
                            if is_max {
                                for (a, &v) in acc.iter_mut().zip(xs) {
                                    *a = a.max(v);
                                }
                            } else {
                                for (a, &v) in acc.iter_mut().zip(xs) {
                                    *a += v;
                                }
                            }
                        }
                    }
                    for (o, &a) in out.iter_mut().zip(&acc) {
                        let v = match (is_max, count > 0) {
                            (true, _) => a,
                            (false, true) => a / count as f32,
                            (false, false) => 0.0,
                        };
                        *o = clamp(v, act);
                    }
                }
            }
        }
    }
}

/// Row-major strides of `dims`.
pub fn strides(dims: &[usize; MAX_RANK]) -> [usize; MAX_RANK] {
    let mut s = [1usize; MAX_RANK];
    for i in (0..MAX_RANK - 1).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Right-aligns `shape` into six dims (leading 1s).
pub fn pad6(shape: &[usize]) -> [usize; MAX_RANK] {
    let mut d = [1usize; MAX_RANK];
    d[MAX_RANK - shape.len()..].copy_from_slice(shape);
    d
}

/// Odometer step of an N-d index over `dims` (last axis fastest); `false` once it wraps back to
/// all zeros.
#[inline]
pub fn next_index(idx: &mut [usize; MAX_RANK], dims: &[usize; MAX_RANK]) -> bool {
    for d in (0..MAX_RANK).rev() {
        idx[d] += 1;
        if idx[d] < dims[d] {
            return true;
        }
        idx[d] = 0;
    }
    false
}

/// Calls `f(out_index, in_offsets...)` for every element of a 6-D iteration space; each operand is
/// described by its strides (0 on broadcast axes).
fn for_each_index<const K: usize>(
    dims: [usize; MAX_RANK],
    st: [[usize; MAX_RANK]; K],
    mut f: impl FnMut(usize, [usize; K]),
) {
    let mut out = 0;
    for i0 in 0..dims[0] {
        for i1 in 0..dims[1] {
            for i2 in 0..dims[2] {
                for i3 in 0..dims[3] {
                    for i4 in 0..dims[4] {
                        for i5 in 0..dims[5] {
                            let idx = [i0, i1, i2, i3, i4, i5];
                            let mut offs = [0usize; K];
                            for (o, s) in offs.iter_mut().zip(st.iter()) {
                                *o = idx.iter().zip(s).map(|(a, b)| a * b).sum();
                            }
                            f(out, offs);
                            out += 1;
                        }
                    }
                }
            }
        }
    }
}

/// Strides of `shape` broadcast into the six-dim output space (0 on broadcast axes).
pub fn broadcast_strides(shape: &[usize]) -> [usize; MAX_RANK] {
    let d = pad6(shape);
    let mut s = strides(&d);
    for i in 0..MAX_RANK {
        if d[i] == 1 {
            s[i] = 0;
        }
    }
    s
}

/// Applies a binary op.
pub fn binary_op(kind: BinaryKind, a: f32, b: f32) -> f32 {
    match kind {
        BinaryKind::Add => a + b,
        BinaryKind::Sub => a - b,
        BinaryKind::Mul => a * b,
        BinaryKind::Div => a / b,
        BinaryKind::Max => a.max(b),
        BinaryKind::Min => a.min(b),
        BinaryKind::Pow => libm::powf(a, b),
    }
}

/// Broadcasting binary op.
#[allow(clippy::too_many_arguments)]
pub fn binary(
    kind: BinaryKind,
    a: &[f32],
    ash: &[usize],
    b: &[f32],
    bsh: &[usize],
    y: &mut [f32],
    ysh: &[usize],
    act: [f32; 2],
) {
    // One loop per kind (the kind decided outside it), so a same-shape loop vectorizes.
    macro_rules! each {
        ($f:expr) => {
            broadcast(a, ash, b, bsh, y, ysh, |p: f32, q: f32| {
                clamp($f(p, q), act)
            })
        };
    }
    match kind {
        BinaryKind::Add => each!(|p: f32, q: f32| p + q),
        BinaryKind::Sub => each!(|p: f32, q: f32| p - q),
        BinaryKind::Mul => each!(|p: f32, q: f32| p * q),
        BinaryKind::Div => each!(|p: f32, q: f32| p / q),
        BinaryKind::Max | BinaryKind::Min | BinaryKind::Pow => {
            each!(|p: f32, q: f32| binary_op(kind, p, q))
        }
    }
}

/// `y = f(a, b)` element-wise with numpy broadcasting of `a` (shape `ash`) and `b` to `ysh`.
pub fn broadcast<A: Copy, B: Copy, Y>(
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    y: &mut [Y],
    ysh: &[usize],
    f: impl Fn(A, B) -> Y,
) {
    if ash == ysh && bsh == ysh {
        for ((o, &p), &q) in y.iter_mut().zip(a).zip(b) {
            *o = f(p, q);
        }
        return;
    }
    let (sa, sb, yd) = (broadcast_strides(ash), broadcast_strides(bsh), pad6(ysh));
    let mut idx = [0usize; MAX_RANK];
    for o in y.iter_mut() {
        let ia: usize = idx.iter().zip(&sa).map(|(i, s)| i * s).sum();
        let ib: usize = idx.iter().zip(&sb).map(|(i, s)| i * s).sum();
        *o = f(a[ia], b[ib]);
        next_index(&mut idx, &yd);
    }
}

/// Compare and select: `y = cmp(a, b) ? x : z` for `ins = [a, b, x, z]` (each a slice and its
/// shape), numpy-broadcast to `ysh`.
pub fn select(cmp: Compare, ins: [(&[f32], &[usize]); 4], y: &mut [f32], ysh: &[usize]) {
    let st = ins.map(|(_, s)| broadcast_strides(s));
    let yd = pad6(ysh);
    let mut idx = [0usize; MAX_RANK];
    for o in y.iter_mut() {
        let at = |k: usize| {
            let off: usize = idx.iter().zip(&st[k]).map(|(i, s)| i * s).sum();
            ins[k].0[off]
        };
        *o = if cmp.test(at(0), at(1)) { at(2) } else { at(3) };
        next_index(&mut idx, &yd);
    }
}

/// Parametric ReLU: `y = x` where `x >= 0`, else `alpha * x`, `alpha` broadcast to `x`.
pub fn prelu(x: &[f32], xs: &[usize], alpha: &[f32], als: &[usize], y: &mut [f32]) {
    broadcast(
        x,
        xs,
        alpha,
        als,
        y,
        xs,
        |v, a| if v >= 0.0 { v } else { v * a },
    );
}

/// Applies a unary function with parameters `a`, `b`.
pub fn unary_op(kind: UnaryKind, x: f32, a: f32, b: f32) -> f32 {
    match kind {
        UnaryKind::Relu => x.max(0.0),
        UnaryKind::Clip => x.max(a).min(b),
        UnaryKind::LeakyRelu => {
            if x >= 0.0 {
                x
            } else {
                a * x
            }
        }
        UnaryKind::Sigmoid => 1.0 / (1.0 + libm::expf(-x)),
        UnaryKind::Tanh => libm::tanhf(x),
        UnaryKind::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        UnaryKind::HardSigmoid => (a * x + b).clamp(0.0, 1.0),
        UnaryKind::Exp => libm::expf(x),
        UnaryKind::Abs => x.abs(),
        UnaryKind::Neg => -x,
        UnaryKind::Sqrt => libm::sqrtf(x),
        UnaryKind::Elu => {
            if x > 0.0 {
                x
            } else {
                a * (libm::expf(x) - 1.0)
            }
        }
        UnaryKind::Log => libm::logf(x),
        UnaryKind::Reciprocal => 1.0 / x,
        UnaryKind::Floor => libm::floorf(x),
        UnaryKind::Ceil => libm::ceilf(x),
        UnaryKind::Softplus => {
            // Stable form: max(x, 0) + ln(1 + e^-|x|).
            x.max(0.0) + libm::log1pf(libm::expf(-x.abs()))
        }
        UnaryKind::Identity => x,
        UnaryKind::Rsqrt => 1.0 / libm::sqrtf(x),
        UnaryKind::Square => x * x,
        UnaryKind::PowConst => libm::powf(x, a),
        UnaryKind::Silu => x / (1.0 + libm::expf(-x)),
        UnaryKind::Gelu => 0.5 * x * (1.0 + libm::erff(x * core::f32::consts::FRAC_1_SQRT_2)),
        UnaryKind::GeluTanh => {
            let c = 0.797_884_6; // sqrt(2 / pi)
            0.5 * x * (1.0 + libm::tanhf(c * (x + 0.044_715 * x * x * x)))
        }
        UnaryKind::Sin => libm::sinf(x),
        UnaryKind::Cos => libm::cosf(x),
        UnaryKind::Tan => libm::tanf(x),
        UnaryKind::Erf => libm::erff(x),
        UnaryKind::Asin => libm::asinf(x),
        UnaryKind::Acos => libm::acosf(x),
        UnaryKind::Atan => libm::atanf(x),
        UnaryKind::Sinh => libm::sinhf(x),
        UnaryKind::Cosh => libm::coshf(x),
        UnaryKind::Asinh => libm::asinhf(x),
        UnaryKind::Acosh => libm::acoshf(x),
        UnaryKind::Atanh => libm::atanhf(x),
        UnaryKind::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x // 0, -0 and NaN stay as they are
            }
        }
        UnaryKind::Round => libm::rintf(x),
        UnaryKind::Selu => {
            b * if x > 0.0 {
                x
            } else {
                a * (libm::expf(x) - 1.0)
            }
        }
    }
}

/// Element-wise function.
pub fn unary(kind: UnaryKind, x: &[f32], y: &mut [f32], a: f32, b: f32) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = unary_op(kind, v, a, b);
    }
}

/// Softmax (or log-softmax) along `axis`, split as `[outer, n, inner]`.
pub fn softmax(
    x: &[f32],
    y: &mut [f32],
    outer: usize,
    n: usize,
    inner: usize,
    beta: f32,
    log: bool,
) {
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            let mut mx = f32::NEG_INFINITY;
            for k in 0..n {
                mx = mx.max(x[at(k)]);
            }
            let mut sum = 0.0f32;
            for k in 0..n {
                let e = libm::expf((x[at(k)] - mx) * beta);
                y[at(k)] = e;
                sum += e;
            }
            if log {
                let ls = libm::logf(sum);
                for k in 0..n {
                    y[at(k)] = (x[at(k)] - mx) * beta - ls;
                }
            } else {
                let inv = 1.0 / sum;
                for k in 0..n {
                    y[at(k)] *= inv;
                }
            }
        }
    }
}

/// Reduction of `x` (shape `xs`) over the axes in `mask`; `y` holds the kept elements in order.
pub fn reduce(x: &[f32], xs: &[usize], mask: u32, reducer: Reducer, y: &mut [f32]) {
    let init = match reducer {
        Reducer::Max => f32::NEG_INFINITY,
        Reducer::Min => f32::INFINITY,
        Reducer::Prod => 1.0,
        Reducer::Mean | Reducer::Sum | Reducer::MeanSquare => 0.0,
    };
    y.iter_mut().for_each(|v| *v = init);
    let off = MAX_RANK - xs.len();
    let mut od = pad6(xs);
    let mut count = 1usize;
    for a in 0..xs.len() {
        if mask & (1 << a) != 0 {
            od[off + a] = 1;
            count *= xs[a];
        }
    }
    let mut ost = strides(&od);
    for a in 0..MAX_RANK {
        if od[a] == 1 {
            ost[a] = 0;
        }
    }
    for_each_index(pad6(xs), [ost], |i, [o]| {
        let v = x[i];
        let acc = &mut y[o];
        *acc = match reducer {
            Reducer::Max => acc.max(v),
            Reducer::Min => acc.min(v),
            Reducer::Prod => *acc * v,
            Reducer::MeanSquare => *acc + v * v,
            Reducer::Mean | Reducer::Sum => *acc + v,
        };
    });
    if matches!(reducer, Reducer::Mean | Reducer::MeanSquare) {
        let inv = 1.0 / count as f32;
        y.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Concatenation: copies each input's `[outer, d_k * inner]` blocks side by side.
pub fn concat_block<T: Copy>(
    x: &[T],
    y: &mut [T],
    outer: usize,
    chunk: usize,
    y_chunk: usize,
    y_off: usize,
) {
    for o in 0..outer {
        y[o * y_chunk + y_off..][..chunk].copy_from_slice(&x[o * chunk..][..chunk]);
    }
}

/// Gather (take): `y[o, j, i] = x[o, idx[j], i]`, `o` over the axes of `xs` before `axis`, `i`
/// over those after it. Every index is in `0..xs[axis]`.
pub fn gather<T: Copy>(x: &[T], xs: &[usize], idx: &[i32], axis: usize, y: &mut [T]) {
    let inner: usize = xs[axis + 1..].iter().product();
    let n = xs[axis];
    let mut out = y.chunks_exact_mut(inner.max(1));
    for block in x.chunks_exact((n * inner).max(1)) {
        for &j in idx {
            let src = &block[j as usize * inner..(j as usize + 1) * inner];
            if let Some(o) = out.next() {
                o.copy_from_slice(src);
            }
        }
    }
}

/// Gather elements: `y[p]` is `x` at `p` with coordinate `axis` replaced by `idx[p]`; `idx` has the
/// shape `ys` of `y` and the rank of `xs`, every index in `0..xs[axis]`.
pub fn gather_elements<T: Copy>(
    x: &[T],
    xs: &[usize],
    idx: &[i32],
    ys: &[usize],
    axis: usize,
    y: &mut [T],
) {
    let off = MAX_RANK - xs.len();
    let xst = strides(&pad6(xs));
    let yd = pad6(ys);
    let mut at = [0usize; MAX_RANK];
    for (o, &j) in y.iter_mut().zip(idx) {
        let mut src = 0;
        for d in 0..MAX_RANK {
            let c = if d == axis + off { j as usize } else { at[d] };
            src += c * xst[d];
        }
        *o = x[src];
        next_index(&mut at, &yd);
    }
}

/// Axis permutation: `y` dim `d` is `x` dim `perm[d]` (any element type).
pub fn transpose<T: Copy>(x: &[T], xs: &[usize], perm: &[usize], y: &mut [T]) {
    let r = xs.len();
    let xst = strides(&pad6(xs));
    let off = MAX_RANK - r;
    let mut yd = [1usize; MAX_RANK];
    let mut st = [0usize; MAX_RANK];
    for d in 0..r {
        yd[off + d] = xs[perm[d]];
        st[off + d] = xst[off + perm[d]];
    }
    for_each_index(yd, [st], |o, [i]| y[o] = x[i]);
}

/// Strided slice: `y[i] = x[begin + i * step]` per axis (any element type).
pub fn slice<T: Copy>(
    x: &[T],
    xs: &[usize],
    begin: &[i64],
    step: &[i64],
    y: &mut [T],
    ys: &[usize],
) {
    let r = xs.len();
    let off = MAX_RANK - r;
    let xst = strides(&pad6(xs));
    let yd = pad6(ys);
    let mut base: i64 = 0;
    for d in 0..r {
        base += begin[d] * xst[off + d] as i64;
    }
    let mut o = 0;
    let mut idx = [0usize; MAX_RANK];
    loop {
        let mut i = base;
        for d in 0..r {
            i += idx[off + d] as i64 * step[d] * xst[off + d] as i64;
        }
        y[o] = x[i as usize];
        o += 1;
        if !next_index(&mut idx, &yd) {
            return;
        }
    }
}

/// Padding modes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// Fill with a constant.
    Constant(f32),
    /// Mirror without repeating the edge.
    Reflect,
    /// Repeat the edge.
    Edge,
}

/// Pads `x` into `y` with `pads[d] = (before, after)`.
pub fn pad(
    x: &[f32],
    xs: &[usize],
    pads: &[(usize, usize)],
    mode: PadMode,
    y: &mut [f32],
    ys: &[usize],
) {
    let r = xs.len();
    let off = MAX_RANK - r;
    let xst = strides(&pad6(xs));
    let mut idx = [0usize; MAX_RANK];
    let yd = pad6(ys);
    for o in y.iter_mut() {
        let mut src = 0usize;
        let mut inside = true;
        for d in 0..r {
            let n = xs[d] as isize;
            let mut i = idx[off + d] as isize - pads[d].0 as isize;
            if i < 0 || i >= n {
                match mode {
                    PadMode::Constant(_) => inside = false,
                    PadMode::Edge => i = i.clamp(0, n - 1),
                    PadMode::Reflect => {
                        if n == 1 {
                            i = 0;
                        } else {
                            let period = 2 * (n - 1);
                            i = i.rem_euclid(period);
                            if i >= n {
                                i = period - i;
                            }
                        }
                    }
                }
            }
            src += i.max(0) as usize * xst[off + d];
        }
        *o = match (inside, mode) {
            (false, PadMode::Constant(v)) => v,
            _ => x[src],
        };
        next_index(&mut idx, &yd);
    }
}

/// Batched matrix product with broadcast batch dims: `y[.., m, n] = sum_k a[.., m, k] b[.., k, n]`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: &[f32],
    ash: &[usize],
    b: &[f32],
    bsh: &[usize],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ysh: &[usize],
    act: [f32; 2],
) {
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let n = bsh[bsh.len() - 1];
    let batch_y = &ysh[..ysh.len() - 2];
    let sa = broadcast_strides(&ash[..ash.len() - 2]);
    let sb = broadcast_strides(&bsh[..bsh.len() - 2]);
    for_each_index(pad6(batch_y), [sa, sb], |o, [ia, ib]| {
        let am = &a[ia * m * k..][..m * k];
        let bm = &b[ib * k * n..][..k * n];
        let ym = &mut y[o * m * n..][..m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = bias.map_or(0.0, |bb| bb[j]);
                for t in 0..k {
                    acc += am[i * k + t] * bm[t * n + j];
                }
                ym[i * n + j] = clamp(acc, act);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_1x1_is_dense() {
        // 1x2x2x3 input, 2 output channels, 1x1 kernel.
        let x: [f32; 12] = core::array::from_fn(|i| i as f32);
        let w = [1.0, 0.0, -1.0, 0.5, 0.5, 0.5];
        let mut y = [0.0; 8];
        let p = ConvGeom::default();
        conv2d(
            &x,
            [1, 2, 2, 3],
            &w,
            [2, 1, 1, 3],
            Some(&[1.0, 0.0]),
            &mut y,
            [1, 2, 2, 2],
            &p,
            [f32::NEG_INFINITY, f32::INFINITY],
        );
        let mut d = [0.0; 8];
        dense(
            &x,
            3,
            &w,
            2,
            Some(&[1.0, 0.0]),
            &mut d,
            [f32::NEG_INFINITY, f32::INFINITY],
        );
        assert_eq!(y, d);
        assert_eq!(y[0], 1.0 + 0.0 - 2.0);
    }

    #[test]
    fn pad_reflect_and_edge() {
        let x = [1.0, 2.0, 3.0];
        let mut y = [0.0; 7];
        pad(&x, &[3], &[(2, 2)], PadMode::Reflect, &mut y, &[7]);
        assert_eq!(y, [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        pad(&x, &[3], &[(2, 2)], PadMode::Edge, &mut y, &[7]);
        assert_eq!(y, [1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]);
    }

    #[test]
    fn prelu_broadcasts_one_slope_per_channel() {
        // x [2, 1, 2] (NHWC, 2 channels), slopes [2].
        let x = [-2.0, 3.0, 0.0, -4.0];
        let mut y = [9.0; 4];
        prelu(&x, &[2, 1, 2], &[0.5, 0.25], &[2], &mut y);
        assert_eq!(y, [-1.0, 3.0, 0.0, -1.0]);
        // -0.0 is not below zero: it passes through, as in TFLite and ONNX.
        prelu(&[-0.0], &[1], &[3.0], &[1], &mut y[..1]);
        assert!(y[0] == 0.0 && y[0].is_sign_negative());
    }

    #[test]
    fn slice_negative_step() {
        let x = [0.0, 1.0, 2.0, 3.0, 4.0];
        let mut y = [0.0; 3];
        slice(&x, &[5], &[4], &[-2], &mut y, &[3]);
        assert_eq!(y, [4.0, 2.0, 0.0]);
    }
}
