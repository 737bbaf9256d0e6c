//! The CPU kernels of fused scaled dot-product attention (the op, its shapes and its math are in
//! `autograd/attention.rs`): forward saving only the row log-sum-exp, backward recomputing the
//! probabilities from it.
//!
//! Layout and loops: the work is split by (sequence b, kv head g). Each such block copies its keys
//! and values into contiguous (Tk, D) buffers, then walks the query rows of the group's heads,
//! ROWS = 4 rows at a time so that every key and value row read from memory serves four queries.
//! All inner loops are contiguous dot products or axpys over D, which the compiler vectorises.
//! Blocks are independent (each writes its own output rows and its own dK, dV block), so they run
//! as parallel tasks on the thread pool; each block's arithmetic is the same whichever thread
//! runs it, so results do not depend on the thread count. Exponentials use the vectorisable
//! `exp_f32` (<= 3 ulp) rather than libm's scalar call.
//!
//! The loops are compiled twice: portable, and with AVX2 + FMA enabled (8-wide vectors, fused
//! multiply-add), chosen at run time by [`Isa::detect`] (so `ILREC_NO_SIMD=1` selects the
//! portable loops). The two differ in rounding only (a unit test checks they agree to 1e-5); on
//! one machine the result is deterministic.

use crate::cpu::elementwise::exp_f32;
use crate::cpu::isa::Isa;
use crate::cpu::par::DisjointMut;
use crate::cpu::pool::parallel_for;
use crate::error::Result;
use crate::tensor::Tensor;

/// The sizes of one attention call and the index arithmetic on its row-major tensors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub(crate) batch: usize,
    pub(crate) tq: usize,
    pub(crate) tk: usize,
    pub(crate) hq: usize,
    pub(crate) hkv: usize,
    pub(crate) d: usize,
    pub(crate) causal: bool,
    pub(crate) scale: f32,
}

impl Dims {
    /// Query heads that share one kv head.
    fn group(&self) -> usize {
        self.hq / self.hkv
    }
    /// Offset of query (or output) row (b, i, head h) in a (B, Tq, Hq*D) tensor.
    fn q_offset(&self, b: usize, i: usize, h: usize) -> usize {
        ((b * self.tq + i) * self.hq + h) * self.d
    }
    /// Offset of key (or value) row (b, j, kv head g) in a (B, Tk, Hkv*D) tensor.
    fn kv_offset(&self, b: usize, j: usize, g: usize) -> usize {
        ((b * self.tk + j) * self.hkv + g) * self.d
    }
    /// Offset of the log-sum-exp of (b, h, i) in (B, Hq, Tq).
    fn lse_offset(&self, b: usize, h: usize, i: usize) -> usize {
        (b * self.hq + h) * self.tq + i
    }
    /// Keys 0..end are not hidden by the causal mask for query row i.
    fn visible_end(&self, i: usize) -> usize {
        if self.causal {
            self.tk - self.tq + i + 1
        } else {
            self.tk
        }
    }
}

/// Query rows processed together: each key or value row read from memory serves all of them, and
/// ROWS x 8 partial sums stay in vector registers.
const ROWS: usize = 4;

/// A group of up to ROWS consecutive query rows of one (sequence, head).
struct RowGroup<'a> {
    /// Query indices; when fewer than ROWS rows remain the last one is repeated (its results are
    /// discarded), so the kernels always work on ROWS rows.
    rows: [usize; ROWS],
    /// How many of `rows` are real.
    n: usize,
    /// Keys 0..ends[r] pass the causal mask for row r (non-decreasing in r).
    ends: [usize; ROWS],
    /// Padding flags of the sequence's keys.
    valid: Option<&'a [bool]>,
}

