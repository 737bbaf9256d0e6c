//! Bad RecBole atomic files: each case is a one-line error naming the file, the line and the
//! column, or the documented handling (CRLF, byte-order mark, quoted fields, missing text with
//! `--allow-missing-text`), with anything dropped counted.

use ilrec::rec::{load_dataset, Dataset, LoadOptions};
use std::path::{Path, PathBuf};

const INTER: &str = "user_id:token\titem_id:token\trating:float\ttimestamp:float
u1\ta\t5\t1
u1\tb\t4\t2
u1\tc\t3\t3
u2\tb\t5\t1
u2\tc\t2\t2
u2\ta\t4\t3
";

const ITEM: &str = "item_id:token\ttitle:token_seq\tcategories:token_seq
a\tAlpha pen\tOffice Pens
b\tBeta pad\tOffice Paper
c\tGamma clip\tOffice
";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ilrec-recbole-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A folder with `t.inter` and `t.item` (either replaced when given).
fn folder(name: &str, inter: Option<&str>, item: Option<&str>) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("t.inter"), inter.unwrap_or(INTER)).unwrap();
    std::fs::write(dir.join("t.item"), item.unwrap_or(ITEM)).unwrap();
    dir
}

fn opts() -> LoadOptions {
    LoadOptions {
        kcore: 0,
        ..LoadOptions::default()
    }
}

fn error(dir: &Path, opts: &LoadOptions) -> String {
    let e = load_dataset(dir, opts).unwrap_err().to_string();
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    e
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} does not mention {p:?}");
    }
}

/// The sequences and item texts, the parts a handling rule must leave unchanged.
fn content(ds: &Dataset) -> (Vec<Vec<u32>>, Vec<String>) {
    (
        ds.sequences.clone(),
        ds.items.iter().map(|i| i.text.clone()).collect(),
    )
}

#[test]
fn header_types_missing_or_wrong() {
    let untyped = INTER.replacen("user_id:token", "user_id", 1);
    let e = error(&folder("untyped", Some(&untyped), None), &opts());
    assert_mentions(&e, &["t.inter", "line 1, column 1 'user_id'", "no type"]);
    let mistyped = INTER.replacen("item_id:token", "item_id:int", 1);
    let e = error(&folder("mistyped", Some(&mistyped), None), &opts());
    assert_mentions(&e, &["t.inter", "line 1, column 2", "unknown type 'int'"]);
    let wrong_kind = INTER.replacen("timestamp:float", "timestamp:token", 1);
    let e = error(&folder("wrong-kind", Some(&wrong_kind), None), &opts());
    assert_mentions(
        &e,
        &[
            "t.inter",
            "line 1, column 4",
            "--time-field needs type float",
        ],
    );
}

#[test]
fn an_option_naming_a_missing_field() {
    let dir = folder("option", None, None);
    let (mut user, mut time, mut text) = (opts(), opts(), opts());
    user.fields.user = "uid".into();
    time.fields.time = "when".into();
    text.fields.item_text = Some(vec!["name".into()]);
    for (o, flag) in [
        (user, "--user-field uid"),
        (time, "--time-field when"),
        (text, "--item-text-fields name"),
    ] {
        assert_mentions(&error(&dir, &o), &["line 1", flag, "columns found"]);
    }
    // The rating column is needed only with a threshold.
    let no_rating: String = INTER
        .lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split('\t').collect();
            fields.remove(2);
            fields.join("\t") + "\n"
        })
        .collect();
    let dir = folder("no-rating", Some(&no_rating), None);
    assert!(load_dataset(&dir, &opts()).is_ok());
    let threshold = LoadOptions {
        min_rating: Some(4.0),
        ..opts()
    };
    assert_mentions(
        &error(&dir, &threshold),
        &["t.inter", "--rating-field rating"],
    );
}

#[test]
fn non_numeric_timestamps_and_ratings() {
    let bad = INTER.replacen("u1\tb\t4\t2", "u1\tb\t4\tyesterday", 1);
    let e = error(&folder("time", Some(&bad), None), &opts());
    assert_mentions(
        &e,
        &["t.inter", "line 3, column 4 'timestamp'", "yesterday"],
    );
    let bad = INTER.replacen("u2\tb\t5\t1", "u2\tb\tfive\t1", 1);
    let dir = folder("rating", Some(&bad), None);
    assert!(
        load_dataset(&dir, &opts()).is_ok(),
        "ratings unread without a threshold"
    );
    let threshold = LoadOptions {
        min_rating: Some(4.0),
        ..opts()
    };
    assert_mentions(
        &error(&dir, &threshold),
        &["line 5, column 3 'rating'", "five"],
    );
}

