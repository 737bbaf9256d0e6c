//! Thin products: the three shapes of GEMM that a rank-r adapter (LoRA) needs, for small r,
//! without packing the big operand.
//! ```text
//! project  C (m, r) = X (m, k) . P (k, r)         x A^T (P = A^T), dh = g B (P = B)
//! reduce   C (r, n) = H (m, r)^T . G (m, n)       dA = dh^T xd, dB^T = hs^T g
//! expand   Y (m, n) = [Y +] H (m, r) . Q (r, n)   y += hs B^T (Q = B^T), dx += dh A (Q = A)
//!          the product optionally masked first    (dropout', the mask of the adapter's input)
//! ```
//! Why not `sgemm`: the blocked GEMM packs (copies, often transposes) its operands so that its
//! microkernel reads them contiguously. That pays off when each packed element is used in many
//! multiply-adds; here the big operand (X, G: 512 x 576..1536 in SmolLM2) is used in only r = 16
//! of them, so packing it costs about as much as the product (the six adapter products of a
//! LoRA step ran at ~40 GFLOP/s inside the step). These kernels read the big operand where it
//! lies, once, and keep the r-wide side in registers or L1:
//! - every product is one tile loop: an MR x (up to 3 vectors) tile of the output in registers,
//!   over the depth `acc[i][c] += a(i, p) * b(p, c)`, `a` broadcast from memory with any row and
//!   depth strides (so H^T is read as stored), `b` loaded a row of vectors at a time;
//! - project: a = X (rows of X, depth k), b = P (k, r) (small, in L1);
//! - reduce: a = H^T (rows j of H^T are columns of H), b = G, a strip of its columns at a
//!   time (the strip stays in L2 for the next MR rows of C; its rows, a row stride apart, are
//!   prefetched ahead since the hardware prefetcher does not follow them);
//! - expand: a = H (small), b = Q (small); the cost is writing Y once.
//!
//! Same bits as `sgemm`: every output is the chain of multiply-adds over the depth in the order
//! `sgemm` forms it (fused on AVX-512 / AVX2, `acc += a * b` in the portable kernel), cut into
//! the same depth blocks ([`depth_block`]; a deep product in sgemm's two segments,
//! [`depth_split`]) whose sums are added onto C in order, and the mask is
//! applied to the finished value as `x * keep_scale` or 0 (as `cpu::dropout::apply_mask`). So
//! swapping `sgemm` (+ `apply_mask`) for these changes no result, and the output is the same for
//! any thread count (threads split C into disjoint tiles). One exception, on purpose: `expand`
//! adds a product of several depth blocks onto Y whole, as a separate addition would, where
//! `sgemm` with beta = 1 adds it block by block.
//!
//! Dropout: the big operand of project and reduce can come with a dropout mask ([`Keep`]): its
//! values are then read as `x * keep_scale` or 0, the very values `cpu::dropout::draw_and_apply`
//! would have written, so LoRA need not write the dropped input and keep it for the backward.
//! The reduce tile masks each row of b as it loads it; the project tile first copies an MR-row
//! piece of X, masked, into a buffer on the stack (a broadcast operand cannot be masked per
//! lane), ~1/16 of an instruction per element against r / 16 multiply-adds.

#[cfg(target_arch = "x86_64")]
mod kernel_avx2;
#[cfg(target_arch = "x86_64")]
mod kernel_avx512;
mod kernel_scalar;

use super::dropout::apply_mask;
use super::gemm::{depth_block, depth_split};
use super::isa::Isa;
use super::pool;

/// A dropout mask over a row-major (rows, row_len) matrix: bit `i * row_len + c` (bit b % 64
/// of word b / 64) keeps element (i, c), which is then scaled by `scale`.
#[derive(Clone, Copy)]
pub struct Keep<'a> {
    pub bits: &'a [u64],
    pub row_len: usize,
    pub scale: f32,
}

