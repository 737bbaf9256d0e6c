//! The two ranking protocols (`rec::protocol`): every item ranked (the default), or the user's
//! earlier items excluded (`--exclude-history`). Popularity on a hand-made set where both
//! answers are worked out by hand; popularity on ml-latest-small under both protocols against a
//! straightforward computation written here; SASRec's excluded ranking against sorting its
//! scores.

use ilrec::cf::{rank_in_row_excluding, SasRec, SasRecConfig};
use ilrec::rec::{
    leave_one_out, load_dataset, Dataset, Exclusions, LoadOptions, Popularity, Protocol, Sample,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

// Items a b c d e (dense ids 0..4, item-file order). Users, oldest first:
//   u1: a b c d    u2: a b c e    u3: b a d e    u4: a c e b
// Training split (all but the last two): u1 a b, u2 a b, u3 b a, u4 a c
//   -> counts a 4, b 3, c 1, d 0, e 0; ranking a b c d e.
// Test (target | earlier items):  u1 d | a b c   u2 e | a b c   u3 e | b a d   u4 b | a c e
//   all items:       ranks d 3, e 4, e 4, b 1
//   exclude history: u1 [d e] -> 0, u2 [d e] -> 1, u3 [c e] -> 1, u4 [b d] -> 0
const HAND: [(&str, [&str; 4]); 4] = [
    ("u1", ["a", "b", "c", "d"]),
    ("u2", ["a", "b", "c", "e"]),
    ("u3", ["b", "a", "d", "e"]),
    ("u4", ["a", "c", "e", "b"]),
];

fn hand_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ilrec-protocol-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut inter = String::from("user_id:token\titem_id:token\ttimestamp:float\n");
    for (user, items) in HAND {
        for (t, item) in items.iter().enumerate() {
            inter += &format!("{user}\t{item}\t{t}\n");
        }
    }
    std::fs::write(dir.join("hand.inter"), inter).unwrap();
    let mut item = String::from("item_id:token\ttitle:token_seq\n");
    for id in ["a", "b", "c", "d", "e"] {
        item += &format!("{id}\tItem {id}\n");
    }
    std::fs::write(dir.join("hand.item"), item).unwrap();
    dir
}

fn gain(rank: usize) -> f64 {
    1.0 / ((rank + 2) as f64).log2()
}

