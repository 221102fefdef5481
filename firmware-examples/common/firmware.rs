//! What every kiln firmware example shares (included with `#[path]`): stack high-water
//! measurement that works with cortex-m-rt's layout and with flip-link's, the report of the
//! int8 kernels' on-target edge-case grid, and the exit that gives QEMU its status.

use cortex_m_semihosting::{debug, hprintln};

const PAINT: u32 = 0xC0DE_C0DE;

extern "C" {
    /// End of `.bss` / `.uninit` (cortex-m-rt's linker script).
    static _stack_end: u32;
}

/// The lowest address the stack may reach: the end of the statics when the stack sits above
/// them (cortex-m-rt's layout), the start of RAM (`ram_start`) when flip-link put it below them.
fn stack_floor(sp: usize, ram_start: usize) -> usize {
    let end = core::ptr::addr_of!(_stack_end) as usize;
    (if end < sp { end } else { ram_start } + 3) & !3
}

/// Fills the free stack (from its floor to 256 bytes below the current stack pointer) with a
/// pattern; returns the stack pointer.
pub fn paint_stack(ram_start: usize) -> usize {
    let sp = cortex_m::register::msp::read() as usize;
    let mut addr = stack_floor(sp, ram_start);
    while addr + 256 < sp {
        // SAFETY: between the stack's floor and this frame (256 bytes of margin) lies only
        // unused stack; the words are written with a pattern `stack_used` reads back.
        unsafe { core::ptr::write_volatile(addr as *mut u32, PAINT) };
        addr += 4;
    }
    sp
}

/// Bytes of stack used below `sp` since `paint_stack`: the deepest word no longer painted.
pub fn stack_used(sp: usize, ram_start: usize) -> usize {
    let mut addr = stack_floor(sp, ram_start);
    // SAFETY: reads the words `paint_stack` wrote, in the same range.
    while addr < sp && unsafe { core::ptr::read_volatile(addr as *const u32) } == PAINT {
        addr += 4;
    }
    sp - addr
}

/// Runs the int8 kernels' edge-case grid (`kernels::selfcheck`) on this core's instruction
/// set, prints the verdict, returns whether every case was bit-exact.
#[allow(dead_code)] // not on parts too small for the grid
pub fn kernel_grid() -> bool {
    let isa = kiln_runtime::kernels::isa::Isa::detect();
    match kiln_runtime::kernels::selfcheck::qs8_grid(isa) {
        Ok(cases) => {
            hprintln!("kernel grid ({}): {} cases, 0 wrong", isa.name(), cases);
            true
        }
        Err(m) => {
            hprintln!(
                "kernel grid ({}): {} case {} differs from the reference",
                isa.name(),
                m.kernel,
                m.case
            );
            false
        }
    }
}

/// Ends the program; under QEMU (semihosting) the process exits with status 0 when `ok`.
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}
