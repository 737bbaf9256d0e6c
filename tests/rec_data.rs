//! The recommendation data side against hand-written expectations: loaders (both formats),
//! dedup, k-core, leave-one-out, metrics, the popularity baseline, the item trie, bad input,
//! and the published counts of the real data sets.

mod common;

use ilrec::rec::{
    leave_one_out, load_dataset, rank_of, Dataset, ItemTrie, LoadOptions, Popularity,
    RankingMetrics, Sample,
};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- hand-made data set
//
// Items (movies.csv order, which fixes the dense ids): D=40, A=10, F=60, B=20, C=30, E=50, G=70.
// Rows (line: user, item, time), deliberately not in time order:
//   u1: A1 B2 C3 D3 E5          (C and D tie at t=3: file order, C first)
//   u2: A1 B2 G2.5 C3 B9 D4     (B repeated at t=9: dropped, the earliest is kept)
//   u3: C7 B5 A5 D8 G6          (B and A tie at t=5: file order, B first)
//   u4: A1 F2 E3 G4
//   u5: C1 A2                   (2 interactions: never in the split)
// 3-core, by hand. Counts after dedup: A5 B3 C4 D3 E2 F1 G3; users 5,5,5,4,2.
//   pass 1: E, F (items < 3) and u5 (user < 3) go; u1 = A B C D, u4 = A G.
//   pass 2: u4 has 2 -> goes.                    pass 3: G now has 2 (u2, u3) -> goes.
//   pass 4: stable. u1 = A B C D, u2 = A B C D, u3 = B A C D.
// Dense ids with k = 3: D=0 A=1 B=2 C=3; users u1=0 u2=1 u3=2.
// Dense ids with k = 0: D=0 A=1 F=2 B=3 C=4 E=5 G=6; users u1..u5 = 0..4.

const MOVIES_CSV: &str = "movieId,title,genres
40,\"Delta, The (1990)\",Drama
10,Alpha (1991),Comedy|Drama
60,Foxtrot (1992),(no genres listed)
20,\"\"\"Beta\"\" Story (1993)\",Horror
30,Charlie (1994),Comedy
50,Echo (1995),Drama
70,Golf (1996),Drama
";

/// (user, movie, time) in file order; the header is line 1, so row i is on line i + 2.
const ROWS: [(&str, &str, &str); 22] = [
    ("u1", "10", "1"),
    ("u1", "20", "2"),
    ("u1", "30", "3"),
    ("u1", "40", "3"),
    ("u1", "50", "5"),
    ("u2", "10", "1"),
    ("u2", "20", "2"),
    ("u2", "70", "2.5"),
    ("u2", "30", "3"),
    ("u2", "20", "9"),
    ("u2", "40", "4"),
    ("u3", "30", "7"),
    ("u3", "20", "5"),
    ("u3", "10", "5"),
    ("u3", "40", "8"),
    ("u3", "70", "6"),
    ("u4", "10", "1"),
    ("u4", "60", "2"),
    ("u4", "50", "3"),
    ("u4", "70", "4"),
    ("u5", "30", "1"),
    ("u5", "10", "2"),
];

/// A fresh empty folder under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ilrec-rec-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

/// The hand-made set as MovieLens CSV (with a `rating` column that must be ignored).
fn movielens_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let mut ratings = String::from("userId,movieId,rating,timestamp\n");
    for (u, m, t) in ROWS {
        ratings.push_str(&format!("{u},{m},0.5,{t}\n"));
    }
    write(&dir, "ratings.csv", &ratings);
    write(&dir, "movies.csv", MOVIES_CSV);
    dir
}

