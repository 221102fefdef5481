//! f32 conv, dense and depthwise on microkernels, over weights packed at convert time.
//!
//! * **Packed weights** (`pack16x1`): an `[O, K]` weight matrix in panels of [`NR`] = 16 output
//!   channels; inside a panel of `nr` channels, column `k` is `nr` consecutive floats
//!   ([`packed_offset`]; the int8 `pack16x4` layout with groups of one column). A row of one
//!   panel is one AVX-512 register, two AVX2 ones, four NEON ones.
//! * **Microkernels** `f32_gemm_{1,4}x16__{avx512f,avx2_fma,neon}` and a portable twin compute
//!   `MR × nr` outputs from MR input rows (bias first, then `k` ascending); the FMA paths round
//!   once per multiply-add where the twin rounds twice, so they agree within the stated bound
//!   (`runtime/tests/optimized_f32.rs`): `|a - b| ≤ 2·K·2^-24·(Σ|x·w| + |bias|)`.
//! * **Depthwise** (`f32_dwconv_16__*`): 16 channels of one output pixel at a time over
//!   tap-major weights (`[KH·KW, C]`, packed at convert time).
//! * Convolution windows that are not one run of the input are gathered into a stack patch
//!   (zero padding), as in [`super::qs8`].
//!
//! f16 weights keep the natural layout and the reference kernels.

use super::isa::Isa;
use super::qs8::{dw_runs, layout_offset, window, ConvShapes, DW_TAPS};
#[cfg(target_arch = "x86_64")]
use super::qs8::{gather, pointwise, Cursor, PadRows};
use super::reference_f32::clamp;
use crate::ops::ConvGeom;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

/// One f32 conv layer's operands: input, packed weights (`pack16x1`, or tap-major for
/// depthwise), bias, shapes, window and output clamp.
#[derive(Clone, Copy)]
pub struct ConvF32<'a> {
    /// Input, NHWC.
    pub x: &'a [f32],
    /// Packed weights.
    pub w: &'a [f32],
    /// Bias.
    pub bias: Option<&'a [f32]>,
    /// Shapes.
    pub s: ConvShapes,
    /// Window.
    pub geo: ConvGeom,
    /// Output clamp `[lo, hi]`.
    pub act: [f32; 2],
}

/// Output channels per panel.
pub const NR: usize = 16;
/// Rows per microkernel call.
const MR: usize = 4;

/// Stack floats for gathered windows (MR rows).
#[cfg(target_pointer_width = "64")]
const PATCH: usize = 8192;
#[cfg(not(target_pointer_width = "64"))]
const PATCH: usize = 512;

/// Position of weight `(c, kk)` of an `[o, k]` matrix in `pack16x1`.
#[inline]
pub fn packed_offset(o: usize, k: usize, c: usize, kk: usize) -> usize {
    layout_offset(o, k, c, kk, 1)
}

/// Packs a natural `[o, k]` matrix into `pack16x1`.
pub fn pack(src: &[f32], o: usize, k: usize, dst: &mut [f32]) {
    super::qs8::pack_kr(src, o, k, 1, dst)
}

/// One panel: `nr` channels of `k` columns, column-major (`k` runs of `nr` floats).
#[derive(Clone, Copy)]
pub struct Panel<'a> {
    w: &'a [f32],
    nr: usize,
    k: usize,
}

