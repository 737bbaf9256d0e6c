//! RecBole atomic files as RecBole defines them: its own ml-100k layout (`movie_title`,
//! `release_year`, `class`, a `.user` file), renamed fields mapped by options, RecBole's filters
//! (`rm_dup_inter`, a rating threshold, interaction-count intervals against a naive fixed point
//! computed here), RecBole's statistics, and bad input (one-line errors naming file, line and
//! column, or the documented handling).

use ilrec::rec::{load_dataset, Dataset, Intervals, KeepDuplicate, LoadOptions, Stats};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One interaction of the hand-made ml-100k-style set.
struct Row {
    user: &'static str,
    item: &'static str,
    rating: f64,
    time: u64,
}

const fn r(user: &'static str, item: &'static str, rating: f64, time: u64) -> Row {
    Row {
        user,
        item,
        rating,
        time,
    }
}

/// Users 196, 186, 22, 244 over six movies; in file order, not time order.
const ROWS: [Row; 13] = [
    r("196", "1", 5.0, 881250949),
    r("196", "2", 3.0, 881250950),
    r("186", "2", 4.0, 891717742),
    r("196", "3", 4.0, 881250951),
    r("22", "6", 2.0, 878887116),
    r("22", "1", 5.0, 878887117),
    r("186", "1", 4.0, 891717743),
    r("196", "4", 1.0, 881250952),
    r("22", "2", 5.0, 878887118),
    r("244", "4", 5.0, 880606923),
    r("186", "5", 5.0, 891717744),
    r("22", "3", 4.0, 878887119),
    r("244", "5", 4.0, 880606924),
];

/// (id, movie_title, release_year, class) as in RecBole's ml-100k.item.
const MOVIES: [(&str, &str, &str, &str); 6] = [
    ("1", "Toy Story", "1995", "Animation Children's Comedy"),
    ("2", "GoldenEye", "1995", "Action Adventure Thriller"),
    ("3", "Four Rooms", "1995", "Thriller"),
    ("4", "Get Shorty", "1995", "Action Comedy Drama"),
    ("5", "Copycat", "1995", "Crime Drama Thriller"),
    ("6", "Twelve Monkeys", "1995", "Drama Sci-Fi"),
];

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ilrec-recbole-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn inter_text(header: &str) -> String {
    let mut text = format!("{header}\n");
    for row in &ROWS {
        text += &format!("{}\t{}\t{}\t{}\n", row.user, row.item, row.rating, row.time);
    }
    text
}

fn item_text() -> String {
    let mut text =
        String::from("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n");
    for (id, title, year, class) in MOVIES {
        text += &format!("{id}\t{title}\t{year}\t{class}\n");
    }
    text
}

fn user_text() -> String {
    let mut text =
        String::from("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n");
    for (id, age) in [("196", 49), ("186", 39), ("22", 25), ("244", 28)] {
        text += &format!("{id}\t{age}\tM\twriter\t55105\n");
    }
    text
}

/// RecBole's own ml-100k layout, byte for byte in its format: `ml-100k.inter`, `.item`, `.user`.
fn ml100k_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let header = "user_id:token\titem_id:token\trating:float\ttimestamp:float";
    write(&dir, "ml-100k.inter", &inter_text(header));
    write(&dir, "ml-100k.item", &item_text());
    write(&dir, "ml-100k.user", &user_text());
    dir
}

fn no_kcore() -> LoadOptions {
    LoadOptions {
        kcore: 0,
        ..LoadOptions::default()
    }
}

/// Each user's raw item ids, oldest first.
fn raw_sequences(ds: &Dataset) -> HashMap<String, Vec<String>> {
    ds.users
        .iter()
        .zip(&ds.sequences)
        .map(|(u, seq)| {
            let items = seq.iter().map(|&i| ds.items[i as usize].raw_id.clone());
            (u.clone(), items.collect())
        })
        .collect()
}

/// What the data should give, from `ROWS` directly: each user's items by time.
fn expected_sequences(keep: impl Fn(&Row) -> bool) -> HashMap<String, Vec<String>> {
    let mut by_user: HashMap<String, Vec<&Row>> = HashMap::new();
    for row in ROWS.iter().filter(|r| keep(r)) {
        by_user.entry(row.user.to_string()).or_default().push(row);
    }
    by_user
        .into_iter()
        .map(|(u, mut rows)| {
            rows.sort_by_key(|r| r.time);
            (u, rows.iter().map(|r| r.item.to_string()).collect())
        })
        .collect()
}

