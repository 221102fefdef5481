//! Runs a `.kiln` model `N` times on one fixed pseudo-random input and prints the kernel path
//! and the output bytes, for comparing an aarch64 build (a Raspberry Pi, or qemu-aarch64) with
//! the host build bit for bit and, under qemu-aarch64's instruction-counting plugin, for
//! instructions per inference (two runs with different `N`: the difference over the extra
//! runs leaves out loading and start-up).
//!
//!     pi-bench MODEL.kiln N
//!
//! The input is the Cortex-M bench's: a 32-bit LCG (`x = x·1664525 + 1013904223`, seed
//! `0x12345678`), one step per element, its top byte as an int8 (an int8 input) or that
//! divided by 128 (a float input).
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::{DType, Model, Session};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, n] = &args[..] else {
        return Err("usage: pi-bench MODEL.kiln N".into());
    };
    let n: usize = n
        .parse()
        .map_err(|_| format!("N must be a count of runs, got {n:?}"))?;
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let buf = AlignedBuf::new(&bytes);
    let model = Model::from_bytes(buf.as_slice()).map_err(|e| format!("{path}: {e}"))?;
    let input = model.tensor(model.input_tensor(0).map_err(|e| e.to_string())?);
    let mut arena = AlignedBuf::zeroed(model.arena_size());
    let mut session = Session::new(&model, arena.as_mut_slice()).map_err(|e| e.to_string())?;
    let mut x = 0x1234_5678u32;
    let mut next = || {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (x >> 24) as u8 as i8
    };
    let bytes: Vec<u8> = match input.dtype {
        DType::I8 => (0..input.len()).map(|_| next() as u8).collect(),
        DType::F32 => (0..input.len())
            .flat_map(|_| (next() as f32 / 128.0).to_le_bytes())
            .collect(),
        d => {
            return Err(format!(
                "{path}: input of type {d:?}: pi-bench feeds int8 or f32"
            ))
        }
    };
    for _ in 0..n {
        // Set before every run: later ops may reuse the input's arena slot.
        session
            .input_bytes_mut(0)
            .map_err(|e| e.to_string())?
            .copy_from_slice(&bytes);
        session.invoke().map_err(|e| e.to_string())?;
    }
    let out = session.output_bytes(0).map_err(|e| e.to_string())?;
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    println!("{} {hex}", session.isa().name());
    Ok(())
}