/// `C (m, r) = X (m, k) . P (k, r)`; rows of X `ldx` apart, of P `ldp`, of C `ldc`; X read
/// through the dropout mask `x_keep` (over X's (m, k)) if given.
#[allow(clippy::too_many_arguments)]
pub fn project(
    isa: Isa,
    (m, k, r): (usize, usize, usize),
    (x, ldx, x_keep): (&[f32], usize, Option<Keep<'_>>),
    p: &[f32],
    ldp: usize,
    c: &mut [f32],
    ldc: usize,
) {
    check("X", x.len(), m, k, ldx);
    check_keep("X", x_keep, m, k);
    check("P", p.len(), k, r, ldp);
    check("C", c.len(), m, r, ldc);
    let product = Product {
        rows: m,
        cols: r,
        depth: k,
        a: Strided::new(x, ldx, 1),
        b: p,
        ldb: ldp,
        add: false,
        keep: Masks {
            a: x_keep,
            ..Masks::default()
        },
    };
    product.run(isa, Split::Rows, c, ldc);
}

/// `C (r, n) = H (m, r)^T . G (m, n)`; rows of H `ldh` apart, of G `ldg`, of C `ldc`; G read
/// through the dropout mask `g_keep` (over G's (m, n)) if given.
#[allow(clippy::too_many_arguments)]
pub fn reduce(
    isa: Isa,
    (m, n, r): (usize, usize, usize),
    h: &[f32],
    ldh: usize,
    (g, ldg, g_keep): (&[f32], usize, Option<Keep<'_>>),
    c: &mut [f32],
    ldc: usize,
) {
    check("H", h.len(), m, r, ldh);
    check("G", g.len(), m, n, ldg);
    check_keep("G", g_keep, m, n);
    check("C", c.len(), r, n, ldc);
    let product = Product {
        rows: r,
        cols: n,
        depth: m,
        a: Strided::new(h, 1, ldh),
        b: g,
        ldb: ldg,
        add: false,
        keep: Masks {
            b: g_keep,
            ..Masks::default()
        },
    };
    product.run(isa, Split::Cols, c, ldc);
}

/// `Y (m, n) = [Y +] dropout'(H (m, r) . Q (r, n))`: the product, masked by `keep` (over Y's
/// (m, n), `keep.row_len == n`) if given, written or added onto Y (`add`); rows of H `ldh`
/// apart, of Q `ldq`, of Y `ldy`. Masking before adding lets LoRA's backward add the adapter's
/// dx (masked) straight onto the frozen path's dx. Y always gets the finished product in one
/// addition, whatever r (see `whole_then_added`): LoRA adds its update onto the frozen
/// output, the same bits as adding two tensors.
#[allow(clippy::too_many_arguments)]
pub fn expand(
    isa: Isa,
    (m, n, r): (usize, usize, usize),
    h: &[f32],
    ldh: usize,
    q: &[f32],
    ldq: usize,
    add: bool,
    keep: Option<Keep<'_>>,
    y: &mut [f32],
    ldy: usize,
) {
    check("H", h.len(), m, r, ldh);
    check("Q", q.len(), r, n, ldq);
    check("Y", y.len(), m, n, ldy);
    check_keep("Y", keep, m, n);
    if (add || keep.is_some()) && r > depth_block(isa, r) {
        return whole_then_added(isa, (m, n, r), (h, ldh), (q, ldq), add, keep, (y, ldy));
    }
    let product = Product {
        rows: m,
        cols: n,
        depth: r,
        a: Strided::new(h, ldh, 1),
        b: q,
        ldb: ldq,
        add,
        keep: Masks {
            c: keep,
            ..Masks::default()
        },
    };
    product.run(isa, Split::Rows, y, ldy);
}

/// [`expand`] when r spans several depth blocks and the product is added or masked: the tiles
/// add each block's sum onto C, so C would get the product in parts, and hold the whole of it
/// (which the mask must see) only after the last one. The product is formed alone first (a
/// rank beyond one depth block is rare: LoRA's r is 8 to 64), masked as `apply_mask` does,
/// then written or added.
fn whole_then_added(
    isa: Isa,
    (m, n, r): (usize, usize, usize),
    (h, ldh): (&[f32], usize),
    (q, ldq): (&[f32], usize),
    add: bool,
    keep: Option<Keep<'_>>,
    (y, ldy): (&mut [f32], usize),
) {
    let mut whole = vec![0.0f32; m * n];
    expand(isa, (m, n, r), h, ldh, q, ldq, false, None, &mut whole, n);
    if let Some(keep) = keep {
        // `whole` has Y's (m, n) layout with rows n apart, which is the mask's (row_len == n).
        apply_mask(&mut whole, &keep.bits[..(m * n).div_ceil(64)], keep.scale);
    }
    for (y_row, w_row) in y.chunks_mut(ldy).zip(whole.chunks(n)) {
        for (y_v, &w) in y_row[..n].iter_mut().zip(w_row) {
            *y_v = if add { *y_v + w } else { w };
        }
    }
}

/// Checks that a slice holds a `rows x cols` matrix with row stride `ld`.
fn check(what: &str, len: usize, rows: usize, cols: usize, ld: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        ld >= cols,
        "thin: {what} ({rows} x {cols}) has row stride {ld} < {cols}"
    );
    let need = (rows - 1) * ld + cols;
    assert!(
        len >= need,
        "thin: {what} ({rows} x {cols}, stride {ld}) needs {need} elements, has {len}"
    );
}

/// Checks that a mask is one over a (rows, cols) matrix.
fn check_keep(what: &str, keep: Option<Keep<'_>>, rows: usize, cols: usize) {
    if let Some(keep) = keep {
        assert!(
            keep.row_len == cols && keep.bits.len() * 64 >= rows * cols,
            "thin: the dropout mask does not cover {what} ({rows}, {cols})"
        );
    }
}

/// The broadcast operand: element (i, p) at `data[i * row + p * step]`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    row: usize,
    step: usize,
}

