//! qs8: int8 GEMM-based conv and dense over weights packed at convert time.
//!
//! # The kernel contract
//!
//! * **Packed weights** (`pack16x4`). An `[O, K]` weight matrix (a conv's `[O, KH, KW, C]` with
//!   `K = KH·KW·C`) is stored as panels of [`NR`] = 16 output channels. Inside a panel of `nr`
//!   channels (16, or fewer for the last panel) the first `K - K % 4` columns come in groups of
//!   [`KR`] = 4: group `g` holds, for each channel in turn, its 4 weights `k = 4g..4g+4`; then the
//!   `K % 4` leftover columns, channel by channel. It is a permutation of the natural bytes (the
//!   tensor keeps its shape and size), readable by every ISA: one group of a full panel is one
//!   64-byte AVX-512 / four NEON registers / two AVX2 registers, and the 4 bytes of one channel
//!   are what `vpdpbusd` and the Cortex-M `sxtb16`+`smlad` pair consume.
//! * **Folded bias.** The kernels multiply `x + 128` (the input as an unsigned byte, as
//!   `vpdpbusd` wants) by the weights, so the bias stored with packed weights is
//!   `bias - (z_x + 128)·Σ_k w`: `Σ (x - z_x)·w + bias` exactly, in wrapping 32-bit arithmetic.
//!   Padding taps read the input zero point, which the fold cancels. Only weights with zero
//!   point 0 are packed (TFLite's rule for int8 conv; kiln's quantizer is symmetric).
//! * **Microkernels** compute an `MR × nr` tile of accumulators (MR output pixels or rows,
//!   `nr ≤ 16` channels) from MR input rows of `K` bytes each, the rows holding the input as
//!   unsigned bytes (`x ^ 0x80`, flipped once when gathered); [`requantize`] turns a row of them
//!   into int8 outputs with TFLite's rounding, or the fused form ([`gemm_rq`]) does it in
//!   registers. One portable twin per microkernel defines the result; every ISA path equals it
//!   bit for bit.
//! * **Scratch.** On AVX-512 a conv copies the input rows it reads, flipped and padded with
//!   the input zero point, onto the stack (`x86::conv_rows`, 48 KiB per chunk of rows);
//!   elsewhere each conv pixel's window is gathered, flipped, into a stack patch of at most
//!   [`PATCH_BYTES`] (im2col; padding = the input zero point; rows padded to a multiple of 4 with
//!   zeros); larger windows run the portable packed reference.
//! * **Depthwise** (tap-major weights `[KH·KW, C]`) runs per output pixel, 16 channels per call,
//!   or, on AVX-512, over the whole layer at once ([`depthwise_layer`]): 3- and 5-wide kernels
//!   row by row over a zero-point-padded copy of the rows they read (`x86::dw_rows`), others
//!   with the pixels walked in runs (a row's interior pixels form one), every panel's constants
//!   set up once, four pixels of a run sharing each input column they read.

// On 32-bit targets the stack budgets `PQ_CACHE` and `FLIP_BYTES` are 0: the comparisons with
// them are constant there by design.
#![cfg_attr(target_pointer_width = "32", allow(clippy::absurd_extreme_comparisons))]

use super::isa::Isa;
use super::reference_i8::QuantParams;
use crate::ops::ConvGeom;

#[cfg(kiln_dsp)]
#[allow(unsafe_code)]
mod dsp;
#[cfg(target_arch = "aarch64")]
mod neon;
pub(crate) mod rq;
#[cfg(kiln_v6m)]
#[allow(unsafe_code)]
mod v6m;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Output channels per panel.
pub const NR: usize = 16;
/// Input columns per group.
pub const KR: usize = 4;

/// The lane mask of the first `n` of 16 lanes (all 16 for `n >= 16`): a partial panel's.
#[inline]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const fn lane_mask(n: usize) -> u16 {
    if n >= NR {
        0xFFFF
    } else {
        (1u16 << n) - 1
    }
}

/// The row buffer of layers whose tiles fit it (most): a small one to zero per call.
const SMALL_PATCH: usize = if PATCH_BYTES < 2048 {
    PATCH_BYTES
} else {
    2048
};

/// Rows per microkernel call for convolutions.
const MR: usize = 4;

/// Rows per call of the fused AVX-512 microkernel in convolutions.
const MR8: usize = 8;

/// Whether convs use the MR-row microkernels: not on 32-bit microcontrollers, whose kernels
/// share nothing between rows (so the MR-row copies would only cost flash) and whose stack is
/// small.
const MULTI_ROW: bool = true;

/// Stack bytes for gathered windows (MR rows).
#[cfg(target_pointer_width = "64")]
pub const PATCH_BYTES: usize = 16384;
/// Stack bytes for gathered windows (MR rows).
#[cfg(not(target_pointer_width = "64"))]
pub const PATCH_BYTES: usize = 1024;

/// Panels whose requantization constants a conv prepares once per call (on the stack); more
/// are prepared per tile. None on 32-bit targets, whose stack is small (4 cached panels saved the
/// M4 keyword spotter 0.9% of its instructions for 432 more bytes of stack).
#[cfg(target_pointer_width = "64")]
const PQ_CACHE: usize = 16;
#[cfg(not(target_pointer_width = "64"))]
const PQ_CACHE: usize = 0;

/// Position of weight `(c, kk)` of an `[o, k]` matrix in the packed layout.
#[inline]
pub fn packed_offset(o: usize, k: usize, c: usize, kk: usize) -> usize {
    layout_offset(o, k, c, kk, KR)
}

/// Position of weight `(c, kk)` in panels of [`NR`] channels with columns grouped by `kr`
/// (`pack16x4` for int8, `pack16x1` for f32).
#[inline]
pub fn layout_offset(o: usize, k: usize, c: usize, kk: usize, kr: usize) -> usize {
    let p = c / NR;
    let cl = c % NR;
    let nr = (o - p * NR).min(NR);
    let kf = k - k % kr;
    let base = p * NR * k;
    if kk < kf {
        base + (kk / kr) * nr * kr + cl * kr + kk % kr
    } else {
        base + kf * nr + cl * (k - kf) + (kk - kf)
    }
}

/// Packs a natural `[o, k]` matrix (`src`) into `dst` (same length), columns grouped by `kr`.
pub fn pack_kr<T: Copy>(src: &[T], o: usize, k: usize, kr: usize, dst: &mut [T]) {
    for c in 0..o {
        for kk in 0..k {
            dst[layout_offset(o, k, c, kk, kr)] = src[c * k + kk];
        }
    }
}

/// Packs a natural int8 `[o, k]` matrix into `pack16x4`.
pub fn pack<T: Copy>(src: &[T], o: usize, k: usize, dst: &mut [T]) {
    pack_kr(src, o, k, KR, dst)
}

/// Inverse of [`pack`].
pub fn unpack<T: Copy>(src: &[T], o: usize, k: usize, dst: &mut [T]) {
    for c in 0..o {
        for kk in 0..k {
            dst[c * k + kk] = src[packed_offset(o, k, c, kk)];
        }
    }
}

/// The bias packed weights are stored with: `bias[c] - (input_zp + 128)·Σ_k w[c, k]`, wrapping
/// (`w` natural `[o, k]`, `bias` absent = zeros).
pub fn fold_bias(
    w: &[i8],
    o: usize,
    k: usize,
    bias: Option<&[i32]>,
    input_zp: i32,
    out: &mut [i32],
) {
    fold_zero_point(w, o, k, bias, input_zp + 128, out);
}

/// `bias[c] - z·Σ_k w[c, k]`, wrapping (`w` natural `[o, k]`, `bias` absent = zeros): a zero
/// point folded into a bias. Packed weights fold `input_zp + 128` ([`fold_bias`]), sparse ones
/// `input_zp` (`kernels::sparse`); folding `-z` undoes a fold of `z`.
pub fn fold_zero_point(
    w: &[i8],
    o: usize,
    k: usize,
    bias: Option<&[i32]>,
    z: i32,
    out: &mut [i32],
) {
    for c in 0..o {
        let s = w[c * k..][..k]
            .iter()
            .fold(0i32, |a, &v| a.wrapping_add(v as i32));
        let b = bias.map_or(0, |b| b[c]);
        out[c] = b.wrapping_sub(z.wrapping_mul(s));
    }
}

