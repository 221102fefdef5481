//! The adaptation the firmware runs and the host reruns (`tests/examples/finetune_host.rs`
//! includes this file): the int8 digits backbone stays frozen, its f32 head (128 -> 10) learns
//! digits turned 90 degrees one sample at a time with plain SGD, and the held-out accuracy is
//! measured every [`CHECKPOINT`] samples. Only `core` and `kiln_runtime`: the same code, so the
//! same bits, on the Cortex-M4F and on the host.

use core::fmt::Write;
use kiln_runtime::train::{Loss, ModelHead, Optimizer, Target, TrainError, Trainer};
use kiln_runtime::Session;

/// Bytes per recorded sample: 64 pixels (0..=16, as scikit-learn's digits) and the label.
pub const RECORD: usize = 65;
/// Features the head reads.
pub const FEATURES: usize = 128;
/// Samples between two held-out measurements.
pub const CHECKPOINT: usize = 50;
/// Passes over the training samples.
pub const PASSES: usize = 2;
/// The optimizer: plain SGD, batch 1 (the least memory).
pub fn optimizer() -> Optimizer {
    Optimizer::sgd(0.01)
}

/// The head's input features of a recorded sample (pixels / 16, as the model was trained).
pub fn features(
    mh: &ModelHead,
    s: &mut Session<'_, '_>,
    rec: &[u8],
    out: &mut [f32],
) -> Result<(), TrainError> {
    let mut x = [0f32; 64];
    for (v, &p) in x.iter_mut().zip(rec) {
        *v = p as f32 / 16.0;
    }
    s.set_input_f32(0, &x)?;
    mh.features(s, out)
}

/// Held-out samples the head classifies right.
pub fn correct(t: &mut Trainer<'_>, feats: &[f32], labels: &[u8]) -> Result<usize, TrainError> {
    let mut right = 0;
    for (f, &l) in feats.chunks(FEATURES).zip(labels) {
        t.forward(f)?;
        right += (t.argmax() == l as usize) as usize;
    }
    Ok(right)
}

/// CRC-32 of the head's parameters' bits: the fingerprint the host and the device compare.
pub fn params_crc(p: &[f32]) -> u32 {
    let mut crc = 0;
    for v in p {
        crc = kiln_runtime::format::crc32_update(crc, &v.to_bits().to_le_bytes());
    }
    crc
}

/// One line of the transcript.
pub type Line = [u8; 120];

fn line(args: core::fmt::Arguments<'_>) -> Line {
    struct Buf(Line, usize);
    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let b = s.as_bytes();
            let n = b.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&b[..n]);
            self.1 += n;
            Ok(())
        }
    }
    let mut b = Buf([b' '; 120], 0);
    let _ = b.write_fmt(args);
    b.0
}

/// The recorded samples and the memory their features are cached in (`FEATURES` floats per
/// sample).
pub struct Samples<'a> {
    /// Training records.
    pub train: &'a [u8],
    /// Held-out records.
    pub test: &'a [u8],
    /// Training features.
    pub train_feats: &'a mut [f32],
    /// Held-out features.
    pub test_feats: &'a mut [f32],
    /// Held-out labels.
    pub test_labels: &'a mut [u8],
}

/// Features and labels of the held-out records.
pub fn held_out(
    mh: &ModelHead,
    s: &mut Session<'_, '_>,
    d: &mut Samples<'_>,
) -> Result<(), TrainError> {
    for ((rec, f), l) in d
        .test
        .chunks(RECORD)
        .zip(d.test_feats.chunks_mut(FEATURES))
        .zip(d.test_labels.iter_mut())
    {
        features(mh, s, rec, f)?;
        *l = rec[64];
    }
    Ok(())
}

/// Adapts the head: features of every sample through the backbone once, then [`PASSES`]
/// passes of one SGD step per training sample. `say` gets each transcript line. Returns the
/// held-out samples right at the end.
pub fn adapt(
    mh: &ModelHead,
    s: &mut Session<'_, '_>,
    t: &mut Trainer<'_>,
    d: &mut Samples<'_>,
    say: &mut dyn FnMut(&Line),
) -> Result<usize, TrainError> {
    for (rec, f) in d
        .train
        .chunks(RECORD)
        .zip(d.train_feats.chunks_mut(FEATURES))
    {
        features(mh, s, rec, f)?;
    }
    held_out(mh, s, d)?;
    let n_test = d.test_labels.len();
    let right = correct(t, d.test_feats, d.test_labels)?;
    say(&line(format_args!(
        "adapt: before: held-out accuracy {right}/{n_test}"
    )));
    let (mut seen, mut sum) = (0usize, 0f32);
    for _ in 0..PASSES {
        for (rec, f) in d.train.chunks(RECORD).zip(d.train_feats.chunks(FEATURES)) {
            sum += t.train_sample(f, Target::Class(rec[64] as usize), None)?;
            seen += 1;
            if seen % CHECKPOINT == 0 {
                let right = correct(t, d.test_feats, d.test_labels)?;
                let mean = sum / CHECKPOINT as f32;
                say(&line(format_args!(
                    "adapt: {seen:4} samples: mean loss {mean:.4} ({:08x}), held-out accuracy {right}/{n_test}",
                    mean.to_bits()
                )));
                sum = 0.0;
            }
        }
    }
    let right = correct(t, d.test_feats, d.test_labels)?;
    say(&line(format_args!(
        "adapt: done: held-out accuracy {right}/{n_test}, head crc {:08x}",
        params_crc(t.params())
    )));
    Ok(right)
}

/// The loss the trainer is built with.
pub const LOSS: Loss = Loss::CrossEntropy;
