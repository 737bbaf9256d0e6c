//! How a product is cut up, decided from its shape and the CPU alone: the cache blocks of each
//! kernel (KC x NC of B, MC x KC of A), the depth blocks and deep products' two segments (which
//! fix the order of every sum, hence the bits), how C is split between threads, and which
//! AVX-512 kernel width covers it. The loop nest that follows these decisions is in `mod.rs`.
//!
//! Every decision here is a function of (m, n, k), the kernel and the cache sizes, never of the
//! thread count where it would change a sum: results are the same for 1 and N threads.

use super::Isa;
use crate::cpu::cache;
use std::sync::OnceLock;

/// Smallest row range of a part when C is split by rows into more parts than threads: each
/// part packs all of B once, so parts must be tall enough to amortise that (~1% here).
pub(super) const PART_MIN_ROWS: usize = 3072;

/// Below this many flops one thread is faster than waking the pool (~20 us of work).
pub(super) const PARALLEL_MIN_FLOPS: usize = 1 << 22;

/// Cache blocking sizes for one kernel (see the loop nest in `mod.rs`).
pub(super) struct Blocking {
    pub(super) kc: usize,
    pub(super) mc: usize,
    pub(super) nc: usize,
    /// Packing may use AVX2 transposes.
    pub(super) simd_pack: bool,
    /// Split C by columns whenever it is at least as wide as tall (see [`split_by_cols`]).
    pub(super) wide_by_cols: bool,
}

/// Whether `run_threads` splits C (m x n, in tiles_m x tiles_n microkernel tiles) between
/// `threads` by columns rather than by rows.
///
/// By default along the dimension with more tiles. With `wide_by_cols` (the AVX-512 kernel)
/// also whenever C is at least as wide as tall and every thread gets two column tiles: split by
/// rows, each thread packs all of op(B), the whole 576 x 576 or 576 x 1536 weight of a
/// projection (1.3-3.5 MB of a 2 MB L2) while it computes a half of C; split by columns, half
/// of it plus all of op(A) (the 512-token activations, just written, so in cache). On the Intel
/// Xeon that made the full SmolLM2 step 3% faster (median 0.970 over 9 alternated pairs, 8
/// faster, one level; the LoRA step 0.987); with the AVX2 kernel (6 x 16 tiles, a depth block
/// of 384 there) the full step was 1% slower, so it keeps the default (BENCHMARKS.md, "Products
/// at least as wide as tall split by columns"). The split only decides which thread computes
/// which tiles: no sum changes, so no bits.
pub(super) fn split_by_cols(
    blocking: &Blocking,
    (m, n): (usize, usize),
    (tiles_m, tiles_n): (usize, usize),
    threads: usize,
) -> bool {
    tiles_n >= tiles_m || (blocking.wide_by_cols && n >= m && tiles_n >= 2 * threads)
}

/// Whether tiles `narrow` wide cover n columns with at least 10% fewer padded ones than tiles
/// `wide` wide: n = 64 is 64 against 96, n = 128 is 128 against 144; for n = 576 or 49152 (no
/// padding either way) the wide kernel's lower load per multiply-add wins.
pub(super) fn pads_less(n: usize, narrow: usize, wide: usize) -> bool {
    10 * n.div_ceil(narrow) * narrow < 9 * n.div_ceil(wide) * wide
}

/// The cache blocking of `isa`'s kernel (one the CPU supports).
///
/// Zen 5: 48 KB L1d, 1 MB L2 per core, 32 MB L3: KC 576 was measured fastest for the AVX-512
/// kernel (256 left the logits GEMM ~20% slower: three passes over its 100 MB C); an A block
/// MC x KC (~300 KB) sits in L2; a B block KC x NC (~7 MB) in L3. The AVX2 kernel's KC follows
/// the L1d ([`avx2_depth`]). Override for tuning with ILREC_GEMM_BLOCKING=kc,mc,nc.
pub(super) fn blocking_for(isa: Isa) -> Blocking {
    match isa {
        Isa::Avx512 => tuned_blocking(Blocking {
            kc: 576,
            mc: 128,
            nc: 3072,
            simd_pack: true,
            wide_by_cols: true,
        }),
        Isa::Avx2 => tuned_blocking(Blocking {
            kc: avx2_depth(cache::l1d_bytes()),
            mc: 144,
            nc: 3072,
            simd_pack: true,
            wide_by_cols: false,
        }),
        Isa::Scalar => Blocking {
            kc: 256,
            mc: 64,
            nc: 2048,
            simd_pack: false,
            wide_by_cols: false,
        },
    }
}

