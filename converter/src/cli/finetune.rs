//! `kiln finetune`: train a model's last dense layers on labelled data with the runtime's
//! trainer (the code a device runs), with a held-out split, early stopping, and the tuned head
//! written into a new model file.

use super::common::{load_model_bytes, open_model, progress_bar, single_input, ImageArgs};
use super::eval::read_labels;
use super::run::load_all;
use anyhow::{anyhow, bail, Context, Result};
use kiln_converter::{emit, eval, finetune, fsutil, npy, verify};
use kiln_runtime::train::{
    train_arena_size, Loss, ModelHead, Optimizer, Target, TrainError, Trainer,
};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{Model, Session};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Loss choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LossArg {
    /// Softmax cross-entropy with integer class labels.
    Ce,
    /// Mean squared error with target vectors [N, outputs].
    Mse,
}

/// Optimizer choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptArg {
    /// Plain SGD.
    Sgd,
    /// SGD with momentum (--momentum).
    Momentum,
    /// RMSprop (alpha 0.99, eps 1e-8).
    Rmsprop,
    /// Adam (betas 0.9, 0.999, eps 1e-8).
    Adam,
}

/// Arguments of `kiln finetune`.
#[derive(clap::Args)]
pub struct FinetuneArgs {
    /// The .kiln model whose last dense layers are tuned (the rest stays frozen).
    model: PathBuf,
    /// Training inputs as one .npy batch [N, ...] (as `kiln eval` reads them).
    #[arg(short, long)]
    input: PathBuf,
    /// Labels: .npy [N] class indices (--loss ce), or [N, outputs] targets (--loss mse).
    #[arg(short, long)]
    labels: PathBuf,
    /// The tuned model.
    #[arg(short, long)]
    output: PathBuf,
    /// How many dense layers at the model's end to train (1-4).
    #[arg(long, default_value_t = 1)]
    head: usize,
    /// Loss (with --teacher: cross-entropy plus distillation).
    #[arg(long, value_enum, default_value = "ce")]
    loss: LossArg,
    /// Optimizer.
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptArg,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Momentum of --optimizer momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Mini-batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Passes over the training split.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Fraction of the data held out for validation and early stopping (0: none).
    #[arg(long, default_value_t = 0.2)]
    val_split: f32,
    /// Stop after this many epochs without a lower validation loss (0: never).
    #[arg(long, default_value_t = 3)]
    patience: usize,
    /// Seed of the split and of the per-epoch shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A teacher model (e.g. the float model of an int8 student): distill its softened
    /// outputs into the head.
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Distillation temperature.
    #[arg(long, default_value_t = 4.0)]
    temperature: f32,
    /// Weight of the teacher term in the distillation loss, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    alpha: f32,
    #[command(flatten)]
    image: ImageArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// splitmix64: the split and the shuffles, reproducible from --seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn shuffle(&mut self, v: &mut [usize]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// The head's input features of every row (the backbone runs once per row: the cache).
fn features(
    m: &Model<'_>,
    mh: &ModelHead,
    rows: &[Vec<u8>],
    what: &str,
    bar: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<Vec<f32>>> {
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let mut s = Session::new(m, arena.as_mut_slice())?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        verify::set_row(&mut s, i, row)?;
        let mut f = vec![0f32; mh.head.inputs()];
        mh.features(&mut s, &mut f)
            .map_err(|e| anyhow!("input #{i}: {e}"))?;
        out.push(f);
        bar(what, i + 1, rows.len());
    }
    Ok(out)
}

enum Labels {
    Classes(Vec<usize>),
    Values(Vec<Vec<f32>>),
}

impl Labels {
    fn target(&self, i: usize) -> Target<'_> {
        match self {
            Labels::Classes(c) => Target::Class(c[i]),
            Labels::Values(v) => Target::Values(&v[i]),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Score {
    loss: f64,
    accuracy: Option<f64>,
}

/// Mean loss (and accuracy for classes) of the trainer's current head on `idx`.
fn score(
    t: &mut Trainer<'_>,
    feats: &[Vec<f32>],
    labels: &Labels,
    teacher: Option<&[Vec<f32>]>,
    idx: &[usize],
) -> Result<Score> {
    let (mut loss, mut right) = (0f64, 0usize);
    for &i in idx {
        loss += t
            .loss(&feats[i], labels.target(i), teacher.map(|v| &v[i][..]))
            .map_err(|e| anyhow!("sample #{i}: {e}"))? as f64;
        if let Labels::Classes(c) = labels {
            right += (t.argmax() == c[i]) as usize;
        }
    }
    let n = idx.len().max(1) as f64;
    Ok(Score {
        loss: loss / n,
        accuracy: matches!(labels, Labels::Classes(_)).then_some(right as f64 / n),
    })
}

fn fmt_score(s: &Score) -> String {
    match s.accuracy {
        Some(a) => format!("loss {:.4}, accuracy {:.2}%", s.loss, a * 100.0),
        None => format!("loss {:.6}", s.loss),
    }
}

/// Runs `kiln finetune`.
pub fn run(a: FinetuneArgs) -> Result<()> {
    let buf = load_model_bytes(&a.model)?;
    let m = open_model(&buf, &a.model)?;
    let spec = single_input(&m, &a.model, "kiln finetune")?;
    let mh = ModelHead::find(&m, a.head).map_err(|e| match e {
        TrainError::Model { op, problem } => {
            let o = m.op(op);
            anyhow!(
                "{}: --head {}: op #{op} ({} '{}'): {problem}",
                a.model.display(),
                a.head,
                o.kind.name(),
                o.name()
            )
        }
        e => anyhow!("{}: --head {}: {e}", a.model.display(), a.head),
    })?;
    let classes = mh.head.outputs();
    if a.loss == LossArg::Mse && (mh.softmax || a.teacher.is_some()) {
        bail!(
            "{}: --loss mse trains the head's outputs directly, but {}; use --loss ce",
            a.model.display(),
            if a.teacher.is_some() {
                "--teacher distills class probabilities"
            } else {
                "this model ends with a softmax (a classifier)"
            }
        );
    }
    if !(0.0..1.0).contains(&a.val_split) {
        bail!("--val-split must be in [0, 1)");
    }
    let batch = load_all(std::slice::from_ref(&a.input), &spec, &a.image)?;
    let n = batch.rows.len();
    if n == 0 {
        bail!("{}: no inputs", a.input.display());
    }
    let labels = match a.loss {
        LossArg::Ce => {
            let c = read_labels(&a.labels)?;
            if let Some((i, &l)) = c.iter().enumerate().find(|(_, &l)| l >= classes) {
                bail!(
                    "{}: label #{i} is {l} but the head of {} has {classes} classes (0..{})",
                    a.labels.display(),
                    a.model.display(),
                    classes - 1
                );
            }
            Labels::Classes(c)
        }
        LossArg::Mse => {
            let t = npy::read(&a.labels)?;
            if t.shape.len() != 2 || t.shape[1] != classes {
                bail!(
                    "{}: targets of shape {:?}; --loss mse needs [N, {classes}] (the head's outputs)",
                    a.labels.display(),
                    t.shape
                );
            }
            Labels::Values(t.data.chunks(classes).map(|c| c.to_vec()).collect())
        }
    };
    let count = match &labels {
        Labels::Classes(c) => c.len(),
        Labels::Values(v) => v.len(),
    };
    if count != n {
        bail!(
            "{} holds {n} inputs but {} holds {count} labels",
            a.input.display(),
            a.labels.display()
        );
    }
    let opt = match a.optimizer {
        OptArg::Sgd => Optimizer::sgd(a.lr),
        OptArg::Momentum => Optimizer::momentum(a.lr, a.momentum),
        OptArg::Rmsprop => Optimizer::rmsprop(a.lr),
        OptArg::Adam => Optimizer::adam(a.lr),
    }
    .with_weight_decay(a.weight_decay);
    let loss = match (&a.teacher, a.loss) {
        (Some(_), _) => Loss::Distill {
            temperature: a.temperature,
            alpha: a.alpha,
        },
        (None, LossArg::Ce) => Loss::CrossEntropy,
        (None, LossArg::Mse) => Loss::Mse,
    };

    // Hyperparameters and the head's parameters are checked before the backbone runs.
    let need = train_arena_size(&mh.head, &opt, a.batch);
    let mut mem = AlignedBuf::zeroed(need);
    let mut t = Trainer::new(mh.head, opt, loss, a.batch, mem.as_mut_slice())
        .map_err(|e| anyhow!("{e}"))?;
    mh.load_params(&m, t.params_mut())
        .map_err(|e| anyhow!("{}: {e}", a.model.display()))?;
    let mut bar = progress_bar();
    let feats = features(&m, &mh, &batch.rows, "features", &mut bar)?;
    let teacher_logits = match &a.teacher {
        None => None,
        Some(tp) => Some(teacher_outputs(tp, &batch.rows, classes, &mut bar)?),
    };

    // Split: a seeded shuffle, the first part held out.
    let mut rng = Rng(a.seed ^ 0x6b69_6c6e);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let n_val = ((n as f64 * a.val_split as f64).round() as usize).min(n - 1);
    let (val, train) = order.split_at(n_val);
    let (val, mut train) = (val.to_vec(), train.to_vec());

    let tl = teacher_logits.as_deref();
    let eval_set = if val.is_empty() {
        train.clone()
    } else {
        val.clone()
    };
    let before = score(&mut t, &feats, &labels, tl, &eval_set)?;
    let set_name = if val.is_empty() {
        "training"
    } else {
        "validation"
    };
    if !a.json {
        outln!(
            "head: {} dense layer(s), {} -> {}, {} parameters; training memory {need} B \
             ({:?}, batch {}); {} training / {} validation samples",
            mh.head.layers().len(),
            mh.head.inputs(),
            classes,
            mh.head.num_params(),
            a.optimizer,
            a.batch,
            train.len(),
            val.len()
        );
        outln!("before:   {set_name} {}", fmt_score(&before));
    }
    let mut best = (before.loss, t.params().to_vec(), 0usize);
    let mut epochs = Vec::new();
    let mut stale = 0;
    for epoch in 1..=a.epochs {
        rng.shuffle(&mut train);
        let (mut sum, mut right) = (0f64, 0usize);
        for &i in &train {
            let l = t
                .train_sample(&feats[i], labels.target(i), tl.map(|v| &v[i][..]))
                .map_err(|e| match e {
                    TrainError::NonFiniteLoss { step } => anyhow!(
                        "epoch {epoch}, sample #{i} (step {step}): the loss is NaN or \
                         infinite; lower --lr (now {:e})",
                        a.lr
                    ),
                    e => anyhow!("epoch {epoch}, sample #{i}: {e}"),
                })?;
            sum += l as f64;
            if let Labels::Classes(c) = &labels {
                right += (t.argmax() == c[i]) as usize;
            }
        }
        t.finish_batch();
        let train_score = Score {
            loss: sum / train.len() as f64,
            accuracy: matches!(labels, Labels::Classes(_))
                .then_some(right as f64 / train.len() as f64),
        };
        let v = score(&mut t, &feats, &labels, tl, &eval_set)?;
        let improved = v.loss < best.0;
        if improved || val.is_empty() {
            best = (v.loss, t.params().to_vec(), epoch);
            stale = 0;
        } else {
            stale += 1;
        }
        if !a.json {
            outln!(
                "epoch {epoch:>3}: train {} | {set_name} {}{}",
                fmt_score(&train_score),
                fmt_score(&v),
                if improved { "" } else { " (no better)" }
            );
        }
        epochs.push(json!({"epoch": epoch, "train_loss": train_score.loss,
            "train_accuracy": train_score.accuracy, "val_loss": v.loss, "val_accuracy": v.accuracy}));
        if a.patience > 0 && stale >= a.patience && !val.is_empty() {
            if !a.json {
                outln!("early stop: no lower {set_name} loss for {stale} epochs");
            }
            break;
        }
    }

    // The best head into a new file, then measured from that file.
    let (g, note) = finetune::with_tuned_head(&m, &mh, &best.1)?;
    let (bytes, plan) = emit::emit(&g)?;
    let tuned = AlignedBuf::new(&bytes);
    let tm = Model::from_bytes(tuned.as_slice()).context("internal: tuned model does not load")?;
    let idx = &eval_set;
    let rows: Vec<Vec<u8>> = idx.iter().map(|&i| batch.rows[i].clone()).collect();
    let outs = verify::run_rows(&tm, &rows)?;
    let file_score = match &labels {
        Labels::Classes(c) => {
            let preds: Vec<usize> = outs.iter().map(|o| eval::argmax(&o[0].real)).collect();
            let right = preds.iter().zip(idx).filter(|(p, &i)| **p == c[i]).count();
            Some(right as f64 / idx.len().max(1) as f64)
        }
        Labels::Values(_) => None,
    };
    fsutil::write_atomic(&a.output, &bytes)?;
    if a.json {
        outln!(
            "{}",
            json!({"output": a.output, "head_layers": mh.head.layers().len(), "parameters": mh.head.num_params(),
                "training_memory_bytes": need, "train_samples": train.len(), "val_samples": val.len(),
                "before": {"loss": before.loss, "accuracy": before.accuracy},
                "best_epoch": best.2, "best_loss": best.0, "epochs": epochs,
                "tuned_file_accuracy": file_score, "bytes": bytes.len(), "arena_bytes": plan.arena_size,
                "int8_head_now_f32": note.int8_to_f32})
        );
        return Ok(());
    }
    if note.int8_to_f32 {
        outln!(
            "note: the int8 head now runs in f32 behind a dequantize of the backbone's \
             features (the backbone stays int8)"
        );
    }
    if note.f16_to_f32 {
        outln!("note: the head's f16 weights are stored as f32 after tuning");
    }
    outln!(
        "best epoch {}; wrote {} ({} B, arena {} B){}",
        best.2,
        a.output.display(),
        bytes.len(),
        plan.arena_size,
        match file_score {
            Some(acc) => format!(
                "; {set_name} accuracy of the written file: {:.2}% (before {:.2}%)",
                acc * 100.0,
                before.accuracy.unwrap_or(0.0) * 100.0
            ),
            None => String::new(),
        }
    );
    Ok(())
}

/// The teacher's logits (its last dense layer's outputs) for every row.
fn teacher_outputs(
    path: &Path,
    rows: &[Vec<u8>],
    classes: usize,
    bar: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<Vec<f32>>> {
    let buf = load_model_bytes(path)?;
    let m = open_model(&buf, path)?;
    let mh = ModelHead::find(&m, 1).map_err(|e| anyhow!("{} (teacher): {e}", path.display()))?;
    if mh.head.outputs() != classes {
        bail!(
            "{} (teacher) has {} outputs; the student's head has {classes}",
            path.display(),
            mh.head.outputs()
        );
    }
    let feats = features(&m, &mh, rows, "teacher", bar)
        .with_context(|| format!("{} (teacher)", path.display()))?;
    let mut mem = AlignedBuf::zeroed(train_arena_size(&mh.head, &Optimizer::sgd(1.0), 1));
    let mut t = Trainer::new(
        mh.head,
        Optimizer::sgd(1.0),
        Loss::CrossEntropy,
        1,
        mem.as_mut_slice(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    mh.load_params(&m, t.params_mut())
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    feats
        .iter()
        .map(|f| Ok(t.forward(f).map_err(|e| anyhow!("{e}"))?.to_vec()))
        .collect()
}
