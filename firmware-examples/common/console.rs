//! A serial console over semihosting behind `embedded-io`'s `Write` (the serial trait of the
//! embedded-hal 1.0 ecosystem; a real board's UART driver implements the same trait), shared by
//! the firmware examples that report on one (included with `#[path]`).

use cortex_m_semihosting::hio;

/// Console over semihosting.
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

/// Semihosting's stdout as a console; `None` when the host offers none.
pub fn open() -> Option<Console> {
    hio::hstdout().ok().map(Console)
}

/// Ends a run's report on `console`: the error if `result` is one, the stack high-water mark
/// (`stack_used`, measured after the run), and whether every output matched the host
/// runtime's bit for bit; returns that verdict.
pub fn verdict(
    console: &mut Console,
    result: Result<bool, kiln_runtime::Error>,
    stack_used: usize,
) -> bool {
    use embedded_io::Write as _;
    let ok = match result {
        Ok(ok) => ok,
        Err(e) => {
            let _ = writeln!(console, "error: {e}");
            false
        }
    };
    let _ = writeln!(console, "stack high-water {stack_used} bytes");
    let _ = writeln!(
        console,
        "{}",
        if ok {
            "bit-exact with the host runtime: PASS"
        } else {
            "mismatch: FAIL"
        }
    );
    ok
}
