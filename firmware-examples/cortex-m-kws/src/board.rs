//! The QEMU `mps2-an386` "board": semihosting console, a recorded LED, a busy-wait delay, and
//! stack high-water measurement. A real board replaces this file.

use core::convert::Infallible;
use cortex_m_semihosting::hio;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType, OutputPin};

/// Console over semihosting, behind `embedded-io`'s `Write` (the serial trait of the
/// embedded-hal 1.0 ecosystem; a real board's UART driver implements the same trait).
pub struct Console(hio::HostStream);

/// The host refused a semihosting write.
#[derive(Debug)]
pub struct ConsoleError;

impl embedded_io::Error for ConsoleError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl embedded_io::ErrorType for Console {
    type Error = ConsoleError;
}

impl embedded_io::Write for Console {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ConsoleError> {
        self.0.write_all(buf).map_err(|_| ConsoleError)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ConsoleError> {
        Ok(())
    }
}

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
        Console(hio::hstdout().unwrap_or_else(|_| exit(false))),
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
