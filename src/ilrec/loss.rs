//! The ILRec objective (ILREC.md section 5) as one fused autograd op.
//!
//! Per response position t (one row of the final logits `z` and of each lens matrix `z^l`):
//!
//! ```text
//! CPO  z'[v] = z[v] + alpha * w[v] * |z[v]|   for v in N_t (else z'[v] = z[v])
//!      L_CPO = CE(softmax(z'), y)            = logsumexp(z') - z[y]
//! CRR  q = softmax_{K_t}(r / tau_r),  K_t = N_t + {y}          (only where N_t is non-empty)
//!      L_CRR = sum_{v in K_t} q[v] (log q[v] - log softmax(z)[v])
//! CPD  at item positions, for each lens layer l:
//!      KL( stopgrad(softmax(z[V_item])) || softmax(z^l[V_item]) )
//! L = mean_t L_CPO + lambda * sum_t L_CRR / n_t + mu * mean_{t,l} CPD
//! ```
//!
//! Every term is a function of one row, with a closed-form gradient, so the op computes the
//! gradient rows while it computes the loss (one pass over each row) and the backward only scales
//! them by the upstream gradient. The gradients, in the same notation (p = softmax(z),
//! p' = softmax(z'), p_S = softmax(z^l\[V_item\]), p_T = softmax(z\[V_item\])):
//!
//! ```text
//! dL_CPO/dz[v] = (p'[v] - [v = y]) * (1 + alpha * w[v] * sign(z[v]))   (the factor only on N_t)
//! dL_CRR/dz[v] = p[v] - q[v]                                           (q = 0 outside K_t)
//! dCPD/dz^l[v] = p_S[v] - p_T[v] on V_item, 0 elsewhere; nothing flows into z (teacher detached)
//! ```
//! The negative set, its weights `w` and the CF rewards are inputs: constants by construction.

use super::negatives::{crr_tokens, PositionNegatives};
use crate::autograd::{Tape, Var};
use crate::cpu::elementwise::exp_f32;
use crate::cpu::par::DisjointMut;
use crate::cpu::pool::parallel_for;
use crate::cpu::softmax::log_sum_exp;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The coefficients of the objective. alpha = lambda = mu = 0 is plain SFT cross-entropy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObjectiveWeights {
    /// Strength of the CPO penalty on negatives.
    pub alpha: f32,
    /// Weight of the CRR term.
    pub lambda: f32,
    /// Weight of the CPD term.
    pub mu: f32,
    /// Temperature of the CF soft labels.
    pub tau_r: f32,
}

/// What the objective needs to know about one response position.
#[derive(Clone, Debug, Default)]
pub struct ResponsePosition {
    /// The ground-truth next token y.
    pub target: u32,
    /// N_t and its weights (empty: plain CE at this position, no CRR).
    pub negatives: PositionNegatives,
    /// log CF reward of each token of `crr_tokens(negatives, target)` (ascending token order);
    /// empty when there are no negatives. -inf marks a token with no item below it.
    pub crr_log_rewards: Vec<f32>,
    /// True at item-token positions (SID codes or title tokens), false at EOS: CPD applies here.
    pub item_position: bool,
}

/// The vocabulary CPD compares distributions over.
#[derive(Clone, Copy, Debug)]
pub enum ItemVocab<'a> {
    /// Only these tokens (the SID tokens), ascending; the lens logits hold every column.
    Tokens(&'a [u32]),
    /// Only these tokens, ascending, and the lens logits hold exactly these columns in this
    /// order, (n_t, tokens.len()): the lens head was computed on the item tokens only (SID mode
    /// with trie negatives never reads another lens column). z still holds every column.
    Columns(&'a [u32]),
    /// The whole vocabulary (title mode).
    All,
}

impl ItemVocab<'_> {
    /// Columns of a lens row: the item tokens under `Columns`, else the final logits' `vocab`.
    fn lens_width(self, vocab: usize) -> usize {
        match self {
            ItemVocab::Columns(ts) => ts.len(),
            _ => vocab,
        }
    }
}

/// Loss values and counts, for logging.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ObjectiveTerms {
    pub total: f32,
    pub ce: f32,
    pub crr: f32,
    pub cpd: f32,
    /// Number of response positions n_t.
    pub positions: usize,
    pub positions_with_negatives: usize,
    /// Mean |N_t| over all response positions.
    pub mean_negatives: f32,
}

