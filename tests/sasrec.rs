//! SASRec and the CF token rewards: rewards on a hand-made trie (exact values), the model's
//! scores against an independent f64 forward pass written out here, padding and truncation
//! invariance, save/load, the training sequences, and a short training run on ml-latest-small
//! that must beat both the untrained model and the popularity baseline.
//!
//! The ops SASRec uses (LayerNorm, dropout, GELU, embedding = positional embedding, attention,
//! linear, cross-entropy) have their own finite-difference tests in tests/grad_*.rs.

mod common;

use ilrec::cf::{
    rank_in_row, token_log_rewards, token_log_rewards_for_positions, training_sequences, SasRec,
    SasRecConfig, SasRecTrainOptions,
};
use ilrec::rec::{
    leave_one_out, load_dataset, Dataset, Format, Item, ItemTrie, LoadOptions, Popularity,
};
use std::path::PathBuf;

// ---------------------------------------------------------------- token rewards

/// Items (EOS = 0 is appended by the trie):
/// 0 = [5, 7], 1 = [5, 8], 2 = [6, 7], 3 = [5, 7, 9], 4 = [6], 5 = [9, 7].
fn hand_trie() -> ItemTrie {
    let seqs = vec![
        vec![5, 7],
        vec![5, 8],
        vec![6, 7],
        vec![5, 7, 9],
        vec![6],
        vec![9, 7],
    ];
    ItemTrie::build(&seqs, 0).unwrap()
}

const P: [f32; 6] = [0.1, 0.2, 0.05, 0.3, 0.15, 0.2];

fn assert_log_rewards(found: &[f32], masses: &[Option<f64>]) {
    assert_eq!(found.len(), masses.len());
    for (j, (&f, m)) in found.iter().zip(masses).enumerate() {
        match m {
            None => assert_eq!(f, f32::NEG_INFINITY, "token {j}: {found:?}"),
            Some(m) => assert!(
                (f as f64 - m.ln()).abs() < 1e-6,
                "token {j}: found {f}, expected ln {m} = {}",
                m.ln()
            ),
        }
    }
}

#[test]
fn token_rewards_are_log_masses_of_the_items_below_each_child() {
    let t = hand_trie();
    // Root: below 5 are items 0, 1, 3 (0.1 + 0.2 + 0.3); below 6 items 2, 4; below 9 item 5;
    // 7 starts no item.
    let r = token_log_rewards(&t, &[], &[5, 6, 7, 9], &P).unwrap();
    assert_log_rewards(&r, &[Some(0.6), Some(0.2), None, Some(0.2)]);
    // After 5: 7 -> items 0, 3; 8 -> item 1; EOS ends no item here.
    let r = token_log_rewards(&t, &[5], &[0, 7, 8], &P).unwrap();
    assert_log_rewards(&r, &[None, Some(0.4), Some(0.2)]);
    // After 5, 7: EOS -> item 0, 9 -> item 3.
    let r = token_log_rewards(&t, &[5, 7], &[0, 9], &P).unwrap();
    assert_log_rewards(&r, &[Some(0.1), Some(0.3)]);
    // After 6: EOS -> item 4, 7 -> item 2 (DFS order puts item 4 before item 2).
    let r = token_log_rewards(&t, &[6], &[0, 7], &P).unwrap();
    assert_log_rewards(&r, &[Some(0.15), Some(0.05)]);
    let r = token_log_rewards(&t, &[5, 7, 9], &[0], &P).unwrap();
    assert_log_rewards(&r, &[Some(0.3)]);
    // The result follows the order of `tokens`.
    let r = token_log_rewards(&t, &[], &[9, 5], &P).unwrap();
    assert_log_rewards(&r, &[Some(0.2), Some(0.6)]);
    // Several positions of one example share one probability row.
    let rows = token_log_rewards_for_positions(&t, &[(&[], &[5, 6]), (&[5], &[7, 8])], &P).unwrap();
    assert_log_rewards(&rows[0], &[Some(0.6), Some(0.2)]);
    assert_log_rewards(&rows[1], &[Some(0.4), Some(0.2)]);
}

#[test]
fn token_rewards_of_zero_mass_are_minus_infinity_and_bad_input_is_an_error() {
    let t = hand_trie();
    let mut p = P;
    p[5] = 0.0;
    let r = token_log_rewards(&t, &[], &[9], &p).unwrap();
    assert_eq!(r, vec![f32::NEG_INFINITY]);
    let e = token_log_rewards(&t, &[7], &[0], &P)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[7]") && e.contains("not a path"), "{e}");
    let e = token_log_rewards(&t, &[], &[5], &P[..5])
        .unwrap_err()
        .to_string();
    assert!(e.contains('5') && e.contains('6'), "{e}");
}

