//! Optimized int8 conv and dense over **natural** (unpacked) weights: the same arithmetic as
//! [`super::reference_i8`], bit for bit, with the bounds arithmetic hoisted out of the channel
//! loop and the inner products on [`super::simd`] (NEON, AVX2, Cortex-M DSP). The session runs
//! these for weights `kiln convert` does not pack (a non-zero weight zero point, grouped convs,
//! hand-built files); packed weights run [`super::qs8`]. Tests compare them with the reference
//! kernels over an edge-case grid (odd sizes, padding, strides, dilation, groups, zero points,
//! per-channel scales).

use super::isa::Isa;
use super::qs8::{self, PanelQ, NR};
use super::reference_i8::{self as reference, QuantParams};
use super::simd;
use crate::ops::ConvGeom;

/// Most kernel taps one output pixel can have before the kernel falls back to the reference
/// loop (the tap list lives on the stack).
const MAX_TAPS: usize = 64;

/// Largest window (taps x input channels) gathered into one patch on the stack.
const MAX_PATCH: usize = 512;

/// Largest depthwise layer (channels, and channels x taps) run channel-vectorized, with its
/// weights transposed tap-major and one accumulator per channel on the stack: small on 32-bit
/// microcontrollers, where stack is scarce.
#[cfg(target_pointer_width = "64")]
const DW_MAX: (usize, usize) = (1024, 16384);
#[cfg(not(target_pointer_width = "64"))]
const DW_MAX: (usize, usize) = (128, 640);

/// Depthwise requantization constants kept per 16 channels (vector requantization); none on
/// 32-bit targets, whose requantization is scalar and whose stack is small.
#[cfg(target_pointer_width = "64")]
const DW_PANELS: usize = DW_MAX.0 / NR;
#[cfg(not(target_pointer_width = "64"))]
const DW_PANELS: usize = 0;

