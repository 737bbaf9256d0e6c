//! The CPU kernels of fused scaled dot-product attention (the op, its shapes and its math are in
//! `autograd/attention.rs`): forward saving only the row log-sum-exp, backward recomputing the
//! probabilities from it.
//!
//! Layout and loops: the work is split by (sequence b, kv head g), one parallel task each. A task
//! walks the query heads h of g's group and, for each, blocks of up to QUERY_BLOCK query rows.
//! Every product of a block is a matrix product done by the crate's GEMM (`cpu::gemm`, on the
//! task's thread: a call from inside a pool task runs serially), reading Q, K, V, dO where they
//! lie in the (B, T, H*D) tensors (row stride H*D):
//!
//! ```text
//! forward   S  = scale * Q_h K_g^T           (rows, keys)   masked, then softmax in place = P
//!           O_h = P V_g                      (rows, D)
//! backward  P   = exp(scale * Q_h K_g^T - lse)               recomputed
//!           dV_g += P^T dO_h                 (keys, D)
//!           dP  = dO_h V_g^T                 (rows, keys)
//!           dS  = P * (dP - rowsum(dO_h * O_h)) * scale
//!           dQ_h = dS K_g                    (rows, D)
//!           dK_g += dS^T Q_h                 (keys, D)
//! ```
//!
//! A block only computes the keys its last row can see (causal: a block of the first 64 rows
//! stops at key 64), so the causal half of the square is mostly skipped; within a block, keys a
//! row must not see are set to -inf before the softmax (probability exactly 0).
//!
//! Before this layout the kernels were dot products and axpys over D, four query rows at a time
//! (one horizontal sum per query-key pair); the products here run the GEMM's register-blocked
//! microkernels instead (BENCHMARKS.md, "Attention as matrix products").
//!
//! Determinism: each task's arithmetic is fixed by (b, g) alone (the GEMM's sums depend only on
//! the product's depth; dK and dV add the heads and blocks in a fixed order), so results do not
//! depend on the thread count. The softmax rows use `cpu::softmax`'s reductions (every softmax
//! in the crate rounds the same way). The row loops (softmax, dS) are plain f32 arithmetic compiled
//! twice, portable and with AVX2 enabled: no fused multiply-adds, so both builds give the same
//! bits and only their speed differs. Exponentials use the vectorisable `exp_f32` (<= 3 ulp).

use crate::cpu::elementwise::exp_f32;
use crate::cpu::gemm::{sgemm_with_isa, Isa};
use crate::cpu::par::DisjointMut;
use crate::cpu::pool::parallel_for;
use crate::cpu::softmax::{row_dot, row_max, row_sum};
use crate::error::Result;
use crate::tensor::Tensor;
use std::mem::MaybeUninit;
use std::ops::Range;

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

/// Query rows per block: the score block (rows x keys) of a 128-token sequence stays in L1/L2,
/// and a causal sequence of 128 is two blocks, so a quarter of the square is never computed.
/// (SmolLM2 shapes, 1 thread: 32 rows was as fast, 16 a little slower, 128 ~15% slower.)
const QUERY_BLOCK: usize = 64;

/// One block of query rows of sequence `b`, query head `h` (of kv head `g`).
#[derive(Clone, Debug)]
struct Block {
    b: usize,
    h: usize,
    g: usize,
    rows: Range<usize>,
    /// Keys 0..keys are visible to at least one row of the block.
    keys: usize,
}

impl Block {
    /// The blocks of task (b, g): its query heads in order, each cut into row blocks.
    fn of_task(dims: &Dims, b: usize, g: usize) -> Vec<Block> {
        let heads = g * dims.group()..(g + 1) * dims.group();
        heads
            .flat_map(|h| {
                (0..dims.tq).step_by(QUERY_BLOCK).map(move |first| {
                    let rows = first..(first + QUERY_BLOCK).min(dims.tq);
                    let keys = dims.visible_end(rows.end - 1);
                    Block {
                        b,
                        h,
                        g,
                        rows,
                        keys,
                    }
                })
            })
            .collect()
    }
    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// Q, K, V (and in the backward dO and O) of one call, as the GEMM reads them.
#[derive(Clone, Copy)]
struct Operands<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    key_valid: Option<&'a [bool]>,
}