impl<'a> RowGroup<'a> {
    fn new(dims: &Dims, first: usize, valid: Option<&'a [bool]>) -> RowGroup<'a> {
        let n = ROWS.min(dims.tq - first);
        let rows = std::array::from_fn(|r| first + r.min(n - 1));
        RowGroup {
            rows,
            n,
            ends: rows.map(|i| dims.visible_end(i)),
            valid,
        }
    }
    /// Keys beyond this are hidden from every row of the group.
    fn end(&self) -> usize {
        self.ends[ROWS - 1]
    }
    /// Whether key j is a real (non-padding) key.
    fn key_is_valid(&self, j: usize) -> bool {
        self.valid.is_none_or(|m| m[j])
    }
}

/// Returns the output (B, Tq, Hq*D) and the row log-sum-exp (B, Hq, Tq), -inf for empty rows.
pub(crate) fn attention_forward(
    dims: &Dims,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_valid: Option<&[bool]>,
) -> Result<(Tensor, Vec<f32>)> {
    let inputs = [q.data()?, k.data()?, v.data()?];
    let mut out = vec![0.0f32; q.numel()]; // (B, Tq, Hq*D)
    let mut lse = vec![f32::NEG_INFINITY; dims.batch * dims.hq * dims.tq]; // (B, Hq, Tq)
    let fma = has_avx2_fma();
    {
        let writes = Writes {
            out: DisjointMut::new(&mut out),
            lse: DisjointMut::new(&mut lse),
        };
        // One task per (sequence, kv head): it writes only the output rows and log-sum-exps of
        // that sequence's query heads in the kv head's group, disjoint from every other task.
        parallel_for(dims.batch * dims.hkv, &|task| {
            let (b, g) = (task / dims.hkv, task % dims.hkv);
            if fma {
                // SAFETY: the CPU supports AVX2 and FMA (checked at run time above).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    forward_avx2_fma(dims, inputs, key_valid, b, g, &writes)
                };
            } else {
                forward_impl::<false>(dims, inputs, key_valid, b, g, &writes);
            }
        });
    }
    Ok((Tensor::from_vec(out, q.shape())?, lse))
}

/// The forward's outputs, written by parallel tasks at disjoint places.
struct Writes<'a> {
    out: DisjointMut<'a, f32>,
    lse: DisjointMut<'a, f32>,
}

/// The same loops compiled for AVX2 + FMA (8-wide vectors, fused multiply-add).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2_fma(
    dims: &Dims,
    inputs: [&[f32]; 3],
    key_valid: Option<&[bool]>,
    b: usize,
    g: usize,
    writes: &Writes,
) {
    forward_impl::<true>(dims, inputs, key_valid, b, g, writes)
}

/// Forward of sequence b, kv head g: loops over the query heads h of g's group and their query
/// row groups. Writes only (b, *, h) output rows and (b, h, *) log-sum-exps of those heads.
#[inline(always)]
fn forward_impl<const FMA: bool>(
    dims: &Dims,
    [qs, ks, vs]: [&[f32]; 3],
    key_valid: Option<&[bool]>,
    b: usize,
    g: usize,
    writes: &Writes,
) {
    let Dims { tk, d, .. } = *dims;
    let mut k_block = vec![0.0f32; tk * d]; // (Tk, D) keys of one (b, kv head)
    let mut v_block = vec![0.0f32; tk * d]; // (Tk, D)
    let mut scores = vec![0.0f32; ROWS * tk]; // (ROWS, Tk) scores, then exp(score - max)
    let mut acc = vec![0.0f32; d]; // (D) one output row before normalisation
    let valid = key_valid.map(|m| &m[b * tk..(b + 1) * tk]);
    gather_block(dims, ks, b, g, &mut k_block);
    gather_block(dims, vs, b, g, &mut v_block);
    for h in g * dims.group()..(g + 1) * dims.group() {
        for first in (0..dims.tq).step_by(ROWS) {
            let group = RowGroup::new(dims, first, valid);
            let q_rows = group.rows.map(|i| &qs[dims.q_offset(b, i, h)..][..d]);
            masked_scores::<FMA>(dims, &group, q_rows, &k_block, &mut scores);
            for r in 0..group.n {
                let i = group.rows[r];
                let o = dims.q_offset(b, i, h);
                let l = dims.lse_offset(b, h, i);
                let row_scores = &mut scores[r * tk..r * tk + group.ends[r]];
                // SAFETY: row (b, i, h) and lse (b, h, i) belong to this task only (h in g's group).
                let (out_row, lse_cell) =
                    unsafe { (writes.out.range(o..o + d), writes.lse.range(l..l + 1)) };
                lse_cell[0] = softmax_times_values::<FMA>(row_scores, &v_block, &mut acc, out_row);
            }
        }
    }
}