impl<'a> Panel<'a> {
    /// Panel `p` of a packed `[o, k]` matrix.
    #[inline]
    pub fn of(w: &'a [f32], o: usize, k: usize, p: usize) -> Panel<'a> {
        assert!(p * NR < o, "panel index past the last channel");
        let nr = (o - p * NR).min(NR);
        Panel {
            w: &w[p * NR * k..][..nr * k],
            nr,
            k,
        }
    }
}

/// `acc[r][c] = bias[c] + Σ_k x_r[k] · w[c, k]` for `M` rows and one panel (channels past `nr`
/// hold garbage).
pub type Ukernel<const M: usize> = fn(&[&[f32]; M], Panel<'_>, &[f32; NR]) -> [[f32; NR]; M];

/// The portable microkernel.
pub fn gemm_portable<const M: usize>(
    rows: &[&[f32]; M],
    p: Panel<'_>,
    bias: &[f32; NR],
) -> [[f32; NR]; M] {
    let mut acc = [*bias; M];
    for kk in 0..p.k {
        let wc = &p.w[kk * p.nr..][..p.nr];
        for (a, row) in acc.iter_mut().zip(rows) {
            let xv = row[kk];
            for (ac, &wv) in a.iter_mut().zip(wc) {
                *ac += xv * wv;
            }
        }
    }
    acc
}

/// The microkernel of `isa` for `M` rows.
pub fn ukernel<const M: usize>(isa: Isa) -> Ukernel<M> {
    if !isa.supported() {
        return gemm_portable::<M>;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => x86::gemm_avx512::<M, false>,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::gemm_avx2::<M, false>,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => neon::gemm::<M, false>,
        _ => gemm_portable::<M>,
    }
}

/// The one-row microkernel dense uses for every row: on the SIMD paths its sum runs in four
/// partial sums combined the same way on every ISA (no FMA latency chain), a summation order
/// convs must not use, since a conv's pixels go through 4-row and 1-row tiles depending on how
/// the layer is split.
pub fn ukernel_row(isa: Isa) -> Ukernel<1> {
    if !isa.supported() {
        return gemm_portable::<1>;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => x86::gemm_avx512::<1, true>,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::gemm_avx2::<1, true>,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => neon::gemm::<1, true>,
        _ => ukernel::<1>(isa),
    }
}

/// Depthwise microkernel: channels `c0..c0 + 16` of one output pixel,
/// `bias + Σ_taps x[xo + c] · wt[t·co + c]` (`taps` = `(input offset, tap)`).
pub type DwFn = fn(&[f32], &[f32], usize, &[(usize, usize)], usize, &[f32; NR]) -> [f32; NR];

/// The portable depthwise microkernel.
pub fn dwconv_portable(
    x: &[f32],
    wt: &[f32],
    co: usize,
    taps: &[(usize, usize)],
    c0: usize,
    bias: &[f32; NR],
) -> [f32; NR] {
    let mut acc = *bias;
    for &(xo, t) in taps {
        let (xs, ws) = (&x[xo + c0..][..NR], &wt[t * co + c0..][..NR]);
        for ((a, &xv), &wv) in acc.iter_mut().zip(xs).zip(ws) {
            *a += xv * wv;
        }
    }
    acc
}

/// The depthwise microkernel of `isa`.
pub fn dwconv(isa: Isa) -> DwFn {
    if !isa.supported() {
        return dwconv_portable;
    }
    match isa {
        // (AVX-512 runs `dwconv_run` instead; its CPU has AVX2.)
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => x86::dwconv_avx2,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => neon::dwconv,
        _ => dwconv_portable,
    }
}

/// The run form of the depthwise microkernel (see `x86::dwconv_run_avx512`): every channel of
/// a run of output pixels, `(x, wt, co, taps, step, count, bias, act, y)`.
pub type DwRunFn = fn(
    &[f32],
    &[f32],
    usize,
    &[(usize, usize)],
    usize,
    usize,
    Option<&[f32]>,
    [f32; 2],
    &mut [f32],
);

/// The run form of the depthwise microkernel of `isa`, if it has one.
pub fn dwconv_run(isa: Isa) -> Option<DwRunFn> {
    if !isa.supported() {
        return None;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => Some(x86::dwconv_run_avx512),
        _ => None,
    }
}

/// The bias of channels `c0..c0 + nr` (zeros past `nr` or without a bias).
#[inline]
fn bias_panel(bias: Option<&[f32]>, c0: usize, nr: usize) -> [f32; NR] {
    let mut b = [0f32; NR];
    if let Some(bb) = bias {
        b[..nr].copy_from_slice(&bb[c0..c0 + nr]);
    }
    b
}

/// Clamps and stores one row of a tile.
#[inline]
fn store(acc: &[f32; NR], act: [f32; 2], out: &mut [f32]) {
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = clamp(a, act);
    }
}

/// f32 dense over `pack16x1` weights.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub fn dense(
    x: &[f32],
    k: usize,
    w: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    act: [f32; 2],
    isa: Isa,
) {
    if k == 0 {
        return reference_dense(x, k, w, m, bias, y, act);
    }
    let rows = x.len() / k;
    let uk = ukernel_row(isa);
    for p in 0..m.div_ceil(NR) {
        let panel = Panel::of(w, m, k, p);
        let c0 = p * NR;
        let b = bias_panel(bias, c0, panel.nr);
        for r in 0..rows {
            let a = uk(&[&x[r * k..][..k]], panel, &b);
            store(&a[0], act, &mut y[r * m + c0..][..panel.nr]);
        }
    }
}

