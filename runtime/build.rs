//! Sets `kiln_dsp` on Cortex-M targets with the DSP extension, whose int8 kernels then use
//! `smlad` and friends: every `thumbv7em` core (M4, M7), and `thumbv8m.main` (M33, M35P, M55,
//! M85) when the build enables the extension, through `-C target-cpu=cortex-m33` (or another
//! of those cores) or `-C target-feature=+dsp`: the extension is optional on ARMv8-M, and
//! rustc exposes no stable target-feature cfg for it. Sets `kiln_v6m` on ARMv6-M (Cortex-M0/M0+).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(kiln_dsp)");
    println!("cargo::rustc-check-cfg=cfg(kiln_v6m)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let v8m_dsp = ["cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85"]
        .iter()
        .any(|cpu| flags.contains(&format!("target-cpu={cpu}")))
        || flags.contains("+dsp");
    if target.starts_with("thumbv7em") || (target.starts_with("thumbv8m.main") && v8m_dsp) {
        println!("cargo::rustc-cfg=kiln_dsp");
    }
    // ARMv6-M (Cortex-M0/M0+): the one-row microkernel in Thumb-1 assembly.
    if target.starts_with("thumbv6m") {
        println!("cargo::rustc-cfg=kiln_v6m");
    }
}