/// scores[r, j] = q_r . k_j * scale for the keys row r sees, -inf for hidden keys (j < end).
#[inline(always)]
fn masked_scores<const FMA: bool>(
    dims: &Dims,
    group: &RowGroup,
    q_rows: [&[f32]; ROWS],
    k_block: &[f32],
    scores: &mut [f32],
) {
    let (tk, d) = (dims.tk, dims.d);
    for j in 0..group.end() {
        let s = if group.key_is_valid(j) {
            dot_rows::<FMA>(q_rows, &k_block[j * d..(j + 1) * d])
        } else {
            [f32::NEG_INFINITY; ROWS]
        };
        for r in 0..ROWS {
            scores[r * tk + j] = if j < group.ends[r] {
                s[r] * dims.scale
            } else {
                f32::NEG_INFINITY
            };
        }
    }
}

/// Given one row's masked scores, writes softmax(scores) V to `out_row` and returns the
/// log-sum-exp (-inf, with a zero output, when every score is -inf: the row sees no key).
#[inline(always)]
fn softmax_times_values<const FMA: bool>(
    scores: &mut [f32],
    v_block: &[f32],
    acc: &mut [f32],
    out_row: &mut [f32],
) -> f32 {
    let d = out_row.len();
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    if max == f32::NEG_INFINITY {
        out_row.fill(0.0);
        return f32::NEG_INFINITY;
    }
    // Numerically stable softmax: exp(s - max) <= 1, in one vectorised pass (`exp_f32`, not
    // libm's scalar call); hidden keys (exp(-inf) = 0) are skipped.
    for s in scores.iter_mut() {
        *s = exp_f32(*s - max);
    }
    acc.fill(0.0);
    let mut sum = 0.0f32;
    for (j, &e) in scores.iter().enumerate() {
        if e == 0.0 {
            continue;
        }
        sum += e;
        axpy::<FMA>(e, &v_block[j * d..(j + 1) * d], acc);
    }
    let inv_sum = 1.0 / sum;
    for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
        *o = a * inv_sum;
    }
    max + sum.ln()
}

/// What backward reads: the forward inputs, output and row log-sum-exp.
pub(crate) struct Saved<'a> {
    pub(crate) q: &'a Tensor,
    pub(crate) k: &'a Tensor,
    pub(crate) v: &'a Tensor,
    pub(crate) out: &'a Tensor,
    pub(crate) lse: &'a [f32],
    pub(crate) key_valid: Option<&'a [bool]>,
}

/// The same, as plain slices for the kernels.
struct SavedSlices<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a [f32],
    d_out: &'a [f32],
    lse: &'a [f32],
    key_valid: Option<&'a [bool]>,
}