#[test]
fn recbole_ml100k_layout_loads_with_defaults() {
    let dir = ml100k_dir("ml100k");
    let ds = load_dataset(&dir, &no_kcore()).unwrap();
    assert_eq!(ds.num_interactions(), ROWS.len());
    assert_eq!(ds.num_items(), MOVIES.len());
    assert_eq!(raw_sequences(&ds), expected_sequences(|_| true));
    // Text: the title field is movie_title; the other token_seq column (class) follows;
    // release_year is a token column and joins only when named.
    let toy = ds.items.iter().find(|i| i.raw_id == "1").unwrap();
    assert_eq!(toy.title, MOVIES[0].1);
    assert_eq!(toy.text, format!("{}; class: {}", MOVIES[0].1, MOVIES[0].3));
    let mut named = no_kcore();
    named.fields.item_text = Some(vec!["movie_title".into(), "release_year".into()]);
    let ds = load_dataset(&dir, &named).unwrap();
    let toy = ds.items.iter().find(|i| i.raw_id == "1").unwrap();
    assert_eq!(toy.text, "Toy Story; release_year: 1995");
}

#[test]
fn renamed_fields_are_mapped_by_options() {
    let dir = temp_dir("renamed");
    // Columns renamed and reordered, an extra float column; the same interactions.
    let mut inter = String::from("ts:float\tstars:float\tuid:token\tiid:token\tclicks:float\n");
    for row in &ROWS {
        inter += &format!(
            "{}\t{}\t{}\t{}\t7\n",
            row.time, row.rating, row.user, row.item
        );
    }
    write(&dir, "renamed.inter", &inter);
    let mut item = String::from("maker:token\tiid:token\tname:token_seq\tgenre:token_seq\n");
    for (id, title, _, class) in MOVIES {
        item += &format!("Acme\t{id}\t{title}\t{class}\n");
    }
    write(&dir, "renamed.item", &item);
    let mut opts = no_kcore();
    opts.fields.user = "uid".into();
    opts.fields.item = "iid".into();
    opts.fields.time = "ts".into();
    opts.fields.rating = "stars".into();
    opts.min_rating = Some(4.0);
    let ds = load_dataset(&dir, &opts).unwrap();
    let reference = LoadOptions {
        min_rating: Some(4.0),
        ..no_kcore()
    };
    let same = load_dataset(&ml100k_dir("renamed-ref"), &reference).unwrap();
    assert_eq!(raw_sequences(&ds), raw_sequences(&same));
    assert_eq!(ds.removed_by_rating, same.removed_by_rating);
    // `name` is a title field; `genre` the other token_seq column; `maker` only when named.
    let toy = ds.items.iter().find(|i| i.raw_id == "1").unwrap();
    assert_eq!(toy.text, format!("Toy Story; genre: {}", MOVIES[0].3));
    opts.fields.item_text = Some(vec!["name".into(), "maker".into()]);
    let ds = load_dataset(&dir, &opts).unwrap();
    let toy = ds.items.iter().find(|i| i.raw_id == "1").unwrap();
    assert_eq!(toy.text, "Toy Story; maker: Acme");
}

#[test]
fn rating_threshold_drops_and_counts_low_ratings() {
    let dir = ml100k_dir("rating");
    let threshold = 4.0;
    let opts = LoadOptions {
        min_rating: Some(threshold),
        ..no_kcore()
    };
    let ds = load_dataset(&dir, &opts).unwrap();
    let low = ROWS.iter().filter(|r| r.rating < threshold).count();
    assert!(low > 0, "the hand-made set must hold low ratings");
    assert_eq!(ds.removed_by_rating, low);
    assert_eq!(ds.rows_read, ROWS.len());
    assert_eq!(ds.num_interactions(), ROWS.len() - low);
    assert_eq!(
        raw_sequences(&ds),
        expected_sequences(|r| r.rating >= threshold)
    );
    assert!(ds
        .load_summary()
        .contains(&format!("{low} below the rating threshold")));
    // Movie 6 was rated low by its only user: read, then dropped with no interaction left.
    let only_low = |id: &str| {
        ROWS.iter()
            .filter(|r| r.item == id)
            .all(|r| r.rating < threshold)
    };
    let gone = MOVIES.iter().filter(|m| only_low(m.0)).count();
    assert!(gone > 0);
    assert_eq!(
        (ds.items_read, ds.num_items()),
        (MOVIES.len(), MOVIES.len() - gone)
    );
    let left = format!("{} of {} items", MOVIES.len() - gone, MOVIES.len());
    assert!(ds.load_summary().contains(&left), "{}", ds.load_summary());
}

