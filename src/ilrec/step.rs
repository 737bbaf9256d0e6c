//! The two pieces of an ILRec step that the trainer and `bench train-step --objective ilrec`
//! share, so the benchmark times the code training runs:
//!
//! - [`stacked_lens`]: the logit lens of several layers at the response rows in ONE final-norm +
//!   LM-head call (the layers' rows stacked into (L n_t, D) and split back), so the head's
//!   weight gradient is produced once instead of once per layer; in SID mode only the item-token
//!   columns of the head are computed (CPD and trie negatives read no other lens column);
//! - [`mine_negatives`]: the self-hard negatives of every response position, one pool task per
//!   position (each position is independent; results land in position order, so they do not
//!   depend on the thread count).

use super::negatives::{
    ensemble_logits, self_hard_negatives, Candidates, Ensemble, PositionNegatives,
};
use crate::cpu::par::DisjointMut;
use crate::cpu::pool::parallel_for;
use crate::model::llama::{BlockOutputs, Llama};
use crate::tensor::Tensor;
use crate::{Result, Tape, Var};

/// The lens z^l = W N(h^l) of each of `layers` at the flat rows `rows` (b*T + t) of `out`,
/// all layers' rows stacked into one final-norm + head call and split back (one head-weight
/// gradient instead of one per layer). `columns`: compute only these vocabulary columns
/// (token ids, ascending; the item tokens in SID mode), else every column. Returns the lens in
/// the order of `layers`, each (rows, V) or (rows, columns.len()). The top layer L may be one
/// of `layers`: its lens is the model's logits, so a caller that needs every column of both
/// stacks them here rather than applying the 113 MB head twice.
pub fn stacked_lens(
    model: &Llama,
    tape: &mut Tape,
    out: &BlockOutputs,
    rows: &[usize],
    layers: &[usize],
    columns: Option<&[u32]>,
) -> Result<Vec<Var>> {
    if layers.is_empty() {
        return Ok(Vec::new()); // SFT: no lens layer
    }
    let d = model.config.hidden_size;
    let mut picked = Vec::with_capacity(layers.len());
    for &l in layers {
        let h = *out.hidden.get(l).ok_or(crate::Error::Index {
            op: "ilrec::step::stacked_lens",
            index: l as i64,
            bound: out.hidden.len(),
        })?;
        let n = tape.shape(h).iter().product::<usize>() / d;
        let flat = tape.reshape(h, &[n, d])?; // (B*T, D)
        picked.push(tape.index_select(flat, rows)?); // (n_t, D)
    }
    let stacked = tape.concat(&picked, 0)?; // (k n_t, D)
    let heads = match columns {
        Some(cols) => {
            let cols: Vec<usize> = cols.iter().map(|&c| c as usize).collect();
            model.apply_head_columns(tape, out.head, stacked, &cols)? // (k n_t, C)
        }
        None => model.apply_head(tape, out.head, stacked, None)?, // (k n_t, V)
    };
    tape.split(heads, 0, &vec![rows.len(); layers.len()]) // k x (n_t, V or C)
}

/// One response position to mine: its target token and where negatives may come from.
pub struct MiningRow {
    pub target: u32,
    /// Candidate tokens (sorted ascending: the trie children of the prefix); None = every token.
    pub candidates: Option<Vec<u32>>,
}

/// Self-hard negatives of every row: the lens ensemble of `lens` (each (rows, V), or
/// (rows, C) when the lens holds only the token ids `columns`, ascending) at row i, compared
/// with the final logit of the target in `z` (rows, V); `margin` and `tau` as in
/// `self_hard_negatives`. With `columns`, every candidate must be one of them (or the target
/// itself): the trie children in SID mode are SID tokens, and EOS only where it is the target.
/// One pool task per row.
pub fn mine_negatives(
    z: &Tensor,
    lens: &[&Tensor],
    rows: &[MiningRow],
    settings: MiningSettings<'_>,
) -> Result<Vec<PositionNegatives>> {
    let vocab = z.last_dim();
    let width = settings.columns.map_or(vocab, <[u32]>::len);
    let zs = z.data()?;
    let lens_data: Vec<&[f32]> = lens.iter().map(|t| t.data()).collect::<Result<_>>()?;
    let mut mined: Vec<Result<PositionNegatives>> = (0..rows.len())
        .map(|_| Ok(PositionNegatives::default()))
        .collect();
    {
        let mined_w = DisjointMut::new(&mut mined);
        parallel_for(rows.len(), &|i| {
            let lens_rows: Vec<&[f32]> = lens_data
                .iter()
                .map(|l| &l[i * width..(i + 1) * width])
                .collect();
            let z_y = zs[i * vocab + rows[i].target as usize];
            let result = mine_row(z_y, &lens_rows, &rows[i], vocab, &settings);
            // SAFETY: task i writes cell i only.
            unsafe { mined_w.range(i..i + 1)[0] = result };
        });
    }
    mined.into_iter().collect()
}

/// How negatives are mined (the step's settings).
#[derive(Clone, Copy, Debug)]
pub struct MiningSettings<'a> {
    pub ensemble: Ensemble,
    pub margin: f32,
    pub tau: f32,
    /// The vocabulary columns the lens holds (ascending token ids); None = every column.
    pub columns: Option<&'a [u32]>,
}