/// The denominators of the objective's means: n_t (response positions) and the number of CPD
/// terms (item positions x lens layers). A batch split into micro-batches passes the whole
/// batch's counts to each part, so that the parts' losses and gradients add up exactly to the
/// whole batch's objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalizer {
    pub positions: usize,
    pub cpd_terms: usize,
}

impl Normalizer {
    /// The counts of `positions` with `layers` lens layers.
    pub fn of(positions: &[ResponsePosition], layers: usize) -> Normalizer {
        let items = positions.iter().filter(|p| p.item_position).count();
        Normalizer {
            positions: positions.len(),
            cpd_terms: items * layers,
        }
    }
}

impl ObjectiveTerms {
    /// Adds the terms of another part of the same batch (both normalised by the batch's
    /// [`Normalizer`]): losses add, counts add, the mean number of negatives is re-weighted.
    pub fn merge(&mut self, other: &ObjectiveTerms) {
        let positions = self.positions + other.positions;
        let negatives = self.mean_negatives * self.positions as f32
            + other.mean_negatives * other.positions as f32;
        self.total += other.total;
        self.ce += other.ce;
        self.crr += other.crr;
        self.cpd += other.cpd;
        self.positions_with_negatives += other.positions_with_negatives;
        self.mean_negatives = negatives / positions.max(1) as f32;
        self.positions = positions;
    }
}

impl Tape {
    /// The ILRec objective. `z`: final logits at the response positions (n_t, V); `lens[l]`: the
    /// logit lens of each layer in S at the same positions (n_t, V). Returns the scalar total.
    pub fn ilrec_objective(
        &mut self,
        z: Var,
        lens: &[Var],
        positions: &[ResponsePosition],
        item_vocab: ItemVocab<'_>,
        weights: &ObjectiveWeights,
    ) -> Result<(Var, ObjectiveTerms)> {
        let norm = Normalizer::of(positions, lens.len());
        self.ilrec_objective_part(z, lens, positions, item_vocab, weights, norm)
    }

    /// The objective of one part of a batch, with the means taken over the whole batch's counts
    /// `norm` (see [`Normalizer`]); the parts' totals and gradients sum to the batch's.
    pub fn ilrec_objective_part(
        &mut self,
        z: Var,
        lens: &[Var],
        positions: &[ResponsePosition],
        item_vocab: ItemVocab<'_>,
        weights: &ObjectiveWeights,
        norm: Normalizer,
    ) -> Result<(Var, ObjectiveTerms)> {
        let (_, vocab) = check_shapes(self, z, lens, positions, item_vocab)?;
        let lens_width = item_vocab.lens_width(vocab);
        if norm.positions < positions.len() {
            return Err(Error::config(
                "ilrec_objective: the normaliser counts fewer positions than the part has",
                "",
            ));
        }
        let want_grad = self.grad_enabled();
        let z_val = self.value(z).clone();
        let lens_vals: Vec<Tensor> = lens.iter().map(|&l| self.value(l).clone()).collect();
        let zs = z_val.data()?;
        let n_rows = positions.len();
        let n_t = norm.positions;
        let n_cpd = norm.cpd_terms.max(1);
        let n_lens = lens_vals.len();
        let lens_data: Vec<&[f32]> = lens_vals.iter().map(|l| l.data()).collect::<Result<_>>()?;
        let rows = RowInputs {
            zs,
            lens_data: &lens_data,
            positions,
            item_vocab,
            weights,
            n_t,
            n_cpd,
            vocab,
            lens_width,
        };
        let (row_terms, grad_z, grad_lens) = rows.run(want_grad);
        let (ce, crr, cpd) = sum_terms(positions, row_terms, n_lens)?;
        let terms = summarize(
            positions,
            ce / n_t as f64,
            crr / n_t as f64,
            cpd / n_cpd as f64,
            weights,
        );
        let total = Tensor::scalar(terms.total);
        let mut inputs = vec![z];
        inputs.extend_from_slice(lens);
        let (z_shape, lens_shape) = ([n_rows, vocab], [n_rows, lens_width]);
        let out = self.record("ilrec_objective", total, &inputs, move |g, needs| {
            let s = g.item()?;
            let scaled = |v: Vec<f32>, shape: &[usize]| -> Result<Tensor> {
                Tensor::from_vec(v.into_iter().map(|x| x * s).collect(), shape)
            };
            let mut grads = vec![if needs[0] {
                Some(scaled(grad_z, &z_shape)?)
            } else {
                None
            }];
            for (l, gl) in grad_lens.into_iter().enumerate() {
                grads.push(if needs[l + 1] {
                    Some(scaled(gl, &lens_shape)?)
                } else {
                    None
                });
            }
            Ok(grads)
        });
        Ok((out, terms))
    }
}

