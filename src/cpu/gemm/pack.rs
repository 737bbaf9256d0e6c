//! Packing: copies a block of op(A) or op(B) into the contiguous, zero-padded layout that the
//! microkernel streams through, and the reusable 64-byte-aligned buffers that hold it.
//!
//! Why pack: the microkernel reads, per step `p` of the k loop, MR consecutive values of A
//! (one column of an MR-row sliver) and NR consecutive values of B (one row of an NR-column
//! sliver). Packing makes both reads unit-stride whatever the transposes and leading dimensions
//! are, keeps the working set in cache, and pads edges with zeros so the kernel never branches.
//!
//! Packed A (block of `mc` rows x `kc` depth): slivers of MR rows, sliver `s` at `s * MR * kc`,
//! element (row r, depth p) at `p * MR + r`.
//! Packed B (block of `kc` depth x `nc` cols): slivers of NR cols, sliver `s` at `s * NR * kc`,
//! element (depth p, col c) at `p * NR + c`.

/// A read-only view of op(X): logical element (r, c) is `data[r * ld + c]`, or
/// `data[c * ld + r]` when `trans` (X stored transposed).
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub ld: usize,
    pub trans: bool,
}

impl<'a> Operand<'a> {
    /// The same view without its first `skip` columns (A's depth) ...
    pub fn skip_cols(self, skip: usize) -> Operand<'a> {
        self.skip(if self.trans { skip * self.ld } else { skip })
    }
    /// ... or rows (B's depth).
    pub fn skip_rows(self, skip: usize) -> Operand<'a> {
        self.skip(if self.trans { skip } else { skip * self.ld })
    }
    fn skip(self, offset: usize) -> Operand<'a> {
        Operand {
            data: &self.data[offset..],
            ..self
        }
    }
}

/// Packs rows `i0 .. i0+mc` x depth `p0 .. p0+kc` of op(A) into `dst` (MR-row slivers).
pub fn pack_a<const MR: usize>(
    a: Operand,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
    simd: bool,
) {
    if a.trans {
        // A stored k x m: depth p of all our rows is one contiguous run of the source.
        return pack_rows_into_slivers::<MR>(a, p0, kc, i0, mc, dst);
    }
    for (s, sliver) in dst
        .chunks_exact_mut(MR * kc)
        .take(mc.div_ceil(MR))
        .enumerate()
    {
        let rows = (mc - s * MR).min(MR);
        let row0 = i0 + s * MR;
        if simd && MR == 8 && rows == 8 {
            let starts: [usize; 8] = std::array::from_fn(|r| (row0 + r) * a.ld + p0);
            transpose_rows_into(a.data, starts, kc, sliver, MR);
        } else if simd && MR == 6 && rows == 6 {
            let starts: [usize; 6] = std::array::from_fn(|r| (row0 + r) * a.ld + p0);
            transpose_6_rows_into(a.data, starts, kc, sliver);
        } else {
            // A stored m x k: each of our rows is contiguous along depth; scatter with stride MR.
            for r in 0..MR {
                if r < rows {
                    let start = (row0 + r) * a.ld + p0;
                    let src = &a.data[start..start + kc];
                    for (d, &v) in sliver.chunks_exact_mut(MR).zip(src) {
                        d[r] = v;
                    }
                } else {
                    sliver.chunks_exact_mut(MR).for_each(|d| d[r] = 0.0);
                }
            }
        }
    }
}

/// Packs `x` where each source row `p0 + p` holds depth step `p` of all `len` wanted values
/// (op(A)^T stored k x m, or B stored k x n) into W-wide slivers: value `c` of row `p` goes to
/// sliver `c / W`, position `p * W + c % W`; the last sliver is zero-padded.
///
/// Why row by row (not sliver by sliver): each source row is then read once, front to back,
/// a whole cache line at a time; sliver by sliver touched `kc` far-apart rows per sliver (one
/// page each for wide matrices) and re-read each line from L2 for the next sliver.
fn pack_rows_into_slivers<const W: usize>(
    x: Operand,
    p0: usize,
    kc: usize,
    c0: usize,
    len: usize,
    dst: &mut [f32],
) {
    let full = len / W;
    let tail = len - full * W;
    let slivers = len.div_ceil(W);
    assert!(dst.len() >= slivers * W * kc, "pack: destination too short");
    for p in 0..kc {
        let start = (p0 + p) * x.ld + c0;
        let src = &x.data[start..start + len];
        if p + PREFETCH_ROWS < kc {
            // Rows of a wide matrix are pages apart, and a run of `len` floats is too short for
            // the hardware prefetcher to ramp up: ask for a later row's lines now.
            prefetch_run(&x.data[start + PREFETCH_ROWS * x.ld..][..len]);
        }
        for (s, chunk) in src.chunks_exact(W).enumerate() {
            dst[s * W * kc + p * W..][..W].copy_from_slice(chunk);
        }
        if tail > 0 {
            let d = &mut dst[full * W * kc + p * W..][..W];
            d[..tail].copy_from_slice(&src[full * W..]);
            d[tail..].fill(0.0);
        }
    }
}