// ---------------------------------------------------------------- ranking

#[test]
fn rank_in_row_matches_a_sort_with_ties_by_lowest_id() {
    let row = [0.5f32, 2.0, 0.5, -1.0, 2.0, 0.5];
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
    for target in 0..row.len() {
        let expected = order.iter().position(|&i| i == target).unwrap();
        assert_eq!(rank_in_row(&row, target), expected, "target {target}");
    }
}

// ---------------------------------------------------------------- the model vs a naive forward

fn tiny_config() -> SasRecConfig {
    SasRecConfig {
        num_items: 11,
        max_len: 6,
        hidden: 8,
        blocks: 2,
        heads: 2,
        dropout: 0.2,
    }
}

/// A model with non-trivial LayerNorm weights and biases (fresh ones are 1 and 0, which would
/// hide a swapped weight/bias).
fn tiny_model(seed: u64) -> SasRec {
    let mut model = SasRec::new(tiny_config(), seed).unwrap();
    let mut k = 0u32;
    for id in model.params.ids().collect::<Vec<_>>() {
        let value = model.params.value(id).clone();
        if value.rank() == 1 {
            let v: Vec<f32> = (0..value.numel())
                .map(|_| {
                    k += 1;
                    0.5 + 0.1 * ((k * 7919 % 13) as f32)
                })
                .collect();
            let t = ilrec::Tensor::from_vec(v, value.shape()).unwrap();
            model.params.set_value(id, t).unwrap();
        }
    }
    model
}

fn param(model: &SasRec, name: &str) -> (Vec<f64>, Vec<usize>) {
    let id = model
        .params
        .id(name)
        .unwrap_or_else(|| panic!("no parameter {name}"));
    let t = model.params.value(id);
    (
        t.to_vec().iter().map(|&x| x as f64).collect(),
        t.shape().to_vec(),
    )
}

fn layer_norm64(x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let inv = 1.0 / (var + 1e-12).sqrt();
    (0..x.len())
        .map(|i| (x[i] - mean) * inv * w[i] + b[i])
        .collect()
}

/// y = W x + b with W (out, in) row-major.
fn linear64(x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let inp = x.len();
    (0..b.len())
        .map(|o| b[o] + (0..inp).map(|i| w[o * inp + i] * x[i]).sum::<f64>())
        .collect()
}

/// Block `l`'s residual attention step of `naive_scores`: pre-LN, then causal multi-head
/// self-attention added to every position of `x`.
fn naive_attention(model: &SasRec, l: usize, x: &mut [Vec<f64>]) {
    let c = model.config;
    let d = c.hidden;
    let dh = d / c.heads;
    let p = |name: String| param(model, &name).0;
    let a: Vec<Vec<f64>> = x
        .iter()
        .map(|r| {
            layer_norm64(
                r,
                &p(format!("blocks.{l}.attn_norm.weight")),
                &p(format!("blocks.{l}.attn_norm.bias")),
            )
        })
        .collect();
    let proj = |name: &str, r: &Vec<f64>| {
        linear64(
            r,
            &p(format!("blocks.{l}.attn.{name}.weight")),
            &p(format!("blocks.{l}.attn.{name}.bias")),
        )
    };
    let q: Vec<Vec<f64>> = a.iter().map(|r| proj("q", r)).collect();
    let k: Vec<Vec<f64>> = a.iter().map(|r| proj("k", r)).collect();
    let v: Vec<Vec<f64>> = a.iter().map(|r| proj("v", r)).collect();
    for i in 0..x.len() {
        let mut att = vec![0.0; d];
        for h in 0..c.heads {
            let hs = h * dh..(h + 1) * dh;
            let s: Vec<f64> = (0..=i)
                .map(|j| hs.clone().map(|e| q[i][e] * k[j][e]).sum::<f64>() / (dh as f64).sqrt())
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
            for j in 0..=i {
                let pj = (s[j] - m).exp() / z;
                for e in hs.clone() {
                    att[e] += pj * v[j][e];
                }
            }
        }
        let o = proj("o", &att);
        (0..d).for_each(|e| x[i][e] += o[e]);
    }
}