/// int8 2-D convolution (per-channel), NHWC / OHWI, int32 bias; same contract as
/// [`reference::conv2d`].
#[allow(clippy::too_many_arguments)]
// Out of line: inlined into the dispatch (or the optimized kernel's fallback), the M4 keyword
// spotter took up to 34.9 M instead of 29.6 M instructions per inference (opt-level "s", LTO).
#[inline(never)]
pub fn conv2d(
    x: &[i8],
    xs: [usize; 4],
    w: &[i8],
    ws: [usize; 4],
    bias: Option<&[i32]>,
    y: &mut [i8],
    ys: [usize; 4],
    geo: &ConvGeom,
    q: &QuantParams<'_>,
    isa: Isa,
) {
    let [n, h, wd, ci] = xs;
    let [co, kh, kw, cig] = ws;
    let [_, oh, ow, _] = ys;
    if kh * kw > MAX_TAPS || geo.groups == 0 {
        return reference::conv2d(x, xs, w, ws, bias, y, ys, geo, q);
    }
    let dot = simd::best();
    let cog = co / geo.groups;
    let taps_per_oc = kh * kw;
    // Runs of taps inside the input: (first tap index, offset of its input pixel in x, number of
    // taps). Without groups and dilation, neighbouring taps of one kernel row are contiguous in
    // both x and w, so a run becomes one longer inner product.
    let merge = geo.groups == 1 && geo.dilation[1] == 1;
    let mut taps = [(0usize, 0usize, 0usize); MAX_TAPS];
    let k_len = taps_per_oc * cig;
    let mut patch_buf = [0i8; MAX_PATCH];
    // Depthwise with one output per channel: weights transposed to [tap][channel] once, so each
    // tap is one pass over contiguous channels of x and w (the compiler vectorizes it).
    let dw = cig == 1 && cog == 1 && co == ci && co <= DW_MAX.0 && co * taps_per_oc <= DW_MAX.1;
    let mut wt = [0i8; DW_MAX.1];
    let mut acc_buf = [0i32; DW_MAX.0];
    let rq = qs8::requantize(isa);
    // The 16-channel depthwise microkernel (weight zero point 0).
    let dw16 = qs8::dwconv16(isa).filter(|_| q.weight_zp == 0);
    let mut pqs = [PanelQ::ZERO; DW_PANELS];
    if dw {
        for oc in 0..co {
            for t in 0..taps_per_oc {
                wt[t * co + oc] = w[oc * taps_per_oc + t];
            }
        }
        for (p, pq) in pqs.iter_mut().enumerate().take(co.div_ceil(NR)) {
            *pq = PanelQ::new(q, bias, p * NR, (co - p * NR).min(NR));
        }
    }
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut nt = 0;
                // (Explicit loops, not `ConvGeom::taps`: with the closure the M4 keyword spotter
                // took 30.2 M instead of 29.6 M instructions per inference.)
                for ky in 0..kh {
                    let iy =
                        (oy * geo.stride[0] + ky * geo.dilation[0]) as isize - geo.pad[0] as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * geo.stride[1] + kx * geo.dilation[1]) as isize
                            - geo.pad[1] as isize;
                        if ix < 0 || ix >= wd as isize {
                            continue;
                        }
                        let xo = ((b * h + iy as usize) * wd + ix as usize) * ci;
                        let t = ky * kw + kx;
                        if merge && nt > 0 && taps[nt - 1].0 + taps[nt - 1].2 == t && kx > 0 {
                            taps[nt - 1].2 += 1;
                        } else {
                            taps[nt] = (t, xo, 1);
                            nt += 1;
                        }
                    }
                }
                let taps = &taps[..nt];
                let yrow = &mut y[((b * oh + oy) * ow + ox) * co..][..co];
                if dw {
                    // A run of `len` merged taps (one input channel, no groups) is `len`
                    // neighbouring pixels, `ci` apart in x.
                    let mut c_done = 0;
                    if let Some(dw16) = dw16 {
                        let mut et = [(0usize, 0usize); MAX_TAPS];
                        let mut ne = 0;
                        for &(t0, xo0, len) in taps {
                            for l in 0..len {
                                et[ne] = (xo0 + l * ci, t0 + l);
                                ne += 1;
                            }
                        }
                        let wt = &wt[..co * taps_per_oc];
                        while co - c_done >= 8 && c_done / NR < pqs.len() {
                            let nb = if co - c_done >= NR { NR } else { 8 };
                            let a = dw16(x, wt, co, &et[..ne], c_done, nb, q.input_zp);
                            // Blocks start at multiples of 16 except an 8-block after the last
                            // 16-block, which is the start of that panel's constants too.
                            rq(&a, &pqs[c_done / NR], q, &mut yrow[c_done..][..nb]);
                            c_done += nb;
                            if nb == 8 {
                                break;
                            }
                        }
                    }
                    let acc = &mut acc_buf[..co];
                    acc[c_done..].fill(0);
                    for &(t0, xo0, len) in taps {
                        for l in 0..len {
                            let (xo, t) = (xo0 + l * ci, t0 + l);
                            let xs = &x[xo + c_done..xo + co];
                            let ws = &wt[t * co + c_done..][..co - c_done];
                            for ((a, &xv), &wv) in acc[c_done..].iter_mut().zip(xs).zip(ws) {
                                *a = a.wrapping_add(
                                    (xv as i32 - q.input_zp) * (wv as i32 - q.weight_zp),
                                );
                            }
                        }
                    }
                    for oc in c_done..co {
                        let a = bias.map_or(acc[oc], |bb| acc[oc].wrapping_add(bb[oc]));
                        yrow[oc] = q.requantize(a, oc);
                    }
                } else if cig == 1 && !merge {
                    // Depthwise (and any one-channel-per-group conv): a scalar sum over taps.
                    for (oc, out) in yrow.iter_mut().enumerate() {
                        let g = oc / cog;
                        let wk = &w[oc * taps_per_oc..][..taps_per_oc];
                        let mut acc: i32 = 0;
                        for &(t, xo, _) in taps {
                            acc = acc.wrapping_add(
                                (x[xo + g] as i32 - q.input_zp) * (wk[t] as i32 - q.weight_zp),
                            );
                        }
                        if let Some(bb) = bias {
                            acc = acc.wrapping_add(bb[oc]);
                        }
                        *out = q.requantize(acc, oc);
                    }
                } else if geo.groups == 1
                    && k_len <= MAX_PATCH
                    && !(taps.len() == 1 && taps[0].2 == taps_per_oc)
                {
                    // Several runs (a window wider than one contiguous stretch of x, or padding):
                    // gather the window into one patch, padding taps holding the input zero
                    // point (whose term is exactly 0), so each output channel is one inner
                    // product of the whole window instead of one per run.
                    let patch = &mut patch_buf[..k_len];
                    patch.fill(q.input_zp as i8);
                    for &(t, xo, len) in taps {
                        patch[t * cig..(t + len) * cig].copy_from_slice(&x[xo..][..len * cig]);
                    }
                    for (oc, out) in yrow.iter_mut().enumerate() {
                        let wk = &w[oc * k_len..][..k_len];
                        let mut acc = dot(patch, wk, q.input_zp, q.weight_zp);
                        if let Some(bb) = bias {
                            acc = acc.wrapping_add(bb[oc]);
                        }
                        *out = q.requantize(acc, oc);
                    }
                } else {
                    for (oc, out) in yrow.iter_mut().enumerate() {
                        let g = oc / cog;
                        let wk = &w[oc * taps_per_oc * cig..][..taps_per_oc * cig];
                        let mut acc: i32 = 0;
                        for &(t, xo, len) in taps {
                            acc = acc.wrapping_add(dot(
                                &x[xo + g * cig..][..len * cig],
                                &wk[t * cig..][..len * cig],
                                q.input_zp,
                                q.weight_zp,
                            ));
                        }
                        if let Some(bb) = bias {
                            acc = acc.wrapping_add(bb[oc]);
                        }
                        *out = q.requantize(acc, oc);
                    }
                }
            }
        }
    }
}

/// int8 fully connected; same contract as [`reference::dense`].
// Out of line, as `conv2d`.
#[inline(never)]
pub fn dense(
    x: &[i8],
    k: usize,
    w: &[i8],
    m: usize,
    bias: Option<&[i32]>,
    y: &mut [i8],
    q: &QuantParams<'_>,
) {
    if k == 0 {
        return reference::dense(x, k, w, m, bias, y, q);
    }
    let dot = simd::best();
    for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(m)) {
        for (j, o) in yr.iter_mut().enumerate() {
            let mut acc = dot(xr, &w[j * k..][..k], q.input_zp, q.weight_zp);
            if let Some(bb) = bias {
                acc = acc.wrapping_add(bb[j]);
            }
            *o = q.requantize(acc, j);
        }
    }
}
