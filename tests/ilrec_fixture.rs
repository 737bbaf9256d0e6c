//! The ILRec objective on ../shared/fixtures/ilrec-loss against PyTorch: negative sets (exact),
//! CRR log-rewards, the four loss values, and every parameter gradient. Sizes, layers and
//! hyper-parameters come from the fixture files.

mod common;

use ilrec::cf::token_log_rewards;
use ilrec::ilrec::{
    crr_tokens, ensemble_logits, self_hard_negatives, Candidates, Ensemble, ItemVocab,
    ObjectiveTerms, ObjectiveWeights, PositionNegatives, ResponsePosition,
};
use ilrec::model::llama::{BatchInput, Llama};
use ilrec::model::weights::SafetensorsFile;
use ilrec::rec::ItemTrie;
use ilrec::{Params, Tape};
use serde_json::Value;

struct Fixture {
    model: Llama,
    ids: Vec<u32>,
    labels: Vec<i64>,
    batch: usize,
    seq: usize,
    item_sids: Vec<Vec<u32>>,
    cf_scores: Vec<f32>,
    resp_start: Vec<usize>,
    meta: Value,
    reference: SafetensorsFile,
}

fn load() -> Fixture {
    let dir = common::fixture("ilrec-loss");
    let reference = SafetensorsFile::open(dir.join("reference.safetensors")).unwrap();
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ilrec.json")).unwrap()).unwrap();
    let (ids, shape) = reference.tensor_i64("input_ids").unwrap();
    let (labels, _) = reference.tensor_i64("labels").unwrap();
    let (sids, sid_shape) = reference.tensor_i64("item_sids").unwrap();
    let (resp, _) = reference.tensor_i64("resp_start").unwrap();
    Fixture {
        model: Llama::from_dir(&dir).unwrap(),
        ids: ids.iter().map(|&x| x as u32).collect(),
        labels,
        batch: shape[0],
        seq: shape[1],
        item_sids: sids
            .chunks(sid_shape[1])
            .map(|r| r.iter().map(|&x| x as u32).collect())
            .collect(),
        cf_scores: reference.tensor_f32("cf_scores").unwrap().to_vec(),
        resp_start: resp.iter().map(|&x| x as usize).collect(),
        meta,
        reference,
    }
}

fn hp(f: &Fixture, key: &str) -> f32 {
    f.meta["hparams"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("ilrec.json: hparams.{key}")) as f32
}

/// log of the CF probability mass of the items below each token, computed here from the item list
/// directly (independently of the trie-based library code).
fn reference_log_rewards(f: &Fixture, b: usize, prefix: &[u32], tokens: &[u32]) -> Vec<f32> {
    let n_items = f.item_sids.len();
    let scores = &f.cf_scores[b * n_items..(b + 1) * n_items];
    let m = scores.iter().cloned().fold(f32::MIN, f32::max) as f64;
    let z: f64 = scores.iter().map(|&s| (s as f64 - m).exp()).sum();
    tokens
        .iter()
        .map(|&v| {
            let mass: f64 = (0..n_items)
                .filter(|&i| {
                    f.item_sids[i].starts_with(prefix)
                        && f.item_sids[i].get(prefix.len()) == Some(&v)
                })
                .map(|i| (scores[i] as f64 - m).exp() / z)
                .sum();
            mass.ln() as f32
        })
        .collect()
}

