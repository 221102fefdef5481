//! kiln's own post-training quantization of the float MLPerf Tiny models, calibrated on data
//! made from the shared samples (never the golden inputs), then judged on the golden inputs
//! against the float model: file size and fidelity at least as good as TFLite's own int8 models.

use kiln_converter::eval::argmax;
use kiln_converter::ptq::{quantize, PtqOptions};
use kiln_converter::verify::run_kiln;
use kiln_quantize::calibrate::Method;
use kiln_tests::{assets, npy};
use std::path::Path;

/// Deterministic pseudo-random numbers (not the golden inputs' generator or seeds).
struct Lcg(u32);
impl Lcg {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (self.0 >> 8) as f32 / (1u32 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        (0..12).map(|_| self.uniform()).sum::<f32>() - 6.0
    }
}

fn calibration(model: &str, a: &Path) -> Vec<Vec<f32>> {
    let mut rng = Lcg(0xC0FF_EE00 ^ model.len() as u32);
    let s = a.join("mlperf-tiny/samples");
    match model {
        "kws_ref_model_float32_dequant" => {
            // The shipped MFCC sample (int8, scale 0.5847, zero point 83) with noise, as speech
            // with background noise, plus a few noise-only frames.
            let base = npy(&s.join("kws_sample_i8.npy")).unwrap().data;
            (0..40)
                .map(|i| {
                    base.iter()
                        .map(|&q| {
                            let q = if i < 32 {
                                (q + (rng.normal() * (2 + i % 8) as f32).round())
                                    .clamp(-128.0, 127.0)
                            } else {
                                rng.uniform() * 255.0 - 128.0
                            };
                            (q - 83.0) * 0.584_702_9
                        })
                        .collect()
                })
                .collect()
        }
        "vww_96_float" => {
            let imgs = npy(&s.join("vww_samples_gray96_f32.npy")).unwrap().data;
            (0..32)
                .map(|i| {
                    let img = &imgs[(i % 2) * 9216..(i % 2 + 1) * 9216];
                    let (flip, gain, sigma) = (
                        i % 4 >= 2,
                        0.8 + 0.05 * (i % 8) as f32,
                        0.02 * (i % 5) as f32,
                    );
                    let mut v = Vec::with_capacity(9216 * 3);
                    for y in 0..96 {
                        for x in 0..96 {
                            let sx = if flip { 95 - x } else { x };
                            let g = ((img[y * 96 + sx] + 1.0) / 2.0 * gain + sigma * rng.normal())
                                .clamp(0.0, 1.0);
                            v.extend([g, g, g]);
                        }
                    }
                    v
                })
                .collect()
        }
        "pretrainedResnet" => (0..32)
            .map(|_| {
                (0..32 * 32 * 3)
                    .map(|_| (rng.uniform() * 256.0).floor())
                    .collect()
            })
            .collect(),
        "ad01_fp32" => {
            let frames = npy(&s.join("ad_normal_id01_spectrogram_f32.npy"))
                .unwrap()
                .data;
            // Windows of 5 frames at offsets the golden set does not use (it uses 0, 12, ..., 180).
            (0..48)
                .map(|k| 1 + 4 * k)
                .filter(|o| o % 12 != 0 && o + 5 <= 200)
                .map(|o| frames[o * 128..(o + 5) * 128].to_vec())
                .collect()
        }
        _ => unreachable!(),
    }
}

#[test]
fn ptq_of_float_mlperf_models_meets_tflite_int8_fidelity() {
    let Some(a) = assets() else {
        eprintln!("shared assets not available; skipping");
        return;
    };
    // (model, minimum top-1 agreement out of 16; for the autoencoder: max MSE ratio)
    let cases: &[(&str, f64)] = &[
        ("kws_ref_model_float32_dequant", 11.0),
        ("vww_96_float", 16.0),
        ("pretrainedResnet", 16.0),
        ("ad01_fp32", 1.10),
    ];
    let mut failures = Vec::new();
    for &(model, bound) in cases {
        let src = a.join(format!("mlperf-tiny/{model}.tflite"));
        let g = kiln_converter::import_file(&src).unwrap();
        let float_bytes = kiln_converter::emit::emit(&g).unwrap().0;
        let calib: Vec<Vec<Vec<f32>>> = calibration(model, &a)
            .into_iter()
            .map(|x| vec![x])
            .collect();
        let res = quantize(
            &g,
            &calib,
            &PtqOptions {
                method: Method::MinMax,
                int8_io: false,
            },
            &mut |_, _, _| {},
        )
        .unwrap();
        let q_bytes = kiln_converter::emit::emit(&res.graph).unwrap().0;
        let src_len = std::fs::metadata(&src).unwrap().len() as f64;
        let ratio = q_bytes.len() as f64 / src_len;
        let inputs = npy(&a.join("golden").join(model).join("inputs.npy")).unwrap();
        let n = inputs.shape[0];
        let isz = inputs.data.len() / n;
        let samples: Vec<Vec<Vec<f32>>> = (0..n)
            .map(|i| vec![inputs.data[i * isz..(i + 1) * isz].to_vec()])
            .collect();
        let fo = run_kiln(&float_bytes, &samples).unwrap();
        let qo = run_kiln(&q_bytes, &samples).unwrap();
        let min_sqnr = res
            .layers
            .iter()
            .filter(|l| l.int8)
            .map(|l| l.sqnr_db)
            .fold(f64::INFINITY, f64::min);
        let (score, ok) = if model == "ad01_fp32" {
            let mse = |o: &[Vec<Vec<f32>>]| -> f64 {
                o.iter()
                    .zip(&samples)
                    .map(|(y, x)| {
                        y[0].iter()
                            .zip(&x[0])
                            .map(|(a, b)| ((a - b) as f64).powi(2))
                            .sum::<f64>()
                    })
                    .sum::<f64>()
            };
            let r = mse(&qo) / mse(&fo);
            (r, r <= bound)
        } else {
            let agree = fo
                .iter()
                .zip(&qo)
                .filter(|(f, q)| argmax(&f[0]) == argmax(&q[0]))
                .count() as f64;
            (agree, agree >= bound)
        };
        eprintln!(
            "{model}: int8 {} bytes = {:.1}% of the float .tflite ({} B); score {score:.3} (bound {bound}); min layer SQNR {min_sqnr:.1} dB",
            q_bytes.len(),
            100.0 * ratio,
            src_len
        );
        // Issue #4: at most 30% of the float file. KWS is the tight one (22 KB of int8 weights
        // are already 22% of it): it fits thanks to format v2's 32-byte descriptors with a
        // shared dims table and 16-bit requantization multipliers. TFLite's own int8 KWS file is
        // 54% of the same float file.
        let max_ratio = 0.30;
        if !ok || ratio > max_ratio {
            failures.push(format!("{model}: score {score}, size ratio {ratio:.3}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