/// The AVX2 kernel's depth block KC for an L1 data cache of `l1d` bytes.
///
/// Its B sliver is KC x 16 floats, read once per microkernel call while an A sliver (KC x 6)
/// streams past it. With a 48 KB L1d (the Intel Xeon), KC 576 makes the sliver 36 KB and the
/// two do not fit together; KC 384 (so k = 576 in two blocks of 288) keeps the sliver in half
/// the L1d: q/o, k/v and the LM head's dX 2-9% faster, the rest level (BENCHMARKS.md, "The AVX2
/// depth block from the L1d"). With 32 KB (Zen 3) KC 288 was measured before and lost 12-18% on
/// the LM head's and gate/up's forward (a second pass over their large C), so a smaller L1d
/// keeps 576. KC changes the depth blocks, hence the rounding of every AVX2 product (the same
/// for any thread count).
fn avx2_depth(l1d: usize) -> usize {
    const NR: usize = 16; // the AVX2 kernel's sliver width (`kernel_avx2::NR`)
    if l1d >= 2 * 384 * NR * std::mem::size_of::<f32>() {
        384
    } else {
        576
    }
}

/// A thread's block of C with at most this many rows has a small A side: each packed B block
/// then serves one or two A blocks only (see [`block_cols`]).
const SMALL_A_ROWS: usize = 256;

/// Columns per B block (NC) for a thread's block of `rows` x `cols` at depth block `kc`.
///
/// Normally `blocking.nc` (3,072: a B block of ~7 MB that lives in L3 and is reused by every A
/// block of a tall C). With few rows and many columns (the LM head on a training step's 16-80
/// response rows, or on a beam of a few during decoding) each packed B block is used once or
/// twice, and writing 7 MB out to L3 to read it back so few times is what the product waits
/// on: the B block is sized to half the L2 instead. Narrower C keeps the one block (cutting
/// n = 576 into 432 + 144 made the head's dX ~5% slower). NC only groups columns: it changes
/// no sum, so no bits.
pub(super) fn block_cols<const NR: usize>(
    blocking: &Blocking,
    rows: usize,
    cols: usize,
    kc: usize,
) -> usize {
    if rows > SMALL_A_ROWS || cols < blocking.nc {
        return blocking.nc;
    }
    let fits_half_l2 = cache::l2_bytes() / 2 / (kc * std::mem::size_of::<f32>());
    (fits_half_l2 / NR * NR).clamp(NR, blocking.nc)
}

/// The depth blocks `sgemm` with kernel `isa` cuts a product of depth k into: (block size,
/// each block but the last that long). Every element of C is one chain of multiply-adds per
/// block, the blocks' sums added onto C in order; a kernel that follows the same blocks and
/// chains (`cpu::thin`) gets the same bits as `sgemm`.
pub fn depth_block(isa: Isa, k: usize) -> usize {
    even_block(k, blocking_for(isa.min(Isa::best_supported())).kc, 1)
}

/// Products at least this deep may be cut into two depth segments ([`depth_split`]).
const DEEP_MIN_K: usize = 8192;

/// ... when C is at least this many rows and columns: then a split by rows has every thread
/// pack a B of k x n >= 2M floats (the LM head's dX: 49152 x 576, 113 MB, packed by both).
const DEEP_MIN_SIDE: usize = 256;

/// The depth at which `sgemm` with kernel `isa` cuts a product (m, n, k) into two segments
/// (summed separately, then added: see `Problem::run_in_two_segments`), or None. It depends on
/// the shape alone, never on the thread count: the split is part of the arithmetic. Deep means
/// k >= 8192 and at least 8 times C's larger side, with C at least 256 x 256; the cut falls on a
/// depth block boundary, the first half of the blocks (rounded down) in the first segment.
pub fn depth_split(isa: Isa, m: usize, n: usize, k: usize) -> Option<usize> {
    if k < DEEP_MIN_K || m.min(n) < DEEP_MIN_SIDE || k < 8 * m.max(n) {
        return None;
    }
    let kc = depth_block(isa, k);
    Some(k.div_ceil(kc) / 2 * kc)
}

/// Splits `len` into the fewest blocks of at most `max`, all the same size rounded up to a
/// multiple of `align` (so 576 with max 256 gives 192-sized blocks, not 256 + 256 + 64).
pub(super) fn even_block(len: usize, max: usize, align: usize) -> usize {
    let blocks = len.div_ceil(max).max(1);
    len.div_ceil(blocks).div_ceil(align).max(1) * align
}

/// Blocking override for tuning: env `ILREC_GEMM_BLOCKING=kc,mc,nc` (read once).
fn tuned_blocking(default: Blocking) -> Blocking {
    static OVERRIDE: OnceLock<Option<(usize, usize, usize)>> = OnceLock::new();
    let parsed = OVERRIDE.get_or_init(|| {
        let s = std::env::var("ILREC_GEMM_BLOCKING").ok()?;
        let v: Vec<usize> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        match v[..] {
            [kc, mc, nc] if kc > 0 && mc > 0 && nc > 0 => Some((kc, mc, nc)),
            _ => None,
        }
    });
    match *parsed {
        Some((kc, mc, nc)) => Blocking {
            kc,
            mc,
            nc,
            ..default
        },
        None => default,
    }
}
