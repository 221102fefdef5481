//! Sparse int8 weights (the `sparse` weight layout): conv and dense layers whose weights are
//! mostly zero, stored as their non-zero entries only, and kernels that skip the zeros.
//!
//! # The blob
//!
//! An `[M, K]` int8 weight matrix (a conv's `[M, KH, KW, C]` with `K = KH·KW·C`, columns in
//! that order) is stored row by row as entries `(gap, value)`:
//!
//! * one byte `c`, 1 or 2: the width of the counts;
//! * `counts`: `M` unsigned integers of `c` bytes (little-endian), the entries of each row;
//! * `gaps`: one 4-bit gap per entry, two per byte (the first entry of a byte in its low
//!   nibble), `ceil(E / 2)` bytes for `E = Σ counts`: the entry's column is the previous entry's
//!   column + 1 + gap (the first entry of a row: column `gap`). A run of more than 15 zeros is
//!   bridged by an explicit zero entry;
//! * `values`: `E` int8 weights.
//!
//! then zero bytes up to the tensor's length. Every entry's column is below `K`
//! ([`validate`] checks it before any kernel runs). Per non-zero weight that is 12 bits instead
//! of 8 per weight: smaller than the dense matrix below about 66% density (the converter
//! compares the two sizes and keeps the smaller).
//!
//! # Arithmetic
//!
//! The bias stored with sparse weights is `bias - z_x·Σ_k w` (weight zero point 0), so a row's
//! accumulator is `bias' + Σ x·w` over its entries, in wrapping 32-bit arithmetic: the same
//! integer as the dense kernels' `bias + Σ (x - z_x)·w`, requantized the same way, so a sparse
//! layer's output equals the dense layer's bit for bit. A conv gathers the windows of
//! [`PIXELS`] output pixels at a time (padding taps read the input zero point, which the fold
//! cancels) into a stack patch of at most [`MAX_K`] columns, and runs each entry across them.

use super::qs8::rq::Rq;
use super::reference_i8::{QuantParams, Rounding};
use crate::ops::ConvGeom;

/// Largest `K` (window size `KH·KW·C`) a sparse conv or dense may have: the patch lives on the
/// stack.
pub const MAX_K: usize = 2304;

/// Bytes of a blob with `m` rows, counts of `width` bytes and `entries` entries in all
/// (before the padding).
pub const fn blob_len(m: usize, width: usize, entries: usize) -> usize {
    1 + width * m + entries.div_ceil(2) + entries
}

/// The width of a blob's counts (1 or 2; anything else is refused by [`validate`]).
#[inline]
fn width(blob: &[u8]) -> usize {
    blob.first().copied().unwrap_or(0) as usize
}

/// Entries of row `r` (`counts` read from the blob; the caller has validated it).
#[inline]
fn count(blob: &[u8], r: usize) -> usize {
    match width(blob) {
        1 => blob[1 + r] as usize,
        _ => u16::from_le_bytes([blob[1 + 2 * r], blob[2 + 2 * r]]) as usize,
    }
}

/// Where a valid blob's gaps and values start, and its entries.
#[inline]
fn sections(blob: &[u8], m: usize) -> (usize, usize, usize) {
    let entries: usize = (0..m).map(|r| count(blob, r)).sum();
    let gaps = 1 + width(blob) * m;
    (gaps, gaps + entries.div_ceil(2), entries)
}

/// Whether `blob` is a well-formed sparse `[m, k]` matrix: its counts, gaps and values fit, and
/// every column is below `k` (with `k <= MAX_K`).
pub fn validate(blob: &[u8], m: usize, k: usize) -> bool {
    let w = width(blob);
    if k == 0 || k > MAX_K || !(1..=2).contains(&w) || blob.len() < 1 + w * m {
        return false;
    }
    // Checked sums: on a 32-bit core crafted counts must not wrap into a small length.
    let Some(entries) = (0..m).try_fold(0usize, |a, r| a.checked_add(count(blob, r))) else {
        return false;
    };
    let need = entries
        .checked_add(entries.div_ceil(2))
        .and_then(|v| v.checked_add(1 + w * m));
    if need.is_none_or(|n| n > blob.len()) {
        return false;
    }
    let gaps = &blob[1 + w * m..];
    let mut e = 0;
    for r in 0..m {
        let mut col = 0usize;
        for _ in 0..count(blob, r) {
            col += ((gaps[e / 2] >> (4 * (e % 2))) & 15) as usize;
            if col >= k {
                return false;
            }
            col += 1;
            e += 1;
        }
    }
    true
}