/// What every row of the objective reads (see [`Tape::ilrec_objective_part`]).
struct RowInputs<'a> {
    zs: &'a [f32],
    lens_data: &'a [&'a [f32]],
    positions: &'a [ResponsePosition],
    item_vocab: ItemVocab<'a>,
    weights: &'a ObjectiveWeights,
    n_t: usize,
    n_cpd: usize,
    vocab: usize,
    /// Columns of a lens row (`vocab`, or the item tokens under `ItemVocab::Columns`).
    lens_width: usize,
}

/// Per row: [cpo, crr, cpd of lens 0, cpd of lens 1, ...] (`Err` if a row failed).
type RowTerms = Vec<Result<Vec<f32>>>;

impl RowInputs<'_> {
    /// Every row's terms, and (when `want_grad`) the gradients of z and of each lens layer.
    /// Rows are independent: each task computes one row's terms and writes that row of every
    /// gradient; the terms are then summed in row order (and per row: CPO, CRR, then the lens
    /// layers in order), exactly as a serial loop would, so the loss has the same bits with
    /// any thread count.
    fn run(&self, want_grad: bool) -> (RowTerms, Vec<f32>, Vec<Vec<f32>>) {
        let (n_rows, vocab, width) = (self.positions.len(), self.vocab, self.lens_width);
        let zeros = |cols: usize| {
            if want_grad {
                vec![0.0f32; n_rows * cols]
            } else {
                Vec::new()
            }
        };
        let mut grad_z = zeros(vocab);
        let mut grad_lens: Vec<Vec<f32>> = self.lens_data.iter().map(|_| zeros(width)).collect();
        let mut row_terms: RowTerms = (0..n_rows).map(|_| Ok(Vec::new())).collect();
        {
            let terms_w = DisjointMut::new(&mut row_terms);
            let gz_w = DisjointMut::new(&mut grad_z);
            let gl_w: Vec<DisjointMut<f32>> =
                grad_lens.iter_mut().map(|g| DisjointMut::new(g)).collect();
            parallel_for(n_rows, &|r| {
                let row = r * vocab..(r + 1) * vocab;
                let lens_row = r * width..(r + 1) * width;
                // SAFETY: task r writes only row r of each gradient (empty when no gradient is
                // wanted) and cell r of the terms.
                let (g_z, g_lens, cell) = unsafe {
                    (
                        want_grad.then(|| gz_w.range(row.clone())),
                        gl_w.iter()
                            .map(|g| want_grad.then(|| g.range(lens_row.clone())))
                            .collect::<Vec<_>>(),
                        terms_w.range(r..r + 1),
                    )
                };
                cell[0] = row_objective(
                    &self.zs[row.clone()],
                    self.lens_data,
                    r,
                    width,
                    &self.positions[r],
                    self.item_vocab,
                    self.weights,
                    self.n_t,
                    self.n_cpd,
                    g_z,
                    g_lens,
                );
            });
        }
        (row_terms, grad_z, grad_lens)
    }
}

/// Sums of CE (every row), CRR (rows with negatives) and CPD (item positions, every lens layer)
/// in row order.
fn sum_terms(
    positions: &[ResponsePosition],
    row_terms: RowTerms,
    n_lens: usize,
) -> Result<(f64, f64, f64)> {
    let (mut ce, mut crr, mut cpd) = (0.0f64, 0.0f64, 0.0f64);
    for (pos, t) in positions.iter().zip(row_terms) {
        let t = t?;
        ce += t[0] as f64;
        if !pos.negatives.is_empty() {
            crr += t[1] as f64;
        }
        if pos.item_position {
            for l in 0..n_lens {
                cpd += t[2 + l] as f64;
            }
        }
    }
    Ok((ce, crr, cpd))
}

