//! Links against the Cortex-M4F board QEMU runs it on (`mps2-an386`, `../memory`) and records
//! the RAM's start for the stack measurement (flip-link puts the stack at the bottom of RAM).
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let map = PathBuf::from("../memory/mps2-an386.x");
    fs::copy(&map, out.join("memory.x")).unwrap();
    fs::write(
        out.join("board_map.rs"),
        "/// Start of RAM on `mps2-an386`.\npub const RAM_START: usize = 0x2000_0000;\n",
    )
    .unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", map.display());
    for f in ["model.rs", "model.kiln", "train.bin", "test.bin"] {
        println!("cargo:rerun-if-changed=generated/{f}");
    }
}
