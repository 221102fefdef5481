//! Checks, on the Cortex-M itself, that the int8 inner product kiln's kernels use there (the DSP
//! extension's `smlad`, or the portable loop on cores without it) is bit-exact with the portable
//! reference (`simd::check_against_portable`: every length 0..=100 with an LCG's bytes and the
//! zero-point corners, plus the saturated extremes), and that its conv, depthwise and dense
//! kernels over packed weights equal the reference kernels over the edge-case grid of
//! `kernels::selfcheck`. Run under QEMU by `scripts/firmware.sh`; the exit status is the
//! verdict.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use kiln_runtime::kernels::simd;
use panic_semihosting as _;

#[allow(dead_code)] // the keyword spotter's board; this check only needs `exit`
#[path = "../board.rs"]
mod board;

#[entry]
fn main() -> ! {
    let ok = match simd::check_against_portable(simd::best()) {
        Ok(cases) => {
            hprintln!("dot product ({}): {} cases, 0 wrong", simd::isa(), cases);
            true
        }
        Err((n, za, zb)) => {
            hprintln!(
                "dot product ({}): mismatch at length {} za {} zb {}",
                simd::isa(),
                n,
                za,
                zb
            );
            false
        }
    };
    // The int8 kernels over packed weights, against the reference on natural weights.
    let grid = board::kernel_grid();
    board::exit(ok && grid)
}