/// Gradients of q, k, v (None for those not needed) from the output gradient `g`. All three are
/// computed together (they share the recomputed probabilities); only the needed ones are returned.
pub(crate) fn attention_backward(
    dims: &Dims,
    saved: &Saved,
    g: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let s = SavedSlices {
        q: saved.q.data()?,
        k: saved.k.data()?,
        v: saved.v.data()?,
        out: saved.out.data()?,
        d_out: g.data()?,
        lse: saved.lse,
        key_valid: saved.key_valid,
    };
    let mut dq = vec![0.0f32; s.q.len()]; // (B, Tq, Hq*D)
    let mut dk = vec![0.0f32; s.k.len()]; // (B, Tk, Hkv*D)
    let mut dv = vec![0.0f32; s.v.len()]; // (B, Tk, Hkv*D)
    let fma = has_avx2_fma();
    {
        let grads = [&mut dq, &mut dk, &mut dv].map(|x| DisjointMut::new(x.as_mut_slice()));
        // One task per (sequence, kv head): it writes the dQ rows of its group's query heads and
        // the dK, dV rows of its kv head, disjoint from every other task.
        parallel_for(dims.batch * dims.hkv, &|task| {
            let (b, g) = (task / dims.hkv, task % dims.hkv);
            if fma {
                // SAFETY: the CPU supports AVX2 and FMA (checked at run time above).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    backward_avx2_fma(dims, &s, b, g, &grads)
                };
            } else {
                backward_impl::<false>(dims, &s, b, g, &grads);
            }
        });
    }
    let pick = |need: bool, data: Vec<f32>, shape: &[usize]| -> Result<Option<Tensor>> {
        need.then(|| Tensor::from_vec(data, shape)).transpose()
    };
    Ok(vec![
        pick(needs[0], dq, saved.q.shape())?,
        pick(needs[1], dk, saved.k.shape())?,
        pick(needs[2], dv, saved.v.shape())?,
    ])
}

/// The same loops compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2_fma(
    dims: &Dims,
    s: &SavedSlices,
    b: usize,
    g: usize,
    grads: &[DisjointMut<f32>; 3],
) {
    backward_impl::<true>(dims, s, b, g, grads)
}

/// Backward of sequence b, kv head g, in the forward's order; dK, dV are summed over the
/// group's query heads in contiguous (Tk, D) blocks, then written into place.
#[inline(always)]
fn backward_impl<const FMA: bool>(
    dims: &Dims,
    s: &SavedSlices,
    b: usize,
    g: usize,
    [dq, dk, dv]: &[DisjointMut<f32>; 3],
) {
    let Dims { tk, d, .. } = *dims;
    let mut k_block = vec![0.0f32; tk * d]; // (Tk, D) keys of one (b, kv head)
    let mut v_block = vec![0.0f32; tk * d]; // (Tk, D)
    let mut dk_block = vec![0.0f32; tk * d]; // (Tk, D) summed over the group's query heads
    let mut dv_block = vec![0.0f32; tk * d]; // (Tk, D)
    let mut dq_rows = vec![0.0f32; ROWS * d]; // (ROWS, D) one row group's dQ
    let valid = s.key_valid.map(|m| &m[b * tk..(b + 1) * tk]);
    gather_block(dims, s.k, b, g, &mut k_block);
    gather_block(dims, s.v, b, g, &mut v_block);
    for h in g * dims.group()..(g + 1) * dims.group() {
        for first in (0..dims.tq).step_by(ROWS) {
            let group = RowGroup::new(dims, first, valid);
            let blocks = Blocks {
                k: &k_block,
                v: &v_block,
                dk: &mut dk_block,
                dv: &mut dv_block,
            };
            backward_rows::<FMA>(dims, s, b, h, &group, blocks, &mut dq_rows);
            for r in 0..group.n {
                let o = dims.q_offset(b, group.rows[r], h);
                // SAFETY: dQ row (b, i, h) belongs to this task only (h in g's group).
                unsafe { dq.range(o..o + d) }.copy_from_slice(&dq_rows[r * d..(r + 1) * d]);
            }
        }
    }
    scatter_block(dims, &dk_block, b, g, dk);
    scatter_block(dims, &dv_block, b, g, dv);
}

/// The (Tk, D) key and value blocks of one (b, kv head) and their gradient accumulators.
struct Blocks<'a> {
    k: &'a [f32],
    v: &'a [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
}

