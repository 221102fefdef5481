//! The trainer: analytic gradients against central finite differences for every layer,
//! activation and loss; mini-batches average per-sample gradients; the memory bound of a
//! keyword-spotting-sized head; errors; a head found in a model; the flash store.

use kiln_runtime::train::store::{HeadStore, RamNorFlash};
use kiln_runtime::train::{
    train_arena_size, Activation, Head, Layer, Loss, ModelHead, Optimizer, Target, TrainError,
    Trainer,
};

/// A small deterministic generator (xorshift), values in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

#[repr(C, align(16))]
struct Mem([u8; 65536]);

fn relu() -> Activation {
    Activation::Clamp {
        lo: 0.0,
        hi: f32::INFINITY,
    }
}

fn head3(act: Activation) -> Head {
    Head::new(&[
        Layer {
            inputs: 7,
            outputs: 6,
            act,
        },
        Layer {
            inputs: 6,
            outputs: 5,
            act,
        },
        Layer {
            inputs: 5,
            outputs: 4,
            act: Activation::Identity,
        },
    ])
    .unwrap()
}

/// Max over parameters of |analytic - numeric|, relative to the gradient's largest entry.
fn check_gradients(head: Head, loss: Loss, seed: u64) -> f32 {
    let mut mem = Box::new(Mem([0; 65536]));
    let mut t = Trainer::new(head, Optimizer::sgd(0.1), loss, 1, &mut mem.0).unwrap();
    let mut rng = Rng(seed);
    let p0 = rng.vec(head.num_params(), 0.6);
    t.params_mut().copy_from_slice(&p0);
    let x = rng.vec(head.inputs(), 1.5);
    let values = rng.vec(head.outputs(), 1.0);
    let teacher = rng.vec(head.outputs(), 3.0);
    let target = match loss {
        Loss::Mse => Target::Values(&values),
        _ => Target::Class(2),
    };
    let mut g = vec![0f32; head.num_params()];
    t.gradient(&x, target, Some(&teacher), &mut g).unwrap();
    let h = 1e-2f32;
    let mut worst = 0f32;
    let gmax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(gmax > 1e-3, "{loss:?}: gradient is all but zero ({gmax})");
    for i in 0..p0.len() {
        let mut p = p0.clone();
        p[i] = p0[i] + h;
        t.params_mut().copy_from_slice(&p);
        let up = t.loss(&x, target, Some(&teacher)).unwrap() as f64;
        p[i] = p0[i] - h;
        t.params_mut().copy_from_slice(&p);
        let down = t.loss(&x, target, Some(&teacher)).unwrap() as f64;
        let numeric = ((up - down) / (2.0 * h as f64)) as f32;
        worst = worst.max((numeric - g[i]).abs() / gmax);
    }
    worst
}

#[test]
fn analytic_gradients_match_finite_differences() {
    let losses = [
        Loss::CrossEntropy,
        Loss::Mse,
        Loss::Distill {
            temperature: 3.0,
            alpha: 0.7,
        },
    ];
    let acts = [
        Activation::Identity,
        relu(),
        Activation::Clamp { lo: -0.5, hi: 0.6 },
        Activation::Tanh,
        Activation::Sigmoid,
    ];
    for loss in losses {
        for act in acts {
            // A clamp's kink inside ±h of some z would make the difference quotient wrong, not
            // the gradient: try seeds until no pre-activation is that close to a bound.
            let mut best = f32::INFINITY;
            for seed in 1..6u64 {
                best = best.min(check_gradients(head3(act), loss, seed * 7919));
                if best <= 1e-3 {
                    break;
                }
            }
            println!("{loss:?} {act:?}: relative error {best:.1e}");
            assert!(best <= 1e-3, "{loss:?} {act:?}: relative error {best}");
        }
    }
}