/// The same set as RecBole atomic files, columns reordered, plus an extra column each.
fn recbole_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let mut inter = String::from("timestamp:float\trating:float\titem_id:token\tuser_id:token\n");
    for (u, m, t) in ROWS {
        inter.push_str(&format!("{t}\t5\t{m}\t{u}\n"));
    }
    write(&dir, "toy.inter", &inter);
    let mut item = String::from("brand:token\ttitle:token_seq\tprice:float\titem_id:token\n");
    let mut movies = MOVIES_CSV.lines().skip(1);
    for (id, title) in [
        ("40", "Delta"),
        ("10", "Alpha"),
        ("60", "Foxtrot"),
        ("20", "Beta"),
        ("30", "Charlie"),
        ("50", "Echo"),
        ("70", "Golf"),
    ] {
        assert!(movies.next().unwrap().starts_with(id));
        item.push_str(&format!("Acme\t{title}\t1.5\t{id}\n"));
    }
    write(&dir, "toy.item", &item);
    dir
}

fn opts(kcore: usize) -> LoadOptions {
    LoadOptions {
        kcore,
        ..LoadOptions::default()
    }
}

fn s(user: u32, history: &[u32], target: u32) -> Sample {
    Sample {
        user,
        history: history.to_vec(),
        target,
    }
}

fn check_3core(ds: &Dataset) {
    let raw: Vec<&str> = ds.items.iter().map(|i| i.raw_id.as_str()).collect();
    assert_eq!(raw, ["40", "10", "20", "30"]);
    assert_eq!(ds.users, ["u1", "u2", "u3"]);
    assert_eq!(
        ds.sequences,
        vec![vec![1, 2, 3, 0], vec![1, 2, 3, 0], vec![2, 1, 3, 0]]
    );
    assert_eq!(ds.num_interactions(), 12);
    assert_eq!(ds.removed_duplicates, 1);
    assert_eq!(ds.removed_by_kcore, 21 - 12);
    let split = leave_one_out(ds, 20).unwrap();
    assert_eq!(
        split.train,
        vec![s(0, &[1], 2), s(1, &[1], 2), s(2, &[2], 1)]
    );
    assert_eq!(
        split.valid,
        vec![s(0, &[1, 2], 3), s(1, &[1, 2], 3), s(2, &[2, 1], 3)]
    );
    assert_eq!(
        split.test,
        vec![
            s(0, &[1, 2, 3], 0),
            s(1, &[1, 2, 3], 0),
            s(2, &[2, 1, 3], 0)
        ]
    );
    assert_eq!(split.skipped_users, 0);
}

#[test]
fn movielens_3core_split_by_hand() {
    let dir = movielens_dir("ml3");
    let ds = load_dataset(&dir, &opts(3)).unwrap();
    check_3core(&ds);
    // Quoted titles and the item text.
    assert_eq!(ds.items[0].title, "Delta, The (1990)");
    assert_eq!(ds.items[0].text, "Delta, The (1990); genres: Drama");
    assert_eq!(ds.items[2].title, "\"Beta\" Story (1993)");
    assert_eq!(ds.items[1].text, "Alpha (1991); genres: Comedy, Drama");
}

#[test]
fn recbole_3core_split_by_hand() {
    let dir = recbole_dir("rb3");
    let ds = load_dataset(&dir, &opts(3)).unwrap();
    check_3core(&ds);
    assert_eq!(ds.items[0].title, "Delta");
    // `brand` is a `token` column: text by default are the title and the `token_seq` columns
    // (none other here); a named list takes any token column.
    assert_eq!(ds.items[0].text, "Delta");
    let mut named = opts(3);
    named.fields.item_text = Some(vec!["title".into(), "brand".into()]);
    let ds = load_dataset(&dir, &named).unwrap();
    assert_eq!(ds.items[0].text, "Delta; brand: Acme");
}