/// All terms of one response position r (see the module docs): returns [CPO, CRR, CPD per lens
/// layer] and adds the row's gradients into `g_z` and `g_lens[l]` (None: no gradient wanted).
#[allow(clippy::too_many_arguments)]
fn row_objective(
    z_row: &[f32],
    lens_data: &[&[f32]],
    r: usize,
    lens_width: usize,
    pos: &ResponsePosition,
    item_vocab: ItemVocab<'_>,
    weights: &ObjectiveWeights,
    n_t: usize,
    n_cpd: usize,
    mut g_z: Option<&mut [f32]>,
    g_lens: Vec<Option<&mut [f32]>>,
) -> Result<Vec<f32>> {
    let mut terms = vec![0.0f32; 2 + lens_data.len()];
    terms[0] = cpo_row(
        z_row,
        pos,
        weights.alpha,
        1.0 / n_t as f32,
        g_z.as_deref_mut(),
    )?;
    // CRR needs the CF rewards; a run without CRR (lambda = 0) may leave them out.
    let crr_active = weights.lambda != 0.0 || !pos.crr_log_rewards.is_empty();
    if !pos.negatives.is_empty() && crr_active {
        terms[1] = crr_row(z_row, pos, weights.tau_r, weights.lambda / n_t as f32, g_z)?;
    }
    if pos.item_position {
        let teacher = Teacher::of(z_row, item_vocab);
        for (l, (lv, g_row)) in lens_data.iter().zip(g_lens).enumerate() {
            let lens_row = &lv[r * lens_width..(r + 1) * lens_width];
            terms[2 + l] = cpd_row(
                &teacher,
                lens_row,
                item_vocab,
                weights.mu / n_cpd as f32,
                g_row,
            );
        }
    }
    Ok(terms)
}

fn check_shapes(
    tape: &Tape,
    z: Var,
    lens: &[Var],
    positions: &[ResponsePosition],
    item_vocab: ItemVocab<'_>,
) -> Result<(usize, usize)> {
    let zs = tape.shape(z);
    if zs.len() != 2 || zs[0] != positions.len() || zs[0] == 0 {
        return Err(Error::shape(
            "ilrec_objective",
            format!(
                "final logits must be (positions, vocab) with {} positions, found {:?}",
                positions.len(),
                zs
            ),
        ));
    }
    let want = [zs[0], item_vocab.lens_width(zs[1])];
    for &l in lens {
        if tape.shape(l) != want {
            return Err(Error::shape(
                "ilrec_objective",
                format!(
                    "lens logits {:?}, expected {want:?} (final logits {zs:?})",
                    tape.shape(l)
                ),
            ));
        }
    }
    let vocab = zs[1];
    if let ItemVocab::Tokens(ts) | ItemVocab::Columns(ts) = item_vocab {
        if let Some(&bad) = ts.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Index {
                op: "ilrec_objective (item vocabulary)",
                index: bad as i64,
                bound: vocab,
            });
        }
    }
    if let Some(p) = positions.iter().find(|p| p.target as usize >= vocab) {
        return Err(Error::Index {
            op: "ilrec_objective",
            index: p.target as i64,
            bound: vocab,
        });
    }
    Ok((zs[0], vocab))
}

fn summarize(
    positions: &[ResponsePosition],
    ce: f64,
    crr: f64,
    cpd: f64,
    w: &ObjectiveWeights,
) -> ObjectiveTerms {
    let with_neg = positions.iter().filter(|p| !p.negatives.is_empty()).count();
    let n_neg: usize = positions.iter().map(|p| p.negatives.tokens.len()).sum();
    let total = ce + w.lambda as f64 * crr + w.mu as f64 * cpd;
    ObjectiveTerms {
        total: total as f32,
        ce: ce as f32,
        crr: crr as f32,
        cpd: cpd as f32,
        positions: positions.len(),
        positions_with_negatives: with_neg,
        mean_negatives: n_neg as f32 / positions.len().max(1) as f32,
    }
}

/// CPO at one position: returns CE(softmax(z'), y); adds `coef * dL/dz` into `grad`.
fn cpo_row(
    z: &[f32],
    pos: &ResponsePosition,
    alpha: f32,
    coef: f32,
    grad: Option<&mut [f32]>,
) -> Result<f32> {
    let y = pos.target as usize;
    let neg = &pos.negatives;
    if neg.tokens.contains(&pos.target) {
        return Err(Error::config(
            format!("token {y} is both the target and a negative"),
            "negatives exclude the truth",
        ));
    }
    let mut z_pen = z.to_vec();
    for (&v, &w) in neg.tokens.iter().zip(&neg.weights) {
        z_pen[v as usize] += alpha * w * z[v as usize].abs();
    }
    let lse = log_sum_exp(&z_pen);
    if let Some(g) = grad {
        for (gv, &zp) in g.iter_mut().zip(&z_pen) {
            *gv += coef * exp_f32(zp - lse);
        }
        g[y] -= coef;
        for (&v, &w) in neg.tokens.iter().zip(&neg.weights) {
            // chain rule through z' = z + alpha w |z|: the softmax gradient of z'[v] times (1 + alpha w sign z).
            let p_pen = exp_f32(z_pen[v as usize] - lse);
            g[v as usize] += coef * p_pen * alpha * w * sign(z[v as usize]);
        }
    }
    Ok(lse - z[y])
}