#[test]
fn rating_threshold_on_movielens_counts_what_the_file_holds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small");
    let ratings = std::fs::read_to_string(dir.join("ratings.csv")).unwrap();
    // userId,movieId,rating,timestamp: no quotes in this file.
    let low = ratings
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(2).unwrap().parse::<f64>().unwrap() < 4.0)
        .count();
    let opts = LoadOptions {
        min_rating: Some(4.0),
        ..LoadOptions::default()
    };
    let ds = load_dataset(&dir, &opts).unwrap();
    assert!(low > 0);
    assert_eq!(ds.removed_by_rating, low);
    assert_eq!(ds.rows_read, ratings.lines().count() - 1);
    assert_eq!(
        ds.num_interactions(),
        ds.rows_read - ds.removed_duplicates - low - ds.removed_by_kcore
    );
}

#[test]
fn rm_dup_inter_keeps_the_first_or_the_last() {
    let dir = ml100k_dir("dups");
    // User 196 sees movie 2 again, last of all: `first` keeps it second, `last` moves it last.
    let mut inter = inter_text("user_id:token\titem_id:token\trating:float\ttimestamp:float");
    inter += "196\t2\t5\t881259999\n";
    write(&dir, "ml-100k.inter", &inter);
    let first = load_dataset(&dir, &no_kcore()).unwrap();
    let last = load_dataset(
        &dir,
        &LoadOptions {
            keep_duplicate: KeepDuplicate::Last,
            ..no_kcore()
        },
    )
    .unwrap();
    assert_eq!((first.removed_duplicates, last.removed_duplicates), (1, 1));
    let user = |ds: &Dataset| raw_sequences(ds)["196"].clone();
    assert_eq!(user(&first), ["1", "2", "3", "4"]);
    assert_eq!(user(&last), ["1", "3", "4", "2"]);
}

/// A deterministic pseudo-random interaction list: (user, item) pairs, no repeats.
fn random_pairs(users: u32, items: u32, per_user: u32, seed: u64) -> Vec<(u32, u32)> {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut pairs = Vec::new();
    for u in 0..users {
        let n = 1 + next() % per_user;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..n {
            // Skewed towards low item ids, so some items are popular and some rare.
            let item = (next() % items).min(next() % items);
            if seen.insert(item) {
                pairs.push((u, item));
            }
        }
    }
    pairs
}

/// The interaction-count filter written the slow, obvious way: recount, drop, until stable.
/// Also returns how many rounds removed something (more than one: a cascade).
fn naive_filter(
    mut pairs: Vec<(u32, u32)>,
    users: &Intervals,
    items: &Intervals,
) -> (Vec<(u32, u32)>, usize) {
    let mut rounds = 0;
    loop {
        let user_count = |u: u32| pairs.iter().filter(|p| p.0 == u).count();
        let item_count = |i: u32| pairs.iter().filter(|p| p.1 == i).count();
        let keep: Vec<(u32, u32)> = pairs
            .iter()
            .copied()
            .filter(|p| users.contains(user_count(p.0)) && items.contains(item_count(p.1)))
            .collect();
        if keep.len() == pairs.len() {
            return (keep, rounds);
        }
        pairs = keep;
        rounds += 1;
    }
}