#[test]
fn popularity_on_a_hand_made_set_under_both_protocols() {
    let dir = hand_dir("pop");
    let opts = LoadOptions {
        kcore: 0,
        ..LoadOptions::default()
    };
    let ds = load_dataset(&dir, &opts).unwrap();
    let split = leave_one_out(&ds, 20).unwrap();
    let pop = Popularity::from_dataset(&ds);
    assert_eq!(pop.counts, vec![4, 3, 1, 0, 0]);
    let all = pop.evaluate(&split.test).mean();
    let excluded = Exclusions::build(Protocol::ExcludeHistory, &ds, &split.test).unwrap();
    assert_eq!(excluded.of(0), &[0, 1, 2]); // u1: a b c
    assert_eq!(excluded.of(2), &[0, 1, 3]); // u3: b a d, sorted
    let ex = pop
        .evaluate_excluding(&split.test, &excluded)
        .unwrap()
        .mean();
    let close = |x: Option<f64>, want: f64| (x.unwrap() - want).abs() < 1e-12;
    // All items: ranks 3, 4, 4, 1.
    assert!(close(all.hit_at(1), 0.0));
    assert!(close(all.hit_at(5), 1.0));
    assert!(close(
        all.ndcg_at(5),
        (gain(3) + 2.0 * gain(4) + gain(1)) / 4.0
    ));
    // History excluded: ranks 0, 1, 1, 0.
    assert!(close(ex.hit_at(1), 0.5));
    assert!(close(ex.ndcg_at(5), (2.0 * gain(0) + 2.0 * gain(1)) / 4.0));
    // Validation excludes the training items only: u1 c | a b -> [c d e] -> 0.
    let valid_ex = Exclusions::build(Protocol::ExcludeHistory, &ds, &split.valid).unwrap();
    assert_eq!(valid_ex.of(0), &[0, 1]);
    // The default protocol excludes nothing; a sample from elsewhere is refused.
    let none = Exclusions::build(Protocol::AllItems, &ds, &split.test).unwrap();
    assert!((0..none.len()).all(|i| none.of(i).is_empty()));
    let stranger = Sample {
        user: 0,
        history: vec![],
        target: 4,
    };
    assert!(Exclusions::build(Protocol::ExcludeHistory, &ds, &[stranger]).is_err());
    assert!(pop.evaluate_excluding(&split.test[..2], &excluded).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

/// Hit@10 and NDCG@10 of popularity computed the long way: count, sort, filter, find.
fn naive_popularity(ds: &Dataset, exclude_history: bool) -> (f64, f64) {
    let mut counts = vec![0u64; ds.num_items()];
    for seq in ds.sequences.iter().filter(|s| s.len() >= 3) {
        for &item in &seq[..seq.len() - 2] {
            counts[item as usize] += 1;
        }
    }
    let mut ranking: Vec<u32> = (0..ds.num_items() as u32).collect();
    ranking.sort_by_key(|&i| (std::cmp::Reverse(counts[i as usize]), i));
    let (mut hit, mut ndcg, mut users) = (0.0, 0.0, 0);
    for seq in ds.sequences.iter().filter(|s| s.len() >= 3) {
        let target = seq[seq.len() - 1];
        let seen: HashSet<u32> = match exclude_history {
            true => seq[..seq.len() - 1].iter().copied().collect(),
            false => HashSet::new(),
        };
        let rank = ranking
            .iter()
            .filter(|i| !seen.contains(i))
            .position(|&i| i == target)
            .unwrap();
        if rank < 10 {
            hit += 1.0;
            ndcg += gain(rank);
        }
        users += 1;
    }
    (hit / users as f64, ndcg / users as f64)
}

fn ml_latest_small() -> Dataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small");
    load_dataset(&dir, &LoadOptions::default()).unwrap()
}

#[test]
fn popularity_on_ml_latest_small_matches_a_straightforward_computation() {
    let ds = ml_latest_small();
    let split = leave_one_out(&ds, 20).unwrap();
    let pop = Popularity::from_dataset(&ds);
    let all = pop.evaluate(&split.test).mean();
    let excluded = Exclusions::build(Protocol::ExcludeHistory, &ds, &split.test).unwrap();
    let ex = pop
        .evaluate_excluding(&split.test, &excluded)
        .unwrap()
        .mean();
    for (got, exclude) in [(all, false), (ex, true)] {
        let (hit, ndcg) = naive_popularity(&ds, exclude);
        assert!((got.hit_at(10).unwrap() - hit).abs() < 1e-12, "{exclude}");
        assert!((got.ndcg_at(10).unwrap() - ndcg).abs() < 1e-12, "{exclude}");
    }
    // The point: the protocol moves this baseline a lot (popular items are often in
    // the history already).
    assert!(ex.hit_at(10).unwrap() > 1.5 * all.hit_at(10).unwrap());
}

/// The 0-based rank of `target` among all items sorted by descending score (ties: lower id),
/// leaving out `excluded`.
fn naive_rank(scores: &[f32], target: u32, excluded: &[u32]) -> usize {
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    order.sort_by(|&a, &b| {
        scores[b as usize]
            .total_cmp(&scores[a as usize])
            .then(a.cmp(&b))
    });
    order
        .iter()
        .filter(|i| !excluded.contains(i))
        .position(|&i| i == target)
        .unwrap()
}

/// SASRec's metrics under `protocol` against ranks found by sorting its scores.
fn check_sasrec(ds: &Dataset, samples: &[Sample], seed: u64) {
    let model = SasRec::new(SasRecConfig::new(ds.num_items()), seed).unwrap();
    let excluded = Exclusions::build(Protocol::ExcludeHistory, ds, samples).unwrap();
    let got = model.evaluate_excluding(samples, &excluded).unwrap().mean();
    let histories: Vec<&[u32]> = samples.iter().map(|s| s.history.as_slice()).collect();
    let scores = model.scores(&histories).unwrap();
    let (mut hit, mut ndcg) = (0.0, 0.0);
    let rows = scores.data().unwrap().chunks(ds.num_items());
    for (i, (s, row)) in samples.iter().zip(rows).enumerate() {
        let rank = naive_rank(row, s.target, excluded.of(i));
        let fast = rank_in_row_excluding(row, s.target as usize, excluded.of(i));
        assert_eq!(fast, Some(rank), "sample {i}");
        if rank < 20 {
            hit += 1.0;
            ndcg += gain(rank);
        }
    }
    let users = samples.len() as f64;
    assert!((got.hit_at(20).unwrap() - hit / users).abs() < 1e-12);
    assert!((got.ndcg_at(20).unwrap() - ndcg / users).abs() < 1e-12);
    // Excluding can only move a target up.
    let all = model.evaluate(samples).unwrap().mean();
    assert!(got.ndcg_at(20).unwrap() >= all.ndcg_at(20).unwrap());
}

#[test]
fn sasrec_excluded_ranks_match_sorting_its_scores() {
    // The hand-made set: 5 items, so every rank is inside the top 20 and the metrics are
    // not trivially 0.
    let dir = hand_dir("sasrec");
    let opts = LoadOptions {
        kcore: 0,
        ..LoadOptions::default()
    };
    let ds = load_dataset(&dir, &opts).unwrap();
    let split = leave_one_out(&ds, 20).unwrap();
    for seed in 0..4 {
        check_sasrec(&ds, &split.test, seed);
    }
    // A real catalogue: every rank equal to sorting the scores.
    let ds = ml_latest_small();
    let split = leave_one_out(&ds, 20).unwrap();
    check_sasrec(&ds, &split.test[..40], 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn excluded_rank_in_a_row_with_ties_by_hand() {
    // Target 2 (0.5) is beaten by 1 (0.9) and by 0 (0.5, a tie won by the lower id), not by
    // 4 (0.5, a tie lost by the higher id): rank 2.
    let row = [0.5, 0.9, 0.5, 0.1, 0.5];
    assert_eq!(rank_in_row_excluding(&row, 2, &[]), Some(2));
    assert_eq!(rank_in_row_excluding(&row, 2, &[0]), Some(1));
    assert_eq!(rank_in_row_excluding(&row, 2, &[3, 4]), Some(2));
    assert_eq!(rank_in_row_excluding(&row, 2, &[0, 1]), Some(0));
    assert_eq!(rank_in_row_excluding(&row, 2, &[2]), None);
}
