//! The QEMU `mps2-an386` "board": semihosting console, a recorded LED, a busy-wait delay, and
//! stack high-water measurement. A real board replaces this file.

use core::convert::Infallible;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType, OutputPin};

#[path = "../../common/console.rs"]
pub mod console;
pub use console::Console;

/// An LED that reports its changes on the console (QEMU has no LED).
pub struct Led {
    on: bool,
}

impl ErrorType for Led {
    type Error = Infallible;
}

impl OutputPin for Led {
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.on = true;
        cortex_m_semihosting::hprintln!("led: on (keyword detected)");
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.on = false;
        Ok(())
    }
}

/// Busy-wait delay at the nominal 25 MHz of the MPS2 board.
pub struct Delay;

impl DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        cortex_m::asm::delay(ns / 40 + 1);
    }
}

/// The board's peripherals.
pub fn qemu() -> (Console, Led, Delay) {
    (
        console::open().unwrap_or_else(|| exit(false)),
        Led { on: false },
        Delay,
    )
}

/// Ends the program; QEMU exits with status 0 on success.
pub fn exit(ok: bool) -> ! {
    common::exit(ok)
}

mod map {
    include!(concat!(env!("OUT_DIR"), "/board_map.rs"));
}

#[path = "../../common/firmware.rs"]
mod common;

/// Fills the free stack with a pattern; returns the stack pointer.
pub fn paint_stack() -> usize {
    common::paint_stack(map::RAM_START)
}

/// Bytes of stack used below `sp` since `paint_stack`.
pub fn stack_used(sp: usize) -> usize {
    common::stack_used(sp, map::RAM_START)
}

/// The int8 kernels' edge-case grid on this core (`dsp_check`).
#[allow(dead_code)] // the keyword spotter itself does not run it
pub fn kernel_grid() -> bool {
    common::kernel_grid()
}