/// Block `l`'s residual feed-forward step of `naive_scores`: pre-LN, fc1, ReLU, fc2, added to
/// every position of `x`.
fn naive_ffn(model: &SasRec, l: usize, x: &mut [Vec<f64>]) {
    let d = model.config.hidden;
    let p = |name: String| param(model, &name).0;
    for r in x.iter_mut() {
        let f = layer_norm64(
            r,
            &p(format!("blocks.{l}.ffn_norm.weight")),
            &p(format!("blocks.{l}.ffn_norm.bias")),
        );
        let f = linear64(
            &f,
            &p(format!("blocks.{l}.ffn.fc1.weight")),
            &p(format!("blocks.{l}.ffn.fc1.bias")),
        );
        let f: Vec<f64> = f.iter().map(|&u| u.max(0.0)).collect();
        let f = linear64(
            &f,
            &p(format!("blocks.{l}.ffn.fc2.weight")),
            &p(format!("blocks.{l}.ffn.fc2.bias")),
        );
        (0..d).for_each(|e| r[e] += f[e]);
    }
}

/// Scores of every item after `history` (already at most max_len items), computed one position
/// at a time in f64 from the parameter values: pre-LN blocks, causal multi-head attention.
fn naive_scores(model: &SasRec, history: &[u32]) -> Vec<f64> {
    let c = model.config;
    let d = c.hidden;
    let (emb, _) = param(model, "item_emb.weight");
    let (pos, _) = param(model, "pos_emb.weight");
    let mut x: Vec<Vec<f64>> = history
        .iter()
        .enumerate()
        .map(|(t, &item)| {
            let row = (item as usize + 1) * d;
            (0..d).map(|j| emb[row + j] + pos[t * d + j]).collect()
        })
        .collect();
    let p = |name: String| param(model, &name).0;
    for l in 0..c.blocks {
        naive_attention(model, l, &mut x);
        naive_ffn(model, l, &mut x);
    }
    let last = x.last().unwrap();
    let h = layer_norm64(
        last,
        &p("final_norm.weight".into()),
        &p("final_norm.bias".into()),
    );
    (0..c.num_items)
        .map(|i| (0..d).map(|e| h[e] * emb[(i + 1) * d + e]).sum())
        .collect()
}

#[test]
fn scores_match_an_independent_f64_forward() {
    let model = tiny_model(3);
    let histories: Vec<Vec<u32>> = vec![vec![4], vec![1, 10, 3, 3, 0, 7], vec![2, 9, 5]];
    let refs: Vec<&[u32]> = histories.iter().map(|h| h.as_slice()).collect();
    let scores = model.scores(&refs).unwrap();
    assert_eq!(scores.shape(), &[3, 11]);
    let got = scores.to_vec();
    for (b, h) in histories.iter().enumerate() {
        let expected = naive_scores(&model, h);
        for (i, e) in expected.iter().enumerate() {
            let g = got[b * 11 + i] as f64;
            assert!(
                (g - e).abs() < 1e-4 * (1.0 + e.abs()),
                "history {b} item {i}: {g} vs {e}"
            );
        }
    }
}

#[test]
fn padding_and_truncation_do_not_change_a_history_s_scores() {
    let model = tiny_model(5);
    let short: &[u32] = &[3, 8];
    let long: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]; // longer than max_len = 6
    let alone = model.scores(&[short]).unwrap().to_vec();
    let batched = model.scores(&[long, short]).unwrap().to_vec();
    for (a, b) in alone.iter().zip(&batched[11..]) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let tail = model.scores(&[&long[4..]]).unwrap().to_vec();
    for (a, b) in tail.iter().zip(&batched[..11]) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let probs = model.probabilities(&[long, short]).unwrap().to_vec();
    for row in probs.chunks(11) {
        let total: f64 = row.iter().map(|&x| x as f64).sum();
        assert!(
            (total - 1.0).abs() < 1e-5 && row.iter().all(|&x| x > 0.0),
            "{row:?}"
        );
    }
    // The softmax of the scores, computed here.
    let row = &batched[11..];
    let z: f64 = row.iter().map(|&s| (s as f64).exp()).sum();
    for (p, s) in probs[11..].iter().zip(row) {
        assert!((*p as f64 - (*s as f64).exp() / z).abs() < 1e-6);
    }
}

