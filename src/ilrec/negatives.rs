//! Self-hard negatives from intermediate layers (ILREC.md section 5.1).
//!
//! At a response position with ground-truth next token `y`, the intermediate layers' logit-lens
//! logits are averaged into an ensemble `zM` (a constant: no gradient). A candidate token `v != y`
//! is a *self-hard negative* when the intermediate layers rate it at least as high as the final
//! layer rates the truth:
//!
//! ```text
//! N_t = { v in C, v != y : zM[v] >= z[y] - margin }
//! w   = softmax_{v in N_t}(zM[v] / tau)          (constants)
//! ```
//!
//! `C` is the set of children of the ground-truth prefix in the item trie (every continuation that
//! still spells a real item) or, with `--negatives-scope vocab`, the whole vocabulary. The threshold
//! `z[y]` moves with training: as the final layer grows confident, fewer tokens qualify.

use crate::error::{Error, Result};

/// How the lens layers' logits are combined into `zM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ensemble {
    /// Average over the lens layers (the spec's default).
    Mean,
    /// Sum over the lens layers (the authors' code).
    Sum,
}

impl Ensemble {
    /// Parses `mean` or `sum` (`--ensemble`).
    pub fn parse(s: &str) -> Result<Ensemble> {
        match s {
            "mean" => Ok(Ensemble::Mean),
            "sum" => Ok(Ensemble::Sum),
            other => Err(Error::config(
                format!("--ensemble {other}: unknown"),
                "use mean (the spec's default) or sum (the authors' code)",
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Ensemble::Mean => "mean",
            Ensemble::Sum => "sum",
        }
    }
}

/// Where negatives may come from.
#[derive(Clone, Copy, Debug)]
pub enum Candidates<'a> {
    /// These tokens only (trie children of the ground-truth prefix), sorted ascending.
    Tokens(&'a [u32]),
    /// Every token of a vocabulary of this size.
    Vocab(usize),
}

/// The self-hard negatives of one response position and their (constant) weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PositionNegatives {
    /// Negative token ids, ascending (so ties and order are deterministic).
    pub tokens: Vec<u32>,
    /// softmax over the negatives of zM / tau, aligned with `tokens`.
    pub weights: Vec<f32>,
}

impl PositionNegatives {
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// zM = mean (or sum) of the lens layers' logit rows. `lens_rows[l]` has one logit per token.
pub fn ensemble_logits(lens_rows: &[&[f32]], how: Ensemble) -> Result<Vec<f32>> {
    let Some(first) = lens_rows.first() else {
        return Err(Error::config(
            "the logit-lens ensemble needs at least one layer",
            "pass --lens-layers",
        ));
    };
    let mut acc = first.to_vec();
    for row in &lens_rows[1..] {
        if row.len() != acc.len() {
            return Err(Error::shape(
                "ensemble_logits",
                format!("rows of {} and {} logits", acc.len(), row.len()),
            ));
        }
        acc.iter_mut().zip(row.iter()).for_each(|(a, b)| *a += b);
    }
    if how == Ensemble::Mean {
        let n = lens_rows.len() as f32;
        acc.iter_mut().for_each(|a| *a /= n);
    }
    Ok(acc)
}

/// Finds the self-hard negatives of one position.
/// `z_y` = the final layer's logit of the truth, `z_m` = the ensemble row (one per token).
pub fn self_hard_negatives(
    z_y: f32,
    z_m: &[f32],
    y: u32,
    candidates: Candidates<'_>,
    margin: f32,
    tau: f32,
) -> Result<PositionNegatives> {
    let threshold = z_y - margin;
    let vocab = z_m.len();
    let is_negative = |v: u32| v != y && z_m[v as usize] >= threshold;
    let tokens: Vec<u32> = match candidates {
        Candidates::Tokens(ts) => {
            if let Some(&bad) = ts.iter().find(|&&v| v as usize >= vocab) {
                return Err(Error::Index {
                    op: "self_hard_negatives",
                    index: bad as i64,
                    bound: vocab,
                });
            }
            let mut out: Vec<u32> = ts.iter().copied().filter(|&v| is_negative(v)).collect();
            out.sort_unstable();
            out.dedup();
            out
        }
        Candidates::Vocab(n) => (0..n.min(vocab) as u32)
            .filter(|&v| is_negative(v))
            .collect(),
    };
    let weights = softmax_scaled(tokens.iter().map(|&v| z_m[v as usize]), tau);
    Ok(PositionNegatives { tokens, weights })
}

/// softmax(x / tau) of a short list, max-shifted for stability.
pub fn softmax_scaled(xs: impl Iterator<Item = f32> + Clone, tau: f32) -> Vec<f32> {
    let max = xs.clone().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = xs.map(|x| ((x - max) / tau).exp()).collect();
    let total: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

/// The CRR token set K_t = N_t + {y}, ascending (the order in which rewards are given).
pub fn crr_tokens(negatives: &PositionNegatives, y: u32) -> Vec<u32> {
    let mut k = negatives.tokens.clone();
    k.push(y);
    k.sort_unstable();
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_the_final_logit_of_the_truth_minus_margin() {
        // tokens:          0    1    2    3    4
        let z_m = [0.5f32, 2.0, 1.0, 3.0, 1.0];
        let cand = [1u32, 2, 3, 4];
        // y = 2 with z[y] = 1.0: tokens with zM >= 1 among candidates other than y: 1, 3, 4.
        let n = self_hard_negatives(1.0, &z_m, 2, Candidates::Tokens(&cand), 0.0, 1.0).unwrap();
        assert_eq!(n.tokens, vec![1, 3, 4]);
        // weights = softmax(2, 3, 1)
        let e = [2.0f32.exp(), 3.0f32.exp(), 1.0f32.exp()];
        let s: f32 = e.iter().sum();
        for (w, x) in n.weights.iter().zip(e) {
            assert!((w - x / s).abs() < 1e-6);
        }
        // margin 1.5 lowers the threshold to -0.5: token 0 is not a candidate, so nothing new.
        let n = self_hard_negatives(1.0, &z_m, 2, Candidates::Tokens(&cand), 1.5, 1.0).unwrap();
        assert_eq!(n.tokens, vec![1, 3, 4]);
        // vocab scope includes token 0 once the threshold drops below 0.5.
        let n = self_hard_negatives(1.0, &z_m, 2, Candidates::Vocab(5), 0.6, 1.0).unwrap();
        assert_eq!(n.tokens, vec![0, 1, 3, 4]);
        // a confident final layer leaves no negatives.
        let n = self_hard_negatives(5.0, &z_m, 2, Candidates::Vocab(5), 0.0, 1.0).unwrap();
        assert!(n.is_empty() && n.weights.is_empty());
    }

    #[test]
    fn ensemble_mean_and_sum() {
        let a = [1.0f32, 2.0];
        let b = [3.0f32, -2.0];
        assert_eq!(
            ensemble_logits(&[&a, &b], Ensemble::Mean).unwrap(),
            vec![2.0, 0.0]
        );
        assert_eq!(
            ensemble_logits(&[&a, &b], Ensemble::Sum).unwrap(),
            vec![4.0, 0.0]
        );
        assert!(ensemble_logits(&[], Ensemble::Mean).is_err());
    }

    #[test]
    fn out_of_range_candidate_is_an_error() {
        assert!(
            self_hard_negatives(0.0, &[0.0; 3], 0, Candidates::Tokens(&[5]), 0.0, 1.0).is_err()
        );
    }
}
