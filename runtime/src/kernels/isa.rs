//! The instruction set the optimized kernels use: detected once, when a
//! [`crate::Session`] is built, and passed to every kernel call (never re-detected per inner
//! product).

/// An instruction-set path of the optimized kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, every target (Cortex-M0+, and the twin every other path is tested against).
    Portable,
    /// x86-64 AVX2 with FMA (`vpmaddwd` on widened pairs; `vfmadd` for f32).
    Avx2,
    /// x86-64 AVX-512 (F, BW, VL) with VNNI (`vpdpbusd`) and FMA.
    Avx512Vnni,
    /// aarch64 NEON (`smull`/`sadalp`-class widening multiplies), the aarch64 baseline
    /// (Raspberry Pi 4, Cortex-A72).
    Neon,
    /// aarch64 NEON with the dot-product extension (ARMv8.2 DotProd: `sdot`, four int8
    /// products summed into each 32-bit lane; Raspberry Pi 5, Cortex-A76). Detected at run time
    /// with `std`.
    NeonDot,
    /// Cortex-M4/M7/M33 DSP extension (`smlad`, `sxtb16`).
    CortexMDsp,
}

impl Isa {
    /// The fastest path this CPU runs (run-time detection on x86-64 with `std`; compile-time
    /// target features otherwise).
    pub fn detect() -> Isa {
        #[cfg(all(target_arch = "x86_64", feature = "std"))]
        {
            // Asked for by every kernel call (through `Isa::supported`): detected once, then
            // read from a cache.
            use core::sync::atomic::{AtomicU8, Ordering};
            static DETECTED: AtomicU8 = AtomicU8::new(0);
            const CODES: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512Vnni];
            if let Some(&isa) =
                CODES.get((DETECTED.load(Ordering::Relaxed) as usize).wrapping_sub(1))
            {
                return isa;
            }
            let isa = if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("fma")
            {
                Isa::Avx512Vnni
            } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            {
                Isa::Avx2
            } else {
                Isa::Portable
            };
            let code = CODES.iter().position(|&c| c == isa).unwrap_or(0) + 1;
            DETECTED.store(code as u8, Ordering::Relaxed);
            isa
        }
        #[cfg(all(target_arch = "x86_64", not(feature = "std")))]
        {
            if cfg!(all(
                target_feature = "avx512f",
                target_feature = "avx512bw",
                target_feature = "avx512vl",
                target_feature = "avx512vnni",
                target_feature = "fma"
            )) {
                return Isa::Avx512Vnni;
            }
            if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
                return Isa::Avx2;
            }
            Isa::Portable
        }
        #[cfg(all(target_arch = "aarch64", feature = "std"))]
        {
            // (std caches the feature bits: one load.)
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                Isa::NeonDot
            } else {
                Isa::Neon
            }
        }
        #[cfg(all(target_arch = "aarch64", not(feature = "std")))]
        {
            if cfg!(target_feature = "dotprod") {
                Isa::NeonDot
            } else {
                Isa::Neon
            }
        }
        #[cfg(kiln_dsp)]
        {
            Isa::CortexMDsp
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", kiln_dsp)))]
        {
            Isa::Portable
        }
    }

    /// Every path this CPU can run, fastest first, ending with [`Isa::Portable`]: what the
    /// optimized-vs-reference tests iterate over.
    pub fn available() -> impl Iterator<Item = Isa> {
        let best = Isa::detect();
        [
            Isa::Avx512Vnni,
            Isa::Avx2,
            Isa::NeonDot,
            Isa::Neon,
            Isa::CortexMDsp,
            Isa::Portable,
        ]
        .into_iter()
        .filter(move |&i| i == Isa::Portable || i.runs_under(best))
    }

    /// Whether this CPU can run this path.
    pub fn supported(self) -> bool {
        self == Isa::Portable || self.runs_under(Isa::detect())
    }

    /// Whether this path runs on a CPU whose best path is `best`.
    fn runs_under(self, best: Isa) -> bool {
        self == best
            || (self == Isa::Avx2 && best == Isa::Avx512Vnni)
            || (self == Isa::Neon && best == Isa::NeonDot)
    }

    /// The path called `name` (as [`Isa::name`] spells it), if there is one.
    pub fn from_name(name: &str) -> Option<Isa> {
        [
            Isa::Portable,
            Isa::Avx2,
            Isa::Avx512Vnni,
            Isa::Neon,
            Isa::NeonDot,
            Isa::CortexMDsp,
        ]
        .into_iter()
        .find(|i| i.name() == name)
    }

    /// Short name for reports (`kiln bench`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon-sdot",
            Isa::CortexMDsp => "cortex-m dsp",
        }
    }
}