impl<'a> Strided<'a> {
    fn new(data: &'a [f32], row: usize, step: usize) -> Self {
        Strided { data, row, step }
    }
}

/// Which dimension of C the threads split.
#[derive(Clone, Copy, PartialEq)]
enum Split {
    Rows,
    Cols,
}

/// `C (rows, cols) = [C +] mask(a . b)` over `depth`: the one loop behind all three.
#[derive(Clone, Copy)]
struct Product<'a> {
    rows: usize,
    cols: usize,
    depth: usize,
    a: Strided<'a>,
    b: &'a [f32],
    ldb: usize,
    add: bool,
    keep: Masks<'a>,
}

/// How a product's depth is blocked, as `sgemm` blocks it: blocks of `kc` and, for a deep
/// product ([`depth_split`]), a second segment from depth k0 with its own blocks of kc1 (sgemm
/// runs it as a product of its own). Only a product of two large sides splits, so in LoRA a
/// rank of 256 or more over 8192 or more rows; such a product is never added or masked here
/// (`expand` forms it whole first).
#[derive(Clone, Copy)]
struct Depths {
    kc: usize,
    split: Option<(usize, usize)>,
}

impl Depths {
    fn of(isa: Isa, (rows, cols, depth): (usize, usize, usize)) -> Depths {
        let split = depth_split(isa, rows, cols, depth);
        Depths {
            kc: depth_block(isa, split.unwrap_or(depth).max(1)),
            split: split.map(|k0| (k0, depth_block(isa, depth - k0))),
        }
    }
}

/// The largest tile of any kernel (AVX-512: 8 x 48).
const MAX_TILE: usize = 8 * 48;

/// The dropout masks of a product: on a (a(i, p) is bit i * row_len + p; a's rows contiguous),
/// on b (b(p, c): bit p * row_len + c), on the finished product before it is added onto C
/// (element (i, c): bit i * row_len + c; one depth block only, see [`expand`]).
#[derive(Clone, Copy, Default)]
struct Masks<'a> {
    a: Option<Keep<'a>>,
    b: Option<Keep<'a>>,
    c: Option<Keep<'a>>,
}

/// A mask and the bit of the tile's element (0, 0) of the matrix it masks.
#[derive(Clone, Copy)]
pub(super) struct KeepAt<'a> {
    keep: Keep<'a>,
    at: usize,
}

impl KeepAt<'_> {
    fn new(keep: Option<Keep<'_>>, (i, j): (usize, usize)) -> Option<KeepAt<'_>> {
        keep.map(|keep| KeepAt {
            at: i * keep.row_len + j,
            keep,
        })
    }

    /// The `count` (1 to 64) bits of elements (i, j), (i, j + 1), ... of the tile, bit 0
    /// first. The kernels take a row's bits in one call (up to 64 elements) and shift them
    /// out per vector: working out a word and an offset per vector of 16 (8) values cost as
    /// much as the multiply-adds a dropped input feeds.
    fn bits(&self, i: usize, j: usize, count: usize) -> u64 {
        debug_assert!((1..=64).contains(&count));
        let at = self.at + i * self.keep.row_len + j;
        let (w, s) = (at / 64, at % 64);
        let mut bits = self.keep.bits[w] >> s;
        if s + count > 64 {
            // The next word; past the mask's end only for columns beyond the tile's.
            bits |= self.keep.bits.get(w + 1).map_or(0, |next| next << (64 - s));
        }
        bits & (u64::MAX >> (64 - count))
    }

    /// The same mask from `rows` rows further down.
    fn down(self, rows: usize) -> Self {
        KeepAt {
            at: self.at + rows * self.keep.row_len,
            ..self
        }
    }
}

