//! Single-precision GEMM, row-major: `C[m,n] = alpha * op(A)[m,k] . op(B)[k,n] + beta * C`.
//!
//! `op(A)` is A (stored m x k, row stride `lda`) or A^T (A stored k x m, row stride `lda`);
//! likewise B. `beta == 0` overwrites C (NaNs already in C are ignored).
//!
//! Structure (GotoBLAS / BLIS), per thread, over its own block of C:
//! ```text
//! for jc in cols, step NC          B block  [KC x NC] lives in L3
//!   for pc in depth, step KC         pack B block (NR-col slivers)
//!     for ic in rows, step MC        A block  [MC x KC] lives in L2; pack it (MR-row slivers)
//!       for jr in block cols, NR       B sliver [KC x NR] stays in L1 across the ir loop
//!         for ir in block rows, MR       microkernel: MR x NR tile of C in registers
//! ```
//! The microkernel is picked at run time: AVX-512F 8x48 (8x32 for narrow C, see
//! `blocking::pads_less`), else AVX2+FMA 6x16, else scalar 4x8 (see [`Isa`]). Edge tiles are
//! packed with zero padding, computed into a scratch tile, and only their valid part is written
//! back.
//!
//! Threads: C is split into `threads` contiguous column ranges (or row ranges, whichever
//! dimension has more microkernel tiles; with the AVX-512 kernel any C at least as wide as tall
//! by columns, see `blocking::split_by_cols`), aligned to NR (MR); very wide or tall C into more
//! parts, handed out dynamically (see `run_threads`). Each thread packs its own
//! operands into thread-local buffers (reused, so no allocation after warm-up). A deep product
//! (k >= 8192, C at least 256 x 256: the LM head's dX) is instead summed as two depth segments,
//! one per thread, added at the end ([`depth_split`]). Because the depth blocking and the
//! segments depend only on the shape, every element of C is accumulated in the same order
//! whatever the thread count: results are bitwise identical for 1 and N threads. Those sizes
//! and splits are decided in `blocking.rs`, packing in `pack.rs`, the tiles in `kernel_*.rs`.

mod blocking;
#[cfg(target_arch = "x86_64")]
mod kernel_avx2;
#[cfg(target_arch = "x86_64")]
mod kernel_avx512;
mod kernel_scalar;
mod pack;

pub use crate::cpu::isa::Isa;

use super::pool;
use blocking::{
    block_cols, blocking_for, even_block, pads_less, split_by_cols, Blocking, PARALLEL_MIN_FLOPS,
    PART_MIN_ROWS,
};
pub use blocking::{depth_block, depth_split};
use pack::{pack_a, pack_b, Operand, PackBuf};
use std::cell::RefCell;

/// `C[m,n] = alpha * op(A) . op(B) + beta * C` with the kernel of [`Isa::detect`], on
/// [`pool::num_threads`] threads. Panics only if a slice is too short for its shape.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    sgemm_with_isa(
        Isa::detect(),
        trans_a,
        trans_b,
        m,
        n,
        k,
        alpha,
        a,
        lda,
        b,
        ldb,
        beta,
        c,
        ldc,
    );
}

/// [`sgemm`] with an explicit kernel choice (tests, benchmarks). An `isa` the CPU lacks falls
/// back to the best one it has.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_with_isa(
    isa: Isa,
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let p = Problem::new(
        trans_a,
        trans_b,
        m,
        n,
        k,
        alpha,
        a,
        lda,
        b,
        ldb,
        beta,
        c.len(),
        ldc,
    );
    p.run(isa, pool::num_threads(), c);
}

/// `op(A) . op(B)` (m, n) into a new vector, with the kernel of [`Isa::detect`]: [`sgemm`] with
/// `alpha = 1, beta = 0` on a C that is never zero-filled. Every element is written exactly
/// once and never read before (`beta = 0` does not load C), so filling it first would be a
/// wasted pass over memory: ~0.5 GB a SmolLM2 training step, in the projections' outputs and
/// input gradients.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_new(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
) -> Vec<f32> {
    let len = m * n;
    #[rustfmt::skip]
    let p = Problem::new(trans_a, trans_b, m, n, k, 1.0, a, lda, b, ldb, 0.0, len, n);
    let mut c = Vec::with_capacity(len);
    // `run` writes C only through raw pointers, and with beta = 0 every element of the m x n
    // block exactly once (k = 0 writes zeros): all `len` elements are set before `set_len`.
    p.run_into(
        Isa::detect(),
        pool::num_threads(),
        SharedMut(c.as_mut_ptr()),
    );
    // SAFETY: see above; the capacity is `len`.
    unsafe { c.set_len(len) };
    c
}