/// CRR at one position with negatives: KL(q || softmax(z)[K]); adds `coef * (p - q)` into `grad`.
fn crr_row(
    z: &[f32],
    pos: &ResponsePosition,
    tau_r: f32,
    coef: f32,
    grad: Option<&mut [f32]>,
) -> Result<f32> {
    let k = crr_tokens(&pos.negatives, pos.target);
    if pos.crr_log_rewards.len() != k.len() {
        return Err(Error::shape(
            "ilrec_objective",
            format!(
                "CRR needs one log-reward per token of N_t + {{y}} ({}), found {}",
                k.len(),
                pos.crr_log_rewards.len()
            ),
        ));
    }
    let scaled: Vec<f32> = pos.crr_log_rewards.iter().map(|r| r / tau_r).collect();
    let lse_r = log_sum_exp(&scaled);
    let lse_z = log_sum_exp(z);
    let mut kl = 0.0f32;
    for (&v, &s) in k.iter().zip(&scaled) {
        let log_q = s - lse_r;
        if log_q > f32::NEG_INFINITY {
            kl += exp_f32(log_q) * (log_q - (z[v as usize] - lse_z));
        }
    }
    if let Some(g) = grad {
        for (gv, &zv) in g.iter_mut().zip(z) {
            *gv += coef * exp_f32(zv - lse_z);
        }
        for (&v, &s) in k.iter().zip(&scaled) {
            g[v as usize] -= coef * exp_f32(s - lse_r);
        }
    }
    Ok(kl)
}

/// The teacher's side of CPD at one item position, the same for every lens layer (so computed
/// once per row, not once per layer: in title mode each is a pass of exps over the vocabulary):
/// the final layer's logits over the item vocabulary, their log-sum-exp and probabilities.
struct Teacher {
    logits: Vec<f32>,
    lse: f32,
    probs: Vec<f32>,
}

impl Teacher {
    fn of(z: &[f32], item_vocab: ItemVocab<'_>) -> Teacher {
        let logits: Vec<f32> = match item_vocab {
            ItemVocab::All => z.to_vec(),
            ItemVocab::Tokens(ts) | ItemVocab::Columns(ts) => {
                ts.iter().map(|&v| z[v as usize]).collect()
            }
        };
        let lse = log_sum_exp(&logits);
        let probs = logits.iter().map(|&t| exp_f32(t - lse)).collect();
        Teacher { logits, lse, probs }
    }
}

/// CPD for one lens layer at one item position: KL(p_T || p_S) over the item vocabulary;
/// adds `coef * (p_S - p_T)` into the lens gradient row. The teacher gets no gradient.
fn cpd_row(
    teacher: &Teacher,
    lens: &[f32],
    item_vocab: ItemVocab<'_>,
    coef: f32,
    grad: Option<&mut [f32]>,
) -> f32 {
    // The lens row is already the item vocabulary's logits unless only some of its columns are.
    let gathered: Vec<f32>;
    let student: &[f32] = match item_vocab {
        ItemVocab::All | ItemVocab::Columns(_) => lens,
        ItemVocab::Tokens(ts) => {
            gathered = ts.iter().map(|&v| lens[v as usize]).collect();
            &gathered
        }
    };
    let (lse_t, lse_s) = (teacher.lse, log_sum_exp(student));
    let mut kl = 0.0f32;
    for ((&t, &p_t), &s) in teacher.logits.iter().zip(&teacher.probs).zip(student) {
        kl += p_t * ((t - lse_t) - (s - lse_s));
    }
    let Some(g) = grad else {
        return kl;
    };
    match item_vocab {
        // The student's logits are the lens row itself: one pass in order, which the compiler
        // vectorises (an index computed per element kept it scalar: most of the objective's
        // time in title mode). Each element is the same expression either way: the same bits.
        ItemVocab::All | ItemVocab::Columns(_) => {
            for ((gv, &p_t), &s) in g.iter_mut().zip(&teacher.probs).zip(student) {
                *gv += coef * (exp_f32(s - lse_s) - p_t);
            }
        }
        ItemVocab::Tokens(ts) => {
            for ((&v, &p_t), &s) in ts.iter().zip(&teacher.probs).zip(student) {
                g[v as usize] += coef * (exp_f32(s - lse_s) - p_t);
            }
        }
    }
    kl
}

/// sign(x) with sign(0) = 0, as PyTorch's |x| gradient.
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}