/// One panel of packed weights: `nr` channels of `k` columns.
#[derive(Clone, Copy)]
pub struct Panel<'a> {
    /// The panel's `nr · k` bytes.
    w: &'a [i8],
    /// Channels in the panel (1..=16).
    nr: usize,
    /// Columns.
    k: usize,
    /// The `k % 4` leftover columns as one zero-padded group (channel `c` at `4c..4c + 4`),
    /// when the caller prepared it; the rows are then readable up to `k` rounded up to 4.
    /// (The AVX-512 and AVX2 kernels read it.)
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    tail: Option<&'a [i8; NR * KR]>,
}

impl<'a> Panel<'a> {
    /// Panel `p` of a packed `[o, k]` matrix.
    #[inline]
    pub fn of(w: &'a [i8], o: usize, k: usize, p: usize) -> Panel<'a> {
        assert!(p * NR < o, "panel index past the last channel");
        let nr = (o - p * NR).min(NR);
        Panel {
            w: &w[p * NR * k..][..nr * k],
            nr,
            k,
            tail: None,
        }
    }

    /// The same panel with its leftover columns given as one padded group
    /// ([`Panel::tail_group_into`]).
    #[inline]
    pub fn with_tail(self, tail: &'a [i8; NR * KR]) -> Panel<'a> {
        Panel {
            tail: Some(tail),
            ..self
        }
    }

    /// Writes the padded tail group of this panel into `g` (which must be all zeros): its
    /// `k % 4` leftover columns, channel `c`'s at `4c..4c + k % 4`.
    pub fn tail_group_into(&self, g: &mut [i8; NR * KR]) {
        let kf = self.k - self.k % KR;
        let rem = self.k - kf;
        if rem > 0 {
            for (c, wc) in self.w[kf * self.nr..].chunks_exact(rem).enumerate() {
                g[c * KR..c * KR + rem].copy_from_slice(wc);
            }
        }
    }
}

/// Panels whose padded tail groups a conv or dense prepares per call (first convs: few
/// channels, `K` not a multiple of 4).
const TAIL_CACHE: usize = 8;

/// The padded tail groups of the first [`TAIL_CACHE`] panels, when `K % 4 != 0` and `isa`'s
/// microkernels read them (AVX-512, AVX2).
fn tail_groups(w: &[i8], o: usize, k: usize, isa: Isa, t: &mut [[i8; NR * KR]; TAIL_CACHE]) {
    let reads = gemm_rq::<1>(isa).is_some() || (isa == Isa::Avx2 && isa.supported());
    if !k.is_multiple_of(KR) && reads {
        for (p, g) in t.iter_mut().enumerate().take(o.div_ceil(NR)) {
            Panel::of(w, o, k, p).tail_group_into(g);
        }
    }
}

/// `panel` with its prepared tail group, if there is one.
#[inline]
fn with_tail<'a>(panel: Panel<'a>, tails: &'a [[i8; NR * KR]; TAIL_CACHE], p: usize) -> Panel<'a> {
    match tails.get(p) {
        Some(t) if !panel.k.is_multiple_of(KR) => panel.with_tail(t),
        _ => panel,
    }
}

/// `k` rounded up to a multiple of 4: the stride of gathered rows.
#[inline]
fn padded(k: usize) -> usize {
    k.div_ceil(KR) * KR
}

/// `MR` rows times one panel: `acc[r][c] = Σ_k u_r[k] · w[c, k]` (wrapping) where the rows hold
/// the input as unsigned bytes, `u = x + 128` (`x ^ 0x80`, flipped once when the row is
/// gathered); channels past `nr` are left 0.
pub type Ukernel<const M: usize> = fn(&[&[u8]; M], Panel<'_>) -> [[i32; NR]; M];

/// The portable microkernel: defines what every ISA path computes.
pub fn gemm_portable<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    let mut acc = [[0i32; NR]; M];
    let (nr, k) = (p.nr, p.k);
    let kf = k - k % KR;
    for g in 0..kf / KR {
        let grp = &p.w[g * nr * KR..][..nr * KR];
        for (r, row) in rows.iter().enumerate() {
            let xs = &row[g * KR..][..KR];
            for (c, wc) in grp.chunks_exact(KR).enumerate() {
                let mut s = acc[r][c];
                for (&xv, &wv) in xs.iter().zip(wc) {
                    s = s.wrapping_add(xv as i32 * wv as i32);
                }
                acc[r][c] = s;
            }
        }
    }
    tail(rows, p, &mut acc);
    acc
}

/// Adds the `k % 4` leftover columns (shared by every ISA path).
#[inline]
fn tail<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>, acc: &mut [[i32; NR]; M]) {
    let (nr, k) = (p.nr, p.k);
    let kf = k - k % KR;
    let rem = k - kf;
    if rem == 0 {
        return;
    }
    let tw = &p.w[kf * nr..][..nr * rem];
    for (r, row) in rows.iter().enumerate() {
        let xs = &row[kf..k];
        for (c, wc) in tw.chunks_exact(rem).enumerate() {
            let mut s = acc[r][c];
            for (&xv, &wv) in xs.iter().zip(wc) {
                s = s.wrapping_add(xv as i32 * wv as i32);
            }
            acc[r][c] = s;
        }
    }
}

/// The microkernel of `isa` for `M` rows.
pub fn ukernel<const M: usize>(isa: Isa) -> Ukernel<M> {
    if !isa.supported() {
        return gemm_portable::<M>;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => x86::gemm_avx512vnni::<M>,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::gemm_avx2::<M>,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::gemm::<M>,
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => neon::gemm_sdot::<M>,
        #[cfg(kiln_v6m)]
        _ => v6m::gemm::<M>,
        #[cfg(not(kiln_v6m))]
        _ => gemm_portable::<M>,
    }
}

/// A microkernel with the requantization fused (accumulators stay in registers): `M` rows
/// times one panel, requantized with the panel's constants, row `i` written to
/// `y[base + i·stride..][..nr]`.
pub type GemmRq<const M: usize> =
    fn(&[&[u8]; M], Panel<'_>, &PanelQ, &QuantParams<'_>, &mut [i8], usize, usize);

/// The fused microkernel of `isa`, if it has one (else [`ukernel`] then [`requantize`]).
pub fn gemm_rq<const M: usize>(isa: Isa) -> Option<GemmRq<M>> {
    if !isa.supported() {
        return None;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => Some(x86::gemm_rq_avx512vnni::<M>),
        _ => None,
    }
}

/// A fused microkernel over rows given as `kh` segments of `run` bytes each:
/// `(buffer, segment offsets, kh, run, panel, constants, q, y, base, stride)` (see
/// `x86::igemm_rq_avx512vnni`).
pub type IgemmRq = fn(
    &[u8],
    &[usize],
    usize,
    usize,
    Panel<'_>,
    &PanelQ,
    &QuantParams<'_>,
    &mut [i8],
    usize,
    usize,
);

/// The segmented fused microkernel of `isa` for `M` rows, if it has one.
pub fn igemm_rq<const M: usize>(isa: Isa) -> Option<IgemmRq> {
    if !isa.supported() {
        return None;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => Some(x86::igemm_rq_avx512vnni::<M>),
        _ => None,
    }
}

/// A fused microkernel over two panels at once (see `x86::gemm_rq2_avx512vnni`):
/// `(rows, panel, next panel, their constants, q, y, base, stride)`.
pub type GemmRq2<const M: usize> = fn(
    &[&[u8]; M],
    Panel<'_>,
    Panel<'_>,
    &PanelQ,
    &PanelQ,
    &QuantParams<'_>,
    &mut [i8],
    usize,
    usize,
);

/// The two-panel fused microkernel of `isa` for `M` rows, if it has one.
pub fn gemm_rq2<const M: usize>(isa: Isa) -> Option<GemmRq2<M>> {
    if !isa.supported() {
        return None;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => Some(x86::gemm_rq2_avx512vnni::<M>),
        _ => None,
    }
}

/// The kernels an `M`-row tile runs on, chosen once per layer call: the fused microkernel
/// when `isa` has one, else the microkernel and then the requantization row by row.
#[derive(Clone, Copy)]
struct TileFns<const M: usize> {
    fused: Option<GemmRq<M>>,
    uk: Ukernel<M>,
    rq: RequantFn,
}

impl<const M: usize> TileFns<M> {
    fn of(isa: Isa) -> Self {
        TileFns {
            fused: gemm_rq::<M>(isa),
            uk: ukernel::<M>(isa),
            rq: requantize(isa),
        }
    }

