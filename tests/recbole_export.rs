//! `rec::export_atomic` (`dataset --export-atomic`): the embedded ml-latest-small, loaded with
//! our pre-processing, written as RecBole atomic files and loaded back with every filter off,
//! is the same data set (users, items, titles, every user's order) and gives the same
//! leave-one-out split; the written timestamps are positions, so ties cannot reorder anything.

mod common;

use ilrec::rec::{export_atomic, leave_one_out, load_dataset, Dataset, LoadOptions};
use std::path::Path;

fn ml_latest_small(kcore: usize) -> Dataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small");
    let opts = LoadOptions {
        kcore,
        ..LoadOptions::default()
    };
    load_dataset(&dir, &opts).unwrap()
}

/// Exports `original`, loads the export back with no filter, and checks both are one data set.
fn assert_round_trip(original: &Dataset, name: &str) {
    let dir = common::scratch("export", name).join(&original.name);
    let files = export_atomic(original, &dir).unwrap();
    let back = load_dataset(
        &dir,
        &LoadOptions {
            kcore: 0,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(back.interactions_path, files.inter);
    assert_eq!(back.users, original.users);
    assert_eq!(back.sequences, original.sequences, "every user's order");
    let raw = |d: &Dataset| -> Vec<(String, String)> {
        d.items
            .iter()
            .map(|i| (i.raw_id.clone(), i.title.clone()))
            .collect()
    };
    assert_eq!(raw(&back), raw(original));
    assert_eq!((back.removed_duplicates, back.removed_by_kcore), (0, 0));
    let (a, b) = (
        leave_one_out(original, 50).unwrap(),
        leave_one_out(&back, 50).unwrap(),
    );
    assert_eq!(a, b, "the same split");
}

#[test]
fn the_five_core_set_reads_back_as_the_same_data_and_split() {
    assert_round_trip(&ml_latest_small(5), "core5");
}

#[test]
fn the_unfiltered_set_reads_back_too_quoted_title_included() {
    let original = ml_latest_small(0);
    // A title that starts with a quote must be written quoted to read back.
    assert!(original
        .items
        .iter()
        .any(|i| i.title.starts_with("\"Great Performances\"")));
    assert_round_trip(&original, "core0");
}

#[test]
fn timestamps_are_positions_in_each_users_sequence() {
    let original = ml_latest_small(5);
    let dir = common::scratch("export", "positions");
    let files = export_atomic(&original, &dir).unwrap();
    let text = std::fs::read_to_string(&files.inter).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("user_id:token\titem_id:token\ttimestamp:float")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), original.num_interactions());
    let first_user = &original.sequences[0];
    for (position, row) in rows.iter().take(first_user.len()).enumerate() {
        let item = &original.items[first_user[position] as usize].raw_id;
        assert_eq!(
            row,
            &vec![original.users[0].as_str(), item, &position.to_string()]
        );
    }
}