/// `batch` independent products; item `i` uses `a[i*stride_a..]`, `b[i*stride_b..]`,
/// `c[i*stride_c..]` (element strides). Items run in parallel when there are enough of them.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched(
    batch: usize,
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    stride_a: usize,
    b: &[f32],
    ldb: usize,
    stride_b: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    stride_c: usize,
) {
    #[rustfmt::skip]
    sgemm_batched_with_isa(Isa::detect(), batch, trans_a, trans_b, m, n, k, alpha,
        a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c);
}

/// [`sgemm_batched`] with an explicit kernel choice (tests, benchmarks).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_with_isa(
    isa: Isa,
    batch: usize,
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    stride_a: usize,
    b: &[f32],
    ldb: usize,
    stride_b: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    stride_c: usize,
) {
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    let c_item = (m - 1) * ldc + n;
    assert!(
        batch == 1 || stride_c >= c_item,
        "sgemm_batched: stride_c = {stride_c} makes C items overlap (each needs {c_item} elements)"
    );
    // Validate the last item (so every item, as they are evenly spaced) up front, so no task
    // can panic half-way through the batch.
    let last = batch - 1;
    for (what, len, stride) in [
        ("A", a.len(), stride_a),
        ("B", b.len(), stride_b),
        ("C", c.len(), stride_c),
    ] {
        let start = last * stride;
        assert!(
            start <= len,
            "sgemm_batched: {what} has {len} elements, item {last} starts at {start}"
        );
    }
    let item = |i: usize, c_len: usize| {
        Problem::new(
            trans_a,
            trans_b,
            m,
            n,
            k,
            alpha,
            &a[i * stride_a..],
            lda,
            &b[i * stride_b..],
            ldb,
            beta,
            c_len,
            ldc,
        )
    };
    item(last, c.len() - last * stride_c);

    let threads = pool::num_threads();
    if batch < threads {
        // Too few items to keep every thread busy: run items one by one, each threaded.
        for i in 0..batch {
            let c_i = &mut c[i * stride_c..];
            item(i, c_i.len()).run(isa, threads, c_i);
        }
        return;
    }
    let c_base = SharedMut(c.as_mut_ptr());
    pool::parallel_for(batch, &|i| {
        // SAFETY: item i writes only c[i*stride_c ..][..c_item]; the asserts above keep that
        // inside `c` and disjoint from every other item.
        let c_i = unsafe { std::slice::from_raw_parts_mut(c_base.get().add(i * stride_c), c_item) };
        item(i, c_item).run(isa, 1, c_i);
    });
}

/// A raw pointer into C shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every user writes a region of C that no other task touches (see call sites).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
impl SharedMut {
    /// A method (not field access) so closures capture the whole `Sync` wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One validated GEMM call (C is passed separately so it can be shared between threads).
#[derive(Clone, Copy)]
struct Problem<'a> {
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    beta: f32,
    a: Operand<'a>,
    b: Operand<'a>,
    ldc: usize,
}

/// An MR x NR microkernel: C tile = alpha * A sliver . B sliver + beta * C tile.
type KernelFn = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, f32, f32);

/// Checks that a slice holds a `rows x cols` matrix with row stride `ld`.
fn check_matrix(what: &str, len: usize, rows: usize, cols: usize, ld: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        ld >= cols,
        "sgemm: {what} is stored {rows} x {cols} but its leading dimension is {ld} < {cols}"
    );
    let need = (rows - 1) * ld + cols;
    assert!(
        len >= need,
        "sgemm: {what} ({rows} x {cols}, ld {ld}) needs {need} elements, slice has {len}"
    );
}

