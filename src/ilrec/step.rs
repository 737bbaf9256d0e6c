//! The two pieces of an ILRec step that the trainer and `bench train-step --objective ilrec`
//! share, so the benchmark times the code training runs:
//!
//! - [`stacked_lens`]: the logit lens of several layers at the response rows in ONE final-norm +
//!   LM-head call (the layers' rows stacked into ((1+L) n_t, D) and split back), so the head's
//!   V x D weight gradient is produced once instead of once per layer;
//! - [`mine_negatives`]: the self-hard negatives of every response position, one pool task per
//!   position (each position is independent; results land in position order, so they do not
//!   depend on the thread count).

use super::negatives::{
    ensemble_logits, self_hard_negatives, Candidates, Ensemble, PositionNegatives,
};
use crate::cpu::par::DisjointMut;
use crate::cpu::pool::parallel_for;
use crate::model::llama::{ForwardOutput, Llama};
use crate::tensor::Tensor;
use crate::{Result, Tape, Var};

/// The lens z^l = W N(h^l) of each of `layers` at the flat rows `rows` (b*T + t) of `out`.
/// With `z = Some(logits at rows)` the final logits are reused and only the lens layers are
/// stacked; with `None` the final layer's rows are stacked too and returned as z (their head
/// gradient then joins the same call). Returns (z, lens in the order of `layers`).
pub fn stacked_lens(
    model: &Llama,
    tape: &mut Tape,
    out: &ForwardOutput,
    rows: &[usize],
    layers: &[usize],
    z: Option<Var>,
) -> Result<(Var, Vec<Var>)> {
    let top = model.config.num_hidden_layers;
    let d = model.config.hidden_size;
    let stack_top = z.is_none();
    let picked_layers: Vec<usize> = stack_top
        .then_some(top)
        .into_iter()
        .chain(layers.iter().copied())
        .collect();
    let mut picked = Vec::with_capacity(picked_layers.len());
    for &l in &picked_layers {
        let h = *out.hidden.get(l).ok_or(crate::Error::Index {
            op: "ilrec::step::stacked_lens",
            index: l as i64,
            bound: out.hidden.len(),
        })?;
        let n = tape.shape(h).iter().product::<usize>() / d;
        let flat = tape.reshape(h, &[n, d])?; // (B*T, D)
        picked.push(tape.index_select(flat, rows)?); // (n_t, D)
    }
    if let (true, Some(z)) = (picked.is_empty(), z) {
        return Ok((z, Vec::new())); // SFT: no lens layer, z from the forward
    }
    let stacked = tape.concat(&picked, 0)?; // (k n_t, D)
    let heads = model.apply_head(tape, out.head, stacked, None)?; // (k n_t, V)
    let mut blocks = tape.split(heads, 0, &vec![rows.len(); picked.len()])?; // k x (n_t, V)
    let z = match z {
        Some(z) => z,
        None => blocks.remove(0),
    };
    Ok((z, blocks))
}

/// One response position to mine: its target token and where negatives may come from.
pub struct MiningRow {
    pub target: u32,
    /// Candidate tokens (sorted ascending: the trie children of the prefix); None = every token.
    pub candidates: Option<Vec<u32>>,
}

/// Self-hard negatives of every row: the lens ensemble of `lens` (each (rows, V)) at row i,
/// compared with the final logit of the target in `z` (rows, V); `margin` and `tau` as in
/// `self_hard_negatives`. One pool task per row.
pub fn mine_negatives(
    z: &Tensor,
    lens: &[&Tensor],
    rows: &[MiningRow],
    ensemble: Ensemble,
    margin: f32,
    tau: f32,
) -> Result<Vec<PositionNegatives>> {
    let vocab = z.last_dim();
    let zs = z.data()?;
    let lens_data: Vec<&[f32]> = lens.iter().map(|t| t.data()).collect::<Result<_>>()?;
    let mut mined: Vec<Result<PositionNegatives>> = (0..rows.len())
        .map(|_| Ok(PositionNegatives::default()))
        .collect();
    {
        let mined_w = DisjointMut::new(&mut mined);
        parallel_for(rows.len(), &|i| {
            let row = &rows[i];
            let lens_rows: Vec<&[f32]> = lens_data
                .iter()
                .map(|l| &l[i * vocab..(i + 1) * vocab])
                .collect();
            let candidates = match &row.candidates {
                Some(tokens) => Candidates::Tokens(tokens),
                None => Candidates::Vocab(vocab),
            };
            let z_y = zs[i * vocab + row.target as usize];
            let result = ensemble_logits(&lens_rows, ensemble).and_then(|z_m| {
                self_hard_negatives(z_y, &z_m, row.target, candidates, margin, tau)
            });
            // SAFETY: task i writes cell i only.
            unsafe { mined_w.range(i..i + 1)[0] = result };
        });
    }
    mined.into_iter().collect()
}
