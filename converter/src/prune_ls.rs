//! The least-squares half of pruning: a conv or dense layer's pre-activation output computed
//! from given inputs, and the refit of its weights and bias to reproduce target outputs from
//! the inputs that remain (normal equations, Cholesky, a small ridge for stability).

use crate::ir::{Data, Graph};
use anyhow::{bail, Result};
use kiln_runtime::kernels::reference_f32 as kf;
use kiln_runtime::ops::{ConvGeom, OpParams};

/// A conv or dense layer's constants: weights, their shape, bias, and a conv's geometry.
struct Layer {
    w: Vec<f32>,
    ws: Vec<usize>,
    b: Option<Vec<f32>>,
    geom: Option<ConvGeom>,
}

/// Node `r`'s weights, bias and (for a conv) geometry and kernel shape.
fn layer(g: &Graph, r: usize) -> Result<Layer> {
    let n = &g.nodes[r];
    let Some(wt) = n.input(1) else {
        bail!("'{}' has no weights", n.name)
    };
    let Some(w) = g.const_f32(wt) else {
        bail!("'{}' has non-constant or non-f32 weights", n.name)
    };
    let b = n.input(2).and_then(|b| g.const_f32(b)).map(<[f32]>::to_vec);
    let geom = match n.op {
        OpParams::Conv2d(p) => Some(p.geom),
        OpParams::Dense(_) => None,
        _ => bail!("'{}' is not a conv or dense layer", n.name),
    };
    Ok(Layer {
        w: w.to_vec(),
        ws: g.tensors[wt].shape.clone(),
        b,
        geom,
    })
}

/// Node `r`'s output before its fused activation, for input `x` (one sample, flattened).
pub fn pre_activation(g: &Graph, r: usize, x: &[f32]) -> Result<Vec<f32>> {
    let Layer { w, ws, b, geom } = layer(g, r)?;
    let none = [f32::NEG_INFINITY, f32::INFINITY];
    let n = &g.nodes[r];
    let xs = &g.tensors[n.input(0).unwrap_or(0)].shape;
    let ys = &g.tensors[n.outputs[0]].shape;
    let mut y = vec![0f32; ys.iter().product()];
    match geom {
        Some(geo) => {
            let d4 = |s: &[usize]| [s[0], s[1], s[2], s[3]];
            if xs.len() != 4 || ys.len() != 4 || ws.len() != 4 {
                bail!("'{}': conv tensors are not 4-D", n.name);
            }
            kf::conv2d(
                x,
                d4(xs),
                &w,
                d4(&ws),
                b.as_deref(),
                &mut y,
                d4(ys),
                &geo,
                none,
            );
        }
        None => {
            let (m, k) = (ws[0], ws[1]);
            kf::dense(x, k, &w, m, b.as_deref(), &mut y, none);
        }
    }
    Ok(y)
}

/// `||y' - y|| / ||y||` over all samples, `y'` node `r`'s pre-activation output on `xs`.
pub fn relative_error(g: &Graph, r: usize, xs: &[Vec<f32>], ys: &[Vec<f32>]) -> Result<f64> {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in xs.iter().zip(ys) {
        let p = pre_activation(g, r, x)?;
        for (a, b) in p.iter().zip(y) {
            num += ((a - b) as f64).powi(2);
            den += (*b as f64).powi(2);
        }
    }
    Ok((num / den.max(f64::MIN_POSITIVE)).sqrt())
}

/// Rows of f64 values.
type Rows = Vec<Vec<f64>>;