/// The packed dense, one output at a time: the specification of [`dense`].
pub fn reference_dense(
    x: &[f32],
    k: usize,
    w: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    act: [f32; 2],
) {
    for (xr, yr) in x.chunks_exact(k.max(1)).zip(y.chunks_exact_mut(m)) {
        for (c, o) in yr.iter_mut().enumerate() {
            let mut acc = bias.map_or(0.0, |b| b[c]);
            for (kk, &xv) in xr.iter().enumerate().take(k) {
                acc += xv * w[packed_offset(m, k, c, kk)];
            }
            *o = clamp(acc, act);
        }
    }
}

/// f32 conv (`groups == 1`) over `pack16x1` weights.
#[inline(never)]
pub fn conv2d(c: &ConvF32<'_>, y: &mut [f32], isa: Isa) {
    conv2d_part(c, y, isa, 0)
}

/// [`conv2d`] for the output pixels `px0..px0 + y.len() / O` only, written to `y`.
#[inline(never)]
pub fn conv2d_part(c: &ConvF32<'_>, y: &mut [f32], isa: Isa, px0: usize) {
    let ConvF32 {
        x,
        w,
        bias,
        s,
        geo,
        act,
    } = *c;
    let (s, geo) = (&s, &geo);

    let [co, kh, kw, ci] = s.w;
    let k = kh * kw * ci;
    let pixels = px0 + y.len() / co.max(1);
    if k == 0 || k > PATCH {
        for (i, out) in y.chunks_exact_mut(co.max(1)).enumerate() {
            reference_pixel(c, out, px0 + i);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if conv2d_padded(c, y, isa, px0) || conv2d_segments(c, y, isa, px0) {
        return;
    }
    let four = MR * k <= PATCH;
    let (uk1, uk4) = (ukernel::<1>(isa), ukernel::<MR>(isa));
    let panels = co.div_ceil(NR);
    let mut patch = [0f32; PATCH];
    let mut px = px0;
    while px < pixels {
        if four && pixels - px >= MR {
            let (p0, rest) = patch.split_at_mut(k);
            let (p1, rest) = rest.split_at_mut(k);
            let (p2, p3) = rest.split_at_mut(k);
            let rows = [
                window(x, s, geo, px, 0.0, p0),
                window(x, s, geo, px + 1, 0.0, p1),
                window(x, s, geo, px + 2, 0.0, p2),
                window(x, s, geo, px + 3, 0.0, p3),
            ];
            for p in 0..panels {
                let panel = Panel::of(w, co, k, p);
                let b = bias_panel(bias, p * NR, panel.nr);
                for (i, a) in uk4(&rows, panel, &b).iter().enumerate() {
                    store(a, act, &mut y[(px - px0 + i) * co + p * NR..][..panel.nr]);
                }
            }
            px += MR;
        } else {
            let row = window(x, s, geo, px, 0.0, &mut patch);
            for p in 0..panels {
                let panel = Panel::of(w, co, k, p);
                let b = bias_panel(bias, p * NR, panel.nr);
                let a = uk1(&[row], panel, &b);
                store(&a[0], act, &mut y[(px - px0) * co + p * NR..][..panel.nr]);
            }
            px += 1;
        }
    }
}

/// A microkernel over rows given as segments of `x` and a patch, writing the clamped outputs
/// (see `x86::igemm_avx512`): `(x, patch, offsets, kh, run, panel, bias, (y, base, stride,
/// act))`.
#[cfg(target_arch = "x86_64")]
type Igemm = fn(&[f32], &[f32], &[usize], usize, usize, Panel<'_>, &[f32; NR], x86::Out<'_>);

/// The segmented microkernel of `isa` for `M` rows, if it has one.
#[cfg(target_arch = "x86_64")]
fn igemm<const M: usize>(isa: Isa) -> Option<Igemm> {
    if !isa.supported() {
        return None;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => Some(x86::igemm_avx512::<M>),
        _ => None,
    }
}

/// The segmented kernels of an ISA for 8, 4, 2 and 1 rows.
#[cfg(target_arch = "x86_64")]
struct Igemms([Igemm; 4]);

#[cfg(target_arch = "x86_64")]
impl Igemms {
    fn of(isa: Isa) -> Option<Igemms> {
        Some(Igemms([
            igemm::<SEG_M>(isa)?,
            igemm::<4>(isa)?,
            igemm::<2>(isa)?,
            igemm::<1>(isa)?,
        ]))
    }

    /// The most rows (8, 4, 2, 1) that `left` pixels fill, and their kernel: a layer's last
    /// pixels as few calls as possible (a one-row call is one chain of dependent fused
    /// multiply-adds, its latency unhidden).
    fn pick(&self, left: usize) -> (usize, Igemm) {
        match left {
            SEG_M.. => (SEG_M, self.0[0]),
            4.. => (4, self.0[1]),
            2.. => (2, self.0[2]),
            _ => (1, self.0[3]),
        }
    }
}

/// One tile of rows for the segmented kernels: `kh` segments of `run` floats per row, segment
/// `j` of row `i` at `offs[i·kh + j]` in `x` followed by `patch`.
#[cfg(target_arch = "x86_64")]
struct Tile<'a> {
    x: &'a [f32],
    patch: &'a [f32],
    offs: &'a [usize],
    kh: usize,
    run: usize,
}

#[cfg(target_arch = "x86_64")]
impl Tile<'_> {
    /// Every panel of the packed `[co, kh·run]` weights `w` over this tile's rows, row `i`'s
    /// outputs written from `y[base + i·co]`: two or three panels per call
    /// (`f32_igemm_8x{32,48}`) where a full tile has them, else `f` (this tile's row count)
    /// one panel at a time.
    #[allow(clippy::too_many_arguments)]
    fn panels(
        &self,
        w: &[f32],
        co: usize,
        bias: Option<&[f32]>,
        act: [f32; 2],
        y: &mut [f32],
        base: usize,
        f: Igemm,
    ) {
        let k = self.kh * self.run;
        let (panels, m) = (co.div_ceil(NR), self.offs.len() / self.kh.max(1));
        let mut p = 0;
        while p < panels {
            let out = x86::Out {
                y: &mut *y,
                base: base + p * NR,
                stride: co,
                act,
            };
            let panel = Panel::of(w, co, k, p);
            let bp = bias_panel(bias, p * NR, panel.nr);
            if m == SEG_M && p + 1 < panels {
                // Three panels when exactly three are left (48 channels), else two.
                let (t, pt, o, kh, run) = (self.x, self.patch, self.offs, self.kh, self.run);
                let next = Panel::of(w, co, k, p + 1);
                let bq = bias_panel(bias, (p + 1) * NR, next.nr);
                if panels - p == 3 {
                    let last = Panel::of(w, co, k, p + 2);
                    let br = bias_panel(bias, (p + 2) * NR, last.nr);
                    let (ps, bs) = ([panel, next, last], [&bp, &bq, &br]);
                    x86::igemmp_avx512::<SEG_M, 3>(t, pt, o, kh, run, ps, bs, out);
                    p += 3;
                } else {
                    let (ps, bs) = ([panel, next], [&bp, &bq]);
                    x86::igemmp_avx512::<SEG_M, 2>(t, pt, o, kh, run, ps, bs, out);
                    p += 2;
                }
            } else {
                f(
                    self.x, self.patch, self.offs, self.kh, self.run, panel, &bp, out,
                );
                p += 1;
            }
        }
    }
}