#[test]
fn bad_histories_and_configs_are_errors() {
    let model = tiny_model(1);
    let e = model.scores(&[&[1], &[]]).unwrap_err().to_string();
    assert!(e.contains("history 1") && e.contains("empty"), "{e}");
    let e = model.scores(&[&[11]]).unwrap_err().to_string();
    assert!(e.contains("11") && e.contains("0..11"), "{e}");
    let bad = SasRecConfig {
        heads: 3,
        ..tiny_config()
    };
    assert!(SasRec::new(bad, 0).is_err());
    let bad = SasRecConfig {
        dropout: 1.0,
        ..tiny_config()
    };
    assert!(SasRec::new(bad, 0).is_err());
}

#[test]
fn save_and_load_round_trip_exactly() {
    let model = tiny_model(9);
    let dir = std::env::temp_dir().join(format!("ilrec-sasrec-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sasrec.safetensors");
    model.save(&path).unwrap();
    let loaded = SasRec::load(&path).unwrap();
    assert_eq!(loaded.config, model.config);
    let h: &[u32] = &[1, 2, 3];
    assert_eq!(
        loaded.scores(&[h]).unwrap().to_vec(),
        model.scores(&[h]).unwrap().to_vec()
    );
    std::fs::write(&path, b"not a safetensors file").unwrap();
    let e = SasRec::load(&path).err().unwrap().to_string();
    assert!(e.contains("sasrec.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- training data

fn hand_dataset(sequences: Vec<Vec<u32>>, num_items: usize) -> Dataset {
    Dataset {
        name: "hand".into(),
        format: Format::RecBole,
        interactions_path: PathBuf::from("hand.inter"),
        items: (0..num_items)
            .map(|i| Item {
                raw_id: i.to_string(),
                title: format!("item {i}"),
                text: String::new(),
            })
            .collect(),
        users: (0..sequences.len()).map(|u| u.to_string()).collect(),
        rows_read: sequences.iter().map(Vec::len).sum(),
        users_read: sequences.len(),
        items_read: num_items,
        sequences,
        removed_duplicates: 0,
        removed_by_rating: 0,
        removed_by_kcore: 0,
        items_without_text: 0,
    }
}

#[test]
fn training_sequences_are_the_items_before_validation_despite_truncation() {
    // User 0: 7 items; user 1: 3 items (no training sample); user 2: 4 items.
    let ds = hand_dataset(
        vec![vec![0, 1, 2, 3, 4, 5, 6], vec![7, 8, 9], vec![9, 8, 7, 6]],
        10,
    );
    let split = leave_one_out(&ds, 2).unwrap(); // histories cut to 2 items
    let seqs = training_sequences(&split).unwrap();
    assert_eq!(seqs, vec![vec![0, 1, 2, 3, 4], vec![9, 8]]);
}

// ---------------------------------------------------------------- a short real training run

#[test]
fn short_training_on_ml_latest_small_beats_untrained_and_popularity() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small");
    let ds = load_dataset(&dir, &LoadOptions::default()).unwrap();
    let split = leave_one_out(&ds, 50).unwrap();
    let config = SasRecConfig::new(ds.num_items());
    let mut model = SasRec::new(config, 0).unwrap();
    let untrained = model
        .evaluate(&split.valid)
        .unwrap()
        .mean()
        .ndcg_at(10)
        .unwrap();
    let pop = Popularity::from_dataset(&ds)
        .evaluate(&split.valid)
        .mean()
        .ndcg_at(10)
        .unwrap();
    let opts = SasRecTrainOptions {
        epochs: 9,
        patience: 9,
        seed: 0,
        ..SasRecTrainOptions::default()
    };
    let mut epochs = Vec::new();
    let summary = model
        .train(&split, &opts, |r| epochs.push(r.clone()))
        .unwrap();
    let trained = model
        .evaluate(&split.valid)
        .unwrap()
        .mean()
        .ndcg_at(10)
        .unwrap();
    eprintln!(
        "untrained {untrained:.4} pop {pop:.4} trained {trained:.4} in {:.1}s ({} epochs)",
        summary.seconds, summary.epochs_run
    );
    assert_eq!(epochs.len(), summary.epochs_run);
    // The model keeps the best epoch, and its metrics are what `train` reported.
    assert!((trained - summary.best_valid.ndcg_at(10).unwrap()).abs() < 1e-9);
    assert!(
        trained > untrained + 0.005,
        "{trained} vs untrained {untrained}"
    );
    assert!(trained > pop, "{trained} vs popularity {pop}");
}