#[test]
fn a_mini_batch_applies_the_mean_of_its_samples_gradients() {
    let head = head3(Activation::Tanh);
    let mut rng = Rng(99);
    let p0 = rng.vec(head.num_params(), 0.5);
    let xs: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(7, 1.0)).collect();
    let mut mem = Box::new(Mem([0; 65536]));
    let (lr, b) = (0.05f32, 3);
    let mut t = Trainer::new(head, Optimizer::sgd(lr), Loss::CrossEntropy, b, &mut mem.0).unwrap();
    t.params_mut().copy_from_slice(&p0);
    let mut sum = vec![0f32; p0.len()];
    let mut g = vec![0f32; p0.len()];
    for (i, x) in xs.iter().enumerate() {
        t.gradient(x, Target::Class(i), None, &mut g).unwrap();
        for (s, v) in sum.iter_mut().zip(&g) {
            *s += v;
        }
    }
    for (i, x) in xs.iter().enumerate() {
        assert_eq!(t.params(), &p0[..], "updated before the batch was complete");
        t.train_sample(x, Target::Class(i), None).unwrap();
    }
    assert_eq!(t.updates(), 1);
    let want: Vec<f32> = p0
        .iter()
        .zip(&sum)
        .map(|(w, s)| w - lr * (s * (1.0 / 3.0)))
        .collect();
    assert_eq!(t.params(), &want[..]);
    // A partial batch is applied by finish_batch, averaged over what it holds.
    t.train_sample(&xs[0], Target::Class(0), None).unwrap();
    assert_eq!(t.updates(), 1);
    t.finish_batch();
    assert_eq!(t.updates(), 2);
}

#[test]
fn sgd_loss_falls_on_a_separable_problem_with_every_optimizer() {
    let head = Head::new(&[
        Layer {
            inputs: 4,
            outputs: 8,
            act: relu(),
        },
        Layer {
            inputs: 8,
            outputs: 3,
            act: Activation::Identity,
        },
    ])
    .unwrap();
    for opt in [
        Optimizer::sgd(0.1),
        Optimizer::momentum(0.05, 0.9),
        Optimizer::rmsprop(0.01),
        Optimizer::adam(0.01).with_weight_decay(1e-4),
    ] {
        for batch in [1, 4] {
            let mut mem = Box::new(Mem([0; 65536]));
            let mut t = Trainer::new(head, opt, Loss::CrossEntropy, batch, &mut mem.0).unwrap();
            let mut rng = Rng(5);
            let p0 = rng.vec(head.num_params(), 0.5);
            t.params_mut().copy_from_slice(&p0);
            let data: Vec<(Vec<f32>, usize)> = (0..60)
                .map(|i| {
                    let c = i % 3;
                    let mut x = rng.vec(4, 0.3);
                    x[c] += 1.0;
                    (x, c)
                })
                .collect();
            let mean_loss = |t: &mut Trainer| {
                data.iter()
                    .map(|(x, c)| t.loss(x, Target::Class(*c), None).unwrap())
                    .sum::<f32>()
                    / data.len() as f32
            };
            let before = mean_loss(&mut t);
            for _ in 0..30 {
                for (x, c) in &data {
                    t.train_sample(x, Target::Class(*c), None).unwrap();
                }
                t.finish_batch();
            }
            let after = mean_loss(&mut t);
            assert!(
                after < 0.2 * before,
                "{opt:?} batch {batch}: loss {before} -> {after}"
            );
            let right = data
                .iter()
                .filter(|(x, c)| {
                    t.forward(x).unwrap();
                    t.argmax() == *c
                })
                .count();
            assert_eq!(right, data.len(), "{opt:?} batch {batch}");
        }
    }
}