/// Encodes the `[m, k]` matrix `w` as a blob (see the module docs), without padding; `None`
/// when a row has more than 65,535 entries. (The runtime only reads blobs: with `std`, for the
/// converter.)
#[cfg(feature = "std")]
pub fn encode(w: &[i8], m: usize, k: usize) -> Option<std::vec::Vec<u8>> {
    let mut counts = std::vec::Vec::with_capacity(m);
    let (mut gaps, mut values) = (std::vec::Vec::new(), std::vec::Vec::new());
    for row in w.chunks_exact(k).take(m) {
        let mut n = 0usize;
        let mut last: isize = -1;
        for (c, &v) in row.iter().enumerate() {
            if v == 0 {
                continue;
            }
            // Bridge long runs of zeros with explicit zeros.
            while c as isize - last - 1 > 15 {
                last += 16;
                gaps.push(15u8);
                values.push(0i8);
                n += 1;
            }
            gaps.push((c as isize - last - 1) as u8);
            values.push(v);
            last = c as isize;
            n += 1;
        }
        counts.push(u16::try_from(n).ok()?);
    }
    let width = if counts.iter().all(|&c| c <= 255) {
        1
    } else {
        2
    };
    let mut blob = std::vec::Vec::with_capacity(blob_len(m, width, values.len()));
    blob.push(width as u8);
    for c in counts {
        blob.extend_from_slice(&c.to_le_bytes()[..width]);
    }
    for pair in gaps.chunks(2) {
        blob.push(pair[0] | pair.get(1).map_or(0, |g| g << 4));
    }
    blob.extend(values.iter().map(|&v| v as u8));
    Some(blob)
}

/// The dense `[m, k]` matrix of a valid blob.
#[cfg(feature = "std")]
pub fn decode(blob: &[u8], m: usize, k: usize) -> std::vec::Vec<i8> {
    let mut w = std::vec![0i8; m * k];
    let (g0, v0, _) = sections(blob, m);
    let (gaps, values) = (&blob[g0..], &blob[v0..]);
    let mut e = 0;
    for r in 0..m {
        let mut col = 0usize;
        for _ in 0..count(blob, r) {
            col += ((gaps[e / 2] >> (4 * (e % 2))) & 15) as usize;
            w[r * k + col] = values[e] as i8;
            col += 1;
            e += 1;
        }
    }
    w
}

/// `y[r] = requantize(bias[r] + Σ x[col]·v)` for every row `r` of a valid `[m, k]` blob, one
/// input row `x` of `k` values.
#[inline]
fn spmv(blob: &[u8], m: usize, x: &[i8], bias: &[i32], q: &QuantParams<'_>, y: &mut [i8]) {
    let (g0, v0, entries) = sections(blob, m);
    let (gaps, values) = (&blob[g0..], &blob[v0..][..entries]);
    let mut e = 0;
    for (r, out) in y.iter_mut().enumerate().take(m) {
        let end = e + count(blob, r);
        *out = q.requantize(row_dot(gaps, values, e, end, x, bias[r]), r);
        e = end;
    }
}