impl<'a> Problem<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: &'a [f32],
        lda: usize,
        b: &'a [f32],
        ldb: usize,
        beta: f32,
        c_len: usize,
        ldc: usize,
    ) -> Problem<'a> {
        let (a_rows, a_cols) = if trans_a { (k, m) } else { (m, k) };
        let (b_rows, b_cols) = if trans_b { (n, k) } else { (k, n) };
        if m > 0 && n > 0 {
            check_matrix("A", a.len(), a_rows, a_cols, lda);
            check_matrix("B", b.len(), b_rows, b_cols, ldb);
        }
        check_matrix("C", c_len, m, n, ldc);
        Problem {
            m,
            n,
            k,
            alpha,
            beta,
            a: Operand {
                data: a,
                ld: lda,
                trans: trans_a,
            },
            b: Operand {
                data: b,
                ld: ldb,
                trans: trans_b,
            },
            ldc,
        }
    }

    /// Runs the product on up to `threads` threads. `c` was validated by `new`.
    fn run(&self, isa: Isa, threads: usize, c: &mut [f32]) {
        self.run_into(isa, threads, SharedMut(c.as_mut_ptr()));
    }

    /// [`Problem::run`] on C given as a pointer: the kernels and this module reach C only
    /// through raw pointers, never a reference, so with `beta = 0` C may be uninitialised
    /// memory (it is written before it is read).
    fn run_into(&self, isa: Isa, threads: usize, c: SharedMut) {
        if self.m == 0 || self.n == 0 {
            return;
        }
        if self.k == 0 || self.alpha == 0.0 {
            self.scale_c(c);
            return;
        }
        let threads = if 2 * self.m * self.n * self.k < PARALLEL_MIN_FLOPS {
            1
        } else {
            threads
        };
        let isa = isa.min(Isa::best_supported());
        match depth_split(isa, self.m, self.n, self.k) {
            Some(k0) => self.run_in_two_segments(isa, threads, k0, c),
            None => self.run_unsplit(isa, threads, c),
        }
    }

    /// The product in one depth segment, on the kernel of `isa` (one the CPU supports).
    fn run_unsplit(&self, isa: Isa, threads: usize, c: SharedMut) {
        let blocking = blocking_for(isa);
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                use kernel_avx512::{kernel_8x16v, MR, NR, NR_NARROW};
                if pads_less(self.n, NR_NARROW, NR) {
                    let kernel = kernel_8x16v::<{ NR_NARROW / 16 }>;
                    self.run_threads::<MR, NR_NARROW>(kernel, &blocking, threads, c)
                } else {
                    let kernel = kernel_8x16v::<{ NR / 16 }>;
                    self.run_threads::<MR, NR>(kernel, &blocking, threads, c)
                }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                use kernel_avx2::{kernel_6x16, MR, NR};
                self.run_threads::<MR, NR>(kernel_6x16, &blocking, threads, c)
            }
            _ => {
                use kernel_scalar::{kernel_4x8, MR, NR};
                self.run_threads::<MR, NR>(kernel_4x8, &blocking, threads, c)
            }
        }
    }

    /// A deep product as two depth segments (see [`depth_split`]): C = beta C + alpha op(A) op(B)
    /// over depths 0..k0, a partial P = alpha op(A) op(B) over k0..k, then C += P. With two
    /// threads each segment runs on its own, so each packs half of A and half of B once; split
    /// by rows, both threads would pack all of B. Any other thread count runs them one after the
    /// other, so the sums and their order, hence the bits, are the same for every count.
    fn run_in_two_segments(&self, isa: Isa, threads: usize, k0: usize, c: SharedMut) {
        let (m, n) = (self.m, self.n);
        let first = Problem { k: k0, ..*self };
        let second = Problem {
            k: self.k - k0,
            a: self.a.skip_cols(k0),
            b: self.b.skip_rows(k0),
            beta: 0.0,
            ldc: n,
            ..*self
        };
        let mut partial = Vec::<f32>::with_capacity(m * n);
        let p = SharedMut(partial.as_mut_ptr());
        if threads == 2 {
            pool::parallel_for(2, &|segment| match segment {
                0 => first.run_unsplit(isa, 1, c),
                _ => second.run_unsplit(isa, 1, p),
            });
        } else {
            first.run_unsplit(isa, threads, c);
            second.run_unsplit(isa, threads, p);
        }
        // SAFETY: with beta = 0 the second segment wrote every one of the m * n elements.
        unsafe { partial.set_len(m * n) };
        for (i, p_row) in partial.chunks_exact(n).enumerate() {
            for (j, &v) in p_row.iter().enumerate() {
                // SAFETY: (i, j) is inside C, which `Problem::new` checked against its length.
                unsafe { *c.get().add(i * self.ldc + j) += v };
            }
        }
    }

    /// C = beta * C (the whole answer when k == 0 or alpha == 0); beta == 0 writes zeros
    /// without reading C.
    fn scale_c(&self, c: SharedMut) {
        for i in 0..self.m {
            for j in 0..self.n {
                // SAFETY: (i, j) is inside C, which `Problem::new` checked against its length.
                unsafe {
                    let v = c.get().add(i * self.ldc + j);
                    v.write(if self.beta == 0.0 {
                        0.0
                    } else {
                        self.beta * v.read()
                    });
                }
            }
        }
    }

    /// Splits C between threads along the dimension with more microkernel tiles.
    ///
    /// Normally one part per thread. Very wide (tall) C is cut into more parts, each at least
    /// NC columns (PART_MIN_ROWS rows) so that no packing is repeated beyond what the loop nest
    /// does anyway; the pool hands parts out dynamically, which keeps both cores busy even when
    /// one of them is briefly taken by another process.
    fn run_threads<const MR: usize, const NR: usize>(
        &self,
        kernel: KernelFn,
        blocking: &Blocking,
        threads: usize,
        c: SharedMut,
    ) {
        let (tiles_m, tiles_n) = (self.m.div_ceil(MR), self.n.div_ceil(NR));
        let split_cols = split_by_cols(blocking, (self.m, self.n), (tiles_m, tiles_n), threads);
        let (tiles, min_part_tiles) = if split_cols {
            (tiles_n, blocking.nc.div_ceil(NR))
        } else {
            (tiles_m, PART_MIN_ROWS.div_ceil(MR))
        };
        let parts = if threads <= 1 {
            1
        } else {
            threads.max(tiles / min_part_tiles).min(tiles)
        };
        if parts <= 1 {
            return self.run_block::<MR, NR>(kernel, blocking, 0..self.m, 0..self.n, c);
        }
        pool::parallel_for(parts, &|part| {
            // Contiguous, balanced ranges of whole tiles; the last one may end in an edge tile.
            let (t0, t1) = (tiles * part / parts, tiles * (part + 1) / parts);
            if split_cols {
                let cols = t0 * NR..(t1 * NR).min(self.n);
                self.run_block::<MR, NR>(kernel, blocking, 0..self.m, cols, c);
            } else {
                let rows = t0 * MR..(t1 * MR).min(self.m);
                self.run_block::<MR, NR>(kernel, blocking, rows, 0..self.n, c);
            }
        });
    }

    /// Computes the block `rows x cols` of C on the current thread (the Goto loop nest).
    fn run_block<const MR: usize, const NR: usize>(
        &self,
        kernel: KernelFn,
        blocking: &Blocking,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        c: SharedMut,
    ) {
        // Depth blocks of up to KC (576: every k of the model but the FFN's 1536 in one block, so
        // C is read and written once), split evenly (1536 -> 3 x 512, not 576 + 576 + 384); they
        // depend on k only, which keeps results independent of the thread count.
        let kc = even_block(self.k, blocking.kc, 1);
        let mc = even_block(rows.len(), blocking.mc, MR);
        let nc = block_cols::<NR>(blocking, rows.len(), cols.len(), kc);
        let (mut a_buf, mut b_buf) = take_pack_buffers();
        for jc in cols.clone().step_by(nc) {
            let nc_cur = nc.min(cols.end - jc);
            for pc in (0..self.k).step_by(kc) {
                let kc_cur = kc.min(self.k - pc);
                // Later depth blocks add onto what the first one wrote.
                let beta = if pc == 0 { self.beta } else { 1.0 };
                let b_pack = b_buf.get(nc_cur.div_ceil(NR) * NR * kc_cur);
                pack_b::<NR>(self.b, pc, kc_cur, jc, nc_cur, b_pack, blocking.simd_pack);
                for ic in rows.clone().step_by(mc) {
                    let mc_cur = mc.min(rows.end - ic);
                    let a_pack = a_buf.get(mc_cur.div_ceil(MR) * MR * kc_cur);
                    pack_a::<MR>(self.a, ic, mc_cur, pc, kc_cur, a_pack, blocking.simd_pack);
                    let tile = Tile {
                        row: ic,
                        col: jc,
                        rows: mc_cur,
                        cols: nc_cur,
                        depth: kc_cur,
                    };
                    self.macro_kernel::<MR, NR>(kernel, tile, a_pack, b_pack, beta, c);
                }
            }
        }
        return_pack_buffers(a_buf, b_buf);
    }

    /// All microkernel calls for one packed A block x one packed B block.
    fn macro_kernel<const MR: usize, const NR: usize>(
        &self,
        kernel: KernelFn,
        t: Tile,
        a_pack: &[f32],
        b_pack: &[f32],
        beta: f32,
        c: SharedMut,
    ) {
        for (jr, b_sliver) in (0..t.cols)
            .step_by(NR)
            .zip(b_pack.chunks_exact(NR * t.depth))
        {
            let cols = NR.min(t.cols - jr);
            for (ir, a_sliver) in (0..t.rows)
                .step_by(MR)
                .zip(a_pack.chunks_exact(MR * t.depth))
            {
                let rows = MR.min(t.rows - ir);
                // SAFETY: (t.row + ir, t.col + jr) lies inside this thread's block of C, which
                // `Problem::new` checked against the slice and no other thread writes.
                let c_tile = unsafe { c.get().add((t.row + ir) * self.ldc + t.col + jr) };
                if rows == MR && cols == NR {
                    // SAFETY: slivers hold MR*depth / NR*depth packed floats (B 64-byte aligned:
                    // sliver offsets are multiples of NR*depth floats, NR*4 bytes a multiple of
                    // 32 (AVX2) or 64 (AVX-512)); the full tile is inside C.
                    unsafe {
                        kernel(
                            t.depth,
                            a_sliver.as_ptr(),
                            b_sliver.as_ptr(),
                            c_tile,
                            self.ldc,
                            self.alpha,
                            beta,
                        )
                    };
                } else {
                    self.edge_tile::<MR, NR>(
                        kernel, t.depth, a_sliver, b_sliver, c_tile, rows, cols, beta,
                    );
                }
            }
        }
    }

    /// A partial tile: the kernel writes a full scratch tile, we copy back its valid part.
    #[allow(clippy::too_many_arguments)]
    fn edge_tile<const MR: usize, const NR: usize>(
        &self,
        kernel: KernelFn,
        depth: usize,
        a_sliver: &[f32],
        b_sliver: &[f32],
        c_tile: *mut f32,
        rows: usize,
        cols: usize,
        beta: f32,
    ) {
        let mut scratch = [0.0f32; MAX_TILE];
        debug_assert!(MR * NR <= MAX_TILE);
        // SAFETY: scratch holds MR x NR with row stride NR; slivers as in `macro_kernel`.
        unsafe {
            kernel(
                depth,
                a_sliver.as_ptr(),
                b_sliver.as_ptr(),
                scratch.as_mut_ptr(),
                NR,
                self.alpha,
                0.0,
            )
        };
        for (r, scratch_row) in scratch.chunks_exact(NR).take(rows).enumerate() {
            for (j, &s) in scratch_row[..cols].iter().enumerate() {
                // SAFETY: the first `rows x cols` of this tile are inside C (see
                // `macro_kernel`); C is read only when beta != 0 (it may be uninitialised).
                unsafe {
                    let c_val = c_tile.add(r * self.ldc + j);
                    c_val.write(if beta == 0.0 {
                        s
                    } else {
                        s + beta * c_val.read()
                    });
                }
            }
        }
    }
}

/// The largest MR * NR of any kernel (AVX-512: 8 x 48).
const MAX_TILE: usize = 8 * 48;

/// Where one packed A block x packed B block lands in C.
#[derive(Clone, Copy)]
struct Tile {
    row: usize,
    col: usize,
    rows: usize,
    cols: usize,
    depth: usize,
}

thread_local! {
    /// Per-thread packing buffers (A block, B block), kept between calls.
    static PACK_BUFFERS: RefCell<(PackBuf, PackBuf)> = RefCell::new(Default::default());
}

/// Takes this thread's buffers out (a re-entrant use would just get fresh ones).
fn take_pack_buffers() -> (PackBuf, PackBuf) {
    PACK_BUFFERS.with(|b| b.take())
}

fn return_pack_buffers(a: PackBuf, b: PackBuf) {
    PACK_BUFFERS.with(|slot| *slot.borrow_mut() = (a, b));
}