#[test]
fn no_kcore_split_and_truncation_by_hand() {
    let ds = load_dataset(&movielens_dir("ml0"), &opts(0)).unwrap();
    assert_eq!(ds.num_items(), 7);
    assert_eq!(ds.num_users(), 5);
    assert_eq!(ds.num_interactions(), 21);
    // Dense: D=0 A=1 F=2 B=3 C=4 E=5 G=6.
    assert_eq!(
        ds.sequences,
        vec![
            vec![1, 3, 4, 0, 5],
            vec![1, 3, 6, 4, 0],
            vec![3, 1, 6, 4, 0],
            vec![1, 2, 5, 6],
            vec![4, 1]
        ]
    );
    let split = leave_one_out(&ds, 20).unwrap();
    assert_eq!(split.skipped_users, 1);
    assert_eq!(
        split.train,
        vec![
            s(0, &[1], 3),
            s(0, &[1, 3], 4),
            s(1, &[1], 3),
            s(1, &[1, 3], 6),
            s(2, &[3], 1),
            s(2, &[3, 1], 6),
            s(3, &[1], 2),
        ]
    );
    assert_eq!(split.valid[0], s(0, &[1, 3, 4], 0));
    assert_eq!(split.test[3], s(3, &[1, 2, 5], 6));
    // max_history 2 keeps the most recent two; no sample is lost.
    let short = leave_one_out(&ds, 2).unwrap();
    assert_eq!(short.train.len(), 7);
    assert_eq!(short.train[1], s(0, &[1, 3], 4));
    assert_eq!(short.valid[0], s(0, &[3, 4], 0));
    assert_eq!(short.test[0], s(0, &[4, 0], 5));
    assert!(leave_one_out(&ds, 0).is_err());
}

#[test]
fn popularity_by_hand() {
    // 3-core set; training split = interactions before the validation item:
    // u1 A B, u2 A B, u3 B A -> A(1) = 3, B(2) = 3, D(0) = C(3) = 0.
    // Ranking (ties by lowest id): 1, 2, 0, 3. Every test target is D (0): rank 2.
    let ds = load_dataset(&movielens_dir("pop"), &opts(3)).unwrap();
    let pop = Popularity::from_dataset(&ds);
    assert_eq!(pop.counts, vec![0, 3, 3, 0]);
    assert_eq!(pop.ranking, vec![1, 2, 0, 3]);
    let m = pop.evaluate(&leave_one_out(&ds, 20).unwrap().test).mean();
    assert_eq!(m.users, 3);
    assert_eq!(m.hit_at(1), Some(0.0));
    assert_eq!(m.hit_at(5), Some(1.0));
    assert!((m.ndcg_at(5).unwrap() - 0.5).abs() < 1e-12); // 1 / log2(2 + 2)
}

// ---------------------------------------------------------------- metrics

#[test]
fn metrics_by_hand() {
    let ranked = [7u32, 3, 9, 1, 4, 8, 2];
    assert_eq!(rank_of(7, &ranked), Some(0));
    assert_eq!(rank_of(4, &ranked), Some(4));
    assert_eq!(rank_of(8, &ranked), Some(5));
    assert_eq!(rank_of(6, &ranked), None);
    // Four users: rank 0, rank K-1 = 4, rank K = 5, absent (K = 5).
    let mut m = RankingMetrics::new();
    for r in [Some(0), Some(4), Some(5), None] {
        m.add(r);
    }
    let mean = m.mean();
    let (l6, l7) = (6f64.log2(), 7f64.log2());
    let close = |a: Option<f64>, b: f64| assert!((a.unwrap() - b).abs() < 1e-12, "{a:?} vs {b}");
    close(mean.hit_at(1), 0.25);
    close(mean.ndcg_at(1), 0.25);
    close(mean.hit_at(5), 0.5);
    close(mean.ndcg_at(5), (1.0 + 1.0 / l6) / 4.0);
    close(mean.hit_at(10), 0.75);
    close(mean.ndcg_at(10), (1.0 + 1.0 / l6 + 1.0 / l7) / 4.0);
    close(mean.hit_at(20), 0.75);
    assert_eq!(mean.hit_at(3), None);
    let json = mean.to_json();
    assert_eq!(json["users"], 4);
    assert_eq!(json["hit@5"], 0.5);
    // An empty accumulator means zeros, not NaN.
    assert_eq!(RankingMetrics::new().mean().hit, [0.0; 4]);
}