/// `c` (rows x cols, row stride `ldc`) [+]= op(a) op(b), one thread, the given kernel.
#[allow(clippy::too_many_arguments)]
fn product(
    isa: Isa,
    (ta, tb): (bool, bool),
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    beta: f32,
    (c, ldc): (&mut [f32], usize),
) {
    sgemm_with_isa(isa, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// s (rows x keys) = scale * Q_h K_g^T over the block's rows and keys, then -inf where a row
/// must not see a key (causal mask, padding keys).
fn masked_scores(isa: Isa, dims: &Dims, blk: &Block, x: &Operands, s: &mut [f32]) {
    let (d, keys) = (dims.d, blk.keys);
    let q = &x.q[dims.q_offset(blk.b, blk.rows.start, blk.h)..];
    let k = &x.k[dims.kv_offset(blk.b, 0, blk.g)..];
    let (ldq, ldk) = (dims.hq * d, dims.hkv * d);
    #[rustfmt::skip]
    product(isa, (false, true), (blk.len(), keys, d), dims.scale, (q, ldq), (k, ldk), 0.0, (s, keys));
    let valid = x
        .key_valid
        .map(|m| &m[blk.b * dims.tk..blk.b * dims.tk + keys]);
    for (i, row) in blk.rows.clone().zip(s.chunks_exact_mut(keys)) {
        row[dims.visible_end(i).min(keys)..].fill(f32::NEG_INFINITY);
        if let Some(valid) = valid {
            for (v, &ok) in row.iter_mut().zip(valid) {
                if !ok {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// Returns the output (B, Tq, Hq*D) and the row log-sum-exp (B, Hq, Tq), -inf for empty rows;
/// the products use the GEMM kernel `isa` (the op passes `Isa::detect()`; tests compare them).
pub(crate) fn attention_forward(
    isa: Isa,
    dims: &Dims,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_valid: Option<&[bool]>,
) -> Result<(Tensor, Vec<f32>)> {
    let x = Operands {
        q: q.data()?,
        k: k.data()?,
        v: v.data()?,
        key_valid,
    };
    let mut out = Vec::with_capacity(q.numel()); // (B, Tq, Hq*D), every row written below
    let mut lse = vec![f32::NEG_INFINITY; dims.batch * dims.hq * dims.tq]; // (B, Hq, Tq)
    {
        let out_w = DisjointMut::new(&mut out.spare_capacity_mut()[..q.numel()]);
        let lse_w = DisjointMut::new(&mut lse);
        // One task per (sequence, kv head): it writes only the output rows and log-sum-exps of
        // that sequence's query heads in the kv head's group, disjoint from every other task.
        parallel_for(dims.batch * dims.hkv, &|task| {
            let (b, g) = (task / dims.hkv, task % dims.hkv);
            let mut s = vec![0.0f32; QUERY_BLOCK.min(dims.tq) * dims.tk]; // (rows, keys)
            let mut o = vec![0.0f32; QUERY_BLOCK.min(dims.tq) * dims.d]; // (rows, D)
            for blk in Block::of_task(dims, b, g) {
                let (s, o) = (&mut s[..blk.len() * blk.keys], &mut o[..blk.len() * dims.d]);
                masked_scores(isa, dims, &blk, &x, s);
                let lse_at = dims.lse_offset(b, blk.h, blk.rows.start);
                // SAFETY: the lse cells (b, h, rows) belong to this task only (h in g's group).
                let lse_rows = unsafe { lse_w.range(lse_at..lse_at + blk.len()) };
                softmax_rows(s, blk.keys, lse_rows);
                let v_g = &x.v[dims.kv_offset(b, 0, g)..];
                let ldv = dims.hkv * dims.d;
                #[rustfmt::skip]
                product(isa, (false, false), (blk.len(), dims.d, blk.keys), 1.0, (s, blk.keys), (v_g, ldv), 0.0, (o, dims.d));
                for (i, o_row) in blk.rows.clone().zip(o.chunks_exact(dims.d)) {
                    let at = dims.q_offset(b, i, blk.h);
                    // SAFETY: output row (b, i, h) belongs to this task only.
                    unsafe { out_w.range(at..at + dims.d) }.write_copy_of_slice(o_row);
                }
            }
        });
    }
    // SAFETY: every output row (b, i, h) was written: task (b, g) covers rows 0..Tq of each
    // head of g's group, and the tasks cover every (b, g). (A task's panic propagates above.)
    unsafe { out.set_len(q.numel()) };
    Ok((Tensor::from_vec(out, q.shape())?, lse))
}

/// Each `keys`-wide row of `s` becomes its softmax, and `lse[r]` its log-sum-exp; a row with
/// no visible key becomes zeros with log-sum-exp -inf.
fn softmax_rows(s: &mut [f32], keys: usize, lse: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: the CPU has AVX2 (Isa::detect checks it at run time).
        return unsafe { softmax_rows_avx2(s, keys, lse) };
    }
    softmax_rows_impl(s, keys, lse)
}

/// [`softmax_rows`] compiled with AVX2: its loops run 8 lanes wide. An explicit twin, not a
/// closure handed to a `#[target_feature]` function: such a closure was not inlined into it,
/// and its exponentials ran 4 wide (12% of the op's time). Plain f32 arithmetic (no fused
/// multiply-adds), so both builds give the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_rows_avx2(s: &mut [f32], keys: usize, lse: &mut [f32]) {
    softmax_rows_impl(s, keys, lse)
}

#[inline(always)]
fn softmax_rows_impl(s: &mut [f32], keys: usize, lse: &mut [f32]) {
    for (row, lse) in s.chunks_exact_mut(keys).zip(lse) {
        let max = row_max(row);
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            *lse = f32::NEG_INFINITY;
            continue;
        }
        row.iter_mut().for_each(|v| *v = exp_f32(*v - max));
        let sum = row_sum(row);
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
        *lse = max + sum.ln();
    }
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

/// The backward's reads beyond Q, K, V: the output, its gradient, the log-sum-exps.
#[derive(Clone, Copy)]
struct Upstream<'a> {
    out: &'a [f32],
    d_out: &'a [f32],
    lse: &'a [f32],
}

/// The backward's writes: dQ (B, Tq, Hq*D), dK and dV (B, Tk, Hkv*D).
struct Grads<'a> {
    dq: DisjointMut<'a, MaybeUninit<f32>>,
    dk: DisjointMut<'a, MaybeUninit<f32>>,
    dv: DisjointMut<'a, MaybeUninit<f32>>,
}

/// Gradients of q, k, v (None for those not needed) from the output gradient `g`. All three are
/// computed together (they share the recomputed probabilities); only the needed ones are returned.
/// The products use the GEMM kernel `isa`.
pub(crate) fn attention_backward(
    isa: Isa,
    dims: &Dims,
    saved: &Saved,
    g: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let x = Operands {
        q: saved.q.data()?,
        k: saved.k.data()?,
        v: saved.v.data()?,
        key_valid: saved.key_valid,
    };
    let up = Upstream {
        out: saved.out.data()?,
        d_out: g.data()?,
        lse: saved.lse,
    };
    // Every row of the three is written below (see the SAFETY note after the tasks).
    let mut dq = Vec::with_capacity(x.q.len()); // (B, Tq, Hq*D)
    let mut dk = Vec::with_capacity(x.k.len()); // (B, Tk, Hkv*D)
    let mut dv = Vec::with_capacity(x.v.len()); // (B, Tk, Hkv*D)
    {
        let grads = Grads {
            dq: DisjointMut::new(&mut dq.spare_capacity_mut()[..x.q.len()]),
            dk: DisjointMut::new(&mut dk.spare_capacity_mut()[..x.k.len()]),
            dv: DisjointMut::new(&mut dv.spare_capacity_mut()[..x.v.len()]),
        };
        // One task per (sequence, kv head): it writes the dQ rows of its group's query heads and
        // the dK, dV rows of its kv head, disjoint from every other task.
        parallel_for(dims.batch * dims.hkv, &|task| {
            let (b, g) = (task / dims.hkv, task % dims.hkv);
            backward_task(isa, dims, &x, up, b, g, &grads);
        });
    }
    // SAFETY: every row was written: task (b, g) writes the dQ rows 0..Tq of each head of
    // g's group and the dK, dV rows 0..Tk of kv head g, and the tasks cover every (b, g).
    unsafe {
        dq.set_len(x.q.len());
        dk.set_len(x.k.len());
        dv.set_len(x.v.len());
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

/// Scratch of one backward task: the kv head's dK, dV sums and one block's matrices.
struct Scratch {
    dk: Vec<f32>, // (Tk, D) summed over the group's heads and blocks
    dv: Vec<f32>, // (Tk, D)
    p: Vec<f32>,  // (rows, keys) probabilities
    ds: Vec<f32>, // (rows, keys) dP, then dS
    dq: Vec<f32>, // (rows, D)
}

/// Backward of sequence b, kv head g: every block of its heads in the forward's order, then
/// its dK and dV blocks written into place.
fn backward_task(
    isa: Isa,
    dims: &Dims,
    x: &Operands,
    up: Upstream,
    b: usize,
    g: usize,
    grads: &Grads,
) {
    let (tk, d, rows) = (dims.tk, dims.d, QUERY_BLOCK.min(dims.tq));
    let mut w = Scratch {
        dk: vec![0.0; tk * d],
        dv: vec![0.0; tk * d],
        p: vec![0.0; rows * tk],
        ds: vec![0.0; rows * tk],
        dq: vec![0.0; rows * d],
    };
    for blk in Block::of_task(dims, b, g) {
        backward_block(isa, dims, x, up, &blk, &mut w);
        for (i, dq_row) in blk.rows.clone().zip(w.dq.chunks_exact(d)) {
            let at = dims.q_offset(b, i, blk.h);
            // SAFETY: dQ row (b, i, h) belongs to this task only (h in g's group).
            unsafe { grads.dq.range(at..at + d) }.write_copy_of_slice(dq_row);
        }
    }
    for (block, dst) in [(&w.dk, &grads.dk), (&w.dv, &grads.dv)] {
        for (j, src) in block.chunks_exact(d).enumerate() {
            let at = dims.kv_offset(b, j, g);
            // SAFETY: row (b, j, g) is written by the task of (b, g) alone.
            unsafe { dst.range(at..at + d) }.write_copy_of_slice(src);
        }
    }
}

/// One block's backward (the module docs' five products); adds into `w.dk`, `w.dv` and leaves
/// the block's dQ rows in `w.dq`.
fn backward_block(isa: Isa, dims: &Dims, x: &Operands, up: Upstream, blk: &Block, w: &mut Scratch) {
    let (d, keys, n) = (dims.d, blk.keys, blk.len());
    let (ldq, ldkv) = (dims.hq * d, dims.hkv * d);
    let q_at = dims.q_offset(blk.b, blk.rows.start, blk.h);
    let kv_at = dims.kv_offset(blk.b, 0, blk.g);
    let (q, d_out) = (&x.q[q_at..], &up.d_out[q_at..]);
    let (k, v) = (&x.k[kv_at..], &x.v[kv_at..]);
    let (p, ds) = (&mut w.p[..n * keys], &mut w.ds[..n * keys]);
    masked_scores(isa, dims, blk, x, p);
    let lse_at = dims.lse_offset(blk.b, blk.h, blk.rows.start);
    probabilities(p, keys, &up.lse[lse_at..lse_at + n]);
    let (dk, dv, dq) = (
        &mut w.dk[..keys * d],
        &mut w.dv[..keys * d],
        &mut w.dq[..n * d],
    );
    #[rustfmt::skip]
    product(isa, (true, false), (keys, d, n), 1.0, (p, keys), (d_out, ldq), 1.0, (dv, d)); // dV += P^T dO
    #[rustfmt::skip]
    product(isa, (false, true), (n, keys, d), 1.0, (d_out, ldq), (v, ldkv), 0.0, (ds, keys)); // dP = dO V^T

    // delta_i = sum_j p_ij dP_ij = dO_i . O_i, since O_i = sum_j p_ij v_j.
    let delta: Vec<f32> = (0..n)
        .map(|r| {
            row_dot(
                &up.d_out[q_at + r * ldq..][..d],
                &up.out[q_at + r * ldq..][..d],
            )
        })
        .collect();
    score_gradients(p, ds, keys, &delta, dims.scale);
    #[rustfmt::skip]
    product(isa, (false, false), (n, d, keys), 1.0, (ds, keys), (k, ldkv), 0.0, (dq, d)); // dQ = dS K

    // dK += dS^T Q
    #[rustfmt::skip]
    product(isa, (true, false), (keys, d, n), 1.0, (ds, keys), (q, ldq), 1.0, (dk, d));
}

/// Scores -> probabilities exp(s - lse) in place (0 for hidden keys and for rows that saw no
/// key: their log-sum-exp is -inf and they get no gradient).
fn probabilities(s: &mut [f32], keys: usize, lse: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: the CPU has AVX2 (Isa::detect checks it at run time).
        return unsafe { probabilities_avx2(s, keys, lse) };
    }
    probabilities_impl(s, keys, lse)
}

/// [`probabilities`] compiled with AVX2 (as [`softmax_rows_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn probabilities_avx2(s: &mut [f32], keys: usize, lse: &[f32]) {
    probabilities_impl(s, keys, lse)
}

#[inline(always)]
fn probabilities_impl(s: &mut [f32], keys: usize, lse: &[f32]) {
    for (row, &lse) in s.chunks_exact_mut(keys).zip(lse) {
        if lse == f32::NEG_INFINITY {
            row.fill(0.0);
        } else {
            row.iter_mut().for_each(|v| *v = exp_f32(*v - lse));
        }
    }
}

/// dP -> dS = P * (dP - delta_row) * scale in place.
fn score_gradients(p: &[f32], ds: &mut [f32], keys: usize, delta: &[f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: the CPU has AVX2 (Isa::detect checks it at run time).
        return unsafe { score_gradients_avx2(p, ds, keys, delta, scale) };
    }
    score_gradients_impl(p, ds, keys, delta, scale)
}

/// [`score_gradients`] compiled with AVX2 (as [`softmax_rows_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn score_gradients_avx2(p: &[f32], ds: &mut [f32], keys: usize, delta: &[f32], scale: f32) {
    score_gradients_impl(p, ds, keys, delta, scale)
}

#[inline(always)]
fn score_gradients_impl(p: &[f32], ds: &mut [f32], keys: usize, delta: &[f32], scale: f32) {
    let rows = p.chunks_exact(keys).zip(ds.chunks_exact_mut(keys));
    for ((p_row, ds_row), &delta) in rows.zip(delta) {
        for (g, &p) in ds_row.iter_mut().zip(p_row) {
            *g = p * (*g - delta) * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every GEMM kernel (portable, AVX2, AVX-512) through forward and backward side by side;
    //! the integration tests (tests/attention_parity.rs) check the detected one against an f64
    //! reference.
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn every_kernel_gives_the_same_attention_within_rounding() {
        // Odd sizes, grouped-query heads, padding keys, a row block boundary (tq > QUERY_BLOCK).
        let (batch, tq, tk, hq, hkv, d) = (2, QUERY_BLOCK + 5, QUERY_BLOCK + 9, 6, 2, 13);
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
        let mut randn = |shape: &[usize]| {
            let n = shape.iter().product();
            Tensor::from_vec((0..n).map(|_| rng.normal()).collect(), shape).unwrap()
        };
        let (q, k, v) = (
            randn(&[batch, tq, hq * d]),
            randn(&[batch, tk, hkv * d]),
            randn(&[batch, tk, hkv * d]),
        );
        let d_out = randn(&[batch, tq, hq * d]);
        let valid: Vec<bool> = (0..batch * tk).map(|r| r % tk != 3 && r != 0).collect();
        let run = |isa: Isa| {
            let (out, lse) = attention_forward(isa, &dims, &q, &k, &v, Some(&valid)).unwrap();
            let saved = Saved {
                q: &q,
                k: &k,
                v: &v,
                out: &out,
                lse: &lse,
                key_valid: Some(&valid),
            };
            let grads = attention_backward(isa, &dims, &saved, &d_out, &[true; 3]).unwrap();
            let mut all = vec![out.to_vec()];
            all.extend(grads.into_iter().map(|t| t.unwrap().to_vec()));
            all
        };
        let portable = run(Isa::Scalar);
        for isa in [Isa::Avx2, Isa::Avx512] {
            if isa > Isa::best_supported() {
                eprintln!("skipped {isa:?}: this CPU does not have it");
                continue;
            }
            for (what, (a, b)) in ["out", "dq", "dk", "dv"]
                .iter()
                .zip(portable.iter().zip(&run(isa)))
            {
                let worst = a
                    .iter()
                    .zip(b)
                    .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    worst < 1e-5,
                    "{what}: portable and {isa:?} kernels differ by {worst}"
                );
            }
        }
    }
}
