//! Links against the memory map of the board each target runs on under QEMU (`../memory`):
//! Cortex-M4F builds on `mps2-an386`, Cortex-M0/M0+ builds on `mps2-an385` (the M3 board, the
//! only QEMU board with RAM enough for the keyword spotter's 16 KB arena: the micro:bit has
//! 16 KiB in all), Cortex-M33 builds on `mps2-an505`; and records the RAM's start for the stack
//! measurement (flip-link puts the stack at the bottom of RAM).
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let target = env::var("TARGET").unwrap_or_default();
    let (board, ram) = if target.starts_with("thumbv6m") {
        ("mps2-an385", 0x2000_0000)
    } else if target.starts_with("thumbv8m") {
        ("mps2-an505", 0x3800_0000)
    } else {
        ("mps2-an386", 0x2000_0000)
    };
    let map = PathBuf::from("../memory").join(format!("{board}.x"));
    fs::copy(&map, out.join("memory.x")).unwrap();
    fs::write(
        out.join("board_map.rs"),
        format!("/// Start of RAM on `{board}`.\npub const RAM_START: usize = {ram:#x};\n"),
    )
    .unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", map.display());
    println!("cargo:rerun-if-changed=generated/model.rs");
}