/// The rows of the least-squares problem: each output position's input patch (a conv's
/// receptive field in OHWI order, zero where it falls in the padding; a dense row) followed by
/// a 1 for the bias, and that position's target outputs.
fn design(g: &Graph, r: usize, xs: &[Vec<f32>], ys: &[Vec<f32>]) -> Result<(Rows, Rows)> {
    let Layer { ws, geom, .. } = layer(g, r)?;
    let n = &g.nodes[r];
    let xsh = g.tensors[n.input(0).unwrap_or(0)].shape.clone();
    let ysh = g.tensors[n.outputs[0]].shape.clone();
    let co = ws[0];
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (x, y) in xs.iter().zip(ys) {
        match geom {
            Some(geo) => {
                let [nb, h, wd, ci] = [xsh[0], xsh[1], xsh[2], xsh[3]];
                let [_, oh, ow, _] = [ysh[0], ysh[1], ysh[2], ysh[3]];
                let (kh, kw) = (ws[1], ws[2]);
                for b in 0..nb {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut row = vec![0f64; kh * kw * ci + 1];
                            geo.taps((oy, ox), [h, wd], [kh, kw], |ky, kx, iy, ix| {
                                let src = &x[((b * h + iy) * wd + ix) * ci..][..ci];
                                let dst = &mut row[(ky * kw + kx) * ci..][..ci];
                                for (d, &s) in dst.iter_mut().zip(src) {
                                    *d = s as f64;
                                }
                            });
                            row[kh * kw * ci] = 1.0;
                            rows.push(row);
                            let at = ((b * oh + oy) * ow + ox) * co;
                            targets.push(y[at..at + co].iter().map(|&v| v as f64).collect());
                        }
                    }
                }
            }
            None => {
                let k = ws[1];
                for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact(co)) {
                    let mut row: Vec<f64> = xr.iter().map(|&v| v as f64).collect();
                    row.push(1.0);
                    rows.push(row);
                    targets.push(yr.iter().map(|&v| v as f64).collect());
                }
            }
        }
    }
    Ok((rows, targets))
}

/// `AᵀA` (`nf × nf`, symmetric) and `AᵀB` (`nf × m`) of the rows and targets, with `nf` and
/// `m`; `None` without rows.
fn normal_equations(rows: &Rows, targets: &Rows) -> Option<(Vec<f64>, Vec<f64>, usize, usize)> {
    let (nf, m) = (rows.first()?.len(), targets.first()?.len());
    let mut ata = vec![0f64; nf * nf];
    let mut atb = vec![0f64; nf * m];
    for (row, t) in rows.iter().zip(targets) {
        for i in 0..nf {
            let ri = row[i];
            if ri == 0.0 {
                continue;
            }
            for j in 0..=i {
                ata[i * nf + j] += ri * row[j];
            }
            for (c, &tc) in t.iter().enumerate() {
                atb[i * m + c] += ri * tc;
            }
        }
    }
    for i in 0..nf {
        for j in 0..i {
            ata[j * nf + i] = ata[i * nf + j];
        }
    }
    Some((ata, atb, nf, m))
}

/// Largest number of kept weights per output a masked refit solves for (its Cholesky is cubic
/// in it); rows with more keep their weights.
pub const MASKED_REFIT_MAX: usize = 1024;

/// Refits node `r`'s non-zero weights (the zeros stay zero) and bias, output by output, so that
/// its pre-activation output on `xs` comes as close as least squares can to `ys`, with the same
/// ridge toward the current weights as [`refit`]. Returns the number of rows.
pub fn refit_masked(g: &mut Graph, r: usize, xs: &[Vec<f32>], ys: &[Vec<f32>]) -> Result<usize> {
    let (rows, targets) = design(g, r, xs, ys)?;
    let Some((ata, atb, nf, m)) = normal_equations(&rows, &targets) else {
        return Ok(0);
    };
    let trace: f64 = (0..nf).map(|i| ata[i * nf + i]).sum();
    let ridge = 1e-3 * trace / nf as f64 + 1e-12;
    let Layer { w: w0, b: b0, .. } = layer(g, r)?;
    let k = nf - 1;
    let (mut w, mut b) = (w0.clone(), b0.clone().unwrap_or_else(|| vec![0.0; m]));
    for o in 0..m {
        // The kept features of this output, then the bias.
        let mut f: Vec<usize> = (0..k).filter(|&i| w0[o * k + i] != 0.0).collect();
        if f.len() > MASKED_REFIT_MAX {
            continue;
        }
        f.push(k);
        let n = f.len();
        let mut a = vec![0f64; n * n];
        let mut rhs = vec![0f64; n];
        for (i, &fi) in f.iter().enumerate() {
            for (j, &fj) in f.iter().enumerate() {
                a[i * n + j] = ata[fi * nf + fj];
            }
            let prior = if fi == k { b[o] } else { w0[o * k + fi] } as f64;
            rhs[i] = atb[fi * m + o] + ridge * prior;
        }
        let Some(sol) = solve_spd(&a, n, &rhs, 1, ridge) else {
            bail!(
                "the least-squares refit of '{}' is singular",
                g.nodes[r].name
            );
        };
        if sol.iter().any(|v| !v.is_finite()) {
            bail!(
                "the least-squares refit of '{}' is not finite",
                g.nodes[r].name
            );
        }
        for (&fi, &v) in f.iter().zip(&sol) {
            if fi == k {
                b[o] = v as f32;
            } else {
                w[o * k + fi] = v as f32;
            }
        }
    }
    store(g, r, w, b);
    Ok(rows.len())
}