/// Packs depth `p0 .. p0+kc` x cols `j0 .. j0+nc` of op(B) into `dst` (NR-col slivers).
pub fn pack_b<const NR: usize>(
    b: Operand,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
    simd: bool,
) {
    if !b.trans {
        // B stored k x n: depth p of all our cols is one contiguous run of the source.
        return pack_rows_into_slivers::<NR>(b, p0, kc, j0, nc, dst);
    }
    for (s, sliver) in dst
        .chunks_exact_mut(NR * kc)
        .take(nc.div_ceil(NR))
        .enumerate()
    {
        let cols = (nc - s * NR).min(NR);
        let col0 = j0 + s * NR;
        if simd && NR.is_multiple_of(8) && cols == NR {
            // Groups of 8 columns: each is an 8-row transpose written at column offset c8.
            for c8 in (0..NR).step_by(8) {
                let starts: [usize; 8] = std::array::from_fn(|c| (col0 + c8 + c) * b.ld + p0);
                transpose_rows_into(b.data, starts, kc, &mut sliver[c8..], NR);
            }
        } else {
            // B stored n x k (weights [out, in]): each of our cols is contiguous along depth.
            for c in 0..NR {
                if c < cols {
                    let start = (col0 + c) * b.ld + p0;
                    let src = &b.data[start..start + kc];
                    for (d, &v) in sliver.chunks_exact_mut(NR).zip(src) {
                        d[c] = v;
                    }
                } else {
                    sliver.chunks_exact_mut(NR).for_each(|d| d[c] = 0.0);
                }
            }
        }
    }
}

/// How many source rows ahead `pack_rows_into_slivers` prefetches (~ DRAM latency / row time).
const PREFETCH_ROWS: usize = 8;

