//! Links against the BBC micro:bit's memory map (`../memory/microbit.x`: the nRF51822's
//! 256 KiB flash and 16 KiB RAM, QEMU `microbit`) and records the RAM's start for the stack
//! measurement (flip-link puts the stack at the bottom of RAM).
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let map = PathBuf::from("../memory/microbit.x");
    fs::copy(&map, out.join("memory.x")).unwrap();
    fs::write(
        out.join("board_map.rs"),
        "/// Start of RAM on the micro:bit.\npub const RAM_START: usize = 0x2000_0000;\n",
    )
    .unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", map.display());
    println!("cargo:rerun-if-changed=generated/model.rs");
}
