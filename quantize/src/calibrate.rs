//! Calibration: statistics of activation tensors over a data set, and the choice of their int8
//! range by one of four methods (min-max, percentile, entropy/KL, MSE).

/// How an activation's clipping range is chosen from its statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// The observed minimum and maximum.
    MinMax,
    /// Clip `|x|` at this percentile (e.g. 99.99) of the observed magnitudes.
    Percentile(f64),
    /// The threshold minimizing the KL divergence between the clipped float distribution and
    /// its quantized version (TensorRT's entropy calibration).
    Entropy,
    /// The threshold minimizing the expected squared quantization error.
    Mse,
}

impl Method {
    /// Parses `minmax`, `percentile[:P]`, `entropy` (or `kl`), `mse`.
    pub fn parse(s: &str) -> Option<Method> {
        let s = s.to_ascii_lowercase();
        Some(match s.as_str() {
            "minmax" | "min-max" => Method::MinMax,
            "entropy" | "kl" => Method::Entropy,
            "mse" => Method::Mse,
            "percentile" => Method::Percentile(99.99),
            _ => {
                let p = s.strip_prefix("percentile:")?.parse::<f64>().ok()?;
                if !(50.0..=100.0).contains(&p) {
                    return None;
                }
                Method::Percentile(p)
            }
        })
    }
    /// Whether the method needs a second pass collecting histograms.
    pub fn needs_histogram(&self) -> bool {
        !matches!(self, Method::MinMax)
    }
}

/// Number of histogram bins over `[-absmax, absmax]`.
pub const BINS: usize = 2048;

/// Running statistics of one tensor.
#[derive(Clone, Debug)]
pub struct Observer {
    /// Smallest value seen.
    pub min: f32,
    /// Largest value seen.
    pub max: f32,
    /// Histogram of values over `[-edge, edge]` (second pass).
    pub hist: Vec<u64>,
    /// Histogram half-width, fixed from the first pass.
    pub edge: f32,
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: Vec::new(),
            edge: 0.0,
        }
    }
}

impl Observer {
    /// First pass: extend the min/max.
    pub fn observe_range(&mut self, v: &[f32]) {
        for &x in v {
            if x.is_finite() {
                self.min = self.min.min(x);
                self.max = self.max.max(x);
            }
        }
    }

    /// Second pass: add values to the histogram (its range is fixed by the first pass).
    pub fn observe_hist(&mut self, v: &[f32]) {
        if self.hist.is_empty() {
            self.hist = vec![0; BINS];
            self.edge = self.min.abs().max(self.max.abs()).max(1e-12);
        }
        let w = 2.0 * self.edge / BINS as f32;
        for &x in v {
            if x.is_finite() {
                let b = ((x + self.edge) / w) as isize;
                self.hist[b.clamp(0, BINS as isize - 1) as usize] += 1;
            }
        }
    }

    /// The clipping range `[lo, hi]` chosen by `method` (always containing 0).
    pub fn range(&self, method: Method) -> (f32, f32) {
        let (min, max) = if self.min > self.max {
            (0.0, 0.0)
        } else {
            (self.min, self.max)
        };
        let clip = |t: f32| (min.max(-t).min(0.0), max.min(t).max(0.0));
        if self.hist.is_empty() {
            return (min.min(0.0), max.max(0.0));
        }
        match method {
            Method::MinMax => (min.min(0.0), max.max(0.0)),
            Method::Percentile(p) => clip(self.magnitude_percentile(p)),
            Method::Entropy => clip(self.entropy_threshold(min >= 0.0)),
            Method::Mse => self.mse_range(min, max),
        }
    }

    /// Histogram of `|x|`: `BINS / 2` bins over `[0, edge]`.
    fn magnitudes(&self) -> Vec<u64> {
        let half = BINS / 2;
        (0..half)
            .map(|i| self.hist[half + i] + self.hist[half - 1 - i])
            .collect()
    }

    fn magnitude_percentile(&self, p: f64) -> f32 {
        let mags = self.magnitudes();
        let total: u64 = mags.iter().sum();
        let target = (total as f64 * p / 100.0).ceil() as u64;
        let w = self.edge / mags.len() as f32;
        let mut acc = 0;
        for (i, &c) in mags.iter().enumerate() {
            acc += c;
            if acc >= target {
                return (i + 1) as f32 * w;
            }
        }
        self.edge
    }

