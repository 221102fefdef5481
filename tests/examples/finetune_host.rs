//! The host's run of the Cortex-M fine-tuning firmware's adaptation (the same `adapt.rs`, on the
//! same generated model and samples): `scripts/firmware.sh` compares its transcript with the
//! firmware's line for line, so the device's training is shown bit-identical to the host's.
//!
//!     cargo run --release -p kiln-tests --example finetune_host -- firmware-examples/cortex-m-finetune/generated

#[path = "../../firmware-examples/cortex-m-finetune/src/adapt.rs"]
#[allow(dead_code)]
mod adapt;

use adapt::{FEATURES, RECORD};
use kiln_runtime::train::{train_arena_size, ModelHead, Trainer};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{Model, Session};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: finetune_host <generated dir>")?,
    );
    let read =
        |f: &str| std::fs::read(dir.join(f)).map_err(|e| format!("{}: {e}", dir.join(f).display()));
    let bytes = AlignedBuf::new(&read("model.kiln")?);
    let (train, test) = (read("train.bin")?, read("test.bin")?);
    let m = Model::from_bytes(bytes.as_slice())?;
    let mh = ModelHead::find(&m, 1)?;
    let mut arena = AlignedBuf::zeroed(m.arena_size());
    let mut s = Session::new(&m, arena.as_mut_slice())?;
    let opt = adapt::optimizer();
    let mut mem = AlignedBuf::zeroed(train_arena_size(&mh.head, &opt, 1));
    let mut t = Trainer::new(mh.head, opt, adapt::LOSS, 1, mem.as_mut_slice())?;
    mh.load_params(&m, t.params_mut())?;
    let (nt, ne) = (train.len() / RECORD, test.len() / RECORD);
    let mut train_feats = vec![0f32; nt * FEATURES];
    let mut test_feats = vec![0f32; ne * FEATURES];
    let mut labels = vec![0u8; ne];
    let mut data = adapt::Samples {
        train: &train,
        test: &test,
        train_feats: &mut train_feats,
        test_feats: &mut test_feats,
        test_labels: &mut labels,
    };
    adapt::adapt(&mh, &mut s, &mut t, &mut data, &mut |l| {
        println!("{}", String::from_utf8_lossy(l).trim_end())
    })?;
    Ok(())
}
