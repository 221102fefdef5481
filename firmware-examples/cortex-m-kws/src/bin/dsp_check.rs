//! Checks, on the Cortex-M itself, that the int8 inner product kiln's kernels use there (the DSP
//! extension's `smlad`, or the portable loop on cores without it) is bit-exact with the portable
//! reference: every length 0..=100 with an LCG's bytes and the zero-point corners, plus the
//! saturated extremes. Run under QEMU by `scripts/firmware.sh`; the exit status is the verdict.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use kiln_runtime::kernels::simd;
use panic_semihosting as _;

#[entry]
fn main() -> ! {
    let dot = simd::best();
    let mut seed: u32 = 0x1234_5678;
    let mut next = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 24) as u8 as i8
    };
    let (mut checked, mut wrong) = (0u32, 0u32);
    let zps = [
        (0, 0),
        (-128, 0),
        (127, 0),
        (5, -3),
        (-128, 127),
        (127, -128),
        (0, 3),
    ];
    for n in 0..=100usize {
        let mut a = [0i8; 100];
        let mut b = [0i8; 100];
        for v in a.iter_mut().chain(b.iter_mut()) {
            *v = next();
        }
        for &(za, zb) in &zps {
            checked += 1;
            if dot(&a[..n], &b[..n], za, zb) != simd::dot_portable(&a[..n], &b[..n], za, zb) {
                wrong += 1;
                hprintln!("mismatch: n {} za {} zb {}", n, za, zb);
            }
        }
        let lo = [-128i8; 100];
        for &(za, zb) in &[(127, 127), (0, 0), (-128, -128)] {
            checked += 1;
            if dot(&lo[..n], &lo[..n], za, zb) != simd::dot_portable(&lo[..n], &lo[..n], za, zb) {
                wrong += 1;
                hprintln!("mismatch (extremes): n {} za {} zb {}", n, za, zb);
            }
        }
    }
    hprintln!(
        "dot product ({}): {} cases, {} wrong",
        simd::isa(),
        checked,
        wrong
    );
    debug::exit(if wrong == 0 {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}
