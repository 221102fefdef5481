//! Keyword spotting on a Cortex-M4F with kiln: the MLPerf Tiny int8 DS-CNN embedded in flash,
//! its activations in one static arena sized at compile time by `kiln export`, inference on a
//! recorded MFCC frame, the result over a serial console and a "detected" LED.
//!
//! The board is reached only through `embedded-hal` 1.0 traits (`DelayNs`, `OutputPin`) and
//! `core::fmt::Write` for the console, so porting to a real MCU means providing those three.
//! Under QEMU (`mps2-an386`) the console is semihosting and the process exit status tells CI
//! whether the output matched the host runtime's bit for bit.
#![no_std]
#![no_main]

mod board;
#[path = "../generated/model.rs"]
#[allow(dead_code)]
mod model;

use core::fmt::Write as _;
use cortex_m_rt::entry;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use kiln_runtime::{AlignedBytes, Model, Session};
use panic_semihosting as _;

/// Keyword classes of the MLPerf Tiny KWS model.
const LABELS: [&str; 12] = [
    "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "silence", "unknown",
];

/// Called right before and after one inference: QEMU's instruction counter uses it as a marker.
#[inline(never)]
#[no_mangle]
pub extern "C" fn bench_marker(id: u32) -> u32 {
    core::hint::black_box(id)
}

/// The application: run the model on `input`, report on `console`, light `led` on a keyword.
/// Returns whether the output equals `expected` byte for byte.
fn app(
    console: &mut impl core::fmt::Write,
    led: &mut impl OutputPin,
    delay: &mut impl DelayNs,
    arena: &mut [u8],
    input: &[u8],
    expected: &[u8],
) -> Result<bool, kiln_runtime::Error> {
    let model = Model::from_bytes(model::MODEL.as_slice())?;
    let mut session = Session::new(&model, arena)?;
    session.input_bytes_mut(0)?.copy_from_slice(input);
    bench_marker(0);
    session.invoke()?;
    bench_marker(1);
    let out = session.output_bytes(0)?;
    let (best, score) =
        out.iter().enumerate().fold(
            (0, i8::MIN),
            |b, (i, &v)| if (v as i8) > b.1 { (i, v as i8) } else { b },
        );
    let mut line: heapless::String<96> = heapless::String::new();
    let _ = write!(
        line,
        "kws: {} (score {}/255)",
        LABELS.get(best).copied().unwrap_or("?"),
        score as i32 + 128
    );
    let _ = writeln!(console, "{line}");
    let detected = best < 10; // a real keyword, not silence/unknown
    if detected {
        let _ = led.set_high();
        delay.delay_ms(100);
        let _ = led.set_low();
    }
    let mut raw: heapless::String<96> = heapless::String::new();
    let _ = write!(raw, "output:");
    for &b in out {
        let _ = write!(raw, " {}", b as i8);
    }
    let _ = writeln!(console, "{raw}");
    let _ = writeln!(
        console,
        "arena {} bytes, model {} bytes",
        model::ARENA_SIZE,
        model::MODEL_LEN
    );
    Ok(out == expected)
}

#[entry]
fn main() -> ! {
    let arena: &'static mut AlignedBytes<{ model::ARENA_SIZE }> =
        cortex_m::singleton!(: AlignedBytes<{ model::ARENA_SIZE }> = AlignedBytes::zeroed())
            .unwrap();
    let (mut console, mut led, mut delay) = board::qemu();
    let stack_before = board::paint_stack();
    let ok = match app(
        &mut console,
        &mut led,
        &mut delay,
        arena.as_mut_slice(),
        &model::INPUT,
        &model::EXPECTED,
    ) {
        Ok(ok) => ok,
        Err(e) => {
            let _ = writeln!(console, "error: {e}");
            false
        }
    };
    let _ = writeln!(
        console,
        "stack high-water {} bytes",
        board::stack_used(stack_before)
    );
    let _ = writeln!(
        console,
        "{}",
        if ok {
            "bit-exact with the host runtime: PASS"
        } else {
            "mismatch: FAIL"
        }
    );
    board::exit(ok)
}