    /// `M` rows times one panel, requantized, row `i` written to `y[base + i·stride..]`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        rows: &[&[u8]; M],
        panel: Panel<'_>,
        pq: &PanelQ,
        q: &QuantParams<'_>,
        y: &mut [i8],
        base: usize,
        stride: usize,
    ) {
        match self.fused {
            Some(f) => f(rows, panel, pq, q, y, base, stride),
            None => {
                for (i, a) in (self.uk)(rows, panel).iter().enumerate() {
                    (self.rq)(a, pq, q, &mut y[base + i * stride..][..panel.nr]);
                }
            }
        }
    }
}

/// Per-panel requantization constants.
#[derive(Clone, Copy)]
pub struct PanelQ {
    /// Bias added to the accumulator.
    pub bias: [i32; NR],
    /// Q0.31 multipliers.
    pub mult: [i32; NR],
    /// Shifts (positive = left), as TFLite's.
    pub shift: [i32; NR],
}

impl PanelQ {
    /// All zeros (a placeholder before [`PanelQ::new`]).
    pub const ZERO: PanelQ = PanelQ {
        bias: [0; NR],
        mult: [0; NR],
        shift: [0; NR],
    };

    /// Constants of channels `c0..c0 + nr`.
    pub fn new(q: &QuantParams<'_>, bias: Option<&[i32]>, c0: usize, nr: usize) -> PanelQ {
        let mut pq = PanelQ::ZERO;
        pq.fill(q, bias, c0, nr);
        pq
    }

    /// Sets these constants to those of channels `c0..c0 + nr` (in place: no 192-byte copy).
    #[inline(never)]
    pub fn fill(&mut self, q: &QuantParams<'_>, bias: Option<&[i32]>, c0: usize, nr: usize) {
        let nr = nr.min(NR);
        self.bias = [0; NR];
        if let Some(b) = bias {
            self.bias[..nr].copy_from_slice(&b[c0..c0 + nr]);
        }
        if q.multiplier.len() == 1 {
            self.mult = [q.multiplier.get(0); NR];
            self.shift = [q.shift_of(0); NR];
        } else {
            self.mult = [0; NR];
            self.shift = [0; NR];
            for i in 0..nr {
                self.mult[i] = q.multiplier.get(c0 + i);
                self.shift[i] = q.shift_of(c0 + i);
            }
        }
    }
}

/// The requantization constants of a layer's panels: the first [`PQ_CACHE`] prepared once per
/// call (each when first asked for), the others per use in one spare slot (handed out by
/// reference: no copy per tile).
struct PanelQs<'a> {
    cache: [PanelQ; PQ_CACHE],
    ready: usize,
    spare: PanelQ,
    q: &'a QuantParams<'a>,
    bias: Option<&'a [i32]>,
    co: usize,
}

impl<'a> PanelQs<'a> {
    fn new(q: &'a QuantParams<'a>, bias: Option<&'a [i32]>, co: usize) -> Self {
        PanelQs {
            cache: [PanelQ::ZERO; PQ_CACHE],
            ready: 0,
            spare: PanelQ::ZERO,
            q,
            bias,
            co,
        }
    }

    fn nr(&self, p: usize) -> usize {
        (self.co - p * NR).min(NR)
    }

    /// Panel `p`'s constants.
    #[inline]
    fn get(&mut self, p: usize) -> &PanelQ {
        if p < PQ_CACHE {
            while self.ready <= p {
                let (r, nr) = (self.ready, self.nr(self.ready));
                self.cache[r].fill(self.q, self.bias, r * NR, nr);
                self.ready += 1;
            }
            return &self.cache[p];
        }
        let nr = self.nr(p);
        self.spare.fill(self.q, self.bias, p * NR, nr);
        &self.spare
    }

    /// Panels `p` and `p + 1`'s constants, when both are cached (`p + 1 < PQ_CACHE`).
    fn two(&mut self, p: usize) -> Option<(&PanelQ, &PanelQ)> {
        if p + 1 >= PQ_CACHE {
            return None;
        }
        self.get(p + 1);
        Some((&self.cache[p], &self.cache[p + 1]))
    }

    /// The constants of panels `0..panels` (`panels <= PQ_CACHE`).
    fn first(&mut self, panels: usize) -> &[PanelQ] {
        if panels > 0 {
            self.get(panels - 1);
        }
        &self.cache[..panels]
    }
}

/// Requantizes `nr` accumulators (plus bias) into `out[..nr]`, bit-exact with
/// [`QuantParams::requantize`].
pub type RequantFn = fn(&[i32; NR], &PanelQ, &QuantParams<'_>, &mut [i8]);

/// The portable requantization.
pub fn requantize_portable(acc: &[i32; NR], pq: &PanelQ, q: &QuantParams<'_>, out: &mut [i8]) {
    for (i, o) in out.iter_mut().enumerate().take(NR) {
        *o = q.requantize_with(acc[i].wrapping_add(pq.bias[i]), pq.mult[i], pq.shift[i]);
    }
}

/// The vector requantization of `isa`, if it has one.
pub fn requantize_vector(isa: Isa) -> Option<RequantFn> {
    if !isa.supported() {
        return None;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => Some(x86::requantize_avx512),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(x86::requantize_avx2),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => Some(neon::requantize),
        _ => None,
    }
}

/// The requantization of `isa`: vector where it has one, else portable.
pub fn requantize(isa: Isa) -> RequantFn {
    requantize_vector(isa).unwrap_or(requantize_portable)
}

/// Element-wise int8 add/sub of two same-shape tensors, bit-exact with
/// [`add_one`](super::reference_i8::add_one): on the vector path of `isa`, or from per-input
/// tables where it has none (`rq::add_tables`); `false` for short tensors there (the caller
/// takes the scalar loop).
pub fn add_same_shape(
    a: &[i8],
    b: &[i8],
    y: &mut [i8],
    p: &super::reference_i8::AddParams,
    isa: Isa,
) -> bool {
    if !isa.supported() {
        return false;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => {
            x86::add_avx512(a, b, y, p);
            true
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            x86::add_avx2(a, b, y, p);
            true
        }
        _ => rq::add_tables(a, b, y, p),
    }
}

/// A depthwise microkernel: channels `c0..c0 + n` (`n` = 16 or 8) of one output pixel from
/// tap-major weights `wt` (`[taps, co]`, zero point 0), `Σ_taps (x[xo + c] - zx) · wt[t·co + c]`;
/// `taps` lists `(input offset, tap index)`.
pub type DwFn = fn(&[i8], &[i8], usize, &[(usize, usize)], usize, usize, i32) -> [i32; NR];

/// The depthwise microkernel of `isa`, if it has one (else the caller's portable loop).
pub fn dwconv16(isa: Isa) -> Option<DwFn> {
    if !isa.supported() {
        return None;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => Some(x86::dwconv_avx2),
        _ => None,
    }
}

/// The whole-layer depthwise microkernel (`x86::depthwise_avx512`): `(layer, y, px0, the
/// constants of every panel)`.
pub type DwLayerFn = fn(&Conv<'_, Option<&[i32]>>, &mut [i8], usize, &[PanelQ]);

/// The whole-layer depthwise microkernel of `isa` and the most panels it takes, if it has one.
pub fn depthwise_layer(isa: Isa) -> Option<(DwLayerFn, usize)> {
    if !isa.supported() {
        return None;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => Some((x86::depthwise_avx512, x86::DW_PANELS.min(PQ_CACHE))),
        _ => None,
    }
}

/// Walks the output pixels `px0..px0 + total` of a depthwise conv in runs: with `runs`, the
/// interior pixels of an output row (every window inside the input horizontally) form one run,
/// the others runs of one; without, every pixel is its own run. Calls `f(i, count, taps)` with
/// the run's first pixel index (relative to `px0`), its length and its first pixel's taps
/// (`(input offset, tap index)`: each next pixel of a run reads `stride·C` further).
pub(crate) fn dw_runs(
    s: &ConvShapes,
    geo: &ConvGeom,
    px0: usize,
    total: usize,
    runs: bool,
    mut f: impl FnMut(usize, usize, &[(usize, usize)]),
) {
    let [_, h, wd, ci] = s.x;
    let [_, kh, kw, _] = s.w;
    let [_, oh, ow, _] = s.y;
    let span = (kw - 1) * geo.dilation[1];
    let ox_lo = geo.pad[1].div_ceil(geo.stride[1]);
    let ox_hi = match wd + geo.pad[1] > span && runs {
        true => ((wd + geo.pad[1] - span - 1) / geo.stride[1] + 1).min(ow),
        false => 0,
    };
    let mut taps = [(0usize, 0usize); DW_TAPS];
    let mut i = 0;
    // Pixel coordinates advance without division (a run never crosses a row).
    if total == 0 {
        return;
    }
    let (mut b, mut oy, mut ox) = (px0 / (oh * ow), px0 / ow % oh, px0 % ow);
    while i < total {
        let count = if ox >= ox_lo && ox < ox_hi {
            (ox_hi - ox).min(total - i)
        } else {
            1
        };
        let mut nt = 0;
        geo.taps((oy, ox), [h, wd], [kh, kw], |ky, kx, iy, ix| {
            taps[nt] = (((b * h + iy) * wd + ix) * ci, ky * kw + kx);
            nt += 1;
        });
        f(i, count, &taps[..nt]);
        i += count;
        ox += count;
        if ox >= ow {
            ox = 0;
            oy += 1;
            if oy == oh {
                oy = 0;
                b += 1;
            }
        }
    }
}

/// Whether a depthwise microkernel's loads stay inside its operands: channels `c0..c0 + n`
/// (`1 <= n <= 16`) of every tap, for pixels up to `last` elements past the first (`x_len`,
/// `wt_len` the input's and the tap-major weights' lengths).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn taps_fit(
    x_len: usize,
    wt_len: usize,
    co: usize,
    taps: &[(usize, usize)],
    last: usize,
    c0: usize,
    n: usize,
) -> bool {
    (1..=NR).contains(&n)
        && c0 + n <= co
        && taps
            .iter()
            .all(|&(xo, t)| xo + last + c0 + n <= x_len && t * co + c0 + n <= wt_len)
}

/// How chunks of output rows read a zero-padded copy of the input rows they need: the plan the
/// padded-row kernels share (int8 convs and depthwise on AVX-512, `x86::Padded`; f32 convs,
/// `f32gemm::conv2d_padded`). Padded row `r` of a chunk is input row `oy0·S + r - pad_top` (all
/// padding outside the input); column `j` of a padded row is input column `j - pad_left`, of
/// the `pw` columns an output row reads: `left` of padding, then `inside` from the input.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct PadRows {
    h: usize,
    wd: usize,
    c: usize,
    oh: usize,
    /// Output columns.
    pub(crate) ow: usize,
    /// Vertical stride.
    pub(crate) sy: usize,
    pt: usize,
    /// Kernel rows.
    pub(crate) kh: usize,
    /// Columns of a padded row.
    pub(crate) pw: usize,
    /// Columns of padding before the input's.
    pub(crate) left: usize,
    /// Columns from the input.
    pub(crate) inside: usize,
}

