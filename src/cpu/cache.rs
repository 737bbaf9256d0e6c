//! The CPU's cache sizes, as the operating system reports them, for cache blocking.
//!
//! Two sizes are read: the per-core L2, to which the GEMM sizes its B block when the A side is
//! small, and the L1 data cache, which sets the depth of the AVX2 kernel's B sliver
//! (`cpu::gemm`). The 2-core machines this crate runs on differ here (L2: 2 MB on the Intel Xeon,
//! 1 MB on Zen 5, 512 KB on Zen 3; L1d: 48 KB on the Xeon and Zen 5, 32 KB on Zen 3), and a block
//! sized for one spills out of another's cache.

use std::sync::OnceLock;

/// What is assumed where the size cannot be read (not Linux, or no sysfs): Zen 5's L2.
const FALLBACK_L2_BYTES: usize = 1 << 20;

/// What is assumed where the L1 data cache cannot be read: Zen 3's, the smallest of our machines.
const FALLBACK_L1D_BYTES: usize = 32 << 10;

/// The L2 cache of CPU 0 in bytes, read once from
/// `/sys/devices/system/cpu/cpu0/cache/index*/` (the level-2 data or unified cache).
pub fn l2_bytes() -> usize {
    static L2: OnceLock<usize> = OnceLock::new();
    *L2.get_or_init(|| read_cache(2).unwrap_or(FALLBACK_L2_BYTES))
}

/// The L1 data cache of CPU 0 in bytes, read once like [`l2_bytes`].
pub fn l1d_bytes() -> usize {
    static L1D: OnceLock<usize> = OnceLock::new();
    *L1D.get_or_init(|| read_cache(1).unwrap_or(FALLBACK_L1D_BYTES))
}

/// The size of CPU 0's data (or unified) cache of `level`, from sysfs.
fn read_cache(level: u32) -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let level_name = level.to_string();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        if level.trim() == level_name && kind.trim() != "Instruction" {
            return parse_size(size.trim());
        }
    }
    None
}

/// "2048K", "1M", "524288" -> bytes.
fn parse_size(s: &str) -> Option<usize> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = digits.parse().ok()?;
    match unit {
        "" => Some(n),
        "K" => Some(n << 10),
        "M" => Some(n << 20),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_size("2048K"), Some(2 << 20));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("524288"), Some(524_288));
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn the_l2_is_a_plausible_size() {
        let l2 = l2_bytes();
        assert!((64 << 10..=64 << 20).contains(&l2), "L2 of {l2} bytes");
    }

    #[test]
    fn the_l1d_is_a_plausible_size_below_the_l2() {
        let l1d = l1d_bytes();
        assert!((8 << 10..=1 << 20).contains(&l1d), "L1d of {l1d} bytes");
        assert!(l1d < l2_bytes(), "L1d {l1d} bytes, L2 {} bytes", l2_bytes());
    }
}