/// One row group's backward: recomputes p = exp(q.k * scale - lse), then
/// dV_j += sum_r p_r dO_r, dK_j += sum_r dS_r q_r, dQ_r = sum_j dS_r k_j (into `dq_rows`).
#[inline(always)]
fn backward_rows<const FMA: bool>(
    dims: &Dims,
    s: &SavedSlices,
    b: usize,
    h: usize,
    group: &RowGroup,
    blocks: Blocks,
    dq_rows: &mut [f32],
) {
    let d = dims.d;
    let offsets = group.rows.map(|i| dims.q_offset(b, i, h));
    let q_rows = offsets.map(|o| &s.q[o..o + d]);
    let d_out_rows = offsets.map(|o| &s.d_out[o..o + d]);
    let lse = group.rows.map(|i| s.lse[dims.lse_offset(b, h, i)]);
    // Padding rows of the group and rows that saw no key (zero output) get no gradient.
    let active: [bool; ROWS] = std::array::from_fn(|r| r < group.n && lse[r] > f32::NEG_INFINITY);
    // delta_r = sum_j p_j dP_j = dO_r . out_r, since out_r = sum_j p_j v_j.
    let delta = offsets.map(|o| dot::<FMA>(&s.d_out[o..o + d], &s.out[o..o + d]));
    dq_rows.fill(0.0);
    for j in 0..group.end() {
        if !group.key_is_valid(j) {
            continue;
        }
        let (kj, vj) = (&blocks.k[j * d..(j + 1) * d], &blocks.v[j * d..(j + 1) * d]);
        // Re-slicing to length d is a codegen hint (measured: the backward loop vectorises better).
        let scores = dot_rows::<FMA>(q_rows.map(|x| &x[..d]), kj);
        let dp = dot_rows::<FMA>(d_out_rows.map(|x| &x[..d]), vj);
        let mut p = [0.0f32; ROWS];
        let mut ds_scaled = [0.0f32; ROWS];
        for r in 0..ROWS {
            if active[r] && j < group.ends[r] {
                p[r] = exp_f32(scores[r] * dims.scale - lse[r]);
                ds_scaled[r] = p[r] * (dp[r] - delta[r]) * dims.scale;
            }
        }
        axpy_rows::<FMA>(p, d_out_rows, &mut blocks.dv[j * d..(j + 1) * d]);
        axpy_rows::<FMA>(ds_scaled, q_rows, &mut blocks.dk[j * d..(j + 1) * d]);
        for (r, dq_row) in dq_rows.chunks_exact_mut(d).enumerate() {
            axpy::<FMA>(ds_scaled[r], kj, dq_row);
        }
    }
}

/// Copies kv head `g` of sequence `b` out of a (B, Tk, Hkv*D) tensor into a contiguous (Tk, D).
fn gather_block(dims: &Dims, src: &[f32], b: usize, g: usize, block: &mut [f32]) {
    let d = dims.d;
    for (j, dst) in block.chunks_exact_mut(d).enumerate() {
        let o = dims.kv_offset(b, j, g);
        dst.copy_from_slice(&src[o..o + d]);
    }
}

/// Writes a (Tk, D) block into kv head `g` of sequence `b` of a (B, Tk, Hkv*D) tensor (rows
/// that only the task of (b, g) touches).
fn scatter_block(dims: &Dims, block: &[f32], b: usize, g: usize, dst: &DisjointMut<f32>) {
    let d = dims.d;
    for (j, src) in block.chunks_exact(d).enumerate() {
        let o = dims.kv_offset(b, j, g);
        // SAFETY: row (b, j, g) is written by the task of (b, g) alone.
        unsafe { dst.range(o..o + d) }.copy_from_slice(src);
    }
}

/// Whether the AVX2 + FMA build of the loops runs: the CPU has both and the environment does
/// not cap SIMD off (`cpu::isa`).
fn has_avx2_fma() -> bool {
    Isa::detect() >= Isa::Avx2
}

/// a * b + c, as one fused operation (one rounding) in the FMA build. Without hardware FMA,
/// `mul_add` would call a slow software routine, hence the two forms.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// a . b with 8 independent partial sums: a fixed summation order that maps onto SIMD lanes
/// (one running sum would force strictly sequential adds).
#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA = true is only instantiated inside the AVX2 + FMA build.
        return unsafe { simd::dot_rows([a], b)[0] };
    }
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_tail, b_tail) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] = madd::<FMA>(x[l], y[l], lanes[l]);
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in a_tail.iter().zip(b_tail) {
        tail = madd::<FMA>(*x, *y, tail);
    }
    lanes.iter().sum::<f32>() + tail
}