// ---------------------------------------------------------------- item trie

/// Items whose sequence (with EOS) starts with `prefix`, by brute force, sorted by id.
fn naive_items_below(seqs: &[Vec<u32>], eos: u32, prefix: &[u32]) -> Vec<u32> {
    (0..seqs.len() as u32)
        .filter(|&i| {
            let mut full = seqs[i as usize].clone();
            full.push(eos);
            full.starts_with(prefix)
        })
        .collect()
}

/// Checks every node: item sets against brute force (when `brute_force`; it costs
/// nodes x items), child counts summing to the parent's, children sorted, and every item
/// reachable through its own sequence to its own leaf.
fn check_trie(seqs: &[Vec<u32>], eos: u32, brute_force: bool) {
    let trie = ItemTrie::build(seqs, eos).unwrap();
    assert_eq!(trie.num_items(), seqs.len());
    assert_eq!(trie.items(trie.root()).len(), seqs.len());
    let total_tokens: usize = seqs.iter().map(|s| s.len() + 1).sum();
    assert!(trie.num_nodes() <= total_tokens + 1);
    let mut stack = vec![(trie.root(), Vec::<u32>::new())];
    while let Some((node, prefix)) = stack.pop() {
        if brute_force {
            let mut below = trie.items(node).to_vec();
            below.sort();
            assert_eq!(
                below,
                naive_items_below(seqs, eos, &prefix),
                "prefix {prefix:?}"
            );
        }
        let kids = trie.children(node);
        assert!(kids.windows(2).all(|w| w[0].0 < w[1].0));
        if kids.is_empty() {
            assert_eq!(trie.items(node).len(), 1);
        } else {
            let sum: usize = kids.iter().map(|&(_, c)| trie.items(c).len()).sum();
            assert_eq!(sum, trie.items(node).len(), "prefix {prefix:?}");
        }
        for &(token, child) in kids {
            let mut p = prefix.clone();
            p.push(token);
            stack.push((child, p));
        }
    }
    for (item, seq) in seqs.iter().enumerate() {
        let mut full = seq.clone();
        full.push(eos);
        assert_eq!(trie.item_seq(item as u32), &full[..]);
        let leaf = trie.walk(&full).expect("item reachable");
        assert_eq!(trie.item_at_leaf(leaf), Some(item as u32));
        for cut in 0..full.len() {
            assert!(trie.allowed_next(&full[..cut]).contains(&full[cut]));
        }
    }
}

#[test]
fn trie_titles_that_prefix_other_titles() {
    // Byte-level "titles"; EOS = 256. "Alien" is a prefix of the other two.
    let titles = ["Alien", "Aliens", "Alien 3", "Heat", "He"];
    let seqs: Vec<Vec<u32>> = titles
        .iter()
        .map(|t| t.bytes().map(u32::from).collect())
        .collect();
    check_trie(&seqs, 256, true);
    let trie = ItemTrie::build(&seqs, 256).unwrap();
    let alien: Vec<u32> = "Alien".bytes().map(u32::from).collect();
    assert_eq!(
        trie.allowed_next(&alien),
        vec![u32::from(b' '), u32::from(b's'), 256]
    );
    let mut below = trie.items_below(&alien).to_vec();
    below.sort();
    assert_eq!(below, vec![0, 1, 2]);
    assert_eq!(trie.items_below(&[u32::from(b'H')]).len(), 2);
    assert_eq!(trie.items_below(&[u32::from(b'Z')]), &[] as &[u32]);
}

#[test]
fn trie_sid_like_sequences_with_shared_prefixes() {
    // 200 items of 3 codes from a small LCG over a 4 x 8 code space: many shared prefixes,
    // duplicates removed first (the trie rejects them).
    let mut state = 12345u64;
    let mut seqs: Vec<Vec<u32>> = Vec::new();
    while seqs.len() < 200 {
        let mut seq = Vec::new();
        for level in 0..3u32 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seq.push(level * 8 + ((state >> 33) % 8) as u32 + 1);
        }
        if !seqs.contains(&seq) {
            seqs.push(seq);
        }
    }
    check_trie(&seqs, 0, true);
    let mut dup = seqs.clone();
    dup.push(seqs[17].clone());
    let err = ItemTrie::build(&dup, 0).unwrap_err().to_string();
    assert!(err.contains("items 17 and 200"), "{err}");
}