/// One chunk of [`PadRows::chunks`]: output rows from `oy0` of image `b`, its output pixels
/// `first..stop` (absolute indices), reading `rows` padded rows.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct PadChunk {
    pub(crate) b: usize,
    pub(crate) oy0: usize,
    pub(crate) first: usize,
    pub(crate) stop: usize,
    pub(crate) rows: usize,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl PadRows {
    /// The plan of a layer with shapes `s` (window `KH × KW` from `s.w`) and window `geo`;
    /// `None` for an empty output or a zero stride.
    pub(crate) fn new(s: &ConvShapes, geo: &ConvGeom) -> Option<PadRows> {
        let [_, h, wd, c] = s.x;
        let [_, kh, kw, _] = s.w;
        let [_, oh, ow, _] = s.y;
        let [sy, sx] = geo.stride;
        if oh == 0 || ow == 0 || sy == 0 || sx == 0 || kh == 0 || kw == 0 {
            return None;
        }
        let (pw, pl) = ((ow - 1) * sx + kw, geo.pad[1]);
        Some(PadRows {
            h,
            wd,
            c,
            oh,
            ow,
            sy,
            pt: geo.pad[0],
            kh,
            pw,
            left: pl.min(pw),
            inside: wd.min(pw.saturating_sub(pl)),
        })
    }

    /// Elements of one padded row.
    pub(crate) fn row_len(&self) -> usize {
        self.pw * self.c
    }

    /// Walks the output pixels `px0..px0 + total` in chunks of whole output rows (but the first
    /// and last) of one image whose padded rows number at most `cap_rows` (at least `kh`).
    pub(crate) fn chunks(
        &self,
        cap_rows: usize,
        px0: usize,
        total: usize,
        mut f: impl FnMut(&PadChunk),
    ) {
        assert!(
            cap_rows >= self.kh,
            "a buffer smaller than one output row's input rows"
        );
        let per = (cap_rows - self.kh) / self.sy + 1;
        let (end, mut first) = (px0 + total, px0);
        while first < end {
            let (b, oy0) = (first / (self.oh * self.ow), first / self.ow % self.oh);
            let oy1 = (oy0 + per).min(self.oh);
            let stop = end.min((b * self.oh + oy1) * self.ow);
            let rows = (oy1 - oy0 - 1) * self.sy + self.kh;
            f(&PadChunk {
                b,
                oy0,
                first,
                stop,
                rows,
            });
            first = stop;
        }
    }

    /// Where padded row `r` of `ch` takes its `inside·C` input elements from (the index in the
    /// NHWC input of input column 0), or `None` for a row of padding.
    pub(crate) fn source(&self, ch: &PadChunk, r: usize) -> Option<usize> {
        let iy = (ch.oy0 * self.sy + r).checked_sub(self.pt)?;
        (iy < self.h).then(|| (ch.b * self.h + iy) * self.wd * self.c)
    }
}

/// Largest depthwise kernel window (taps) the tap list holds; larger run the reference.
pub(crate) const DW_TAPS: usize = 64;

/// Channels per accumulator chunk of the portable depthwise loop.
const DW_CHUNK: usize = 64;

/// int8 depthwise conv (one output channel per input channel) over tap-major weights
/// (`[KH·KW, C]`, the packed depthwise layout) and a natural bias.
#[inline(never)]
pub fn depthwise(c: &Conv<'_, Option<&[i32]>>, y: &mut [i8], isa: Isa) {
    depthwise_part(c, y, isa, 0)
}

