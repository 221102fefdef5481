//! Copies the model `kiln export` generated (`KILN_FW_MODEL`, a directory; default `generated`)
//! and the memory map of the board it runs on (`KILN_FW_BOARD`, a file under `../memory`;
//! default `mps2-an386`) into the build.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let model = env::var("KILN_FW_MODEL").unwrap_or_else(|_| "generated".into());
    let board = env::var("KILN_FW_BOARD").unwrap_or_else(|_| "mps2-an386".into());
    for f in ["model.rs", "model.kiln", "input.bin", "expected.bin"] {
        let from = PathBuf::from(&model).join(f);
        fs::copy(&from, out.join(f)).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `kiln export MODEL -o DIR -i INPUT` first)",
                from.display()
            )
        });
        println!("cargo:rerun-if-changed={}", from.display());
    }
    let map = PathBuf::from("../memory").join(format!("{board}.x"));
    let text = fs::read_to_string(&map)
        .unwrap_or_else(|e| panic!("{}: {e} (KILN_FW_BOARD names a memory map)", map.display()));
    fs::write(out.join("memory.x"), &text).unwrap();
    // The RAM region's start: with flip-link the stack sits at the bottom of RAM, below the
    // statics, so the stack measurement needs it.
    let ram = text
        .lines()
        .find(|l| l.trim_start().starts_with("RAM"))
        .and_then(|l| l.split("ORIGIN =").nth(1))
        .and_then(|r| r.split(',').next())
        .map(|o| o.trim().trim_start_matches("0x").replace('_', ""))
        .and_then(|o| usize::from_str_radix(&o, 16).ok())
        .unwrap_or_else(|| panic!("{}: no `RAM : ORIGIN = 0x...` line", map.display()));
    fs::write(
        out.join("board.rs"),
        format!("/// Start of RAM on `{board}` (its memory map).\npub const RAM_START: usize = {ram:#x};\n"),
    )
    .unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", map.display());
    println!("cargo:rerun-if-env-changed=KILN_FW_MODEL");
    println!("cargo:rerun-if-env-changed=KILN_FW_BOARD");
}
