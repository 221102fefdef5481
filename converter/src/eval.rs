//! Classification metrics for `kiln eval`: accuracy, per-class precision/recall/F1, confusion
//! matrix.

use serde::Serialize;

/// Metrics of one model on one labelled data set.
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// Number of samples.
    pub samples: usize,
    /// Fraction predicted right.
    pub accuracy: f64,
    /// Per class: precision.
    pub precision: Vec<f64>,
    /// Per class: recall.
    pub recall: Vec<f64>,
    /// Per class: F1.
    pub f1: Vec<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Index of the largest score (first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Computes metrics from predicted and true class indices.
pub fn metrics(pred: &[usize], truth: &[usize], classes: usize) -> Metrics {
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (&p, &t) in pred.iter().zip(truth) {
        if p < classes && t < classes {
            confusion[t][p] += 1;
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut precision = Vec::new();
    let mut recall = Vec::new();
    let mut f1 = Vec::new();
    for c in 0..classes {
        let tp = confusion[c][c];
        let predicted: usize = (0..classes).map(|t| confusion[t][c]).sum();
        let actual: usize = confusion[c].iter().sum();
        let (p, r) = (ratio(tp, predicted), ratio(tp, actual));
        precision.push(p);
        recall.push(r);
        f1.push(if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        });
    }
    let correct = pred.iter().zip(truth).filter(|(p, t)| p == t).count();
    Metrics {
        samples: pred.len(),
        accuracy: ratio(correct, pred.len()),
        precision,
        recall,
        f1,
        confusion,
    }
}

/// Renders metrics as a table.
pub fn render(m: &Metrics, labels: &[String]) -> String {
    let name = |c: usize| labels.get(c).cloned().unwrap_or_else(|| c.to_string());
    let mut s = format!(
        "accuracy {:.2}% ({} samples)\n",
        m.accuracy * 100.0,
        m.samples
    );
    s.push_str(&format!(
        "{:<10} {:>9} {:>9} {:>9}\n",
        "class", "precision", "recall", "f1"
    ));
    for c in 0..m.f1.len() {
        s.push_str(&format!(
            "{:<10} {:>9.3} {:>9.3} {:>9.3}\n",
            name(c),
            m.precision[c],
            m.recall[c],
            m.f1[c]
        ));
    }
    s.push_str("confusion (rows: true, columns: predicted)\n");
    for row in &m.confusion {
        s.push_str(&row.iter().map(|v| format!("{v:>4}")).collect::<String>());
        s.push('\n');
    }
    s
}

/// Reconstruction error of an autoencoder on one data set: per sample, the mean squared
/// difference between the model's output and its input (the anomaly score of MLPerf Tiny's
/// anomaly detector).
#[derive(Clone, Debug, Serialize)]
pub struct Reconstruction {
    /// Number of samples.
    pub samples: usize,
    /// Mean of the per-sample errors (the mean squared error over every value).
    pub mse: f64,
    /// Median per-sample error.
    pub p50: f64,
    /// 90th percentile of the per-sample errors.
    pub p90: f64,
    /// Largest per-sample error.
    pub max: f64,
    /// Every sample's error, in order.
    pub per_sample: Vec<f64>,
}

/// Per-sample mean squared error between `outputs[i]` and `inputs[i]`; refuses rows of
/// different lengths or no rows.
pub fn reconstruction(outputs: &[Vec<f32>], inputs: &[Vec<f32>]) -> anyhow::Result<Reconstruction> {
    if outputs.is_empty() || outputs.len() != inputs.len() {
        anyhow::bail!(
            "{} outputs for {} inputs: reconstruction error needs one output per input",
            outputs.len(),
            inputs.len()
        );
    }
    let mut per_sample = Vec::with_capacity(outputs.len());
    for (i, (y, x)) in outputs.iter().zip(inputs).enumerate() {
        if y.len() != x.len() || x.is_empty() {
            anyhow::bail!(
                "sample {i}: output 0 has {} values and the input {}: reconstruction error \
                 compares a model's output with its input (an autoencoder)",
                y.len(),
                x.len()
            );
        }
        let sum: f64 = y
            .iter()
            .zip(x)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum();
        per_sample.push(sum / x.len() as f64);
    }
    let mut sorted = per_sample.clone();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    Ok(Reconstruction {
        samples: per_sample.len(),
        mse: per_sample.iter().sum::<f64>() / per_sample.len() as f64,
        p50: at(0.5),
        p90: at(0.9),
        max: sorted[sorted.len() - 1],
        per_sample,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        let m = metrics(&[0, 1, 1, 2], &[0, 1, 2, 2], 3);
        assert_eq!(m.accuracy, 0.75);
        assert_eq!(m.confusion[2], vec![0, 1, 1]);
        assert_eq!(m.precision[1], 0.5);
        assert_eq!(m.recall[2], 0.5);
        assert!((m.f1[1] - 2.0 / 3.0).abs() < 1e-12);
    }
}
