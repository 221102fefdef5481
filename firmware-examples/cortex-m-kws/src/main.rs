//! Keyword spotting on a Cortex-M4F with kiln: the MLPerf Tiny int8 DS-CNN embedded in flash,
//! its activations in one static arena sized at compile time by `kiln export`, inference on
//! recorded MFCC windows, the result over a serial console and a "detected" LED.
//!
//! The board is reached only through `embedded-hal` 1.0 traits (`DelayNs`, `OutputPin`) and
//! `embedded-io`'s `Write` for the serial console, so porting to a real MCU means providing those
//! three. Feature windows travel from the producer (the audio front end; an interrupt handler on a
//! real board) to the inference loop through a `heapless` single-producer/single-consumer queue,
//! and the last few results sit in a `heapless::Deque` that smooths the scores before the LED
//! fires, as TFLite Micro's micro_speech example does. No heap anywhere.
//! Under QEMU (`mps2-an386`) the console is semihosting and the process exit status tells CI
//! whether every output matched the host runtime's bit for bit.
#![no_std]
#![no_main]

mod board;
#[path = "../generated/model.rs"]
#[allow(dead_code)]
mod model;

use cortex_m_rt::entry;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use heapless::spsc::Queue;
use heapless::Deque;
use kiln_runtime::{AlignedBytes, Model, Session};
use panic_semihosting as _;

/// Keyword classes of the MLPerf Tiny KWS model.
const LABELS: [&str; 12] = [
    "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "silence", "unknown",
];

/// Windows whose scores are averaged before deciding.
const SMOOTHING: usize = 3;
/// Averaged score (of 255) a keyword needs to light the LED.
const THRESHOLD: i32 = 128;

/// Called right before and after one inference: QEMU's instruction counter uses it as a marker.
#[inline(never)]
#[no_mangle]
pub extern "C" fn bench_marker(id: u32) -> u32 {
    core::hint::black_box(id)
}

/// Index and value of the largest element.
fn argmax(v: &[i32]) -> (usize, i32) {
    v.iter()
        .enumerate()
        .fold((0, i32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
}

/// The application: run the model on every queued window, report each on `console`, light
/// `led` when the smoothed scores name a keyword. Returns whether every output equals
/// `expected` byte for byte.
fn app<W: embedded_io::Write>(
    console: &mut W,
    led: &mut impl OutputPin,
    delay: &mut impl DelayNs,
    arena: &mut [u8],
    input: &'static [u8],
    expected: &[u8],
) -> Result<bool, kiln_runtime::Error> {
    let model = Model::from_bytes(model::MODEL.as_slice())?;
    let mut session = Session::new(&model, arena)?;

    // The front end queues feature windows (here: the recorded one, three times, as a steady
    // keyword would produce); capacity N holds N - 1 windows.
    let mut windows: Queue<&'static [u8], { SMOOTHING + 1 }> = Queue::new();
    let (mut producer, mut consumer) = windows.split();
    for _ in 0..SMOOTHING {
        if producer.enqueue(input).is_err() {
            let _ = writeln!(console, "window queue full: dropped a window");
        }
    }

    let mut history: Deque<[i32; model::OUTPUT_BYTES], SMOOTHING> = Deque::new();
    let mut exact = true;
    let mut n = 0;
    while let Some(window) = consumer.dequeue() {
        session.input_bytes_mut(0)?.copy_from_slice(window);
        bench_marker(0);
        session.invoke()?;
        bench_marker(1);
        let out = session.output_bytes(0)?;
        exact &= out == expected;

        let mut scores = [0i32; model::OUTPUT_BYTES];
        for (s, &b) in scores.iter_mut().zip(out) {
            *s = b as i8 as i32 + 128; // softmax output: scale 1/256, zero point -128
        }
        if history.is_full() {
            history.pop_front();
        }
        let _ = history.push_back(scores);
        let mut avg = [0i32; model::OUTPUT_BYTES];
        for h in history.iter() {
            for (a, s) in avg.iter_mut().zip(h) {
                *a += s;
            }
        }
        for a in avg.iter_mut() {
            *a /= history.len() as i32;
        }
        let (now, now_score) = argmax(&scores);
        let (best, score) = argmax(&avg);
        let mut line: heapless::String<128> = heapless::String::new();
        let _ = core::fmt::Write::write_fmt(
            &mut line,
            format_args!(
                "window {n}: {} (score {now_score}/255); smoothed over {}: {} ({score}/255)",
                LABELS.get(now).copied().unwrap_or("?"),
                history.len(),
                LABELS.get(best).copied().unwrap_or("?"),
            ),
        );
        let _ = writeln!(console, "{line}");
        // A real keyword (not silence/unknown), confidently, over a full history.
        if history.is_full() && best < 10 && score >= THRESHOLD {
            let _ = writeln!(console, "kws: detected \"{}\"", LABELS[best]);
            let _ = led.set_high();
            delay.delay_ms(100);
            let _ = led.set_low();
        }
        if n == 0 {
            let _ = write!(console, "output:");
            for &b in out {
                let _ = write!(console, " {}", b as i8);
            }
            let _ = writeln!(console);
        }
        n += 1;
    }
    let _ = writeln!(
        console,
        "{n} windows; arena {} bytes, model {} bytes",
        model::ARENA_SIZE,
        model::MODEL_LEN
    );
    Ok(exact && n == SMOOTHING)
}

#[entry]
fn main() -> ! {
    let arena: &'static mut AlignedBytes<{ model::ARENA_SIZE }> =
        cortex_m::singleton!(: AlignedBytes<{ model::ARENA_SIZE }> = AlignedBytes::zeroed())
            .unwrap();
    let (mut console, mut led, mut delay) = board::qemu();
    let stack_before = board::paint_stack();
    let result = app(
        &mut console,
        &mut led,
        &mut delay,
        arena.as_mut_slice(),
        &model::INPUT,
        &model::EXPECTED,
    );
    let stack = board::stack_used(stack_before);
    let ok = board::console::verdict(&mut console, result, stack);
    board::exit(ok)
}