/// Rows per call of [`conv2d_segments`].
#[cfg(target_arch = "x86_64")]
const SEG_M: usize = 8;
/// Tallest kernel [`conv2d_segments`] takes.
#[cfg(target_arch = "x86_64")]
const SEG_KH: usize = 16;

/// [`conv2d_part`] reading each window's `KH` rows where they lie in the input (8 pixels per
/// call), where the ISA has a segmented kernel ([`igemm`]) and there is no dilation along a
/// row (1x1 convs too: eight rows per call instead of four); only windows reaching into the
/// padding are gathered.
/// Returns false (writing nothing) otherwise.
#[cfg(target_arch = "x86_64")]
fn conv2d_segments(c: &ConvF32<'_>, y: &mut [f32], isa: Isa, px0: usize) -> bool {
    // The smallest patch that holds a tile of border windows (it is zeroed per call); none
    // for a pointwise conv, whose windows are the input's pixels.
    let [_, kh, kw, ci] = c.s.w;
    if pointwise(&c.s, &c.geo) {
        conv2d_segments_buf::<0>(c, y, isa, px0)
    } else if SEG_M * kh * kw * ci <= PATCH / 4 {
        conv2d_segments_buf::<{ PATCH / 4 }>(c, y, isa, px0)
    } else {
        conv2d_segments_buf::<PATCH>(c, y, isa, px0)
    }
}