/// [`depthwise`] for the output pixels `px0..px0 + y.len() / C` only, written to `y`.
#[inline(never)]
pub fn depthwise_part(c: &Conv<'_, Option<&[i32]>>, y: &mut [i8], isa: Isa, px0: usize) {
    let Conv {
        x,
        w: wt,
        bias,
        s,
        geo,
        q,
    } = *c;
    let [co, kh, kw, _] = s.w;
    let total = y.len() / co.max(1);
    if kh * kw > DW_TAPS {
        // Out of the tap list's reach: the specification, pixel by pixel.
        for (i, out) in y.chunks_exact_mut(co.max(1)).enumerate() {
            reference_dw_pixel(c, out, px0 + i);
        }
        return;
    }
    let mut pqs = PanelQs::new(q, bias, co);
    let panels = co.div_ceil(NR);
    if let Some((f, most)) = depthwise_layer(isa) {
        if q.weight_zp == 0 && panels <= most {
            return f(c, y, px0, pqs.first(panels));
        }
    }
    #[cfg(kiln_dsp)]
    if isa == Isa::CortexMDsp && isa.supported() && dsp::depthwise(c, y, px0) {
        return;
    }
    let dw = dwconv16(isa).filter(|_| q.weight_zp == 0);
    let rq = requantize(isa);
    // The vector requantization for the portable loop's chunks too (NEON), 16 channels (one
    // panel) at a time: it adds the panel's bias itself.
    let vrq = requantize_vector(isa);
    dw_runs(&s, &geo, px0, total, false, |i, count, taps| {
        let out = &mut y[i * co..(i + count) * co];
        // One pixel (`count == 1`): 16- and 8-channel blocks on the vector kernel, then the
        // rest in chunks of channels (taps outside, contiguous channels inside).
        let mut c0 = 0;
        if let Some(f) = dw {
            while co - c0 >= 8 {
                let nb = if co - c0 >= NR { NR } else { 8 };
                let a = f(x, wt, co, taps, c0, nb, q.input_zp);
                // Blocks start at multiples of 16 (an 8-block only after the last 16-block):
                // each starts its panel's constants.
                rq(&a, pqs.get(c0 / NR), q, &mut out[c0..][..nb]);
                c0 += nb;
            }
        }
        while c0 < co {
            let nc = (co - c0).min(DW_CHUNK);
            let mut acc = [0i32; DW_CHUNK];
            if let (Some(bb), None) = (bias, vrq) {
                acc[..nc].copy_from_slice(&bb[c0..c0 + nc]);
            }
            for &(xo, t) in taps {
                let (xs, ws) = (&x[xo + c0..][..nc], &wt[t * co + c0..][..nc]);
                for ((a, &xv), &wv) in acc.iter_mut().zip(xs).zip(ws) {
                    *a = a.wrapping_add((xv as i32 - q.input_zp) * (wv as i32 - q.weight_zp));
                }
            }
            match vrq {
                // Chunks start at multiples of 64 (after whole 16-channel blocks): each block
                // is one panel.
                Some(f) if c0.is_multiple_of(NR) => {
                    for b0 in (0..nc).step_by(NR) {
                        let a: &[i32; NR] = acc[b0..b0 + NR].try_into().expect("16 lanes");
                        let n = (nc - b0).min(NR);
                        f(a, pqs.get((c0 + b0) / NR), q, &mut out[c0 + b0..][..n]);
                    }
                }
                _ => {
                    if let (Some(bb), Some(_)) = (bias, vrq) {
                        for (a, &b) in acc.iter_mut().zip(&bb[c0..c0 + nc]) {
                            *a = a.wrapping_add(b);
                        }
                    }
                    for (k, o) in out[c0..c0 + nc].iter_mut().enumerate() {
                        *o = q.requantize(acc[k], c0 + k);
                    }
                }
            }
            c0 += nc;
        }
    });
}

/// The tap-major depthwise conv, one output at a time: the specification of [`depthwise`].
pub fn reference_depthwise(c: &Conv<'_, Option<&[i32]>>, y: &mut [i8]) {
    for (i, out) in y.chunks_exact_mut(c.s.w[0].max(1)).enumerate() {
        reference_dw_pixel(c, out, i);
    }
}

/// One output pixel of the tap-major depthwise conv, one scalar output at a time.
fn reference_dw_pixel(c: &Conv<'_, Option<&[i32]>>, out: &mut [i8], pix: usize) {
    let Conv {
        x,
        w: wt,
        bias,
        s,
        geo,
        q,
    } = *c;
    let (s, geo) = (&s, &geo);
    let [_, h, wd, ci] = s.x;
    let [co, kh, kw, _] = s.w;
    let [_, oh, ow, _] = s.y;
    let (b, oy, ox) = (pix / (oh * ow), pix / ow % oh, pix % ow);
    for (c, o) in out.iter_mut().enumerate() {
        let mut acc = bias.map_or(0, |bb| bb[c]);
        geo.taps((oy, ox), [h, wd], [kh, kw], |ky, kx, iy, ix| {
            let xv = x[((b * h + iy) * wd + ix) * ci + c] as i32 - q.input_zp;
            let wv = wt[(ky * kw + kx) * co + c] as i32 - q.weight_zp;
            acc = acc.wrapping_add(xv * wv);
        });
        *o = q.requantize(acc, c);
    }
}

/// Transposes natural depthwise weights `[C, taps]` into the tap-major `[taps, C]` layout.
pub fn pack_depthwise<T: Copy>(src: &[T], c: usize, taps: usize, dst: &mut [T]) {
    for ch in 0..c {
        for t in 0..taps {
            dst[t * c + ch] = src[ch * taps + t];
        }
    }
}

/// int8 dense over packed weights and a folded bias: `y[r, c]` for each row of `x` (`[.., k]`).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub fn dense(
    x: &[i8],
    k: usize,
    w: &[i8],
    m: usize,
    bias: &[i32],
    y: &mut [i8],
    q: &QuantParams<'_>,
    isa: Isa,
) {
    // Cortex-M DSP builds carry no generic tile driver (flash): what the DSP kernel leaves
    // (rows past its buffer, unusual requantization) and the portable ISA take the reference.
    #[cfg(kiln_dsp)]
    {
        if !(isa == Isa::CortexMDsp && isa.supported() && dsp::dense(x, k, w, m, bias, y, q)) {
            reference_dense(x, k, w, m, bias, y, q);
        }
        return;
    }
    #[allow(unreachable_code)]
    let kp = padded(k);
    if k == 0 || kp > PATCH_BYTES {
        return reference_dense(x, k, w, m, bias, y, q);
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni && x86::dense_row(x, k, w, m, bias, y, q) {
        return;
    }
    // A small row buffer when it does (zeroing 16 KiB per call cost small layers a third).
    if MR * kp <= SMALL_PATCH {
        dense_buf::<SMALL_PATCH>(x, k, w, m, bias, y, q, isa)
    } else {
        dense_buf::<PATCH_BYTES>(x, k, w, m, bias, y, q, isa)
    }
}

#[allow(clippy::too_many_arguments)]
fn dense_buf<const B: usize>(
    x: &[i8],
    k: usize,
    w: &[i8],
    m: usize,
    bias: &[i32],
    y: &mut [i8],
    q: &QuantParams<'_>,
    isa: Isa,
) {
    let rows = x.len() / k.max(1);
    let kp = padded(k);
    let four = MULTI_ROW && MR * kp <= B;
    let mut tails = [[0i8; NR * KR]; TAIL_CACHE];
    tail_groups(w, m, k, isa, &mut tails);
    let (t1, t4) = (TileFns::<1>::of(isa), TileFns::<MR>::of(isa));
    let mut patch = [0u8; B];
    let mut pq = PanelQ::ZERO;
    let mut r = 0;
    while r < rows {
        let n = if four && rows - r >= MR { MR } else { 1 };
        for (i, dst) in patch.chunks_exact_mut(kp).take(n).enumerate() {
            flip_copy(&mut dst[..k], &x[(r + i) * k..][..k]);
            dst[k..].fill(0);
        }
        for p in 0..m.div_ceil(NR) {
            let panel = with_tail(Panel::of(w, m, k, p), &tails, p);
            let c0 = p * NR;
            pq.fill(q, Some(bias), c0, panel.nr);
            let row = |i: usize| &patch[i * kp..][..kp];
            if n == MR {
                t4.run(&core::array::from_fn(row), panel, &pq, q, y, r * m + c0, m);
            } else {
                t1.run(&[row(0)], panel, &pq, q, y, r * m + c0, m);
            }
        }
        r += n;
    }
}

/// The packed dense, one scalar output at a time: the specification of [`dense`].
pub fn reference_dense(
    x: &[i8],
    k: usize,
    w: &[i8],
    m: usize,
    bias: &[i32],
    y: &mut [i8],
    q: &QuantParams<'_>,
) {
    for (xr, yr) in x.chunks_exact(k.max(1)).zip(y.chunks_exact_mut(m)) {
        for (c, o) in yr.iter_mut().enumerate() {
            let mut acc = bias[c];
            for (kk, &xv) in xr.iter().enumerate().take(k) {
                let wv = w[packed_offset(m, k, c, kk)];
                acc = acc.wrapping_add(((xv as u8 ^ 0x80) as i32) * wv as i32);
            }
            *o = q.requantize(acc, c);
        }
    }
}

/// One conv layer's operands: input, packed weights, bias, shapes, window and requantization
/// (`B` is `&[i32]` for the GEMM family, whose folded bias is required, `Option<&[i32]>` for
/// depthwise).
#[derive(Clone, Copy)]
pub struct Conv<'a, B> {
    /// Input, NHWC.
    pub x: &'a [i8],
    /// Packed weights (`pack16x4`, or tap-major for depthwise).
    pub w: &'a [i8],
    /// Bias.
    pub bias: B,
    /// Shapes.
    pub s: ConvShapes,
    /// Window.
    pub geo: ConvGeom,
    /// Requantization.
    pub q: &'a QuantParams<'a>,
}