/// [a_r . b for each of the ROWS rows a_r], reading b once; same summation order as `dot`.
#[inline(always)]
fn dot_rows<const FMA: bool>(a: [&[f32]; ROWS], b: &[f32]) -> [f32; ROWS] {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA = true is only instantiated inside the AVX2 + FMA build.
        return unsafe { simd::dot_rows(a, b) };
    }
    let d = b.len();
    let full = d / 8 * 8;
    let mut lanes = [[0.0f32; 8]; ROWS];
    for c in (0..full).step_by(8) {
        let bc = &b[c..c + 8];
        for (lane, a_r) in lanes.iter_mut().zip(&a) {
            let ac = &a_r[c..c + 8];
            for l in 0..8 {
                lane[l] = madd::<FMA>(ac[l], bc[l], lane[l]);
            }
        }
    }
    std::array::from_fn(|r| {
        let mut tail = 0.0f32;
        for c in full..d {
            tail = madd::<FMA>(a[r][c], b[c], tail);
        }
        lanes[r].iter().sum::<f32>() + tail
    })
}

/// y += a * x.
#[inline(always)]
fn axpy<const FMA: bool>(a: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA = true is only instantiated inside the AVX2 + FMA build.
        return unsafe { simd::axpy_rows([a], [x], y) };
    }
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = madd::<FMA>(a, xi, *yi);
    }
}

/// y += sum_r a_r x_r, reading and writing y once.
#[inline(always)]
fn axpy_rows<const FMA: bool>(a: [f32; ROWS], x: [&[f32]; ROWS], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA = true is only instantiated inside the AVX2 + FMA build.
        return unsafe { simd::axpy_rows(a, x, y) };
    }
    let x = x.map(|x_r| &x_r[..y.len()]); // equal lengths let the compiler drop bounds checks
    for (c, yc) in y.iter_mut().enumerate() {
        let mut acc = *yc;
        for r in 0..ROWS {
            acc = madd::<FMA>(a[r], x[r][c], acc);
        }
        *yc = acc;
    }
}