/// [`conv2d_segments`] with a `B`-float patch.
#[cfg(target_arch = "x86_64")]
fn conv2d_segments_buf<const B: usize>(
    c: &ConvF32<'_>,
    y: &mut [f32],
    isa: Isa,
    px0: usize,
) -> bool {
    let ConvF32 {
        x,
        w,
        bias,
        s,
        geo,
        act,
    } = *c;
    let [_, _, _, ci] = s.x;
    let [co, kh, kw, _] = s.w;
    let run = kw * ci;
    let k = kh * run;
    let Some(fs) = Igemms::of(isa) else {
        return false;
    };
    let flat = pointwise(&c.s, &c.geo);
    if run == 0 || (kw > 1 && geo.dilation[1] != 1) || kh > SEG_KH || (SEG_M * k > B && !flat) {
        return false;
    }
    let mut patch = [0f32; B];
    let pixels = px0 + y.len() / co.max(1);
    let mut offs = [0usize; SEG_M * SEG_KH];
    let mut px = px0;
    let mut cur = Cursor::at(&s, px);
    while px < pixels {
        let (m, f) = fs.pick(pixels - px);
        if flat {
            // Pixel `p`'s window is its own `C` inputs.
            for (i, o) in offs.iter_mut().take(m).enumerate() {
                *o = (px + i) * ci;
            }
        }
        for (i, o) in offs
            .chunks_exact_mut(kh)
            .take(if flat { 0 } else { m })
            .enumerate()
        {
            let (at, step) = cur.inside(&s, &geo).unwrap_or_else(|| {
                let copy = |d: &mut [f32], v: &[f32]| d.copy_from_slice(v);
                gather(x, &s, &geo, px + i, 0.0, copy, &mut patch[i * k..][..k]);
                (x.len() + i * k, run)
            });
            for (ky, o) in o.iter_mut().enumerate() {
                *o = at + ky * step;
            }
            cur.advance(&s);
        }
        let t = Tile {
            x,
            patch: &patch,
            offs: &offs[..m * kh],
            kh,
            run,
        };
        t.panels(w, co, bias, act, &mut *y, (px - px0) * co, f);
        px += m;
    }
    true
}

/// Floats of the zero-padded input rows [`conv2d_padded`] copies onto the stack.
#[cfg(target_arch = "x86_64")]
const PAD_FLOATS: usize = 8192;

/// [`conv2d_part`] over a copy of the input rows a chunk of output rows reads, padded with
/// zeros (x86-64 with the segmented kernel, no dilation): every window is `KH` runs of `KW·C`
/// floats at a fixed stride in the copy, so none is gathered, and tiles of eight pixels run on
/// across rows. The multiply-adds are those of the gathered windows (a padding tap adds `0·w`
/// in its place), so the bits are the same. Returns false (writing nothing) otherwise.
#[cfg(target_arch = "x86_64")]
fn conv2d_padded(c: &ConvF32<'_>, y: &mut [f32], isa: Isa, px0: usize) -> bool {
    // The smallest buffer that holds the whole padded input (it is zeroed per call: 32 KiB
    // zeroed cost the keyword spotter's first conv a fifth), else chunks of the largest.
    let [n, h, _, ci] = c.s.x;
    let [_, kh, kw, _] = c.s.w;
    let [_, oh, ow, _] = c.s.y;
    let rows = (oh.max(1) - 1) * c.geo.stride[0] + kh;
    let pw = (ow.max(1) - 1) * c.geo.stride[1] + kw;
    if n == 1 && rows.max(h) * pw * ci <= PAD_FLOATS / 8 {
        conv2d_padded_buf::<{ PAD_FLOATS / 8 }>(c, y, isa, px0)
    } else {
        conv2d_padded_buf::<PAD_FLOATS>(c, y, isa, px0)
    }
}