impl<'a, B> Conv<'a, B> {
    /// The same layer with another bias.
    pub fn with_bias<C>(self, bias: C) -> Conv<'a, C> {
        Conv {
            x: self.x,
            w: self.w,
            bias,
            s: self.s,
            geo: self.geo,
            q: self.q,
        }
    }
}

/// Shapes of a packed conv: input NHWC, weights OHWI (packed as `[O, KH·KW·C]`), output NHWC.
#[derive(Clone, Copy, Debug)]
pub struct ConvShapes {
    /// Input `[N, H, W, C]`.
    pub x: [usize; 4],
    /// Weights `[O, KH, KW, C]`.
    pub w: [usize; 4],
    /// Output `[N, OH, OW, O]`.
    pub y: [usize; 4],
}

/// The input of output pixel `pix` (`(b, oy, ox)`): the window itself when it is one
/// contiguous run of `x`, else gathered into `patch` (padding = `zx`).
#[inline]
pub(crate) fn window<'a, T: Copy>(
    x: &'a [T],
    s: &ConvShapes,
    geo: &ConvGeom,
    pix: usize,
    zx: T,
    patch: &'a mut [T],
) -> &'a [T] {
    if let Some(at) = contiguous(s, geo, pix) {
        return &x[at..][..s.w[1] * s.w[2] * s.w[3]];
    }
    gather(
        x,
        s,
        geo,
        pix,
        zx,
        |d: &mut [T], v: &[T]| d.copy_from_slice(v),
        patch,
    )
}

/// The coordinates `(batch, row, column)` of an output pixel, advanced one pixel at a time
/// without division.
#[derive(Clone, Copy)]
pub(crate) struct Cursor {
    b: usize,
    oy: usize,
    ox: usize,
}

impl Cursor {
    /// At output pixel `px`.
    pub(crate) fn at(s: &ConvShapes, px: usize) -> Cursor {
        let [_, oh, ow, _] = s.y;
        Cursor {
            b: px / (oh * ow),
            oy: px / ow % oh,
            ox: px % ow,
        }
    }

    /// Where this pixel's window starts in the input and how far apart its `KH` rows are
    /// (elements), when it lies wholly inside the input and each of its rows is one run (no
    /// dilation along a row); else `None` (the window reaches into the padding).
    #[inline]
    pub(crate) fn inside(&self, s: &ConvShapes, geo: &ConvGeom) -> Option<(usize, usize)> {
        let [_, h, wd, ci] = s.x;
        let [_, kh, kw, _] = s.w;
        let iy0 = (self.oy * geo.stride[0]) as isize - geo.pad[0] as isize;
        let ix0 = (self.ox * geo.stride[1]) as isize - geo.pad[1] as isize;
        let (dy, dx) = ((kh - 1) * geo.dilation[0], (kw - 1) * geo.dilation[1]);
        let inside = iy0 >= 0
            && iy0 as usize + dy < h
            && ix0 >= 0
            && ix0 as usize + dx < wd
            && (kw == 1 || geo.dilation[1] == 1);
        inside.then(|| {
            let at = ((self.b * h + iy0 as usize) * wd + ix0 as usize) * ci;
            (at, geo.dilation[0] * wd * ci)
        })
    }

    /// To the next output pixel.
    #[inline]
    pub(crate) fn advance(&mut self, s: &ConvShapes) {
        let [_, oh, ow, _] = s.y;
        self.ox += 1;
        if self.ox == ow {
            self.ox = 0;
            self.oy += 1;
            if self.oy == oh {
                self.oy = 0;
                self.b += 1;
            }
        }
    }
}

/// Gathers the windows of output pixels `px..px + m` as unsigned bytes (`x ^ 0x80`, what the
/// microkernels read) into rows `0..m` of `patch`, row `i` at `i·kp` (padding = the input zero
/// point, flipped too).
///
/// Only the first `K` bytes of each row are written: the caller zeroes `patch` once, so the
/// columns `K..kp` (the rows' padding to a multiple of 4) stay 0. Pixel coordinates advance
/// without division; windows wholly inside the input (most) are `KH` straight runs.
#[allow(clippy::too_many_arguments)]
fn gather_tile_u8(
    x: &[i8],
    s: &ConvShapes,
    geo: &ConvGeom,
    px: usize,
    m: usize,
    zx: i8,
    patch: &mut [u8],
    kp: usize,
) {
    let [_, _, _, ci] = s.x;
    let [_, kh, kw, _] = s.w;
    let run = kw * ci;
    if kh == 1 && kw == 1 && kp == ci && geo.stride == [1, 1] && geo.pad == [0; 4] {
        // A 1×1 conv over the whole input: the `m` windows are `m` consecutive rows of `x`.
        return flip_copy(&mut patch[..m * ci], &x[px * ci..][..m * ci]);
    }
    let mut cur = Cursor::at(s, px);
    for (i, row) in patch.chunks_exact_mut(kp).take(m).enumerate() {
        match cur.inside(s, geo) {
            Some((at, step)) if run == 4 => {
                // Rows of one 4-byte group (a one-channel first conv four wide): flipped in
                // place of a call each.
                for (ky, dst) in row[..kh * 4].chunks_exact_mut(4).enumerate() {
                    let at = at + ky * step;
                    let v: [u8; 4] = bytemuck::cast_slice::<i8, u8>(&x[at..at + 4])
                        .try_into()
                        .unwrap();
                    dst.copy_from_slice(&(u32::from_le_bytes(v) ^ 0x8080_8080).to_le_bytes());
                }
            }
            Some((at, step)) => {
                for (ky, dst) in row[..kh * run].chunks_exact_mut(run).enumerate() {
                    flip_copy(dst, &x[at + ky * step..][..run]);
                }
            }
            None => {
                gather(x, s, geo, px + i, zx as u8 ^ 0x80, flip_copy, row);
            }
        }
        cur.advance(s);
    }
}

/// Where the window of output pixel `pix` starts in `x` when it is one contiguous run (one
/// kernel row, no dilation gaps, no padding).
#[inline]
fn contiguous(s: &ConvShapes, geo: &ConvGeom, pix: usize) -> Option<usize> {
    let [_, h, wd, ci] = s.x;
    let [_, kh, kw, _] = s.w;
    let [_, oh, ow, _] = s.y;
    let (b, oy, ox) = (pix / (oh * ow), pix / ow % oh, pix % ow);
    let iy0 = (oy * geo.stride[0]) as isize - geo.pad[0] as isize;
    let ix0 = (ox * geo.stride[1]) as isize - geo.pad[1] as isize;
    let ix_last = ix0 + ((kw - 1) * geo.dilation[1]) as isize;
    let inside = iy0 >= 0 && (iy0 as usize) < h && ix0 >= 0 && (ix_last as usize) < wd;
    (kh == 1 && (kw == 1 || geo.dilation[1] == 1) && inside)
        .then(|| ((b * h + iy0 as usize) * wd + ix0 as usize) * ci)
}