/// One row: the ensemble over the lens rows, then the negatives among the row's candidates;
/// with `columns`, candidates and target are mapped to lens columns and the negatives back.
fn mine_row(
    z_y: f32,
    lens_rows: &[&[f32]],
    row: &MiningRow,
    vocab: usize,
    s: &MiningSettings<'_>,
) -> Result<PositionNegatives> {
    let z_m = ensemble_logits(lens_rows, s.ensemble)?;
    let Some(cols) = s.columns else {
        let candidates = match &row.candidates {
            Some(tokens) => Candidates::Tokens(tokens),
            None => Candidates::Vocab(vocab),
        };
        return self_hard_negatives(z_y, &z_m, row.target, candidates, s.margin, s.tau);
    };
    let Some(tokens) = row.candidates.as_deref() else {
        return Err(crate::Error::config(
            "a lens on item columns cannot mine negatives over the whole vocabulary",
            "use --negatives-scope trie, or compute the lens on every column",
        ));
    };
    let column_of = |t: u32| cols.binary_search(&t).ok().map(|c| c as u32);
    let mut candidate_cols = Vec::new();
    for &t in tokens {
        match column_of(t) {
            Some(c) => candidate_cols.push(c),
            None if t == row.target => {} // never its own negative
            None => {
                return Err(crate::Error::config(
                    format!("candidate token {t} has no lens column"),
                    "a lens on item columns needs trie candidates that are item tokens",
                ))
            }
        }
    }
    // A target outside the columns cannot collide with a candidate column.
    let target_col = column_of(row.target).unwrap_or(u32::MAX);
    let candidates = Candidates::Tokens(&candidate_cols);
    let mut found = self_hard_negatives(z_y, &z_m, target_col, candidates, s.margin, s.tau)?;
    found.tokens.iter_mut().for_each(|c| *c = cols[*c as usize]);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Mining on a lens computed at the item columns only finds exactly the negatives that the
    /// full lens finds among the same (item-token) candidates.
    #[test]
    fn mining_on_item_columns_equals_mining_on_the_full_lens() {
        let (n, v) = (6, 40);
        let mut rng = Rng::new(3);
        let z = Tensor::randn(&[n, v], 2.0, &mut rng);
        let lens = Tensor::randn(&[n, v], 2.0, &mut rng);
        let items: Vec<u32> = (0..v as u32).filter(|t| t % 3 != 0).collect(); // 0, 3, .. = EOS-like
        let cols = lens.data().unwrap();
        let narrow: Vec<f32> = (0..n)
            .flat_map(|r| items.iter().map(move |&c| cols[r * v + c as usize]))
            .collect();
        let narrow = Tensor::from_vec(narrow, &[n, items.len()]).unwrap();
        let rows: Vec<MiningRow> = (0..n)
            .map(|r| {
                let cand: Vec<u32> = items.iter().copied().skip(r).step_by(2).collect();
                // Rows 0 and 1 target a token outside the columns (EOS at the last position).
                let target = if r < 2 { 3 } else { cand[0] };
                let mut candidates = cand;
                if r == 0 {
                    candidates = vec![3]; // the target alone: never its own negative
                }
                MiningRow {
                    target,
                    candidates: Some(candidates),
                }
            })
            .collect();
        let settings = |columns| MiningSettings {
            ensemble: Ensemble::Mean,
            margin: 1.0,
            tau: 1.0,
            columns,
        };
        let full = mine_negatives(&z, &[&lens], &rows, settings(None)).unwrap();
        let cut = mine_negatives(&z, &[&narrow], &rows, settings(Some(&items))).unwrap();
        assert_eq!(full, cut);
        assert!(
            full.iter().any(|p| !p.is_empty()),
            "the test must find negatives"
        );
        // A candidate outside the columns that is not the target is an error, not a silent drop.
        let bad = [MiningRow {
            target: items[0],
            candidates: Some(vec![0, items[0]]),
        }];
        assert!(mine_negatives(&z, &[&narrow], &bad, settings(Some(&items))).is_err());
    }

    /// Stacking layers into one head call (the top layer with them, as the title-mode step does)
    /// gives each layer exactly the logits of its own head call: a row of a product depends on
    /// that row alone, and the split puts each layer's rows back in order.
    #[test]
    fn stacked_lens_equals_one_head_call_per_layer() {
        let dir = crate::fixtures::root().join("tiny-llama");
        let model = Llama::from_dir(&dir)
            .unwrap_or_else(|e| panic!("fixture {} must load: {e}", dir.display()));
        let top = model.config.num_hidden_layers;
        let (b, t) = (2, 7);
        let ids: Vec<u32> = (0..(b * t) as u32).map(|i| (i * 37 + 5) % 200).collect();
        let input = crate::model::llama::BatchInput::new(ids, b, t).unwrap();
        let rows = [2, 3, 9, 13];
        let layers: Vec<usize> = std::iter::once(top).chain(1..top).collect();
        let mut tape = Tape::inference();
        let blocks = model.forward_blocks(&mut tape, &input).unwrap();
        let stacked = stacked_lens(&model, &mut tape, &blocks, &rows, &layers, None).unwrap();
        let out = model.forward(&mut tape, &input, Some(&rows)).unwrap();
        assert_eq!(stacked.len(), layers.len());
        for (&l, &var) in layers.iter().zip(&stacked) {
            let alone = model.lens(&mut tape, &out, l, Some(&rows)).unwrap();
            assert_eq!(
                tape.value(var).to_vec(),
                tape.value(alone).to_vec(),
                "layer {l}"
            );
        }
        assert_eq!(
            tape.value(stacked[0]).to_vec(),
            tape.value(out.logits).to_vec()
        );
    }
}