#[test]
fn items_without_text() {
    // An .inter item that .item lacks.
    let unknown = format!("{INTER}u2\tz\t5\t9\n");
    let dir = folder("unknown", Some(&unknown), None);
    let e = error(&dir, &opts());
    assert_mentions(
        &e,
        &[
            "t.inter",
            "line 8, column 'item_id'",
            "'z'",
            "--allow-missing-text",
        ],
    );
    let allow = LoadOptions {
        allow_missing_text: true,
        ..opts()
    };
    let ds = load_dataset(&dir, &allow).unwrap();
    assert_eq!(ds.items_without_text, 1);
    assert_eq!(ds.items.last().unwrap().title, "z");
    // A blank title.
    let blank = ITEM.replacen("Beta pad", "", 1);
    let dir = folder("blank", None, Some(&blank));
    assert_mentions(
        &error(&dir, &opts()),
        &["t.item", "line 3, column 2 'title'", "'b'"],
    );
    let ds = load_dataset(&dir, &allow).unwrap();
    let b = ds.items.iter().find(|i| i.raw_id == "b").unwrap();
    assert_eq!(
        (b.title.as_str(), b.text.as_str()),
        ("b", "b; categories: Office Paper")
    );
    // No .item at all.
    let dir = folder("no-item", None, None);
    std::fs::remove_file(dir.join("t.item")).unwrap();
    assert_mentions(
        &error(&dir, &opts()),
        &["t.item", "missing", "--allow-missing-text"],
    );
    let ds = load_dataset(&dir, &allow).unwrap();
    assert_eq!(ds.items_without_text, ds.num_items());
}

#[test]
fn empty_files() {
    let e = error(&folder("empty-inter", Some(""), None), &opts());
    assert_mentions(&e, &["t.inter", "line 1", "empty"]);
    let e = error(&folder("empty-item", None, Some("")), &opts());
    assert_mentions(&e, &["t.item", "line 1", "empty"]);
    let header_only = INTER.lines().next().unwrap();
    let e = error(&folder("header-only", Some(header_only), None), &opts());
    assert_mentions(&e, &["t.inter", "no interaction rows"]);
}

#[test]
fn crlf_bom_and_blank_lines_read_like_plain_files() {
    let plain = load_dataset(&folder("plain", None, None), &opts()).unwrap();
    let crlf = (INTER.replace('\n', "\r\n"), ITEM.replace('\n', "\r\n"));
    let ds = load_dataset(&folder("crlf", Some(&crlf.0), Some(&crlf.1)), &opts()).unwrap();
    assert_eq!(content(&ds), content(&plain));
    let bom = (format!("\u{feff}{INTER}"), format!("\u{feff}{ITEM}"));
    let ds = load_dataset(&folder("bom", Some(&bom.0), Some(&bom.1)), &opts()).unwrap();
    assert_eq!(content(&ds), content(&plain));
    let blank = INTER.replacen("u1\tb", "\n \t \nu1\tb", 1);
    let ds = load_dataset(&folder("blank-lines", Some(&blank), None), &opts()).unwrap();
    assert_eq!(content(&ds), content(&plain));
}

#[test]
fn quoted_fields_and_tabs_in_text() {
    // A field that starts with a quote is quoted (tabs, doubled quotes); other quotes are text.
    let item = ITEM
        .replacen("Alpha pen", "\"Alpha\tpen, \"\"the\"\" best\"", 1)
        .replacen("Beta pad", "12\" Beta pad", 1);
    let ds = load_dataset(&folder("quoted", None, Some(&item)), &opts()).unwrap();
    let title = |id: &str| {
        ds.items
            .iter()
            .find(|i| i.raw_id == id)
            .unwrap()
            .title
            .clone()
    };
    assert_eq!(title("a"), "Alpha pen, \"the\" best");
    assert_eq!(title("b"), "12\" Beta pad");
    // An unquoted tab inside a text shifts the columns: an error naming the line.
    let item = ITEM.replacen("Gamma clip", "Gamma\tclip", 1);
    let e = error(&folder("tab", None, Some(&item)), &opts());
    assert_mentions(
        &e,
        &[
            "t.item",
            "line 4",
            "4 tab-separated fields, the header has 3",
        ],
    );
    let item = ITEM.replacen("Gamma clip", "\"Gamma clip", 1);
    let e = error(&folder("open-quote", None, Some(&item)), &opts());
    assert_mentions(&e, &["t.item", "line 4", "never closed"]);
}

#[test]
fn user_file_must_list_every_user() {
    let dir = folder("users", None, None);
    std::fs::write(
        dir.join("t.user"),
        "user_id:token\tage:token\nu1\t30\nu2\t40\n",
    )
    .unwrap();
    assert!(load_dataset(&dir, &opts()).is_ok());
    std::fs::write(dir.join("t.user"), "user_id:token\tage:token\nu1\t30\n").unwrap();
    let e = error(&dir, &opts());
    assert_mentions(
        &e,
        &["t.inter", "line 5, column 1 'user_id'", "'u2'", ".user"],
    );
    std::fs::write(dir.join("t.user"), "uid:token\nu1\nu2\n").unwrap();
    assert_mentions(
        &error(&dir, &opts()),
        &["t.user", "line 1", "--user-field user_id"],
    );
}

#[test]
fn field_options_on_a_movielens_folder_are_refused() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small");
    let mut o = LoadOptions::default();
    o.fields.user = "user".into();
    let e = error(&dir, &o);
    assert_mentions(&e, &["MovieLens", "--user-field", "RecBole atomic files"]);
}
