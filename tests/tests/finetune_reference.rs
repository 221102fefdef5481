//! kiln's trainer against a plain numpy implementation of the same training
//! (`scripts/train_reference.py`, float64, written from the formulas, not from kiln's code):
//! every loss and optimizer, batch 1 and mini-batches, 100 steps, the loss and every
//! parameter within 1e-4 after each step.

use kiln_runtime::train::{Activation, Head, Layer, Loss, Optimizer, Target, Trainer};
use std::fmt::Write as _;
use std::process::Command;

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

fn act_json(a: Activation) -> String {
    match a {
        Activation::Identity => "\"identity\", 0, 0".into(),
        Activation::Clamp { lo, hi } => {
            let f = |v: f32| {
                if v.is_infinite() {
                    (if v > 0.0 { "1e300" } else { "-1e300" }).to_string()
                } else {
                    format!("{v:?}")
                }
            };
            format!("\"clamp\", {}, {}", f(lo), f(hi))
        }
        Activation::Tanh => "\"tanh\", 0, 0".into(),
        Activation::Sigmoid => "\"sigmoid\", 0, 0".into(),
    }
}

fn list(v: &[f32]) -> String {
    let s: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", s.join(","))
}

struct Case {
    name: &'static str,
    layers: Vec<Layer>,
    loss: Loss,
    opt: Optimizer,
    batch: usize,
}

