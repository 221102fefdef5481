//! The `kiln` subcommands, one module each.

pub mod bench;
pub mod common;
pub mod convert;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod inspect;
pub mod keys;
pub mod prune;
pub mod quantize;
pub mod run;
pub mod verify;
