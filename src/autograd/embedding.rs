//! Token embedding lookup: `embedding(weight (V, D), ids, prefix) -> (prefix..., D)`.
//!
//! Forward copies row `ids[i]` of the table for every id. Backward scatter-adds the output
//! gradient rows into a (V, D) gradient: an id that occurs several times (the same token twice in
//! a batch) accumulates all its gradients. The gradient is dense (V, D), like PyTorch's default.

use super::shape::scatter_add_rows;
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
        let ids = ids.to_vec();
        Ok(self.record("embedding", out, &[weight], move |g, _| {
            let rows = ids.iter().map(|&id| id as usize);
            let gw = scatter_add_rows(g.data()?, dim, rows, vocab);
            Ok(vec![Some(Tensor::from_vec(gw, &[vocab, dim])?)])
        }))
    }
}