/// `acc + Σ x[col]·v` over entries `e..end` of a valid blob's gaps and values: an odd first
/// entry alone, then two entries per gap byte.
#[inline(always)]
fn row_dot(gaps: &[u8], values: &[u8], mut e: usize, end: usize, x: &[i8], mut acc: i32) -> i32 {
    let mut col = 0usize;
    let mut step = |col: &mut usize, gap: u8, v: u8| {
        *col += gap as usize;
        acc = acc.wrapping_add(x[*col] as i32 * v as i8 as i32);
        *col += 1;
    };
    if e < end && e % 2 == 1 {
        step(&mut col, gaps[e / 2] >> 4, values[e]);
        e += 1;
    }
    let pairs = (end - e) / 2;
    for (g, v) in gaps[e / 2..][..pairs]
        .iter()
        .zip(values[e..][..2 * pairs].chunks_exact(2))
    {
        step(&mut col, g & 15, v[0]);
        step(&mut col, g >> 4, v[1]);
    }
    e += 2 * pairs;
    if e < end {
        step(&mut col, gaps[e / 2] & 15, values[e]);
    }
    acc
}

/// Sparse int8 dense: `x` holds `rows` rows of `k` values, `y` as many rows of `m`.
pub fn dense(
    x: &[i8],
    k: usize,
    blob: &[u8],
    m: usize,
    bias: &[i32],
    y: &mut [i8],
    q: &QuantParams<'_>,
) {
    for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(m)) {
        spmv(blob, m, xr, bias, q, yr);
    }
}

/// Output pixels a conv computes together: each entry of the blob is decoded once for them, and
/// their window values for one column sit side by side (`[K][PIXELS]`), so the multiply-adds of
/// an entry run across pixels in vector lanes. 16 on 64-bit targets (a 36 KB patch on the
/// stack), 1 on microcontrollers.
#[cfg(target_pointer_width = "64")]
pub const PIXELS: usize = 16;
/// See the 64-bit definition.
#[cfg(not(target_pointer_width = "64"))]
pub const PIXELS: usize = 1;

/// What a sparse int8 conv (one group) reads: NHWC `x` of shape `xs`, the blob of a
/// `[co, kh, kw, ci]` matrix, the folded bias, the output shape `ys` and the requantization.
#[derive(Clone, Copy)]
pub struct SparseConv<'a> {
    /// Input activations.
    pub x: &'a [i8],
    /// Input shape (NHWC).
    pub xs: [usize; 4],
    /// The weights' blob.
    pub blob: &'a [u8],
    /// Window height and width.
    pub kernel: (usize, usize),
    /// `bias - z_x·Σw` per output channel.
    pub bias: &'a [i32],
    /// Output shape (NHWC).
    pub ys: [usize; 4],
    /// Stride, dilation, padding.
    pub geo: &'a ConvGeom,
    /// Requantization.
    pub q: &'a QuantParams<'a>,
}