/// Writes node `r`'s refit weights (its weight tensor keeps its shape) and bias (`[m]`, added
/// when the layer had none).
fn store(g: &mut Graph, r: usize, w: Vec<f32>, b: Vec<f32>) {
    let m = b.len();
    let wt = g.nodes[r].input(1).unwrap_or(0);
    g.tensors[wt].data = Some(Data::F32(w));
    match g.nodes[r].input(2) {
        Some(bt) => g.tensors[bt].data = Some(Data::F32(b)),
        None => {
            let bt = g.add_const_f32(format!("{}.bias", g.nodes[r].name), vec![m], b);
            if g.nodes[r].inputs.len() < 3 {
                g.nodes[r].inputs.resize(3, None);
            }
            g.nodes[r].inputs[2] = Some(bt);
        }
    }
}

/// Solves `(A + λI) X = B` for symmetric positive definite `A` (`n × n`) by Cholesky; `B` is
/// `n × m`. `None` if `A` is not positive definite even with the ridge.
pub fn solve_spd(a: &[f64], n: usize, b: &[f64], m: usize, ridge: f64) -> Option<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j] + if i == j { ridge } else { 0.0 };
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut x = b.to_vec();
    for c in 0..m {
        for i in 0..n {
            let mut s = x[i * m + c];
            for k in 0..i {
                s -= l[i * n + k] * x[k * m + c];
            }
            x[i * m + c] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = x[i * m + c];
            for k in i + 1..n {
                s -= l[k * n + i] * x[k * m + c];
            }
            x[i * m + c] = s / l[i * n + i];
        }
    }
    Some(x)
}

/// Refits node `r`'s weights and bias so that its pre-activation output on the inputs `xs`
/// comes as close as least squares can to `ys` (the unpruned layer's outputs), with a small
/// ridge toward its current weights. The weights keep their shape; a missing bias is added.
/// Returns the number of rows and of unknowns per output (fewer rows: underdetermined, the
/// ridge decides).
pub fn refit(g: &mut Graph, r: usize, xs: &[Vec<f32>], ys: &[Vec<f32>]) -> Result<(usize, usize)> {
    let (rows, targets) = design(g, r, xs, ys)?;
    let Some((ata, mut atb, nf, m)) = normal_equations(&rows, &targets) else {
        return Ok((0, 0));
    };
    // Ridge toward the layer's current weights (the unpruned ones on the channels that stay):
    // with few calibration rows the refit stays near them instead of fitting the samples
    // exactly, and with many rows the ridge is negligible.
    let trace: f64 = (0..nf).map(|i| ata[i * nf + i]).sum();
    let ridge = 1e-3 * trace / nf as f64 + 1e-12;
    let Layer { w: w0, b: b0, .. } = layer(g, r)?;
    let k0 = nf - 1;
    for o in 0..m {
        for f in 0..k0 {
            atb[f * m + o] += ridge * w0[o * k0 + f] as f64;
        }
        atb[k0 * m + o] += ridge * b0.as_ref().map_or(0.0, |b| b[o] as f64);
    }
    let Some(sol) = solve_spd(&ata, nf, &atb, m, ridge) else {
        bail!(
            "the least-squares refit of '{}' is singular",
            g.nodes[r].name
        );
    };
    // sol is [features + 1, outputs]: weights back to [outputs, features], the last row bias.
    let k = nf - 1;
    let w: Vec<f32> = (0..m)
        .flat_map(|o| (0..k).map(move |f| (f, o)))
        .map(|(f, o)| sol[f * m + o] as f32)
        .collect();
    let b: Vec<f32> = (0..m).map(|o| sol[k * m + o] as f32).collect();
    if w.iter().chain(&b).any(|v| !v.is_finite()) {
        bail!(
            "the least-squares refit of '{}' is not finite",
            g.nodes[r].name
        );
    }
    store(g, r, w, b);
    Ok((rows.len(), nf))
}