/// One tile for a kernel: C[0..rows, 0..cols] (rows <= MR, cols <= the kernel's width) `=` or
/// `+=` the sum over `depth` of a(i, p) * b(p, c), the sum masked (`c_keep`) before it is
/// added. Pointers are to the tile's first element of each operand, masks (if any) start at the
/// same elements.
#[derive(Clone, Copy)]
pub(super) struct Tile<'a> {
    depth: usize,
    a: *const f32,
    a_row: usize,
    a_step: usize,
    rows: usize,
    b: *const f32,
    ldb: usize,
    cols: usize,
    c: *mut f32,
    ldc: usize,
    add: bool,
    a_keep: Option<KeepAt<'a>>,
    b_keep: Option<KeepAt<'a>>,
    c_keep: Option<KeepAt<'a>>,
}

/// A kernel: MR rows, up to `width` columns per tile.
struct Kernel {
    mr: usize,
    width: usize,
    tile: unsafe fn(&Tile<'_>),
}

fn kernel_for(isa: Isa) -> Kernel {
    match isa.min(Isa::best_supported()) {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Kernel {
            mr: kernel_avx512::MR,
            width: kernel_avx512::WIDTH,
            tile: kernel_avx512::tile,
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Kernel {
            mr: kernel_avx2::MR,
            width: kernel_avx2::WIDTH,
            tile: kernel_avx2::tile,
        },
        _ => Kernel {
            mr: kernel_scalar::MR,
            width: kernel_scalar::WIDTH,
            tile: kernel_scalar::tile,
        },
    }
}

/// Below this many multiply-adds one thread is faster than waking the pool.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// A C raw pointer shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct SharedC(*mut f32);
// SAFETY: tasks write disjoint tiles of C (see `Product::run`).
unsafe impl Send for SharedC {}
unsafe impl Sync for SharedC {}
impl SharedC {
    fn get(self) -> *mut f32 {
        self.0
    }
}

impl Product<'_> {
    /// Runs on the pool: C's row blocks (or column strips) cut into contiguous parts.
    fn run(&self, isa: Isa, split: Split, c: &mut [f32], ldc: usize) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        if self.depth == 0 {
            return self.empty_sum(c, ldc);
        }
        let kernel = kernel_for(isa);
        let depths = Depths::of(isa, (self.rows, self.cols, self.depth));
        // A split product's second segment goes through a scratch tile (`run_tile`): only
        // products written whole, not added or masked, come here split (see `Depths`).
        assert!(
            depths.split.is_none() || (!self.add && self.keep.c.is_none()),
            "thin: a product split in depth must be written whole"
        );
        // The second segment's scratch tile is MAX_TILE floats (`run_tile`).
        assert!(
            kernel.mr * kernel.width <= MAX_TILE,
            "thin: a tile larger than MAX_TILE"
        );
        let (tiles_r, tiles_c) = (
            self.rows.div_ceil(kernel.mr),
            self.cols.div_ceil(kernel.width),
        );
        let tiles = if split == Split::Rows {
            tiles_r
        } else {
            tiles_c
        };
        let threads = pool::num_threads();
        // A few parts per thread: the pool hands them out, so a core taken by another
        // process for a moment does not hold up the whole product.
        let parts = if self.rows * self.cols * self.depth < PARALLEL_MIN_MACS || threads == 1 {
            1
        } else {
            (4 * threads).min(tiles)
        };
        let shared = SharedC(c.as_mut_ptr());
        let task = |part: usize| {
            let (t0, t1) = (tiles * part / parts, tiles * (part + 1) / parts);
            let (rows, cols) = if split == Split::Rows {
                (
                    t0 * kernel.mr..(t1 * kernel.mr).min(self.rows),
                    0..self.cols,
                )
            } else {
                (
                    0..self.rows,
                    t0 * kernel.width..(t1 * kernel.width).min(self.cols),
                )
            };
            self.run_block(&kernel, depths, split, (rows, cols), shared, ldc);
        };
        if parts == 1 {
            task(0);
        } else {
            pool::parallel_for(parts, &task);
        }
    }

    /// C = [C +] 0, masked: the whole answer for an empty depth.
    fn empty_sum(&self, c: &mut [f32], ldc: usize) {
        for row in c.chunks_mut(ldc).take(self.rows) {
            for v in &mut row[..self.cols] {
                // The masked empty sum is 0 whether kept or dropped.
                *v = if self.add { *v + 0.0 } else { 0.0 };
            }
        }
    }

