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

/// Packs rows `i0 .. i0+mc` x depth `p0 .. p0+kc` of op(A) into `dst` (MR-row slivers).
pub fn pack_a<const MR: usize>(
    a: Operand,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    for (s, sliver) in dst
        .chunks_exact_mut(MR * kc)
        .take(mc.div_ceil(MR))
        .enumerate()
    {
        let rows = (mc - s * MR).min(MR);
        let row0 = i0 + s * MR;
        if a.trans {
            // A stored k x m: depth p of our rows is contiguous in memory.
            for (p, d) in sliver.chunks_exact_mut(MR).enumerate() {
                let start = (p0 + p) * a.ld + row0;
                d[..rows].copy_from_slice(&a.data[start..start + rows]);
                d[rows..].fill(0.0);
            }
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

/// Packs depth `p0 .. p0+kc` x cols `j0 .. j0+nc` of op(B) into `dst` (NR-col slivers).
pub fn pack_b<const NR: usize>(
    b: Operand,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
) {
    for (s, sliver) in dst
        .chunks_exact_mut(NR * kc)
        .take(nc.div_ceil(NR))
        .enumerate()
    {
        let cols = (nc - s * NR).min(NR);
        let col0 = j0 + s * NR;
        if b.trans {
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
        } else {
            // B stored k x n: depth p of our cols is contiguous in memory.
            for (p, d) in sliver.chunks_exact_mut(NR).enumerate() {
                let start = (p0 + p) * b.ld + col0;
                d[..cols].copy_from_slice(&b.data[start..start + cols]);
                d[cols..].fill(0.0);
            }
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