/// The conv `c` for output pixels `px0..`, written to `y` (whole pixels of `co` channels).
/// `isa` chooses the build of the loop: on x86-64 with AVX2 the same code compiled for AVX2
/// (the multiply-adds of an entry across [`PIXELS`] pixels in vector lanes); everywhere the
/// result is the same integers.
pub fn conv2d_part(c: &SparseConv<'_>, y: &mut [i8], px0: usize, isa: super::isa::Isa) {
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, super::isa::Isa::Avx2 | super::isa::Isa::Avx512Vnni) && isa.supported() {
        x86::conv2d_part_avx2(c, y, px0);
        return;
    }
    let _ = isa;
    conv2d_body(c, y, px0);
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use super::*;

    /// [`super::conv2d_body`] compiled for AVX2.
    pub(super) fn conv2d_part_avx2(c: &SparseConv<'_>, y: &mut [i8], px0: usize) {
        debug_assert!(crate::kernels::isa::Isa::Avx2.supported());
        // SAFETY: the caller checked that the CPU has AVX2; the body is safe code.
        unsafe { body(c, y, px0) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn body(c: &SparseConv<'_>, y: &mut [i8], px0: usize) {
        conv2d_body(c, y, px0)
    }
}

/// The sparse conv's loop (see [`conv2d_part`]).
#[inline(always)]
fn conv2d_body(c: &SparseConv<'_>, y: &mut [i8], px0: usize) {
    let SparseConv {
        x,
        xs,
        blob,
        kernel: (kh, kw),
        bias,
        ys,
        geo,
        q,
    } = *c;
    let [_, h, wd, ci] = xs;
    let [_, oh, ow, co] = ys;
    let k = (kh * kw * ci).min(MAX_K);
    let (g0, v0, entries) = sections(blob, co);
    let (gaps, values) = (&blob[g0..], &blob[v0..][..entries]);
    let mut patch = [0i8; MAX_K * PIXELS];
    let total = y.len() / co.max(1);
    // Rq's fast forms are decided per channel (one odd channel, such as an all-zero row's,
    // leaves the others vectorized).
    let zp_ok = q.act[0] <= q.act[1] && (-128..=127).contains(&q.output_zp);
    let mut i = 0;
    while i < total {
        let n = (total - i).min(PIXELS);
        // The windows of pixels i..i+n, column-major; padding and missing pixels read the
        // input zero point.
        patch[..k * PIXELS].fill(q.input_zp as i8);
        for p in 0..n {
            let pix = px0 + i + p;
            let (b, oy, ox) = (pix / (oh * ow), pix / ow % oh, pix % ow);
            geo.taps((oy, ox), [h, wd], [kh, kw], |ky, kx, iy, ix| {
                let src = &x[((b * h + iy) * wd + ix) * ci..][..ci];
                let at = (ky * kw + kx) * ci;
                for (c, &v) in src.iter().enumerate() {
                    patch[(at + c) * PIXELS + p] = v;
                }
            });
        }
        let mut e = 0;
        for r in 0..co {
            let mut acc = [bias[r]; PIXELS];
            let mut col = 0usize;
            let end = e + count(blob, r);
            while e < end {
                col += ((gaps[e >> 1] >> ((e & 1) << 2)) & 15) as usize;
                let v = values[e] as i8 as i16;
                // A fixed-size window: the widening multiply-add compiles to vector lanes
                // (i8 × i8 fits i16 exactly; the sum is i32).
                let xs: &[i8; PIXELS] = patch[col * PIXELS..][..PIXELS]
                    .try_into()
                    .unwrap_or(&[0; PIXELS]);
                for p in 0..PIXELS {
                    acc[p] = acc[p].wrapping_add((xs[p] as i16 * v) as i32);
                }
                col += 1;
                e += 1;
            }
            let mut out = [0i8; PIXELS];
            let c = if q.multiplier.len() == 1 { 0 } else { r };
            let (m, sh) = (q.multiplier.get(c), q.shift_of(c));
            let fast = zp_ok && q.rounding == Rounding::Double && Rq::fast(m, sh);
            let single = zp_ok && q.rounding == Rounding::Single && (-31..=-1).contains(&sh);
            if fast || single {
                // The vector-friendly forms of TFLite's requantization (bit-exact with it).
                let rq = if fast {
                    Rq::with(m, sh)
                } else {
                    Rq::single(q, c)
                };
                let (zp, lo, hi) = (q.output_zp, q.act[0], q.act[1]);
                for (o, &a) in out.iter_mut().zip(&acc) {
                    let s = if fast {
                        rq.scale(a)
                    } else {
                        rq.scale_single(a)
                    };
                    *o = (s + zp).clamp(lo, hi) as i8;
                }
            } else {
                for (o, &a) in out.iter_mut().zip(&acc) {
                    *o = q.requantize(a, r);
                }
            }
            for (p, &o) in out.iter().enumerate().take(n) {
                y[(i + p) * co + r] = o;
            }
        }
        i += n;
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_long_gaps() {
        // Rows with long zero runs (bridged), a full row, an empty row.
        let (m, k) = (4, 40);
        let mut w = std::vec![0i8; m * k];
        w[0] = 5;
        w[39] = -7;
        w[k + 17] = 1;
        for c in 0..k {
            w[2 * k + c] = (c as i8) - 20;
        }
        let blob = encode(&w, m, k).unwrap();
        assert!(validate(&blob, m, k));
        assert_eq!(decode(&blob, m, k), w);
        // One gap past the end is refused, as are truncated blobs.
        assert!(!validate(&blob, m, k - 1));
        assert!(!validate(&blob[..blob.len() - 1], m, k));
    }
}