fn pairs_dir(name: &str, pairs: &[(u32, u32)], items: u32) -> PathBuf {
    let dir = temp_dir(name);
    let mut inter = String::from("user_id:token\titem_id:token\ttimestamp:float\n");
    for (t, (u, i)) in pairs.iter().enumerate() {
        inter += &format!("u{u}\ti{i}\t{t}\n");
    }
    write(&dir, "p.inter", &inter);
    let mut item = String::from("item_id:token\ttitle:token_seq\n");
    for i in 0..items {
        item += &format!("i{i}\tItem {i}\n");
    }
    write(&dir, "p.item", &item);
    dir
}

#[test]
fn inter_num_intervals_match_a_naive_fixed_point() {
    let (users, items) = (60, 80);
    let pairs = random_pairs(users, items, 8, 7);
    let dir = pairs_dir("intervals", &pairs, items);
    let cases = [
        ("[3,inf)", "[3,inf)"),
        ("[2,8)", "[0,inf)"),
        ("[0,inf)", "(4,20]"),
        ("[1,3);[6,inf)", "[2,inf)"),
    ];
    let mut most_rounds = 0;
    for (u, i) in cases {
        let (ui, ii) = (Intervals::parse(u).unwrap(), Intervals::parse(i).unwrap());
        let (want, rounds) = naive_filter(pairs.clone(), &ui, &ii);
        most_rounds = most_rounds.max(rounds);
        let opts = LoadOptions {
            user_inter_num: Some(ui),
            item_inter_num: Some(ii),
            ..LoadOptions::default()
        };
        let ds = load_dataset(&dir, &opts).unwrap();
        let mut got: Vec<(String, String)> = raw_sequences(&ds)
            .into_iter()
            .flat_map(|(u, items)| items.into_iter().map(move |i| (u.clone(), i)))
            .collect();
        got.sort();
        let mut want: Vec<(String, String)> = want
            .iter()
            .map(|(u, i)| (format!("u{u}"), format!("i{i}")))
            .collect();
        want.sort();
        assert!(
            !want.is_empty() && want.len() < pairs.len(),
            "{u} {i}: a real filter"
        );
        assert_eq!(got, want, "user {u} item {i}");
        assert_eq!(ds.removed_by_kcore, pairs.len() - want.len());
    }
    // The data must make removals cascade, or one pass would pass this test.
    assert!(most_rounds > 2, "no case cascaded ({most_rounds} rounds)");
    // --kcore K is [K,inf) on both sides; an interval replaces only its own side.
    let kcore = load_dataset(
        &dir,
        &LoadOptions {
            kcore: 3,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let at_least = Intervals::at_least(3);
    assert_eq!(
        kcore.num_interactions(),
        naive_filter(pairs.clone(), &at_least, &at_least).0.len()
    );
    let user_only = LoadOptions {
        kcore: 3,
        item_inter_num: Some(Intervals::parse("[0,inf)").unwrap()),
        ..LoadOptions::default()
    };
    let ds = load_dataset(&dir, &user_only).unwrap();
    let (want, _) = naive_filter(pairs, &at_least, &Intervals::parse("[0,inf)").unwrap());
    assert_eq!(ds.num_interactions(), want.len());
}

#[test]
fn statistics_under_recbole_names() {
    let ds = load_dataset(&ml100k_dir("stats"), &no_kcore()).unwrap();
    let stats = Stats::of(&ds);
    let (users, items, inters) = (ds.num_users(), ds.num_items(), ds.num_interactions());
    assert_eq!(
        (stats.users, stats.items, stats.interactions),
        (users, items, inters)
    );
    assert!((stats.avg_seq_len - inters as f64 / users as f64).abs() < 1e-12);
    let sparsity = 1.0 - inters as f64 / (users * items) as f64;
    assert!((stats.sparsity - sparsity).abs() < 1e-12);
    // RecBole counts its [PAD] id in users and items, and in the sparsity.
    let rb = stats.recbole_json();
    assert_eq!(rb["The number of users"], users + 1);
    assert_eq!(rb["The number of items"], items + 1);
    assert_eq!(rb["The number of inters"], inters);
    let avg_items = rb["Average actions of items"].as_f64().unwrap();
    assert!((avg_items - inters as f64 / items as f64).abs() < 1e-12);
    let pct = 100.0 * (1.0 - inters as f64 / ((users + 1) * (items + 1)) as f64);
    assert_eq!(rb["The sparsity of the dataset"], format!("{pct}%"));
}
