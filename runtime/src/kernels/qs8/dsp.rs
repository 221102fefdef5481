//! Cortex-M4/M7/M33 `qs8_gemm_Mx16c4__dsp`: per 4-byte group, the (unsigned) input word is
//! split into its even and odd bytes once (`uxtb16`), then each of up to 4 channels' weight
//! words is split with `sxtb16` and accumulated with two `smlad`.

use super::{Panel, KR, NR};
use crate::kernels::simd::dsp::{smlad, sxtb16, sxtb16_ror8, uxtb16, uxtb16_ror8};

#[inline(always)]
fn word(b: &[i8]) -> u32 {
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

#[inline(always)]
fn uword(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// `qs8_gemm_Mx16c4__dsp`.
pub(super) fn gemm<const M: usize>(rows: &[&[u8]; M], p: Panel<'_>) -> [[i32; NR]; M] {
    let (nr, k) = (p.nr, p.k);
    let groups = k / KR;
    let mut out = [[0i32; NR]; M];
    for (o, row) in out.iter_mut().zip(rows) {
        let row = &row[..groups * KR];
        let mut c = 0;
        while c < nr {
            let n = if nr - c >= 4 { 4 } else { 1 };
            let mut a = [0i32; 4];
            for (g, xs) in row.chunks_exact(KR).enumerate() {
                let xw = uword(xs);
                let (xe, xo) = (uxtb16(xw), uxtb16_ror8(xw));
                let grp = &p.w[(g * nr + c) * KR..][..n * KR];
                for (ai, wc) in a.iter_mut().zip(grp.chunks_exact(KR)) {
                    let w = word(wc);
                    *ai = smlad(xo, sxtb16_ror8(w), smlad(xe, sxtb16(w), *ai));
                }
            }
            o[c..c + n].copy_from_slice(&a[..n]);
            c += n;
        }
    }
    super::tail(rows, p, &mut out);
    out
}