// ---------------------------------------------------------------- bad input

fn err_of(dir: &Path, kcore: usize) -> String {
    load_dataset(dir, &opts(kcore)).unwrap_err().to_string()
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} does not mention {p:?}");
    }
}

// Bad input is an error naming the file, and the line and column where there is one.

#[test]
fn bad_input_missing_files_are_named() {
    let dir = movielens_dir("bad-missing");
    std::fs::remove_file(dir.join("movies.csv")).unwrap();
    assert_mentions(&err_of(&dir, 5), &["movies.csv", "missing"]);
    assert_mentions(&err_of(&dir.join("nope"), 5), &["nope"]);
    assert_mentions(
        &err_of(&temp_dir("bad-empty-dir"), 5),
        &["ratings.csv", ".inter"],
    );
}

#[test]
fn bad_input_movielens_rows_name_file_line_column() {
    let dir = movielens_dir("bad-column");
    write(&dir, "ratings.csv", "userId,movieId,rating\nu1,10,5\n");
    assert_mentions(&err_of(&dir, 0), &["ratings.csv", "line 1", "'timestamp'"]);

    let dir = movielens_dir("bad-time");
    write(
        &dir,
        "ratings.csv",
        "userId,movieId,rating,timestamp\nu1,10,5,1\nu1,20,5,yesterday\n",
    );
    assert_mentions(
        &err_of(&dir, 0),
        &["ratings.csv", "line 3", "'timestamp'", "yesterday"],
    );

    let dir = movielens_dir("bad-short-row");
    write(
        &dir,
        "ratings.csv",
        "userId,movieId,rating,timestamp\nu1,10\n",
    );
    assert_mentions(&err_of(&dir, 0), &["ratings.csv", "line 2", "'timestamp'"]);

    let dir = movielens_dir("bad-unknown-item");
    write(
        &dir,
        "ratings.csv",
        "userId,movieId,rating,timestamp\nu1,10,5,1\nu1,99,5,2\n",
    );
    assert_mentions(
        &err_of(&dir, 0),
        &["ratings.csv", "line 3", "'movieId'", "99"],
    );

    let dir = movielens_dir("bad-quote");
    write(
        &dir,
        "movies.csv",
        "movieId,title,genres\n10,\"Open title,Drama\n",
    );
    assert_mentions(&err_of(&dir, 0), &["movies.csv", "line 2"]);
}

#[test]
fn bad_input_nothing_left_to_train_on_names_the_file() {
    // Empty after filtering: names the interaction file and the option to change.
    assert_mentions(
        &err_of(&movielens_dir("bad-kcore"), 6),
        &["ratings.csv", "--kcore"],
    );

    // Data left, but no user long enough to split.
    let dir = movielens_dir("bad-split");
    write(
        &dir,
        "ratings.csv",
        "userId,movieId,rating,timestamp\nu1,10,5,1\nu1,20,5,2\nu2,10,5,1\n",
    );
    let ds = load_dataset(&dir, &opts(0)).unwrap();
    assert_mentions(
        &leave_one_out(&ds, 20).unwrap_err().to_string(),
        &["ratings.csv", "3 interactions"],
    );
}

