//! The on-target edge-case grid of the int8 kernels over packed weights
//! (`kernels::selfcheck`), run here for every instruction set this CPU has (and for NEON under
//! qemu-aarch64 by `scripts/firmware.sh`; the Cortex-M firmware runs it on the M4, M7 and M33).

use kiln_runtime::kernels::isa::Isa;
use kiln_runtime::kernels::selfcheck;

#[test]
fn every_isa_passes_the_kernel_grid() {
    for isa in Isa::available() {
        let cases = selfcheck::qs8_grid(isa).unwrap_or_else(|m| {
            panic!(
                "{}: {} case {} differs from the reference",
                isa.name(),
                m.kernel,
                m.case
            )
        });
        // 13 conv, 7 depthwise, 8 dense and 4 add shapes, 30 variants each; 5 multipliers ×
        // 34 shifts × 2 roundings × 7 chunks of accumulators.
        assert_eq!(
            cases,
            (13 + 7 + 8 + 4) * 30 + 5 * 34 * 2 * 7,
            "{}",
            isa.name()
        );
    }
}