/// `dst[i] = src[i] ^ 0x80` (int8 to the unsigned bytes the microkernels read): 8 bytes at a
/// time, the last 8 (or 4) overlapping the ones before, so short runs take no byte loop.
#[inline(never)]
fn flip_copy(dst: &mut [u8], src: &[i8]) {
    let n = dst.len();
    assert_eq!(src.len(), n, "flip_copy lengths differ");
    let src: &[u8] = bytemuck::cast_slice(src);
    let flip8 = |d: &mut [u8], s: &[u8]| {
        let v = u64::from_le_bytes(s[..8].try_into().unwrap()) ^ 0x8080_8080_8080_8080;
        d[..8].copy_from_slice(&v.to_le_bytes());
    };
    // 16 bytes at a time where that is one vector register (the fixed-size loop vectorizes).
    #[cfg(target_pointer_width = "64")]
    if n >= 16 {
        let flip16 = |d: &mut [u8], s: &[u8]| {
            let (d, s): (&mut [u8; 16], &[u8; 16]) = (
                (&mut d[..16]).try_into().unwrap(),
                s[..16].try_into().unwrap(),
            );
            for (d, s) in d.iter_mut().zip(s) {
                *d = s ^ 0x80;
            }
        };
        let mut i = 0;
        while i + 16 <= n {
            flip16(&mut dst[i..], &src[i..]);
            i += 16;
        }
        if i < n {
            flip16(&mut dst[n - 16..], &src[n - 16..]);
        }
        return;
    }
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            flip8(&mut dst[i..], &src[i..]);
            i += 8;
        }
        if i < n {
            flip8(&mut dst[n - 8..], &src[n - 8..]);
        }
    } else if n >= 4 {
        let flip4 = |d: &mut [u8], s: &[u8]| {
            let v = u32::from_le_bytes(s[..4].try_into().unwrap()) ^ 0x8080_8080;
            d[..4].copy_from_slice(&v.to_le_bytes());
        };
        flip4(&mut dst[..4], &src[..4]);
        flip4(&mut dst[n - 4..], &src[n - 4..]);
    } else {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v ^ 0x80;
        }
    }
}

/// Gathers the window of output pixel `pix` into `patch`, each run of the input through `copy`.
#[inline]
pub(crate) fn gather<'a, S: Copy, T: Copy>(
    x: &[S],
    s: &ConvShapes,
    geo: &ConvGeom,
    pix: usize,
    pad: T,
    copy: impl Fn(&mut [T], &[S]),
    patch: &'a mut [T],
) -> &'a [T] {
    let [_, h, wd, ci] = s.x;
    let [_, kh, kw, _] = s.w;
    let [_, oh, ow, _] = s.y;
    let (b, oy, ox) = (pix / (oh * ow), pix / ow % oh, pix % ow);
    let iy0 = (oy * geo.stride[0]) as isize - geo.pad[0] as isize;
    let ix0 = (ox * geo.stride[1]) as isize - geo.pad[1] as isize;
    let patch = &mut patch[..kh * kw * ci];
    // Padding everywhere first (one fill, not one per piece), then the inside parts copied.
    patch.fill(pad);
    for ky in 0..kh {
        let iy = iy0 + (ky * geo.dilation[0]) as isize;
        if iy < 0 || iy as usize >= h {
            continue;
        }
        let row = &mut patch[ky * kw * ci..][..kw * ci];
        let xrow = &x[(b * h + iy as usize) * wd * ci..][..wd * ci];
        if geo.dilation[1] == 1 {
            // Columns ix0..ix0 + kw: the inside ones are one run of the input row.
            let lo = (-ix0).clamp(0, kw as isize) as usize;
            let hi = (wd as isize - ix0).clamp(lo as isize, kw as isize) as usize;
            if hi > lo {
                let at = (ix0 + lo as isize) as usize * ci;
                copy(&mut row[lo * ci..hi * ci], &xrow[at..][..(hi - lo) * ci]);
            }
            continue;
        }
        for kx in 0..kw {
            let ix = ix0 + (kx * geo.dilation[1]) as isize;
            if ix >= 0 && (ix as usize) < wd {
                copy(&mut row[kx * ci..][..ci], &xrow[ix as usize * ci..][..ci]);
            }
        }
    }
    patch
}

/// int8 conv (`groups == 1`) over packed weights and a folded bias.
#[inline(never)]
pub fn conv2d(c: &Conv<'_, &[i32]>, y: &mut [i8], isa: Isa) {
    conv2d_part(c, y, isa, 0)
}

/// [`conv2d`] for the output pixels `px0..px0 + y.len() / O` only, written to `y` (one part of
/// a layer split over threads; every pixel is computed as in the whole layer).
#[inline(never)]
pub fn conv2d_part(c: &Conv<'_, &[i32]>, y: &mut [i8], isa: Isa, px0: usize) {
    let [_, kh, kw, ci] = c.s.w;
    let k = kh * kw * ci;
    let kp = padded(k);
    if k == 0 || kp > PATCH_BYTES {
        return reference_part(c, y, px0);
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni && x86::conv_rows(c, y, px0) {
        return;
    }
    if conv2d_segments(c, y, isa, px0) {
        return;
    }
    // As in `dense`: no generic tile driver in Cortex-M DSP builds.
    #[cfg(kiln_dsp)]
    {
        if !(isa == Isa::CortexMDsp && isa.supported() && dsp::conv2d(c, y, px0)) {
            reference_part(c, y, px0);
        }
        return;
    }
    #[allow(unreachable_code)]
    // The smallest patch that holds a full tile of rows: the patch is zeroed per call (a
    // 16 KiB one took 3% of the keyword spotter's time).
    if PATCH_BYTES > SMALL_PATCH && MR8 * kp <= SMALL_PATCH {
        return conv2d_buf::<SMALL_PATCH>(c, y, isa, px0);
    }
    conv2d_buf::<PATCH_BYTES>(c, y, isa, px0)
}

/// Input bytes a conv may copy (flipped) onto the stack to read its windows in place
/// ([`conv2d_segments`]); none on 32-bit targets.
#[cfg(target_pointer_width = "64")]
const FLIP_BYTES: usize = 65536;
#[cfg(not(target_pointer_width = "64"))]
const FLIP_BYTES: usize = 0;

/// Tallest kernel [`conv2d_segments`] takes.
const SEG_KH: usize = 16;
/// Largest repacked weights (bytes) [`conv2d_segments`] builds for kernel rows that are not
/// whole 4-byte groups (first convs: few input channels, so few weights).
pub(crate) const SEG_WEIGHTS: usize = 4096;
/// Bytes of border windows [`conv2d_segments`] gathers per tile (so the largest window it
/// takes is an eighth of this).
const SEG_TILE: usize = 16384;

/// [`conv2d_part`] reading windows in place, where the ISA has a segmented kernel
/// ([`igemm_rq`]), the kernel is taller than one row with no dilation along a row, and the
/// input fits [`FLIP_BYTES`]: the input
/// is flipped to unsigned bytes once, each window inside it is read as its `KH` rows where
/// they lie, and only windows that reach into the padding are gathered. Returns false
/// (writing nothing) otherwise.
fn conv2d_segments(c: &Conv<'_, &[i32]>, y: &mut [i8], isa: Isa, px0: usize) -> bool {
    if FLIP_BYTES == 0 {
        // (No segmented kernel here: keep the code out of microcontroller flash.)
        return false;
    }
    // The smallest buffer that holds the input and a tile of border windows (it is zeroed
    // per call).
    let [_, kh, kw, ci] = c.s.w;
    let tile = MR8 * kh * kw * ci;
    if c.x.len() <= FLIP_BYTES / 4 && tile <= SEG_TILE / 4 {
        conv2d_segments_buf::<{ FLIP_BYTES / 4 + SEG_TILE / 4 }>(c, y, isa, px0)
    } else {
        conv2d_segments_buf::<{ FLIP_BYTES + SEG_TILE }>(c, y, isa, px0)
    }
}

/// The packed weights of a conv whose kernel rows are `run` bytes read as `runp` (`run`
/// rounded up to whole 4-byte groups): `w` itself when they are equal, else repacked into `buf`
/// with zeros for the `runp - run` bytes past each kernel row, which then read the next input
/// bytes to no effect. The caller checks that `co·kh·runp` fits `buf`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn repack_rows<'a>(
    w: &'a [i8],
    co: usize,
    kh: usize,
    run: usize,
    runp: usize,
    buf: &'a mut [i8; SEG_WEIGHTS],
) -> &'a [i8] {
    if runp == run {
        return w;
    }
    let (k, kq) = (kh * run, kh * runp);
    let wq = &mut buf[..co * kq];
    for ch in 0..co {
        for ky in 0..kh {
            for j in 0..run {
                wq[packed_offset(co, kq, ch, ky * runp + j)] =
                    w[packed_offset(co, k, ch, ky * run + j)];
            }
        }
    }
    wq
}

