//! Machine anomaly detection on a BBC micro:bit (nRF51822: Cortex-M0, 256 KiB flash, 16 KiB
//! RAM) with kiln: MLPerf Tiny's dense autoencoder (ad01), pruned to half its weights by
//! `kiln prune` and quantized to int8 by `kiln quantize --int8-io`, so that model and code fit
//! the part's flash; its activations live in one static arena sized by `kiln export`.
//!
//! Each 640-value window (5 log-mel frames of a machine's sound) is reconstructed by the
//! autoencoder; the mean squared difference between window and reconstruction is the anomaly
//! score (high: the sound is unlike the normal sounds the model was trained on). Under QEMU
//! (`microbit`) the console is semihosting, the windows are held-out windows of the sample
//! spectrogram recorded by `kiln export`, and the exit status tells CI whether every output
//! matched the host runtime's bit for bit.
#![no_std]
#![no_main]

mod board;
#[path = "../generated/model.rs"]
#[allow(dead_code)]
mod model;

use cortex_m_rt::entry;
use kiln_runtime::{AlignedBytes, Model, Session};
use panic_semihosting as _;

/// Called right before and after one inference: QEMU's instruction counter uses it as a marker.
#[inline(never)]
#[no_mangle]
pub extern "C" fn bench_marker(id: u32) -> u32 {
    core::hint::black_box(id)
}

/// Anomaly score of one window: the mean squared difference between the input window and its
/// reconstruction, both dequantized (`real = scale * (q - zero_point)`).
fn score(input: &[u8], output: &[u8]) -> f32 {
    let deq = |q: u8, scale: f32, zp: i32| scale * (q as i8 as i32 - zp) as f32;
    let sum: f32 = input
        .iter()
        .zip(output)
        .map(|(&x, &y)| {
            let d = deq(y, model::OUTPUT_SCALE, model::OUTPUT_ZERO_POINT)
                - deq(x, model::INPUT_SCALE, model::INPUT_ZERO_POINT);
            d * d
        })
        .sum();
    sum / input.len().max(1) as f32
}

/// Scores every recorded window, reports each on `console`; returns whether every output
/// equals the host runtime's byte for byte.
fn app<W: embedded_io::Write>(
    console: &mut W,
    arena: &mut [u8],
) -> Result<bool, kiln_runtime::Error> {
    let model = Model::from_bytes(model::MODEL.as_slice())?;
    let mut session = Session::new(&model, arena)?;
    let mut exact = true;
    let mut total = 0.0f32;
    let windows = model::INPUT.chunks_exact(model::INPUT_BYTES);
    let expected = model::EXPECTED.chunks_exact(model::OUTPUT_BYTES);
    for (n, (window, want)) in windows.zip(expected).enumerate() {
        session.input_bytes_mut(0)?.copy_from_slice(window);
        bench_marker(0);
        session.invoke()?;
        bench_marker(1);
        let out = session.output_bytes(0)?;
        let same = out == want;
        exact &= same;
        let s = score(window, out);
        total += s;
        // Thousandths, in integers: no float formatting code in flash.
        let milli = (s * 1000.0) as u32;
        let _ = writeln!(
            console,
            "window {n}: anomaly score {}.{:03}{}",
            milli / 1000,
            milli % 1000,
            if same { "" } else { " (differs from the host)" }
        );
    }
    let mean = (total / model::RECORDED as f32 * 1000.0) as u32;
    let _ = writeln!(
        console,
        "{} windows, mean score {}.{:03}; arena {} bytes, model {} bytes",
        model::RECORDED,
        mean / 1000,
        mean % 1000,
        model::ARENA_SIZE,
        model::MODEL_LEN
    );
    Ok(exact)
}

#[entry]
fn main() -> ! {
    let arena: &'static mut AlignedBytes<{ model::ARENA_SIZE }> =
        cortex_m::singleton!(: AlignedBytes<{ model::ARENA_SIZE }> = AlignedBytes::zeroed())
            .unwrap();
    let mut console = board::console();
    let stack_before = board::paint_stack();
    let result = app(&mut console, arena.as_mut_slice());
    let stack = board::stack_used(stack_before);
    let ok = board::console::verdict(&mut console, result, stack);
    board::exit(ok)
}