/// [`conv2d_padded`] with a `B`-float buffer.
#[cfg(target_arch = "x86_64")]
fn conv2d_padded_buf<const B: usize>(c: &ConvF32<'_>, y: &mut [f32], isa: Isa, px0: usize) -> bool {
    let ConvF32 {
        x,
        w,
        bias,
        s,
        geo,
        act,
    } = *c;
    let [n, h, wd, ci] = s.x;
    let [co, kh, kw, _] = s.w;
    let run = kw * ci;
    let Some(fs) = Igemms::of(isa) else {
        return false;
    };
    // (A pointwise conv's windows all lie inside the input: the segments read them in place.)
    let ok = run > 0
        && kh * kw > 1
        && geo.dilation == [1, 1]
        && kh <= SEG_KH
        && x.len() >= n * h * wd * ci;
    let Some(plan) = PadRows::new(&s, &geo).filter(|_| ok) else {
        return false;
    };
    let row = plan.row_len();
    if kh * row > B {
        return false;
    }
    let (sx, ow) = (geo.stride[1], plan.ow);
    let (left, inside) = (plan.left * ci, plan.inside * ci);
    let mut buf = [0f32; B];
    let mut offs = [0usize; SEG_M * SEG_KH];
    plan.chunks(B / row, px0, y.len() / co.max(1), |ch| {
        for r in 0..ch.rows {
            let dst = &mut buf[r * row..][..row];
            dst.fill(0.0);
            if let Some(at) = plan.source(ch, r) {
                dst[left..][..inside].copy_from_slice(&x[at..][..inside]);
            }
        }
        let buf = &buf[..ch.rows * row];
        // Pixel `p`'s window starts at its output row's first padded row, its column·S.
        let oy0 = ch.first / ow;
        let at = |p: usize| (p / ow - oy0) * plan.sy * row + p % ow * sx * ci;
        let mut px = ch.first;
        while px < ch.stop {
            let (m, f) = fs.pick(ch.stop - px);
            for (i, o) in offs.chunks_exact_mut(kh).take(m).enumerate() {
                let base = at(px + i);
                for (ky, o) in o.iter_mut().enumerate() {
                    *o = base + ky * row;
                }
            }
            let t = Tile {
                x: &[],
                patch: buf,
                offs: &offs[..m * kh],
                kh,
                run,
            };
            t.panels(w, co, bias, act, &mut *y, (px - px0) * co, f);
            px += m;
        }
    });
    true
}

/// f32 max or average pooling over NHWC on `isa` (the reference's code, compiled for AVX-512
/// where the CPU has it: the same bits).
#[allow(clippy::too_many_arguments)]
pub fn pool2d(
    x: &[f32],
    xs: [usize; 4],
    y: &mut [f32],
    ys: [usize; 4],
    p: &crate::ops::PoolWindow,
    act: [f32; 2],
    is_max: bool,
    isa: Isa,
) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni && isa.supported() {
        return x86::pool2d_avx512(x, xs, y, ys, p, act, is_max);
    }
    let _ = isa;
    super::reference_f32::pool2d(x, xs, y, ys, p, act, is_max)
}

/// The packed conv, one output at a time: the specification of [`conv2d`].
pub fn reference_conv2d(c: &ConvF32<'_>, y: &mut [f32]) {
    for (i, out) in y.chunks_exact_mut(c.s.w[0].max(1)).enumerate() {
        reference_pixel(c, out, i);
    }
}