/// Whether a conv is pointwise (1x1, stride 1, no padding): output pixel `p` reads input pixel
/// `p`'s channels.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn pointwise(s: &ConvShapes, geo: &ConvGeom) -> bool {
    s.w[1..3] == [1, 1] && geo.stride == [1, 1] && geo.pad == [0; 4] && s.y[..3] == s.x[..3]
}

/// [`conv2d_segments`] with a `B`-byte buffer: the flipped input, then the patch.
fn conv2d_segments_buf<const B: usize>(
    c: &Conv<'_, &[i32]>,
    y: &mut [i8],
    isa: Isa,
    px0: usize,
) -> bool {
    let Conv {
        x,
        w,
        bias,
        s,
        geo,
        q,
    } = *c;
    let [_, _, _, ci] = s.x;
    let [co, kh, kw, _] = s.w;
    let run = kw * ci;
    let k = kh * run;
    // Each kernel row is read as `runp` bytes, a whole number of 4-byte groups: when `run`
    // is not, the weights are repacked (per call, on the stack) with zeros for the `runp -
    // run` bytes past each row, which then read the next input bytes to no effect.
    let runp = padded(run);
    let (Some(f8), Some(f1)) = (igemm_rq::<MR8>(isa), igemm_rq::<1>(isa)) else {
        return false;
    };
    // (A segment of one group per kernel row measured slower than the gather: keyword
    // spotting's 10x4 one-channel first conv, 11.7 -> 15.3 µs.)
    if runp < 2 * KR
        || kh == 1
        || (kw > 1 && geo.dilation[1] != 1)
        || kh > SEG_KH
        || x.len() + MR8 * k + KR > B
        || k > SEG_TILE / MR8
        || (runp != run && co * kh * runp > SEG_WEIGHTS)
    {
        return false;
    }
    let mut wq = [0i8; SEG_WEIGHTS];
    let (w, kq) = (repack_rows(w, co, kh, run, runp, &mut wq), kh * runp);
    // One buffer: the flipped input, then the patch for border windows (row `i` at
    // `x.len() + i·K`).
    let mut buf = [0u8; B];
    flip_copy(&mut buf[..x.len()], x);
    let pad = q.input_zp as u8 ^ 0x80;
    let pixels = px0 + y.len() / co.max(1);
    let panels = co.div_ceil(NR);
    let mut pqs = PanelQs::new(q, Some(bias), co);
    let mut offs = [0usize; MR8 * SEG_KH];
    let mut px = px0;
    let mut cur = Cursor::at(&s, px);
    while px < pixels {
        let m = if pixels - px >= MR8 { MR8 } else { 1 };
        for (i, o) in offs.chunks_exact_mut(kh).take(m).enumerate() {
            let (at, step) = cur.inside(&s, &geo).unwrap_or_else(|| {
                let at = x.len() + i * k;
                gather(x, &s, &geo, px + i, pad, flip_copy, &mut buf[at..at + k]);
                (at, run)
            });
            for (ky, o) in o.iter_mut().enumerate() {
                *o = at + ky * step;
            }
            cur.advance(&s);
        }
        let f = if m == MR8 { f8 } else { f1 };
        for p in 0..panels {
            let panel = Panel::of(w, co, kq, p);
            let (pq, base) = (pqs.get(p), (px - px0) * co + p * NR);
            f(&buf, &offs[..m * kh], kh, runp, panel, pq, q, y, base, co);
        }
        px += m;
    }
    true
}

/// [`conv2d_part`] with a `B`-byte patch.
fn conv2d_buf<const B: usize>(c: &Conv<'_, &[i32]>, y: &mut [i8], isa: Isa, px0: usize) {
    let Conv {
        x,
        w,
        bias,
        s,
        geo,
        q,
    } = *c;
    let (s, geo) = (&s, &geo);
    let [co, kh, kw, ci] = s.w;
    let k = kh * kw * ci;
    let pixels = px0 + y.len() / co.max(1);
    let kp = padded(k);
    // Rows per call: 8 on the fused AVX-512 kernel (8 accumulators hide `vpdpbusd`'s latency),
    // else MR, when that many windows fit the patch; else 1.
    let (t1, t4, t8) = (
        TileFns::<1>::of(isa),
        TileFns::<MR>::of(isa),
        TileFns::<MR8>::of(isa),
    );
    let eight = t8.fused.is_some() && MULTI_ROW && MR8 * kp <= B;
    // Two panels per call where the ISA has that kernel and `K` has no leftover columns.
    let two = gemm_rq2::<MR8>(isa).filter(|_| eight && k.is_multiple_of(KR));
    let four = MULTI_ROW && MR * kp <= B;
    let mut tails = [[0i8; NR * KR]; TAIL_CACHE];
    tail_groups(w, co, k, isa, &mut tails);
    let zx = q.input_zp as i8;
    let panels = co.div_ceil(NR);
    let mut pqs = PanelQs::new(q, Some(bias), co);
    let mut patch = [0u8; B];
    let mut px = px0;
    // Pixel tiles outside, panels inside: each window is gathered (and flipped) once.
    while px < pixels {
        let m = if eight && pixels - px >= MR8 {
            MR8
        } else if four && pixels - px >= MR {
            MR
        } else {
            1
        };
        gather_tile_u8(x, s, geo, px, m, zx, &mut patch, kp);
        let row = |i: usize| &patch[i * kp..][..kp];
        let mut p = 0;
        while p < panels {
            let base = (px - px0) * co + p * NR;
            if let (MR8, Some(f)) = (m, two.filter(|_| p + 1 < panels)) {
                if let Some((pq0, pq1)) = pqs.two(p) {
                    let (p0, p1) = (Panel::of(w, co, k, p), Panel::of(w, co, k, p + 1));
                    f(&core::array::from_fn(row), p0, p1, pq0, pq1, q, y, base, co);
                    p += 2;
                    continue;
                }
            }
            let panel = with_tail(Panel::of(w, co, k, p), &tails, p);
            let pq = pqs.get(p);
            match m {
                MR8 => t8.run(&core::array::from_fn(row), panel, pq, q, y, base, co),
                MR => t4.run(&core::array::from_fn(row), panel, pq, q, y, base, co),
                _ => t1.run(&[row(0)], panel, pq, q, y, base, co),
            }
            p += 1;
        }
        px += m;
    }
}

/// [`reference_conv2d`] for output pixels `px0..px0 + y.len() / O`.
fn reference_part(c: &Conv<'_, &[i32]>, y: &mut [i8], px0: usize) {
    for (i, out) in y.chunks_exact_mut(c.s.w[0].max(1)).enumerate() {
        reference_pixel(c, out, px0 + i);
    }
}

/// One output pixel of the packed conv, one scalar output at a time.
fn reference_pixel(c: &Conv<'_, &[i32]>, out: &mut [i8], pix: usize) {
    let Conv {
        x,
        w,
        bias,
        s,
        geo,
        q,
    } = *c;
    let (s, geo) = (&s, &geo);
    let [_, h, wd, ci] = s.x;
    let [co, kh, kw, _] = s.w;
    let [_, oh, ow, _] = s.y;
    let (b, oy, ox) = (pix / (oh * ow), pix / ow % oh, pix % ow);
    let k = kh * kw * ci;
    for (c, o) in out.iter_mut().enumerate() {
        let mut acc = bias[c];
        for ky in 0..kh {
            let iy = (oy * geo.stride[0] + ky * geo.dilation[0]) as isize - geo.pad[0] as isize;
            for kx in 0..kw {
                let ix = (ox * geo.stride[1] + kx * geo.dilation[1]) as isize - geo.pad[1] as isize;
                let inside = iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < wd;
                for i in 0..ci {
                    let xv = if inside {
                        x[((b * h + iy as usize) * wd + ix as usize) * ci + i]
                    } else {
                        q.input_zp as i8
                    };
                    let wv = w[packed_offset(co, k, c, (ky * kw + kx) * ci + i)];
                    acc = acc.wrapping_add((xv as u8 ^ 0x80) as i32 * wv as i32);
                }
            }
        }
        *o = q.requantize(acc, c);
    }
}

/// The packed conv, one scalar output at a time: the specification of [`conv2d`].
pub fn reference_conv2d(c: &Conv<'_, &[i32]>, y: &mut [i8]) {
    reference_part(c, y, 0)
}
