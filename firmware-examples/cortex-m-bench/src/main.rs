//! Instructions per inference of an exported kiln model on a Cortex-M, under QEMU with
//! `../shared/tools/qemu-insncount`: one plain `invoke` between two `bench_marker` calls (the
//! whole-model count), then one `invoke_observe` that calls `bench_op` after every op (the
//! per-op counts). Both outputs are compared bit for bit with the host runtime's output on the
//! same input (`kiln export -i`), and the int8 kernels are checked against the reference on
//! the core itself over an edge-case grid (`kernels::selfcheck`); the exit status is the
//! verdict. Also reports the arena and the stack high-water mark of the inference. Linked with
//! flip-link (the stack below the statics, at the bottom of RAM), so a stack overflow faults
//! instead of overwriting them: `--features overflow` proves it on each board. `scripts/bench-cortex-m.sh` builds and runs it for every model and core.
#![no_std]
#![no_main]

#[allow(dead_code)]
mod model {
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use kiln_runtime::{AlignedBytes, Model, Session};
use panic_semihosting as _;

/// Called right before and after the timed `invoke`: the instruction counter's marker.
#[inline(never)]
#[no_mangle]
pub extern "C" fn bench_marker(id: u32) -> u32 {
    core::hint::black_box(id)
}

/// Called after each op of the observed `invoke`: the instruction counter's op marker.
#[inline(never)]
#[no_mangle]
pub extern "C" fn bench_op(index: u32) -> u32 {
    // Not the same body as `bench_marker`, or the linker folds the two into one address.
    core::hint::black_box(index.wrapping_add(1))
}

mod board {
    include!(concat!(env!("OUT_DIR"), "/board.rs"));
}

#[path = "../../common/firmware.rs"]
mod common;

fn run(arena: &mut [u8]) -> Result<bool, kiln_runtime::Error> {
    let model = Model::from_bytes(model::MODEL.as_slice())?;
    let mut session = Session::new(&model, arena)?;
    session.input_bytes_mut(0)?.copy_from_slice(&model::INPUT);
    bench_marker(0);
    session.invoke()?;
    bench_marker(1);
    let whole = session.output_bytes(0)? == model::EXPECTED;

    session.input_bytes_mut(0)?.copy_from_slice(&model::INPUT);
    bench_marker(2);
    session.invoke_observe(|i, _, _| {
        bench_op(i as u32);
    })?;
    let per_op = session.output_bytes(0)? == model::EXPECTED;
    for i in 0..model.num_ops() {
        hprintln!("op {} {}", i, model.op(i).kind.name());
    }
    let out = session.output_bytes(0)?;
    hprintln!("output: {:?}", out);
    hprintln!(
        "arena {} bytes, model {} bytes, isa {}",
        model::ARENA_SIZE,
        model::MODEL_LEN,
        session.isa().name()
    );
    Ok(whole && per_op)
}

/// The int8 kernels this core runs against the reference, over the edge-case grid.
#[cfg(feature = "grid")]
fn grid() -> bool {
    common::kernel_grid()
}

/// Without the grid (parts with little RAM): nothing to check.
#[cfg(not(feature = "grid"))]
fn grid() -> bool {
    true
}

/// Recurses without end, each frame holding 256 bytes the optimizer cannot drop: the
/// stack-guard test (`--features overflow`) expects a fault, never a return.
#[cfg(feature = "overflow")]
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u32) -> u32 {
    let mut frame = [n; 64];
    core::hint::black_box(&mut frame);
    recurse(n + 1).wrapping_add(frame[(n % 64) as usize])
}

/// The stack-guard test: overflows the stack; returning at all is the failure.
#[cfg(feature = "overflow")]
fn overflow() -> ! {
    hprintln!("overflowing the stack on purpose");
    let n = recurse(0);
    hprintln!("stack overflow not caught: {}", n);
    common::exit(false)
}

#[entry]
// With `overflow`, nothing after the test runs.
#[cfg_attr(feature = "overflow", allow(unreachable_code))]
fn main() -> ! {
    #[cfg(feature = "overflow")]
    overflow();
    let arena: &'static mut AlignedBytes<{ model::ARENA_SIZE }> =
        cortex_m::singleton!(: AlignedBytes<{ model::ARENA_SIZE }> = AlignedBytes::zeroed())
            .unwrap();
    let sp = common::paint_stack(board::RAM_START);
    let ok = match run(arena.as_mut_slice()) {
        Ok(ok) => ok,
        Err(e) => {
            hprintln!("error: {}", e);
            false
        }
    };
    hprintln!(
        "stack high-water {} bytes",
        common::stack_used(sp, board::RAM_START)
    );
    // After the stack measurement: the grid's buffers are not the model's.
    let ok = grid() && ok;
    hprintln!(
        "{}",
        if ok {
            "bit-exact with the host runtime: PASS"
        } else {
            "output differs from the host runtime: FAIL"
        }
    );
    common::exit(ok)
}
