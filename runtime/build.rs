//! Sets `kiln_dsp` on Cortex-M targets with the DSP extension (M4, M7, M33, M55), whose int8
//! kernels then use `smlad`. rustc exposes no stable target-feature cfg for it.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(kiln_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main") {
        println!("cargo::rustc-cfg=kiln_dsp");
    }
}