    /// TensorRT's entropy calibration on the magnitude histogram.
    fn entropy_threshold(&self, non_negative: bool) -> f32 {
        let mags = self.magnitudes();
        let n = mags.len();
        let levels = if non_negative { 255 } else { 128 };
        let w = self.edge / n as f32;
        if mags.iter().sum::<u64>() == 0 {
            return self.edge;
        }
        let mut best = (f64::INFINITY, n);
        for i in (levels..=n).step_by(8).chain(std::iter::once(n)) {
            // Reference P: the first i bins, the outliers folded into the last.
            let mut p: Vec<f64> = mags[..i].iter().map(|&c| c as f64).collect();
            let outliers: u64 = mags[i..].iter().sum();
            p[i - 1] += outliers as f64;
            // Q: P merged into `levels` bins, spread back over the non-empty source bins.
            let mut q = vec![0f64; i];
            for l in 0..levels {
                let start = l * i / levels;
                let end = ((l + 1) * i / levels).max(start + 1).min(i);
                let sum: f64 = mags[start..end].iter().map(|&c| c as f64).sum();
                let nonzero = mags[start..end].iter().filter(|&&c| c > 0).count();
                if nonzero > 0 {
                    for k in start..end {
                        if mags[k] > 0 {
                            q[k] = sum / nonzero as f64;
                        }
                    }
                }
            }
            let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
            if ps == 0.0 || qs == 0.0 {
                continue;
            }
            let mut kl = 0.0;
            for k in 0..i {
                if p[k] > 0.0 {
                    let pk = p[k] / ps;
                    let qk = (q[k] / qs).max(1e-12);
                    kl += pk * (pk / qk).ln();
                }
            }
            if kl < best.0 {
                best = (kl, i);
            }
        }
        best.1 as f32 * w
    }

    /// The symmetric threshold whose asymmetric 256-level grid has the least squared error over
    /// the histogram.
    fn mse_range(&self, min: f32, max: f32) -> (f32, f32) {
        let w = 2.0 * self.edge / BINS as f32;
        let centers: Vec<(f32, f64)> = self
            .hist
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (-self.edge + (i as f32 + 0.5) * w, c as f64))
            .collect();
        let mut best = (f64::INFINITY, (min.min(0.0), max.max(0.0)));
        for step in 1..=100 {
            let t = self.edge * step as f32 / 100.0;
            let (lo, hi) = (min.max(-t).min(0.0), max.min(t).max(0.0));
            let (scale, zp) = asymmetric(lo, hi);
            let err: f64 = centers
                .iter()
                .map(|&(c, n)| {
                    let q = ((c / scale).round() + zp as f32).clamp(-128.0, 127.0);
                    let back = (q - zp as f32) * scale;
                    n * ((c - back) as f64).powi(2)
                })
                .sum();
            if err < best.0 {
                best = (err, (lo, hi));
            }
        }
        best.1
    }
}

/// Asymmetric int8 parameters `(scale, zero_point)` covering `[lo, hi]` (which contains 0).
pub fn asymmetric(lo: f32, hi: f32) -> (f32, i32) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = if hi - lo > 0.0 {
        (hi - lo) / 255.0
    } else {
        1.0
    };
    let zp = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
    (scale, zp)
}