/// The FMA build's inner loops written with AVX2 intrinsics: the auto-vectorised forms above are
/// fragile (a small change in the surrounding code turned them into scalar code with spills,
/// 2.5x slower). Same arithmetic and summation order as the portable loops: 8 lanes of fused
/// multiply-adds over full 8-blocks, lanes summed in order, then the scalar tail.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// [a_r . b for each row a_r], reading b once.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn dot_rows<const R: usize>(a: [&[f32]; R], b: &[f32]) -> [f32; R] {
        let d = b.len();
        let full = d / 8 * 8;
        for a_r in &a {
            assert!(a_r.len() >= d, "attention dot: row shorter than {d}");
        }
        let mut acc = [_mm256_setzero_ps(); R];
        let mut c = 0;
        while c < full {
            let bv = _mm256_loadu_ps(b.as_ptr().add(c));
            for r in 0..R {
                let av = _mm256_loadu_ps(a[r].as_ptr().add(c));
                acc[r] = _mm256_fmadd_ps(av, bv, acc[r]);
            }
            c += 8;
        }
        std::array::from_fn(|r| {
            let mut lanes = [0.0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r]);
            let mut tail = 0.0f32;
            for c in full..d {
                tail = a[r][c].mul_add(b[c], tail);
            }
            lanes.iter().sum::<f32>() + tail
        })
    }

    /// y += sum_r a_r x_r (in r order per element), reading and writing y once.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn axpy_rows<const R: usize>(a: [f32; R], x: [&[f32]; R], y: &mut [f32]) {
        let d = y.len();
        let full = d / 8 * 8;
        for x_r in &x {
            assert!(x_r.len() >= d, "attention axpy: row shorter than {d}");
        }
        let av = a.map(|v| _mm256_set1_ps(v));
        let mut c = 0;
        while c < full {
            let mut acc = _mm256_loadu_ps(y.as_ptr().add(c));
            for r in 0..R {
                acc = _mm256_fmadd_ps(av[r], _mm256_loadu_ps(x[r].as_ptr().add(c)), acc);
            }
            _mm256_storeu_ps(y.as_mut_ptr().add(c), acc);
            c += 8;
        }
        for c in full..d {
            let mut acc = y[c];
            for r in 0..R {
                acc = a[r].mul_add(x[r][c], acc);
            }
            y[c] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The portable loops (run on CPUs without AVX2/FMA) against the AVX2 + FMA build that the
    //! integration tests check against a naive reference on this machine.
    use super::*;
    use crate::rng::Rng;

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "drives both SIMD builds of the kernels through forward and backward side by side"
    )]
    fn portable_and_fma_builds_agree() {
        if !has_avx2_fma() {
            eprintln!("skipped: this CPU has no AVX2 + FMA, the integration tests cover the portable loops");
            return;
        }
        let (batch, tq, tk, hq, hkv, d) = (2, 5, 9, 6, 2, 13);
        let dims = Dims {
            batch,
            tq,
            tk,
            hq,
            hkv,
            d,
            causal: true,
            scale: 1.0 / (d as f32).sqrt(),
        };
        let mut rng = Rng::new(3);
        let mut randn = |n: usize| (0..n).map(|_| rng.normal()).collect::<Vec<f32>>();
        let (q, k, v, d_out) = (
            randn(batch * tq * hq * d),
            randn(batch * tk * hkv * d),
            randn(batch * tk * hkv * d),
            randn(batch * tq * hq * d),
        );
        let valid: Vec<bool> = (0..batch * tk).map(|r| r % tk != 3 && r != 0).collect();
        let run = |fma: bool| {
            let mut out = vec![0.0f32; q.len()];
            let mut lse = vec![f32::NEG_INFINITY; batch * hq * tq];
            let inputs = [q.as_slice(), k.as_slice(), v.as_slice()];
            let mut grads = [
                vec![0.0f32; q.len()],
                vec![0.0f32; k.len()],
                vec![0.0f32; v.len()],
            ];
            {
                let writes = Writes {
                    out: DisjointMut::new(&mut out),
                    lse: DisjointMut::new(&mut lse),
                };
                for (b, g) in (0..batch).flat_map(|b| (0..hkv).map(move |g| (b, g))) {
                    if fma {
                        // SAFETY: AVX2 and FMA were detected above.
                        unsafe { forward_avx2_fma(&dims, inputs, Some(&valid), b, g, &writes) };
                    } else {
                        forward_impl::<false>(&dims, inputs, Some(&valid), b, g, &writes);
                    }
                }
            }
            let s = SavedSlices {
                q: &q,
                k: &k,
                v: &v,
                out: &out,
                d_out: &d_out,
                lse: &lse,
                key_valid: Some(&valid),
            };
            {
                let [dq, dk, dv] = &mut grads;
                let w = [dq, dk, dv].map(|x| DisjointMut::new(x.as_mut_slice()));
                for (b, g) in (0..batch).flat_map(|b| (0..hkv).map(move |g| (b, g))) {
                    if fma {
                        // SAFETY: as above.
                        unsafe { backward_avx2_fma(&dims, &s, b, g, &w) };
                    } else {
                        backward_impl::<false>(&dims, &s, b, g, &w);
                    }
                }
            }
            [out, grads[0].clone(), grads[1].clone(), grads[2].clone()]
        };
        let (portable, fused) = (run(false), run(true));
        for (what, (a, b)) in ["out", "dq", "dk", "dv"]
            .iter()
            .zip(portable.iter().zip(&fused))
        {
            let worst = a
                .iter()
                .zip(b)
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst < 1e-5,
                "{what}: portable and FMA builds differ by {worst}"
            );
        }
    }
}
