//! Run-time CPU feature detection and the instruction-set level kernels dispatch on.
//!
//! Kernels are compiled for every level with `#[target_feature(enable = ...)]` and chosen at
//! run time: a default build never silently runs scalar code, and no build crashes on an
//! older CPU. A level can be forced (tests, benchmarks) with [`CpuLevel::parse`] — the tools
//! read `WEFT_CPU=scalar|avx2|avx512|neon` and pass it in; this crate never reads the environment.

use std::fmt;

/// The instruction-set level a kernel table is built for. Ordered: a higher level implies
/// the machine can also run every lower one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuLevel {
    /// Portable Rust, no intrinsics. Always available.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (Haswell, Zen 1 and later).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/DQ with VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later).
    Avx512,
    /// aarch64 NEON with the dot-product extension.
    Neon,
}

impl CpuLevel {
    /// Parse a level name as users write it (`scalar`, `avx2`, `avx512`, `neon`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Self::Scalar),
            "avx2" => Some(Self::Avx2),
            "avx512" => Some(Self::Avx512),
            "neon" => Some(Self::Neon),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
            Self::Neon => "neon",
        }
    }

    /// Whether this machine can run kernels of this level.
    pub fn is_supported(self) -> bool {
        match self {
            Self::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => {
                Self::Avx2.is_supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Self::Neon => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The best level this machine supports.
    pub fn detect() -> Self {
        [Self::Avx512, Self::Avx2, Self::Neon]
            .into_iter()
            .find(|l| l.is_supported())
            .unwrap_or(Self::Scalar)
    }

    /// Every level this machine supports, lowest first (what conformance tests iterate).
    pub fn available() -> Vec<Self> {
        [Self::Scalar, Self::Avx2, Self::Avx512, Self::Neon]
            .into_iter()
            .filter(|l| l.is_supported())
            .collect()
    }
}

impl fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Optional extensions that kernels of a level may use when present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuExtras {
    /// 256-bit VNNI (`vpdpbusd` on ymm without AVX-512): Alder Lake, Zen 5.
    pub avx_vnni: bool,
    /// AVX-512 BF16 dot products.
    pub avx512_bf16: bool,
}

impl CpuExtras {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                avx_vnni: std::arch::is_x86_feature_detected!("avxvnni"),
                avx512_bf16: std::arch::is_x86_feature_detected!("avx512bf16"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        for l in [CpuLevel::Scalar, CpuLevel::Avx2, CpuLevel::Avx512, CpuLevel::Neon] {
            assert_eq!(CpuLevel::parse(l.name()), Some(l));
        }
        assert_eq!(CpuLevel::parse("AVX2 "), Some(CpuLevel::Avx2));
        assert_eq!(CpuLevel::parse("sse"), None);
    }

    #[test]
    fn detected_level_is_supported() {
        assert!(CpuLevel::detect().is_supported());
        assert!(CpuLevel::available().contains(&CpuLevel::Scalar));
    }

    /// CI states the level a run must detect (`WEFT_EXPECT_LEVEL=neon` under qemu with
    /// `-cpu max`), so the conformance tests cannot silently cover only the scalar level.
    #[test]
    fn detected_level_is_the_expected_one() {
        let Ok(want) = std::env::var("WEFT_EXPECT_LEVEL") else {
            eprintln!("WEFT_EXPECT_LEVEL not set: nothing to compare");
            return;
        };
        let want = CpuLevel::parse(&want).expect("WEFT_EXPECT_LEVEL names a level");
        assert_eq!(CpuLevel::detect(), want);
        assert!(CpuLevel::available().contains(&want));
    }
}
