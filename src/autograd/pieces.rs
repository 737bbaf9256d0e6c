//! Gradients that land on a few rows of a large input: the pieces of `split`, the rows picked by
//! `index_select` and `embedding`. A closure would have to return an input-sized tensor, zero
//! outside its rows, for the tape to add: for the (49,152 x 576) tied embedding / LM head of
//! SmolLM2 that is 113 MB allocated, zeroed and added once per lookup, per micro-batch, to move
//! a few hundred rows.
//!
//! So these ops record where their output sits in their one input ([`Placement`]) and the tape
//! defers their gradients: each arriving piece is kept beside the input until `backward` reaches
//! the input, when its gradient is complete; the pieces are then added, in arrival order, into
//! the input's dense gradient if one arrived (the LM head's dW, for the tied table), or into
//! zeros otherwise. No input-sized temporary either way.

use crate::cpu::par::{for_each_chunk, DisjointMut, CHUNK};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Where a node's value lies in its one input (seen as rows of the input's trailing axes).
pub(super) enum Placement {
    /// The contiguous elements `offset .. offset + len` (a piece of a split along axis 0).
    Run { offset: usize },
    /// Output row j is input row `rows[j]` (repeats allowed: their gradients add up).
    Rows(Vec<usize>),
}

/// One deferred gradient: the op that produced it (for the profile), where it goes, its value.
pub(super) struct Piece {
    pub op: &'static str,
    pub placement: Placement,
    pub grad: Tensor,
}

/// `acc` (the input's gradient) += every piece at its placement, in order.
pub(super) fn add_pieces(acc: &mut Tensor, pieces: &[Piece]) -> Result<()> {
    let rows = acc.shape().first().copied().unwrap_or(1);
    let dst = acc.data_mut()?;
    let row_len = dst.len().checked_div(rows).unwrap_or(0);
    for piece in pieces {
        let src = piece.grad.data()?;
        match &piece.placement {
            Placement::Run { offset } => {
                let Some(run) = dst.get_mut(*offset..*offset + src.len()) else {
                    return Err(Error::Autograd(format!(
                        "a piece of {} elements at offset {offset} does not fit its input of {}",
                        src.len(),
                        dst.len()
                    )));
                };
                add_slice(run, src);
            }
            Placement::Rows(idx) => add_rows(dst, row_len, idx, src)?,
        }
    }
    Ok(())
}

/// The input's gradient when only split pieces arrived and they tile it exactly (each element
/// in one piece): the pieces copied side by side in offset order, instead of zeros with each
/// piece added (ILRec's stacked head: 80 x 49,152 floats a micro-batch in title mode, written
/// once instead of zeroed, read and written again). None when the pieces leave a gap or
/// overlap, or are not all runs: the caller adds them onto zeros.
pub(super) fn tiled_runs(numel: usize, pieces: &[Piece]) -> Result<Option<Vec<f32>>> {
    let mut runs: Vec<(usize, &[f32])> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let Placement::Run { offset } = piece.placement else {
            return Ok(None);
        };
        runs.push((offset, piece.grad.data()?));
    }
    runs.sort_by_key(|&(offset, _)| offset);
    let mut next = 0;
    for &(offset, src) in &runs {
        if offset != next {
            return Ok(None);
        }
        next += src.len();
    }
    if next != numel {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(numel);
    runs.iter().for_each(|&(_, src)| out.extend_from_slice(src));
    Ok(Some(out))
}

/// dst row idx[j] += src row j (row_len floats each).
fn add_rows(dst: &mut [f32], row_len: usize, idx: &[usize], src: &[f32]) -> Result<()> {
    if src.len() != idx.len() * row_len {
        return Err(Error::Autograd(format!(
            "{} row gradients of {row_len} floats expected, {} floats arrived",
            idx.len(),
            src.len()
        )));
    }
    for (&i, grow) in idx.iter().zip(src.chunks_exact(row_len.max(1))) {
        let Some(row) = dst.get_mut(i * row_len..(i + 1) * row_len) else {
            return Err(Error::Autograd(format!("row {i} is outside its input")));
        };
        row.iter_mut().zip(grow).for_each(|(d, s)| *d += s);
    }
    Ok(())
}

/// acc += g (same shape), in fixed chunks over the pool (elementwise: the same bits with any
/// thread count).
pub(super) fn add_into(acc: &mut Tensor, g: &Tensor) -> Result<()> {
    add_slice(acc.data_mut()?, g.data()?);
    Ok(())
}

/// dst += src over their common length, in fixed chunks over the pool (elementwise: the same
/// bits with any thread count).
pub(super) fn add_slice(dst: &mut [f32], src: &[f32]) {
    let dst = DisjointMut::new(dst);
    let n = dst.len().min(src.len());
    for_each_chunk(n, CHUNK, |r| {
        // SAFETY: chunks are disjoint.
        let a = unsafe { dst.range(r.clone()) };
        a.iter_mut().zip(&src[r]).for_each(|(a, b)| *a += *b);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(offset: usize, values: &[f32]) -> Piece {
        Piece {
            op: "split",
            placement: Placement::Run { offset },
            grad: Tensor::from_vec(values.to_vec(), &[values.len()]).unwrap(),
        }
    }

    /// Runs that tile the input (in any arrival order) are copied side by side: the same values
    /// as adding them onto zeros.
    #[test]
    fn tiling_runs_are_copied_in_offset_order() {
        let pieces = [
            run(3, &[4.0, 5.0]),
            run(0, &[1.0, 2.0, 3.0]),
            run(5, &[6.0]),
        ];
        let whole = tiled_runs(6, &pieces).unwrap().expect("the runs tile 0..6");
        let mut added = Tensor::zeros(&[6]);
        add_pieces(&mut added, &pieces).unwrap();
        assert_eq!(whole, added.to_vec());
        assert_eq!(whole, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    /// A gap, an overlap, a short total or a row placement: not a tiling, so the caller adds
    /// the pieces onto zeros instead.
    #[test]
    fn anything_but_a_tiling_is_left_to_the_adder() {
        let gap = [run(0, &[1.0]), run(2, &[3.0])];
        let overlap = [run(0, &[1.0, 2.0]), run(1, &[3.0, 4.0])];
        let short = [run(0, &[1.0, 2.0])];
        for pieces in [&gap[..], &overlap[..], &short[..]] {
            assert_eq!(tiled_runs(3, pieces).unwrap(), None);
        }
        let rows = [Piece {
            op: "index_select",
            placement: Placement::Rows(vec![0]),
            grad: Tensor::from_vec(vec![1.0, 2.0, 3.0], &[1, 3]).unwrap(),
        }];
        assert_eq!(tiled_runs(3, &rows).unwrap(), None);
    }
}