fn run_case(c: &Case, python: &str) {
    let head = Head::new(&c.layers).unwrap();
    let mut rng = Rng(0x5eed ^ (c.name.len() as u64 * 977));
    let p0 = rng.vec(head.num_params(), 0.5);
    let n = head.outputs();
    let steps = 100;
    let xs: Vec<Vec<f32>> = (0..steps).map(|_| rng.vec(head.inputs(), 1.0)).collect();
    let classes: Vec<usize> = (0..steps).map(|i| (i * 7 + i / 3) % n).collect();
    let values: Vec<Vec<f32>> = (0..steps).map(|_| rng.vec(n, 1.0)).collect();
    let teacher: Vec<Vec<f32>> = (0..steps).map(|_| rng.vec(n, 4.0)).collect();

    let mut mem = kiln_runtime::writer::AlignedBuf::zeroed(32768);
    let mut t = Trainer::new(head, c.opt, c.loss, c.batch, mem.as_mut_slice()).unwrap();
    t.params_mut().copy_from_slice(&p0);
    let mut got = Vec::new();
    for i in 0..steps {
        let target = match c.loss {
            Loss::Mse => Target::Values(&values[i]),
            _ => Target::Class(classes[i]),
        };
        let l = t.train_sample(&xs[i], target, Some(&teacher[i])).unwrap();
        got.push((l, t.params().to_vec()));
    }

    let mut j = String::from("{\"layers\": [");
    for (i, l) in c.layers.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        write!(j, "{sep}[{}, {}, {}]", l.inputs, l.outputs, act_json(l.act)).unwrap();
    }
    let loss = match c.loss {
        Loss::CrossEntropy => "[\"ce\", 1, 0]".to_string(),
        Loss::Mse => "[\"mse\", 1, 0]".to_string(),
        Loss::Distill { temperature, alpha } => {
            format!("[\"distill\", {temperature:?}, {alpha:?}]")
        }
    };
    let opt = match c.opt {
        Optimizer::Sgd {
            lr,
            momentum,
            weight_decay,
        } => format!("[\"sgd\", {lr:?}, {momentum:?}, 0, 0, 0, 0, {weight_decay:?}]"),
        Optimizer::RmsProp {
            lr,
            alpha,
            eps,
            weight_decay,
        } => format!("[\"rmsprop\", {lr:?}, 0, {alpha:?}, 0, 0, {eps:?}, {weight_decay:?}]"),
        Optimizer::Adam {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } => format!("[\"adam\", {lr:?}, 0, 0, {beta1:?}, {beta2:?}, {eps:?}, {weight_decay:?}]"),
    };
    let rows = |v: &[Vec<f32>]| {
        let s: Vec<String> = v.iter().map(|r| list(r)).collect();
        format!("[{}]", s.join(","))
    };
    write!(
        j,
        "], \"loss\": {loss}, \"opt\": {opt}, \"batch\": {}, \"params\": {}, \"samples\": {}, \
         \"classes\": {:?}, \"values\": {}, \"teacher\": {}}}",
        c.batch,
        list(&p0),
        rows(&xs),
        classes,
        rows(&values),
        rows(&teacher)
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("kiln-train-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.json", c.name));
    std::fs::write(&path, j).unwrap();
    let script = kiln_tests::workspace().join("scripts/train_reference.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e} (set KILN_PYTHON to the venv's python)"));
    assert!(
        out.status.success(),
        "{}: reference failed: {}",
        c.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let want: Vec<Vec<f64>> = text
        .lines()
        .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(want.len(), steps, "{}", c.name);
    let mut worst = (0f64, 0f64);
    for (i, ((l, p), w)) in got.iter().zip(&want).enumerate() {
        let dl = (*l as f64 - w[0]).abs() / w[0].abs().max(1.0);
        let dp = p
            .iter()
            .zip(&w[1..])
            .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
        worst = (worst.0.max(dl), worst.1.max(dp));
        assert!(
            dl <= 1e-4 && dp <= 1e-4,
            "{}: step {}: loss {l} vs {} ({dl:e}), parameters differ by {dp:e}",
            c.name,
            i + 1,
            w[0]
        );
    }
    println!(
        "{}: 100 steps, worst loss difference {:.1e}, worst parameter difference {:.1e}",
        c.name, worst.0, worst.1
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn training_matches_the_numpy_reference_over_100_steps() {
    let python = std::env::var("KILN_PYTHON").unwrap_or_else(|_| "python3".into());
    let relu = Activation::Clamp {
        lo: 0.0,
        hi: f32::INFINITY,
    };
    let two = |act| {
        vec![
            Layer {
                inputs: 10,
                outputs: 8,
                act,
            },
            Layer {
                inputs: 8,
                outputs: 5,
                act: Activation::Identity,
            },
        ]
    };
    let cases = [
        Case {
            name: "ce-relu-sgd-b1",
            layers: two(relu),
            loss: Loss::CrossEntropy,
            opt: Optimizer::sgd(0.05),
            batch: 1,
        },
        Case {
            name: "ce-tanh-momentum-b4",
            layers: two(Activation::Tanh),
            loss: Loss::CrossEntropy,
            opt: Optimizer::momentum(0.05, 0.9).with_weight_decay(1e-3),
            batch: 4,
        },
        Case {
            name: "mse-sigmoid-rmsprop-b1",
            layers: two(Activation::Sigmoid),
            loss: Loss::Mse,
            opt: Optimizer::rmsprop(0.003),
            batch: 1,
        },
        Case {
            name: "distill-relu6-adam-b1",
            layers: two(Activation::Clamp { lo: 0.0, hi: 6.0 }),
            loss: Loss::Distill {
                temperature: 4.0,
                alpha: 0.6,
            },
            opt: Optimizer::adam(0.002).with_weight_decay(1e-4),
            batch: 1,
        },
        Case {
            name: "ce-linear-adam-b8",
            layers: vec![Layer {
                inputs: 12,
                outputs: 6,
                act: Activation::Identity,
            }],
            loss: Loss::CrossEntropy,
            opt: Optimizer::adam(0.01),
            batch: 8,
        },
        Case {
            name: "mse-three-layers-sgd-b2",
            layers: vec![
                Layer {
                    inputs: 6,
                    outputs: 7,
                    act: Activation::Tanh,
                },
                Layer {
                    inputs: 7,
                    outputs: 5,
                    act: relu,
                },
                Layer {
                    inputs: 5,
                    outputs: 3,
                    act: Activation::Identity,
                },
            ],
            loss: Loss::Mse,
            opt: Optimizer::sgd(0.05).with_weight_decay(1e-3),
            batch: 2,
        },
    ];
    for c in &cases {
        run_case(c, &python);
    }
}
