//! The QEMU `microbit` "board": a semihosting console behind `embedded-io`'s `Write` (a real
//! micro:bit's UART driver implements the same trait), stack high-water measurement and the
//! exit that gives QEMU its status. A real board replaces this file.

#[path = "../../common/console.rs"]
pub mod console;
pub use console::Console;

/// The console (semihosting's stdout).
pub fn console() -> Console {
    console::open().unwrap_or_else(|| exit(false))
}

/// Ends the program; QEMU exits with status 0 on success.
pub fn exit(ok: bool) -> ! {
    common::exit(ok)
}

mod map {
    include!(concat!(env!("OUT_DIR"), "/board_map.rs"));
}

#[path = "../../common/firmware.rs"]
#[allow(dead_code)] // the kernel grid is not run on this part
mod common;

/// Fills the free stack with a pattern; returns the stack pointer.
pub fn paint_stack() -> usize {
    common::paint_stack(map::RAM_START)
}

/// Bytes of stack used below `sp` since `paint_stack`.
pub fn stack_used(sp: usize) -> usize {
    common::stack_used(sp, map::RAM_START)
}