/// Symmetric per-channel int8 weights: `(values, scale per channel)`; `w` is `[channels, ...]`
/// row-major. Values lie in `[-127, 127]`.
pub fn quantize_weights_per_channel(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / channels.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(channels);
    for c in 0..channels {
        let row = &w[c * per..(c + 1) * per];
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            row.iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// Per-channel symmetric int8 weights whose requantization multipliers fit in 16 bits.
///
/// Each channel's scale starts at `amax / 127` and is raised by less than 2^-14 (relative) so that
/// `input_scale * w_scale / output_scale` is exactly `m * 2^(shift - 15)` with `m` in
/// `16384..=32767`. The kernels then apply the Q0.31 multiplier `m << 16`: the same TFLite
/// arithmetic, with tables half the size (kiln stores `m` as i16). The scale change is far below
/// int8 resolution. Returns the weights, their scales, the multipliers and the shifts, or `None`
/// when a shift would leave TFLite's range (-31..=30).
pub fn quantize_weights_compact(
    w: &[f32],
    channels: usize,
    input_scale: f32,
    output_scale: f32,
) -> Option<CompactWeights> {
    let per = w.len() / channels.max(1);
    let (sx, sy) = (input_scale as f64, output_scale as f64);
    let mut q = Vec::with_capacity(w.len());
    let (mut scales, mut mults, mut shifts) = (vec![], vec![], vec![]);
    for c in 0..channels {
        let row = &w[c * per..(c + 1) * per];
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if amax > 0.0 { amax as f64 / 127.0 } else { 1.0 };
        let m = sx * s / sy;
        if !(m.is_finite() && m > 0.0) {
            return None;
        }
        // m = frac * 2^e with frac in [0.5, 1).
        let mut e = m.log2().floor() as i32 + 1;
        let mut frac = m / 2f64.powi(e);
        while frac >= 1.0 {
            frac /= 2.0;
            e += 1;
        }
        while frac < 0.5 {
            frac *= 2.0;
            e -= 1;
        }
        let mut m16 = (frac * 32768.0).ceil() as i32;
        if m16 > 32767 {
            m16 = 16384;
            e += 1;
        }
        if !(-31..=30).contains(&e) {
            return None;
        }
        let m_exact = m16 as f64 / 32768.0 * 2f64.powi(e);
        let s_new = (m_exact * sy / sx) as f32;
        scales.push(s_new);
        mults.push(m16 as i16);
        shifts.push(e);
        q.extend(
            row.iter()
                .map(|v| (v / s_new).round().clamp(-127.0, 127.0) as i8),
        );
    }
    Some(CompactWeights {
        weights: q,
        scales,
        multipliers: mults,
        shifts,
    })
}

/// Result of [`quantize_weights_compact`].
#[derive(Clone, Debug, PartialEq)]
pub struct CompactWeights {
    /// int8 weights, row per output channel.
    pub weights: Vec<i8>,
    /// Scale of each channel.
    pub scales: Vec<f32>,
    /// 16-bit multipliers `m` (the Q0.31 multiplier is `m << 16`).
    pub multipliers: Vec<i16>,
    /// Shifts (positive = left).
    pub shifts: Vec<i32>,
}

/// int32 bias for an int8 conv/dense: `round(b / (input_scale * weight_scale[c]))`, saturated.
pub fn quantize_bias(b: &[f32], input_scale: f32, weight_scales: &[f32]) -> Vec<i32> {
    b.iter()
        .zip(weight_scales)
        .map(|(&v, &ws)| {
            let s = input_scale as f64 * ws as f64;
            (v as f64 / s)
                .round()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

/// Signal-to-quantization-noise ratio in dB: `10 log10(sum x^2 / sum (x - y)^2)`.
pub fn sqnr_db(reference: &[f32], test: &[f32]) -> f64 {
    let (mut s, mut n) = (0f64, 0f64);
    for (&x, &y) in reference.iter().zip(test) {
        s += (x as f64).powi(2);
        n += (x as f64 - y as f64).powi(2);
    }
    if n == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (s / n).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian_like(n: usize) -> Vec<f32> {
        // Deterministic, roughly bell-shaped (sum of uniforms) with a few outliers.
        let mut x = 12345u32;
        let mut next = || {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 8) as f32 / (1u32 << 24) as f32
        };
        let mut v: Vec<f32> = (0..n)
            .map(|_| (0..4).map(|_| next()).sum::<f32>() - 2.0)
            .collect();
        v[0] = 40.0;
        v[1] = -35.0;
        v
    }

    fn observer(v: &[f32]) -> Observer {
        let mut o = Observer::default();
        o.observe_range(v);
        o.observe_hist(v);
        o
    }

    #[test]
    fn methods_clip_outliers_but_minmax_does_not() {
        let v = gaussian_like(100_000);
        let o = observer(&v);
        assert_eq!(o.range(Method::MinMax), (-35.0, 40.0));
        for m in [Method::Percentile(99.9), Method::Entropy] {
            let (lo, hi) = o.range(m);
            assert!(lo > -10.0 && hi < 10.0 && hi > 1.0, "{m:?}: [{lo}, {hi}]");
        }
        // Two outliers in 100k values: keeping them costs less squared error than clipping.
        let (lo, hi) = o.range(Method::Mse);
        assert!(
            (-35.0..-10.0).contains(&lo) && (10.0..=40.0).contains(&hi),
            "[{lo}, {hi}]"
        );
        // A single mild outlier among many: clipping it wins.
        let mut w: Vec<f32> = (0..100_000)
            .map(|i| (i % 200) as f32 / 100.0 - 1.0)
            .collect();
        w[7] = 1.5;
        let (lo, hi) = observer(&w).range(Method::Mse);
        assert!(hi < 1.5 && lo >= -1.0, "[{lo}, {hi}]");
    }

    #[test]
    fn asymmetric_params() {
        assert_eq!(asymmetric(0.0, 2.55), (0.01, -128));
        let (s, z) = asymmetric(-1.0, 1.0);
        // -128 + 127.5 = -0.5 rounds away from zero.
        assert!((s - 2.0 / 255.0).abs() < 1e-9 && z == -1);
    }

    #[test]
    fn weights_and_bias() {
        let (q, s) = quantize_weights_per_channel(&[1.0, -0.5, 0.0, 0.25], 2);
        assert_eq!(q, vec![127, -64, 0, 127]);
        assert_eq!(s, vec![1.0 / 127.0, 0.25 / 127.0]);
        assert_eq!(quantize_bias(&[1.0], 0.5, &[0.01]), vec![200]);
        assert!((sqnr_db(&[1.0, 1.0], &[1.1, 0.9]) - 20.0).abs() < 1e-5);
    }
}
