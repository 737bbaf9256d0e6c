//! Token embedding lookup: `embedding(weight (V, D), ids, prefix) -> (prefix..., D)`.
//!
//! Forward copies row `ids[i]` of the table for every id. Backward adds the output gradient rows
//! into the table's (V, D) gradient (the tape does it, `pieces.rs`: into the LM head's gradient
//! when the table is tied, so no (V, D) temporary): an id that occurs several times (the same
//! token twice in a batch) accumulates all its gradients. The gradient is dense (V, D), like
//! PyTorch's default.

use super::pieces::Placement;
use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Tape {
    /// Rows `ids` of `weight` (V, D), shaped (out_shape_prefix..., D);
    /// `prod(out_shape_prefix)` must equal `ids.len()`.
    pub fn embedding(
        &mut self,
        weight: Var,
        ids: &[u32],
        out_shape_prefix: &[usize],
    ) -> Result<Var> {
        let w_shape = self.shape(weight).to_vec();
        if w_shape.len() != 2 {
            return Err(Error::shape(
                "embedding",
                format!("weight {w_shape:?}, expected (V, D)"),
            ));
        }
        let (vocab, dim) = (w_shape[0], w_shape[1]);
        let n_ids: usize = out_shape_prefix.iter().product();
        if n_ids != ids.len() {
            return Err(Error::shape(
                "embedding",
                format!(
                    "output prefix {out_shape_prefix:?} holds {n_ids} positions, {} ids were given",
                    ids.len()
                ),
            ));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Index {
                op: "embedding",
                index: bad as i64,
                bound: vocab,
            });
        }
        let rows = ids.iter().map(|&id| id as usize);
        // (prefix..., D); a half-precision table (frozen base) converts only the rows it gives.
        let out = self.value(weight).rows_to_f32(rows);
        let mut out_shape = out_shape_prefix.to_vec();
        out_shape.push(dim);
        let out = Tensor::from_vec(out, &out_shape)?;
        let rows = Placement::Rows(ids.iter().map(|&id| id as usize).collect());
        Ok(self.record_piece("embedding", out, weight, rows))
    }
}