#[test]
fn a_keyword_spotting_head_trains_with_sgd_in_4_kib() {
    let head = Head::new(&[Layer {
        inputs: 64,
        outputs: 12,
        act: Activation::Identity,
    }])
    .unwrap();
    assert_eq!(head.num_params() * 4, 3120);
    let sgd = train_arena_size(&head, &Optimizer::sgd(0.01), 1);
    assert!(sgd <= 4096, "SGD batch 1 needs {sgd} B");
    for (name, opt) in [
        ("sgd", Optimizer::sgd(0.01)),
        ("momentum", Optimizer::momentum(0.01, 0.9)),
        ("rmsprop", Optimizer::rmsprop(0.01)),
        ("adam", Optimizer::adam(0.01)),
    ] {
        println!(
            "64->12 head, {name}: batch 1 {} B, batch 8 {} B",
            train_arena_size(&head, &opt, 1),
            train_arena_size(&head, &opt, 8)
        );
    }
    // And it really runs in exactly that much.
    let mut mem = Mem([0; 65536]);
    let mut t = Trainer::new(
        head,
        Optimizer::sgd(0.01),
        Loss::CrossEntropy,
        1,
        &mut mem.0[..sgd],
    )
    .unwrap();
    let x = Rng(3).vec(64, 1.0);
    let l0 = t.train_sample(&x, Target::Class(11), None).unwrap();
    let l1 = t.loss(&x, Target::Class(11), None).unwrap();
    assert!(l1 < l0, "{l0} -> {l1}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let head = head3(relu());
    let mut mem = Box::new(Mem([0; 65536]));
    let need = train_arena_size(&head, &Optimizer::adam(0.01), 2);
    assert!(matches!(
        Trainer::new(head, Optimizer::adam(0.01), Loss::CrossEntropy, 2, &mut mem.0[..need - 4]),
        Err(TrainError::ArenaTooSmall { needed, got }) if needed == need && got == need - 4
    ));
    assert_eq!(
        Trainer::new(
            head,
            Optimizer::sgd(0.1),
            Loss::CrossEntropy,
            1,
            &mut mem.0[1..]
        )
        .err(),
        Some(TrainError::MisalignedArena)
    );
    assert!(matches!(
        Trainer::new(
            head,
            Optimizer::sgd(-1.0),
            Loss::CrossEntropy,
            1,
            &mut mem.0
        ),
        Err(TrainError::BadHyperparameter(_))
    ));
    assert!(Head::new(&[
        Layer {
            inputs: 3,
            outputs: 4,
            act: relu()
        },
        Layer {
            inputs: 5,
            outputs: 2,
            act: relu()
        }
    ])
    .is_err());
    let mut t = Trainer::new(head, Optimizer::sgd(0.1), Loss::CrossEntropy, 1, &mut mem.0).unwrap();
    assert!(t.set_lr(f32::NAN).is_err() && t.set_lr(0.0).is_err());
    t.set_lr(0.05).unwrap();
    let x = vec![0.5f32; 7];
    assert_eq!(
        t.train_sample(&x, Target::Class(4), None).err(),
        Some(TrainError::LabelOutOfRange {
            label: 4,
            classes: 4
        })
    );
    assert!(matches!(
        t.train_sample(&x[..6], Target::Class(0), None),
        Err(TrainError::WrongLength {
            expected: 7,
            got: 6,
            ..
        })
    ));
    let mut nan = x.clone();
    nan[3] = f32::NAN;
    assert!(matches!(
        t.train_sample(&nan, Target::Class(0), None),
        Err(TrainError::NonFiniteInput { element: 3, .. })
    ));
    // Weights so large the logits overflow: the loss is not finite; nothing changes.
    t.params_mut().fill(3e19);
    let before = t.params().to_vec();
    t.train_sample(&x, Target::Class(0), None).unwrap_err();
    let err = t.train_sample(&x, Target::Class(0), None).unwrap_err();
    assert_eq!(err, TrainError::NonFiniteLoss { step: 1 });
    assert!(err.to_string().contains("step 1"), "{err}");
    assert_eq!(t.params(), &before[..]);
}

/// x [1, 6] -> dense 6->5 relu -> reshape -> dense 5->3 -> softmax, float, packed or not.
fn mlp_model(packed: bool) -> (Vec<u8>, Vec<f32>) {
    use kiln_runtime::ops::{Act, DenseParams, OpParams, ReshapeParams, SoftmaxParams};
    use kiln_runtime::writer::{write, ModelSpec, OpSpec, TensorData, TensorSpec};
    use kiln_runtime::{DType, Quant};
    let mut rng = Rng(11);
    let (w1, b1, w2, b2) = (
        rng.vec(30, 0.7),
        rng.vec(5, 0.2),
        rng.vec(15, 0.7),
        rng.vec(3, 0.2),
    );
    let pack = |w: &[f32], o, k| {
        let mut d = w.to_vec();
        if packed {
            kiln_runtime::kernels::f32gemm::pack(w, o, k, &mut d);
        }
        d
    };
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let t = |name: &str, shape: Vec<usize>, data| TensorSpec {
        name: name.into(),
        dtype: DType::F32,
        shape,
        data,
        quant: Quant::None,
    };
    let arena = |o| TensorData::Arena { offset: o };
    let spec = ModelSpec {
        tensors: vec![
            t("x", vec![1, 6], arena(0)),
            t(
                "w1",
                vec![5, 6],
                TensorData::Constant(bytes(&pack(&w1, 5, 6))),
            ),
            t("b1", vec![5], TensorData::Constant(bytes(&b1))),
            t("h", vec![1, 5], arena(32)),
            t("hr", vec![1, 5], arena(0)),
            t(
                "w2",
                vec![3, 5],
                TensorData::Constant(bytes(&pack(&w2, 3, 5))),
            ),
            t("b2", vec![3], TensorData::Constant(bytes(&b2))),
            t("logits", vec![1, 3], arena(32)),
            t("y", vec![1, 3], arena(0)),
        ],
        ops: vec![
            OpSpec::new(
                "fc1",
                OpParams::Dense(DenseParams {
                    act: Act::Float {
                        lo: 0.0,
                        hi: f32::INFINITY,
                    },
                    packed,
                    sparse: false,
                    ..DenseParams::default()
                }),
                vec![Some(0), Some(1), Some(2)],
                vec![3],
            ),
            OpSpec::new(
                "flat",
                OpParams::Reshape(ReshapeParams),
                vec![Some(3)],
                vec![4],
            ),
            OpSpec::new(
                "fc2",
                OpParams::Dense(DenseParams {
                    packed,
                    sparse: false,
                    ..DenseParams::default()
                }),
                vec![Some(4), Some(5), Some(6)],
                vec![7],
            ),
            OpSpec::new(
                "softmax",
                OpParams::Softmax(SoftmaxParams::new(1, false)),
                vec![Some(7)],
                vec![8],
            ),
        ],
        inputs: vec![0],
        outputs: vec![8],
    };
    let params = [w1, b1, w2, b2].concat();
    (write(&spec).unwrap(), params)
}

#[test]
fn a_models_dense_layers_become_a_head_with_the_same_outputs() {
    use kiln_runtime::{AlignedBytes, Model, Session};
    for packed in [false, true] {
        let (file, params) = mlp_model(packed);
        let buf = kiln_runtime::writer::AlignedBuf::new(&file);
        let model = Model::from_bytes(buf.as_slice()).unwrap();
        for n in [1, 2] {
            let mh = ModelHead::find(&model, n).unwrap();
            assert!(mh.softmax);
            assert_eq!(mh.head.layers().len(), n);
            assert_eq!(mh.first_op, if n == 2 { 0 } else { 2 });
            let mut p = vec![0f32; mh.head.num_params()];
            mh.load_params(&model, &mut p).unwrap();
            assert_eq!(
                p,
                params[params.len() - p.len()..],
                "packed {packed}, n {n}"
            );
            let mut arena = AlignedBytes::<256>::zeroed();
            let mut s = Session::new(&model, &mut arena.0).unwrap();
            let x = [0.3f32, -0.8, 0.5, 0.9, -0.1, 0.25];
            let mut probs = [0f32; 3];
            s.run(&x, &mut probs).unwrap();
            let mut f = vec![0f32; mh.head.inputs()];
            s.set_input_f32(0, &x).unwrap();
            mh.features(&mut s, &mut f).unwrap();
            let mut mem = Box::new(Mem([0; 65536]));
            let mut t = Trainer::new(
                mh.head,
                Optimizer::sgd(0.1),
                Loss::CrossEntropy,
                1,
                &mut mem.0,
            )
            .unwrap();
            t.params_mut().copy_from_slice(&p);
            let logits = t.forward(&f).unwrap().to_vec();
            let m = logits.iter().fold(f32::MIN, |a, &b| a.max(b));
            let e: Vec<f32> = logits.iter().map(|v| (v - m).exp()).collect();
            let sum: f32 = e.iter().sum();
            for (a, b) in e.iter().map(|v| v / sum).zip(probs) {
                assert!((a - b).abs() < 1e-5, "packed {packed}, n {n}: {a} vs {b}");
            }
        }
        assert!(matches!(
            ModelHead::find(&model, 3),
            Err(TrainError::BadHead(_))
        ));
    }
}

#[test]
fn the_flash_store_keeps_the_newest_head_and_survives_a_torn_write() {
    let mut mem = vec![0u8; 8192];
    let params: Vec<f32> = Rng(8).vec(300, 2.0);
    let mut flash = RamNorFlash::new(&mut mem);
    let store = HeadStore::new(&flash, 2048, 4096, params.len()).unwrap();
    let mut out = vec![0f32; 300];
    assert_eq!(
        store.load(&mut flash, &mut out).unwrap(),
        None,
        "blank flash"
    );
    assert_eq!(store.save(&mut flash, &params).unwrap(), 1);
    assert_eq!(store.load(&mut flash, &mut out).unwrap(), Some(1));
    assert_eq!(out, params);
    let second: Vec<f32> = params.iter().map(|v| v * 0.5).collect();
    assert_eq!(store.save(&mut flash, &second).unwrap(), 2);
    assert_eq!(store.load(&mut flash, &mut out).unwrap(), Some(2));
    assert_eq!(out, second);
    // A third save cut short after its payload (power lost before the header) must leave the
    // second head loadable: emulate it by erasing the slot the third save would use and
    // writing only part of its payload.
    let snapshot = mem.clone();
    let mut flash = RamNorFlash::new(&mut mem);
    let third: Vec<f32> = params.iter().map(|v| v + 1.0).collect();
    assert_eq!(store.save(&mut flash, &third).unwrap(), 3);
    // Slots are 2,048 B (16 + 1,200 B rounded up to erase sectors) from offset 2,048.
    let slot3 = (0..8192).find(|&i| mem[i] != snapshot[i]).unwrap() / 2048 * 2048;
    assert_eq!(slot3, 2048, "the third record reuses the first slot");
    let mut torn = snapshot.clone();
    torn[slot3..slot3 + 2048].fill(0xFF);
    torn[slot3 + 16..slot3 + 600].copy_from_slice(&mem[slot3 + 16..slot3 + 600]);
    let mut flash = RamNorFlash::new(&mut torn);
    assert_eq!(store.load(&mut flash, &mut out).unwrap(), Some(2));
    assert_eq!(out, second);
    // A flipped payload bit fails the CRC: the other slot's record is used.
    let mut flipped = mem.clone();
    flipped[slot3 + 100] ^= 0x10;
    let mut flash = RamNorFlash::new(&mut flipped);
    assert_eq!(store.load(&mut flash, &mut out).unwrap(), Some(2));
    // Wrong sizes are errors, not panics.
    assert!(store.load(&mut flash, &mut out[..10]).is_err());
    assert!(HeadStore::new(&flash, 2048, 1024, 300).is_err());
    assert!(HeadStore::new(&flash, 100, 4096, 300).is_err());
}
