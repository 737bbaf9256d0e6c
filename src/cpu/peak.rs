//! FMA-throughput probe: the GFLOP/s ceiling that GEMM efficiency is quoted against.
//!
//! Each thread runs independent FMA chains held in registers (no memory traffic), enough chains
//! (12) to cover FMA latency x FMA pipes, for about 0.3 s. One FMA on a lane is 2 flops.

#[cfg(target_arch = "x86_64")]
use crate::cpu::isa::Isa;
use std::time::{Duration, Instant};

/// How long each measurement runs.
const PROBE_TIME: Duration = Duration::from_millis(300);
/// FMA steps per timing check: long enough that reading the clock costs nothing.
const ITERS_PER_ROUND: u64 = 1 << 20;

/// Peak GFLOP/s of 256-bit (AVX2) FMAs on `threads` threads together; 0.0 without AVX2+FMA.
pub fn fma_peak_gflops(threads: usize) -> f64 {
    fma_probe(threads, VectorWidth::Avx2, PROBE_TIME).map_or(0.0, |p| p.gflops())
}

/// Peak GFLOP/s of 512-bit (AVX-512F) FMAs on `threads` threads; None without AVX-512F.
/// The GEMM uses AVX-512 when present, so its efficiency is quoted against this peak.
pub fn fma_peak_gflops_avx512(threads: usize) -> Option<f64> {
    fma_probe(threads, VectorWidth::Avx512, PROBE_TIME).map(|p| p.gflops())
}

/// Which FMA instructions the probe runs.
#[derive(Clone, Copy, Debug)]
pub enum VectorWidth {
    /// 256-bit `vfmadd` (AVX2 + FMA), 8 f32 lanes.
    Avx2,
    /// 512-bit `vfmadd` (AVX-512F), 16 f32 lanes.
    Avx512,
}

/// What one probe did: total flops over all threads, and the wall time they took.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub flops: f64,
    pub seconds: f64,
}

impl Probe {
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }
}

/// Runs the FMA chains on `threads` threads for about `duration`; None if the CPU lacks the
/// instructions. (Benchmarks that also read CPU time use this directly.)
pub fn fma_probe(threads: usize, width: VectorWidth, duration: Duration) -> Option<Probe> {
    #[cfg(target_arch = "x86_64")]
    match width {
        VectorWidth::Avx2 => {
            if Isa::detect() >= Isa::Avx2 {
                // SAFETY: cpu::isa checked AVX2 and FMA.
                let round = || unsafe { x86::fma_chains_avx2(ITERS_PER_ROUND) };
                return Some(run_threads(threads, 8, duration, round));
            }
        }
        VectorWidth::Avx512 => {
            if Isa::detect() >= Isa::Avx512 {
                // SAFETY: cpu::isa checked AVX-512F.
                let round = || unsafe { x86::fma_chains_avx512(ITERS_PER_ROUND) };
                return Some(run_threads(threads, 16, duration, round));
            }
        }
    }
    let _ = (threads, width, duration);
    None
}

/// Runs `round` on `threads` threads until `duration` passes.
/// `lanes` = f32 lanes per vector; one round is ITERS_PER_ROUND x CHAINS vector FMAs.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn run_threads(
    threads: usize,
    lanes: u64,
    duration: Duration,
    round: impl Fn() -> f32 + Sync,
) -> Probe {
    let threads = threads.max(1);
    let flops_per_round = (ITERS_PER_ROUND * CHAINS * lanes * 2) as f64;
    let start = Instant::now();
    let rounds: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut rounds = 0u64;
                    let mut sink = 0.0f32;
                    while start.elapsed() < duration {
                        sink += round();
                        rounds += 1;
                    }
                    // Keep the result observable so the loop cannot be optimised away.
                    std::hint::black_box(sink);
                    rounds
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("peak probe thread panicked"))
            .sum()
    });
    Probe {
        flops: rounds as f64 * flops_per_round,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Independent accumulator chains per thread.
const CHAINS: u64 = 12;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// `iters` steps of 12 independent ymm FMA chains; returns a value depending on all of them.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_chains_avx2(iters: u64) -> f32 {
        let mut acc = [_mm256_set1_ps(0.0); CHAINS as usize];
        // Multiplier just below 1 and a small addend keep values bounded (no inf/denormals).
        let (mul, add) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-6));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, mul, add);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
        _mm256_cvtss_f32(sum)
    }

    /// `iters` steps of 12 independent zmm FMA chains.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_chains_avx512(iters: u64) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); CHAINS as usize];
        let (mul, add) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-6));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, mul, add);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a));
        _mm512_reduce_add_ps(sum)
    }
}
