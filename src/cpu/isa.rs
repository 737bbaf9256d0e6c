//! CPU feature detection, the one place in the crate that asks the CPU what it supports: which
//! SIMD family the kernels run (the GEMM microkernels, attention, SiLU/SwiGLU, the FMA probe),
//! chosen at run time from the CPU's features, capped by the environment switches
//! `ILREC_NO_SIMD=1` (portable loops everywhere) and `ILREC_NO_AVX512=1` (at most AVX2 + FMA), or
//! given explicitly (tests and benchmarks run every supported GEMM kernel).

use std::sync::OnceLock;

/// Which microkernel family runs. Ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, 4x8 tile (any CPU).
    Scalar,
    /// AVX2 + FMA, 6x16 tile.
    Avx2,
    /// AVX-512F, 8x48 tile (packing also uses AVX2).
    Avx512,
}

impl Isa {
    /// The best kernel this CPU supports, ignoring the environment.
    pub fn best_supported() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2_fma =
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            // The AVX-512 path also packs with AVX2 (every AVX-512 CPU has it; checked anyway).
            if std::is_x86_feature_detected!("avx512f") && avx2_fma {
                return Isa::Avx512;
            }
            if avx2_fma {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// The family every kernel uses: the best supported, capped by env `ILREC_NO_SIMD=1` (scalar) or
    /// `ILREC_NO_AVX512=1` (at most AVX2). Read once per process.
    pub fn detect() -> Isa {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
            let cap = if flag("ILREC_NO_SIMD") {
                Isa::Scalar
            } else if flag("ILREC_NO_AVX512") {
                Isa::Avx2
            } else {
                Isa::Avx512
            };
            Isa::best_supported().min(cap)
        })
    }

    /// Every kernel this CPU can run (tests run all of them).
    pub fn all_supported() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&i| i <= Isa::best_supported())
            .collect()
    }

    /// Parses `scalar`, `avx2`, `avx512` (bench `--isa`).
    pub fn parse(s: &str) -> Option<Isa> {
        match s {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}