/// Hints the CPU to load every cache line of `run` (no effect off x86-64).
fn prefetch_run(run: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in run.chunks(16) {
        // SAFETY: prefetching never faults; SSE is part of the x86-64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr() as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = run;
}

/// Writes `dst[p * stride + r] = src[starts[r] + p]` for r in 0..8, p in 0..kc: eight source
/// rows (contiguous along depth) become eight consecutive values per depth step.
/// This is the scatter of packing a transposed B / plain A, done 8x8 at a time in registers.
fn transpose_rows_into(src: &[f32], starts: [usize; 8], kc: usize, dst: &mut [f32], stride: usize) {
    // Bounds are checked here once so the SIMD loop can use raw pointers.
    for &s in &starts {
        assert!(s + kc <= src.len(), "pack: source row out of range");
    }
    assert!(
        kc == 0 || (kc - 1) * stride + 8 <= dst.len(),
        "pack: destination too short"
    );
    // Whole 8x8 blocks go through registers (x86-64 only); the rest element by element.
    let simd_end = if cfg!(target_arch = "x86_64") {
        kc / 8 * 8
    } else {
        0
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: callers pass simd = true only when AVX2 is present; ranges checked above.
    unsafe {
        for p8 in (0..simd_end).step_by(8) {
            x86::transpose_8x8(
                src.as_ptr(),
                starts,
                p8,
                dst.as_mut_ptr().add(p8 * stride),
                stride,
            );
        }
    }
    for p in simd_end..kc {
        for (r, &s) in starts.iter().enumerate() {
            dst[p * stride + r] = src[s + p];
        }
    }
}

/// `dst[p * 6 + r] = src[starts[r] + p]` for r in 0..6, p in 0..kc: the 6-row sliver of the
/// AVX2 kernel's A, packed through the same 8x8 register transpose.
///
/// The transpose gets rows 0 and 1 again as its rows 6 and 7, and its eight 8-float results
/// are stored 6 floats apart, in depth order: the two extra lanes of each store fall on the
/// first two values of the next depth step and are overwritten by the next store. Only the
/// last store of a block spills past its block, so the final block (whose spill would leave
/// `dst`) goes through the scalar tail instead.
fn transpose_6_rows_into(src: &[f32], starts: [usize; 6], kc: usize, dst: &mut [f32]) {
    const MR: usize = 6;
    for &s in &starts {
        assert!(s + kc <= src.len(), "pack: source row out of range");
    }
    assert!(dst.len() >= kc * MR, "pack: destination too short");
    // Block b writes dst[48b .. 48b + 50]: inside dst while 8b + 9 <= kc.
    let simd_end = if cfg!(target_arch = "x86_64") && kc > 0 {
        (kc - 1) / 8 * 8
    } else {
        0
    };
    #[cfg(target_arch = "x86_64")]
    {
        let starts8 = [
            starts[0], starts[1], starts[2], starts[3], starts[4], starts[5], starts[0], starts[1],
        ];
        for p8 in (0..simd_end).step_by(8) {
            // SAFETY: callers pass simd = true only when AVX2 is present; the source rows are
            // checked above, and this block's stores end at (p8 + 8) * 6 + 2 <= kc * 6.
            unsafe {
                x86::transpose_8x8(src.as_ptr(), starts8, p8, dst.as_mut_ptr().add(p8 * MR), MR)
            };
        }
    }
    for p in simd_end..kc {
        for (r, &s) in starts.iter().enumerate() {
            dst[p * MR + r] = src[s + p];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Transposes the 8x8 block `src[starts[r] + p8 + p]` (r, p < 8) into `dst[p * stride + r]`.
    ///
    /// The eight results are stored in depth order (`transpose_6_rows_into` relies on it).
    ///
    /// # Safety
    /// AVX2 is available; all 64 source and destination positions are in bounds.
    #[target_feature(enable = "avx2")]
    pub unsafe fn transpose_8x8(
        src: *const f32,
        starts: [usize; 8],
        p8: usize,
        dst: *mut f32,
        stride: usize,
    ) {
        let row = |r: usize| _mm256_loadu_ps(src.add(starts[r] + p8));
        let (r0, r1, r2, r3, r4, r5, r6, r7) = (
            row(0),
            row(1),
            row(2),
            row(3),
            row(4),
            row(5),
            row(6),
            row(7),
        );
        // Interleave pairs: t0 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5], ...
        let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
        let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
        let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
        // Quads: u0 = rows 0-3 at depth 0 | rows 0-3 at depth 4, u1 = depth 1 | 5, ...
        let (u0, u1) = (
            _mm256_shuffle_ps::<0x44>(t0, t2),
            _mm256_shuffle_ps::<0xEE>(t0, t2),
        );
        let (u2, u3) = (
            _mm256_shuffle_ps::<0x44>(t1, t3),
            _mm256_shuffle_ps::<0xEE>(t1, t3),
        );
        let (u4, u5) = (
            _mm256_shuffle_ps::<0x44>(t4, t6),
            _mm256_shuffle_ps::<0xEE>(t4, t6),
        );
        let (u6, u7) = (
            _mm256_shuffle_ps::<0x44>(t5, t7),
            _mm256_shuffle_ps::<0xEE>(t5, t7),
        );
        // Join 128-bit halves: depth p for rows 0-3 and rows 4-7.
        let out = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (p, v) in out.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(p * stride), v);
        }
    }
}

/// One cache line of floats; a `Vec` of these is 64-byte aligned, as the aligned loads of the
/// SIMD kernels require.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A growable, 64-byte-aligned f32 buffer that is reused across calls (never shrinks), so
/// packing allocates only during warm-up.
#[derive(Default)]
pub struct PackBuf {
    lines: Vec<Line>,
}

impl PackBuf {
    /// The first `len` floats, growing the buffer if needed. Contents are unspecified.
    pub fn get(&mut self, len: usize) -> &mut [f32] {
        let lines = len.div_ceil(16);
        if self.lines.len() < lines {
            self.lines.resize(lines, Line([0.0; 16]));
        }
        // SAFETY: `Line` is repr(C) of 16 f32 with no padding, so `lines` is a contiguous run of
        // `lines.len() * 16` initialised f32 values.
        let all = unsafe {
            std::slice::from_raw_parts_mut(
                self.lines.as_mut_ptr() as *mut f32,
                self.lines.len() * 16,
            )
        };
        &mut all[..len]
    }
}
