//! Instructions per inference of an exported kiln model on a Cortex-M, under QEMU with
//! `../shared/tools/qemu-insncount`: one plain `invoke` between two `bench_marker` calls (the
//! whole-model count), then one `invoke_observe` that calls `bench_op` after every op (the
//! per-op counts). Both outputs are compared bit for bit with the host runtime's output on the
//! same input (`kiln export -i`); the exit status is the verdict. Also reports the arena and the
//! stack high-water mark. `scripts/bench-cortex-m.sh` builds and runs it for every model and core.
#![no_std]
#![no_main]

#[allow(dead_code)]
mod model {
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
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

const PAINT: u32 = 0xC0DE_C0DE;

extern "C" {
    /// End of `.bss` / `.uninit` (cortex-m-rt's linker script): the lowest address the stack
    /// may reach.
    static _stack_end: u32;
}

/// Fills the free stack (from `_stack_end` to 256 bytes below the current stack pointer) with a
/// pattern; returns the stack pointer.
fn paint_stack() -> usize {
    let sp = cortex_m::register::msp::read() as usize;
    let base = core::ptr::addr_of!(_stack_end) as usize;
    let mut addr = (base + 3) & !3;
    while addr + 256 < sp {
        // SAFETY: between the end of the statics and this frame (256 bytes of margin) lies only
        // unused stack; the words are written with a pattern `stack_used` reads back.
        unsafe { core::ptr::write_volatile(addr as *mut u32, PAINT) };
        addr += 4;
    }
    sp
}

/// Bytes of stack used below `sp` since `paint_stack`: the deepest word no longer painted.
fn stack_used(sp: usize) -> usize {
    let mut addr = (core::ptr::addr_of!(_stack_end) as usize + 3) & !3;
    // SAFETY: reads the words `paint_stack` wrote, in the same range.
    while addr < sp && unsafe { core::ptr::read_volatile(addr as *const u32) } == PAINT {
        addr += 4;
    }
    sp - addr
}

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

#[entry]
fn main() -> ! {
    let arena: &'static mut AlignedBytes<{ model::ARENA_SIZE }> =
        cortex_m::singleton!(: AlignedBytes<{ model::ARENA_SIZE }> = AlignedBytes::zeroed())
            .unwrap();
    let sp = paint_stack();
    let ok = match run(arena.as_mut_slice()) {
        Ok(ok) => ok,
        Err(e) => {
            hprintln!("error: {}", e);
            false
        }
    };
    hprintln!("stack high-water {} bytes", stack_used(sp));
    hprintln!(
        "{}",
        if ok {
            "bit-exact with the host runtime: PASS"
        } else {
            "output differs from the host runtime: FAIL"
        }
    );
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}