/// One output pixel of the packed conv, one output at a time.
fn reference_pixel(c: &ConvF32<'_>, out: &mut [f32], pix: usize) {
    let ConvF32 {
        x,
        w,
        bias,
        s,
        geo,
        act,
    } = *c;
    let (s, geo) = (&s, &geo);

    let [_, h, wd, ci] = s.x;
    let [co, kh, kw, _] = s.w;
    let [_, oh, ow, _] = s.y;
    let (b, oy, ox) = (pix / (oh * ow), pix / ow % oh, pix % ow);
    let k = kh * kw * ci;
    for (c, o) in out.iter_mut().enumerate() {
        let mut acc = bias.map_or(0.0, |bb| bb[c]);
        geo.taps((oy, ox), [h, wd], [kh, kw], |ky, kx, iy, ix| {
            let xrow = &x[((b * h + iy) * wd + ix) * ci..][..ci];
            for (i, &xv) in xrow.iter().enumerate() {
                acc += xv * w[packed_offset(co, k, c, (ky * kw + kx) * ci + i)];
            }
        });
        *o = clamp(acc, act);
    }
}

/// f32 depthwise conv (one output channel per input channel) over tap-major weights
/// (`[KH·KW, C]`, the packed depthwise layout): 16 channels at a time on the microkernel, the
/// rest one by one.
#[inline(never)]
pub fn depthwise(c: &ConvF32<'_>, y: &mut [f32], isa: Isa) {
    depthwise_part(c, y, isa, 0)
}

/// [`depthwise`] for the output pixels `px0..px0 + y.len() / C` only, written to `y`.
#[inline(never)]
pub fn depthwise_part(c: &ConvF32<'_>, y: &mut [f32], isa: Isa, px0: usize) {
    let ConvF32 {
        x,
        w: wt,
        bias,
        s,
        geo,
        act,
    } = *c;
    let [_, _, _, ci] = s.x;
    let [co, kh, kw, _] = s.w;
    if kh * kw > DW_TAPS {
        for (i, out) in y.chunks_exact_mut(co.max(1)).enumerate() {
            reference_dw_pixel(c, out, px0 + i);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni && x86::dw_rows_f32(c, y, px0) {
        return;
    }
    let (dw, run) = (dwconv(isa), dwconv_run(isa));
    let total = y.len() / co.max(1);
    dw_runs(&s, &geo, px0, total, run.is_some(), |i, count, taps| {
        let out = &mut y[i * co..(i + count) * co];
        if let Some(f) = run {
            // Every run (border pixels as runs of one), every channel in one call.
            f(x, wt, co, taps, geo.stride[1] * ci, count, bias, act, out);
            return;
        }
        // One pixel (`count == 1`).
        let mut c0 = 0;
        while c0 + NR <= co {
            let a = dw(x, wt, co, taps, c0, &bias_panel(bias, c0, NR));
            store(&a, act, &mut out[c0..c0 + NR]);
            c0 += NR;
        }
        // The channels past the last 16: fused multiply-adds, as the vector lanes do, so every
        // SIMD path gives the same bits.
        for (c, o) in out.iter_mut().enumerate().skip(c0) {
            let mut acc = bias.map_or(0.0, |bb| bb[c]);
            for &(xo, t) in taps {
                acc = libm::fmaf(x[xo + c], wt[t * co + c], acc);
            }
            *o = clamp(acc, act);
        }
    });
}

/// The tap-major depthwise conv, one output at a time: the specification of [`depthwise`].
pub fn reference_depthwise(c: &ConvF32<'_>, y: &mut [f32]) {
    for (i, out) in y.chunks_exact_mut(c.s.w[0].max(1)).enumerate() {
        reference_dw_pixel(c, out, i);
    }
}

/// One output pixel of the tap-major depthwise conv, one output at a time.
fn reference_dw_pixel(c: &ConvF32<'_>, out: &mut [f32], pix: usize) {
    let ConvF32 {
        x,
        w: wt,
        bias,
        s,
        geo,
        act,
    } = *c;
    let (s, geo) = (&s, &geo);

    let [_, h, wd, ci] = s.x;
    let [co, kh, kw, _] = s.w;
    let [_, oh, ow, _] = s.y;
    let (b, oy, ox) = (pix / (oh * ow), pix / ow % oh, pix % ow);
    for (c, o) in out.iter_mut().enumerate() {
        let mut acc = bias.map_or(0.0, |bb| bb[c]);
        geo.taps((oy, ox), [h, wd], [kh, kw], |ky, kx, iy, ix| {
            acc += x[((b * h + iy) * wd + ix) * ci + c] * wt[(ky * kw + kx) * co + c];
        });
        *o = clamp(acc, act);
    }
}