#[test]
fn bad_input_recbole_files_name_file_line_column() {
    let dir = recbole_dir("bad-recbole-time");
    write(
        &dir,
        "toy.inter",
        "user_id:token\titem_id:token\ttimestamp:float\nu1\t10\t1\nu1\t20\tNaN\n",
    );
    assert_mentions(
        &err_of(&dir, 0),
        &["toy.inter", "line 3", "'timestamp'", "NaN"],
    );
    let dir = recbole_dir("bad-recbole-item");
    std::fs::remove_file(dir.join("toy.item")).unwrap();
    assert_mentions(&err_of(&dir, 0), &["toy.item", "missing"]);
    let dir = recbole_dir("bad-recbole-col");
    write(
        &dir,
        "toy.item",
        "item_id:token\tlabel:token_seq\n10\tAlpha\n",
    );
    assert_mentions(
        &err_of(&dir, 0),
        &[
            "toy.item",
            "line 1",
            "no title column",
            "movie_title",
            "label",
        ],
    );
    let dir = recbole_dir("bad-recbole-dup");
    write(
        &dir,
        "toy.item",
        "item_id:token\ttitle:token_seq\n10\tAlpha\n10\tAgain\n",
    );
    assert_mentions(&err_of(&dir, 0), &["toy.item", "line 3", "line 2", "'10'"]);
}

// ---------------------------------------------------------------- the real data sets

/// (users in split, items, interactions, training samples) as published in
/// ../shared/data/README.md.
fn counts(ds: &Dataset) -> (usize, usize, usize, usize) {
    let split = leave_one_out(ds, 20).unwrap();
    assert_eq!(split.valid.len(), split.test.len());
    (
        split.test.len(),
        ds.num_items(),
        ds.num_interactions(),
        split.train.len(),
    )
}

#[test]
fn ml_latest_small_embedded_counts() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small");
    assert!(
        dir.join("README.txt").exists(),
        "the MovieLens licence file must ship with the data"
    );
    let ds = load_dataset(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(counts(&ds), (671, 3496, 90_072, 88_059));
    assert_eq!(ds.num_users(), 671);
    check_title_tries(&ds);
    // Without the k-core, two rated films share a title ("Hamlet (2000)", "War of the Worlds
    // (2005)"): raw titles cannot make a trie, unique_titles can.
    let all = load_dataset(&dir, &opts(0)).unwrap();
    assert_eq!(all.num_items(), 9066);
    let hamlet: Vec<&str> = all
        .items
        .iter()
        .filter(|i| i.title == "Hamlet (2000)")
        .map(|i| i.raw_id.as_str())
        .collect();
    assert_eq!(hamlet, ["3598", "65665"]);
    assert!(all
        .unique_titles()
        .contains(&"Hamlet (2000) [65665]".to_string()));
    check_title_tries(&all);
}

/// Title-mode tries over a real data set: raw titles build iff they are distinct (checked with a
/// HashSet); `unique_titles` always builds, and every item is reachable.
fn check_title_tries(ds: &Dataset) {
    let bytes = |t: &String| t.bytes().map(u32::from).collect::<Vec<u32>>();
    let raw: Vec<Vec<u32>> = ds.items.iter().map(|i| bytes(&i.title)).collect();
    let distinct = raw.iter().collect::<std::collections::HashSet<_>>().len() == raw.len();
    match ItemTrie::build(&raw, 256) {
        Ok(_) => assert!(distinct),
        Err(e) => {
            assert!(!distinct);
            assert_mentions(&e.to_string(), &["same token sequence"]);
        }
    }
    let seqs: Vec<Vec<u32>> = ds.unique_titles().iter().map(bytes).collect();
    check_trie(&seqs, 256, false);
}

#[test]
fn amazon_counts_with_kcore_off() {
    for (name, expected) in [
        ("amazon18-office-products", (3228, 3317, 21_188, 11_498)),
        (
            "amazon18-industrial-scientific",
            (3270, 3541, 21_664, 11_826),
        ),
    ] {
        let Some(dir) = common::shared_data(name) else {
            continue;
        };
        let ds = load_dataset(&dir, &opts(0)).unwrap();
        assert_eq!(counts(&ds), expected, "{name}");
        assert!(ds
            .items
            .iter()
            .all(|i| !i.title.is_empty() && i.text.chars().count() <= 512));
        check_title_tries(&ds);
    }
}