    /// All tiles of the block `rows x cols` of C, depth blocks inner (the later ones add onto
    /// C). Split by rows (project, expand: b is small), a row block's tiles run left to right,
    /// so C is written row block by row block (column strips outer measured ~30% slower for
    /// expand's wide C); split by columns (reduce: b is the big operand), a column strip's
    /// tiles run top to bottom, so the strip of b stays in L2 for every row block.
    fn run_block(
        &self,
        kernel: &Kernel,
        depths: Depths,
        split: Split,
        (rows, cols): (std::ops::Range<usize>, std::ops::Range<usize>),
        c: SharedC,
        ldc: usize,
    ) {
        let row_starts = rows.clone().step_by(kernel.mr);
        let col_starts = cols.clone().step_by(kernel.width);
        let tiles: Vec<(usize, usize)> = if split == Split::Rows {
            row_starts
                .flat_map(|r| col_starts.clone().map(move |c| (r, c)))
                .collect()
        } else {
            col_starts
                .flat_map(|c| row_starts.clone().map(move |r| (r, c)))
                .collect()
        };
        for (row, col) in tiles {
            let size = (
                kernel.mr.min(rows.end - row),
                kernel.width.min(cols.end - col),
            );
            self.run_tile(kernel, depths, (row, col), size, c, ldc);
        }
    }

    /// The tile of C at (row, col), `size` = (rows, cols), one kernel call per depth block; a
    /// product split in depth as `sgemm` splits it: the first segment's blocks into C, the
    /// second's into a scratch tile, which is then added onto C.
    fn run_tile(
        &self,
        kernel: &Kernel,
        depths: Depths,
        (row, col): (usize, usize),
        size: (usize, usize),
        c: SharedC,
        ldc: usize,
    ) {
        // SAFETY: (row, col) lies inside C (see `run_block`).
        let c_tile = unsafe { c.get().add(row * ldc + col) };
        let Some((k0, kc1)) = depths.split else {
            return self.run_depths(
                kernel,
                (0..self.depth, depths.kc),
                (row, col),
                size,
                (c_tile, ldc),
            );
        };
        self.run_depths(kernel, (0..k0, depths.kc), (row, col), size, (c_tile, ldc));
        let (rows, cols) = size;
        let mut second = [0.0f32; MAX_TILE];
        #[rustfmt::skip]
        self.run_depths(kernel, (k0..self.depth, kc1), (row, col), size, (second.as_mut_ptr(), cols));
        for (r, second_row) in second.chunks_exact(cols).take(rows).enumerate() {
            for (j, &v) in second_row.iter().enumerate() {
                // SAFETY: the tile's rows x cols of C belong to this task.
                unsafe { *c_tile.add(r * ldc + j) += v };
            }
        }
    }

    /// The kernel calls of one depth range, blocks of `kc` from its start, onto the C tile at
    /// `c_tile` (row stride `ldc`): the first block writes it (or adds, `self.add`), the later
    /// ones add.
    fn run_depths(
        &self,
        kernel: &Kernel,
        (range, kc): (std::ops::Range<usize>, usize),
        (row, col): (usize, usize),
        (rows, cols): (usize, usize),
        (c_tile, ldc): (*mut f32, usize),
    ) {
        for p0 in range.clone().step_by(kc) {
            let depth = kc.min(range.end - p0);
            let last = p0 + depth == self.depth;
            let a_offset = row * self.a.row + p0 * self.a.step;
            let tile = Tile {
                depth,
                // SAFETY (the three offsets): `check` validated every operand for the
                // product's shape, and (row, col, p0) lie inside it.
                a: unsafe { self.a.data.as_ptr().add(a_offset) },
                a_row: self.a.row,
                a_step: self.a.step,
                rows,
                b: unsafe { self.b.as_ptr().add(p0 * self.ldb + col) },
                ldb: self.ldb,
                cols,
                c: c_tile,
                ldc,
                add: self.add || p0 > range.start,
                a_keep: KeepAt::new(self.keep.a, (row, p0)),
                b_keep: KeepAt::new(self.keep.b, (p0, col)),
                c_keep: KeepAt::new(self.keep.c, (row, col)).filter(|_| last),
            };
            // SAFETY: the tile lies inside every operand (above) and this task owns these
            // rows x columns of C.
            unsafe { (kernel.tile)(&tile) };
        }
    }
}