/// p_CF(item | history of example b) = softmax of the fixture's CF scores.
fn p_cf(f: &Fixture, b: usize) -> Vec<f32> {
    let n = f.item_sids.len();
    let s = &f.cf_scores[b * n..(b + 1) * n];
    let m = s.iter().cloned().fold(f32::MIN, f32::max);
    let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// The response positions as (example, t): position t predicts the labelled token t+1.
fn response_rows(f: &Fixture) -> Vec<(usize, usize)> {
    let (b_n, t_n) = (f.batch, f.seq);
    let mut rows = Vec::new();
    for b in 0..b_n {
        for t in 0..t_n - 1 {
            if f.labels[b * t_n + t + 1] != -100 {
                rows.push((b, t));
            }
        }
    }
    rows
}

/// The forward pass's logits at the response positions: the final head's and each lens's, one
/// row of `vocab` values per position.
struct RowLogits {
    z: Vec<f32>,
    lens: Vec<Vec<f32>>,
    vocab: usize,
}

/// The library's trie-based CRR log-rewards of the negatives at `prefix` (example b, target y),
/// cross-checked against a direct sum over the items.
fn checked_crr_rewards(
    f: &Fixture,
    trie: &ItemTrie,
    b: usize,
    prefix: &[u32],
    neg: &PositionNegatives,
    y: u32,
) -> Vec<f32> {
    if neg.is_empty() {
        return vec![];
    }
    let k = crr_tokens(neg, y);
    let lib = token_log_rewards(trie, prefix, &k, &p_cf(f, b)).unwrap();
    for (a, w) in lib.iter().zip(reference_log_rewards(f, b, prefix, &k)) {
        assert!((a - w).abs() < 1e-5, "trie rewards {a} vs direct {w}");
    }
    lib
}

/// The negatives and CRR log-rewards at example b, position t equal the ones ilrec.json lists
/// (PyTorch's) in `expected`.
fn assert_matches_json(expected: &[Value], (b, t): (usize, usize), neg: &[u32], rewards: &[f32]) {
    let e = expected
        .iter()
        .find(|e| e["example"] == b && e["position"] == t)
        .expect("position listed in ilrec.json");
    let want: Vec<u32> = e["negatives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(neg, want, "negatives of example {b} position {t}");
    let want_r: Vec<f32> = e["crr_log_rewards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(rewards.len(), want_r.len());
    for (a, w) in rewards.iter().zip(&want_r) {
        assert!(
            (a - w).abs() < 1e-4,
            "CRR log-reward {a} vs {w} at example {b} position {t}"
        );
    }
}

/// The objective's view of response row `r` (example b, position t): its self-hard negatives
/// among the trie's candidates and their CRR log-rewards, checked along the way (and against
/// ilrec.json when `expected` is given).
fn response_position(
    f: &Fixture,
    trie: &ItemTrie,
    logits: &RowLogits,
    r: usize,
    (b, t): (usize, usize),
    expected: Option<&[Value]>,
) -> ResponsePosition {
    let levels = f.meta["levels"].as_u64().unwrap() as usize;
    let (t_n, v) = (f.seq, logits.vocab);
    let y = f.ids[b * t_n + t + 1];
    let prefix = &f.ids[b * t_n + f.resp_start[b]..b * t_n + t + 1];
    let node = trie
        .walk(prefix)
        .expect("ground-truth prefix is in the trie");
    let cand: Vec<u32> = trie.children(node).iter().map(|&(tok, _)| tok).collect();
    let lens_rows: Vec<&[f32]> = logits.lens.iter().map(|l| &l[r * v..(r + 1) * v]).collect();
    let z_m = ensemble_logits(&lens_rows, Ensemble::Mean).unwrap();
    let neg = self_hard_negatives(
        logits.z[r * v + y as usize],
        &z_m,
        y,
        Candidates::Tokens(&cand),
        hp(f, "margin"),
        hp(f, "tau"),
    )
    .unwrap();
    assert!(
        !neg.tokens.contains(&y),
        "a negative equals the ground truth"
    );
    let rewards = checked_crr_rewards(f, trie, b, prefix, &neg, y);
    if let Some(expected) = expected {
        assert_matches_json(expected, (b, t), &neg.tokens, &rewards);
    }
    let j = t + 1 - f.resp_start[b];
    if j >= levels {
        assert!(
            neg.is_empty(),
            "the EOS position has no negatives under trie scope"
        );
    }
    ResponsePosition {
        target: y,
        negatives: neg,
        crr_log_rewards: rewards,
        item_position: j < levels,
    }
}

/// Runs the whole ILRec step on the fixture batch and returns the loss terms and gradients.
fn run(f: &Fixture, check_against_json: bool) -> (ObjectiveTerms, Params) {
    let layers: Vec<usize> = f.meta["hparams"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let eos = f.meta["eos_token_id"].as_u64().unwrap() as u32;
    let trie = ItemTrie::build(&f.item_sids, eos).unwrap();
    let mut item_vocab: Vec<u32> = f.item_sids.iter().flatten().copied().collect();
    item_vocab.sort_unstable();
    item_vocab.dedup();
    let (b_n, t_n) = (f.batch, f.seq);
    let rows = response_rows(f);
    let flat: Vec<usize> = rows.iter().map(|&(b, t)| b * t_n + t).collect();
    let mut tape = Tape::new();
    let out = f
        .model
        .forward(
            &mut tape,
            &BatchInput::new(f.ids.clone(), b_n, t_n).unwrap(),
            Some(&flat),
        )
        .unwrap();
    let lens: Vec<_> = layers
        .iter()
        .map(|&l| f.model.lens(&mut tape, &out, l, Some(&flat)).unwrap())
        .collect();
    let logits = RowLogits {
        z: tape.value(out.logits).to_vec(),
        lens: lens.iter().map(|&l| tape.value(l).to_vec()).collect(),
        vocab: f.model.config.vocab_size,
    };
    let expected = f.meta["negatives"].as_array().unwrap();
    let expected = check_against_json.then_some(expected.as_slice());
    let positions: Vec<ResponsePosition> = rows
        .iter()
        .enumerate()
        .map(|(r, &row)| response_position(f, &trie, &logits, r, row, expected))
        .collect();
    let weights = ObjectiveWeights {
        alpha: hp(f, "alpha"),
        lambda: hp(f, "lambda_crr"),
        mu: hp(f, "mu_cpd"),
        tau_r: hp(f, "tau_r"),
    };
    let (loss, terms) = tape
        .ilrec_objective(
            out.logits,
            &lens,
            &positions,
            ItemVocab::Tokens(&item_vocab),
            &weights,
        )
        .unwrap();
    let grads = tape.backward(loss).unwrap();
    drop(tape);
    let mut params = f.model.params.clone();
    params.zero_grad();
    params.accumulate(&grads).unwrap();
    (terms, params)
}

#[test]
fn negatives_rewards_losses_and_gradients_match_pytorch() {
    let f = load();
    let (terms, params) = run(&f, true);
    for (name, got) in [
        ("loss.total", terms.total),
        ("loss.ce", terms.ce),
        ("loss.crr", terms.crr),
        ("loss.cpd", terms.cpd),
    ] {
        let want = f.reference.tensor_f32(name).unwrap().item().unwrap();
        assert!(
            (got - want).abs() < 1e-4,
            "{name}: ours {got} vs reference {want}"
        );
    }
    let mut checked = 0;
    for id in params.ids() {
        let name = params.name(id).to_string();
        let want = f
            .reference
            .tensor_f32(&format!("grad.{name}"))
            .unwrap()
            .to_vec();
        let got = params
            .grad(id)
            .unwrap_or_else(|| panic!("{name} received no gradient"))
            .to_vec();
        for (a, w) in got.iter().zip(&want) {
            assert!(
                (a - w).abs() <= 1e-4 + 1e-3 * w.abs(),
                "grad.{name}: {a} vs {w}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, f.model.params.len());
    // Every trainable tensor is reached by the full objective.
    assert!(
        params.params_without_gradient().is_empty(),
        "{:?}",
        params.params_without_gradient()
    );
}
