//! Recommendation data sets: the in-memory types, format detection, and the assembly of a
//! loaded folder into a [`Dataset`] (dedup, rating threshold, k-core / interaction-count
//! filter, chronological order, dense ids).
//!
//! Two on-disk formats are read (see `movielens.rs` and `recbole.rs`):
//! - MovieLens CSV: `ratings.csv` (userId, movieId, timestamp; `rating` is ignored unless
//!   `min_rating` is set, so by default every rating of any value is one interaction) and
//!   `movies.csv` (movieId, title, genres).
//! - RecBole atomic files: `NAME.inter`, `NAME.item` and optionally `NAME.user`, tab-separated
//!   with typed headers, fields mapped by [`FieldNames`] (RecBole's names and defaults).
//!
//! Dense ids are stable: users are numbered in order of first appearance in the interaction
//! file, items in the order of the item file (`movies.csv`, `NAME.item`; then, with
//! `allow_missing_text`, items that only the interaction file names, in order of appearance),
//! both after filtering. Items that nobody interacted with (after filtering) get no id.

use super::atomic::FieldNames;
use super::loader::{Interaction, Item, RawData};
use super::options::LoadOptions;
use super::preprocess::{chronological_dedup, inter_num_filter, rating_filter};
use super::recbole::AtomicFiles;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The two supported folder layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    MovieLens,
    RecBole,
}

/// A pre-processed data set: dense item ids `0..items.len()`, dense user ids
/// `0..users.len()`, and each user's interactions in chronological order.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder name (`ml-latest-small`).
    pub name: String,
    pub format: Format,
    pub interactions_path: PathBuf,
    /// Indexed by dense item id.
    pub items: Vec<Item>,
    /// Raw user ids, indexed by dense user id.
    pub users: Vec<String>,
    /// `sequences[user]` = that user's dense item ids, oldest first (timestamp, ties by line).
    pub sequences: Vec<Vec<u32>>,
    /// Interaction rows read from the file.
    pub rows_read: usize,
    /// Users and items read (users of the interaction file; items of the item file, plus those
    /// added by `allow_missing_text`), before filtering: those left without interactions are
    /// dropped.
    pub users_read: usize,
    pub items_read: usize,
    /// Rows dropped because the (user, item) pair was seen before (or after, with `last`).
    pub removed_duplicates: usize,
    /// Rows dropped because they were rated below `min_rating`.
    pub removed_by_rating: usize,
    /// Rows dropped by the k-core / interaction-count filter.
    pub removed_by_kcore: usize,
    /// Items titled by their raw id for want of text (`allow_missing_text`), before filtering.
    pub items_without_text: usize,
}

impl Dataset {
    pub fn num_users(&self) -> usize {
        self.users.len()
    }
    pub fn num_items(&self) -> usize {
        self.items.len()
    }
    /// Interactions after dedup and k-core (all users, including those too short to split).
    pub fn num_interactions(&self) -> usize {
        self.sequences.iter().map(Vec::len).sum()
    }

    /// Titles made distinct for title mode (where an item is its title's tokens, and the item
    /// trie refuses two items with one sequence): a title shared by several items gets
    /// " \[raw_id\]" appended on each of them. Unique titles are unchanged.
    pub fn unique_titles(&self) -> Vec<String> {
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for item in &self.items {
            *uses.entry(item.title.as_str()).or_insert(0) += 1;
        }
        self.items
            .iter()
            .map(|item| match uses[item.title.as_str()] {
                1 => item.title.clone(),
                _ => format!("{} [{}]", item.title, item.raw_id),
            })
            .collect()
    }

    /// Pre-processes raw rows in RecBole's order: dedup (`keep_duplicate`), the rating
    /// threshold, the iterative interaction-count filter (k-core), then chronological order
    /// and dense ids.
    pub fn from_raw(
        name: &str,
        format: Format,
        raw: RawData,
        opts: &LoadOptions,
    ) -> Result<Dataset> {
        let rows_read = raw.interactions.len();
        let mut rows = raw.interactions;
        let removed_duplicates = chronological_dedup(&mut rows, opts.keep_duplicate);
        let removed_by_rating = opts.min_rating.map_or(0, |r| rating_filter(&mut rows, r));
        let before_kcore = rows.len();
        let (users, items) = opts.inter_num_intervals();
        let rows = inter_num_filter(rows, (&users, &items), raw.users.len(), raw.items.len());
        if rows.is_empty() {
            return Err(Error::format(
                &raw.interactions_path,
                format!(
                    "no interactions left after filtering ({rows_read} rows read, \
                     {removed_duplicates} repeated pairs removed, {removed_by_rating} below the \
                     rating threshold, {before_kcore} left for the user {users} / item {items} \
                     interaction-count filter, 0 after it) (hint: lower --kcore, 0 turns it off, \
                     or widen the intervals)"
                ),
            ));
        }
        let (users_read, items_read) = (raw.users.len(), raw.items.len());
        let (users, items, sequences) = compact_ids(&rows, raw.users, raw.items);
        Ok(Dataset {
            name: name.to_string(),
            format,
            interactions_path: raw.interactions_path,
            items,
            users,
            sequences,
            rows_read,
            users_read,
            items_read,
            removed_duplicates,
            removed_by_rating,
            removed_by_kcore: before_kcore - rows.len(),
            items_without_text: raw.items_without_text,
        })
    }

    /// One line for people: what was read and everything that was dropped, with its reason.
    pub fn load_summary(&self) -> String {
        format!(
            "{}: {} rows read; removed {} repeated user-item pairs, {} below the rating \
             threshold, {} by the k-core / interaction-count filter; {} items without text \
             titled by their id; left {} interactions, {} of {} users, {} of {} items (the \
             others have no interaction left)",
            self.name,
            self.rows_read,
            self.removed_duplicates,
            self.removed_by_rating,
            self.removed_by_kcore,
            self.items_without_text,
            self.num_interactions(),
            self.num_users(),
            self.users_read,
            self.num_items(),
            self.items_read,
        )
    }
}

/// Renumbers the surviving users and items densely, keeping their original relative order, and
/// gathers each user's items. `rows` is sorted by (user, timestamp, line).
fn compact_ids(
    rows: &[Interaction],
    raw_users: Vec<String>,
    raw_items: Vec<Item>,
) -> (Vec<String>, Vec<Item>, Vec<Vec<u32>>) {
    const NONE: u32 = u32::MAX;
    let mut user_map = vec![NONE; raw_users.len()];
    let mut item_map = vec![NONE; raw_items.len()];
    for r in rows {
        user_map[r.user as usize] = 0;
        item_map[r.item as usize] = 0;
    }
    let users = keep_marked(raw_users, &mut user_map);
    let items = keep_marked(raw_items, &mut item_map);
    let mut sequences = vec![Vec::new(); users.len()];
    for r in rows {
        sequences[user_map[r.user as usize] as usize].push(item_map[r.item as usize]);
    }
    (users, items, sequences)
}

/// Keeps the entries whose `map` slot is not `u32::MAX` and rewrites `map` to their new ids.
fn keep_marked<T>(values: Vec<T>, map: &mut [u32]) -> Vec<T> {
    let mut kept = Vec::new();
    for (old, value) in values.into_iter().enumerate() {
        if map[old] != u32::MAX {
            map[old] = kept.len() as u32;
            kept.push(value);
        }
    }
    kept
}

/// The files of a data folder, by format.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    MovieLens { ratings: PathBuf, movies: PathBuf },
    RecBole(AtomicFiles),
}

/// Loads and pre-processes a data folder, detecting its format from the files in it.
pub fn load_dataset(dir: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let (format, raw) = match detect_format(dir)? {
        Source::MovieLens { ratings, movies } => {
            check_movielens_options(dir, opts)?;
            let raw = super::movielens::load(&ratings, &movies, opts)?;
            (Format::MovieLens, raw)
        }
        Source::RecBole(files) => {
            if files.item.is_none() && !opts.allow_missing_text {
                let item = files.inter.with_extension("item");
                return Err(Error::io(
                    &item,
                    "file is missing (it holds the item text; --allow-missing-text loads the \
                     .inter alone, every item titled by its id)",
                ));
            }
            (Format::RecBole, super::recbole::load(&files, opts)?)
        }
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Dataset::from_raw(&name, format, raw, opts)
}

/// The field options name RecBole columns; a MovieLens folder has fixed ones, so a changed field
/// option there is an error rather than silently ignored.
fn check_movielens_options(dir: &Path, opts: &LoadOptions) -> Result<()> {
    let defaults = FieldNames::default();
    let f = &opts.fields;
    let changed = f.user != defaults.user
        || f.item != defaults.item
        || f.time != defaults.time
        || f.rating != defaults.rating
        || f.item_text.is_some();
    if changed {
        return Err(Error::config(
            format!(
                "{}: a MovieLens folder (ratings.csv: userId, movieId, rating, timestamp; \
                 movies.csv: movieId, title, genres) has fixed columns",
                dir.display()
            ),
            "--user-field, --item-field, --time-field, --rating-field and --item-text-fields \
             apply to RecBole atomic files",
        ));
    }
    Ok(())
}

/// Which format a folder holds, with its files. MovieLens when `ratings.csv` is present; RecBole
/// when exactly one `*.inter` file is (its `.item` and `.user` are looked up beside it; the
/// loader decides whether a missing `.item` is an error).
pub fn detect_format(dir: &Path) -> Result<Source> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut inter_files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "inter") {
            inter_files.push(path);
        }
    }
    inter_files.sort();
    let ratings = dir.join("ratings.csv");
    if ratings.exists() {
        let movies = require(dir.join("movies.csv"))?;
        return Ok(Source::MovieLens { ratings, movies });
    }
    match inter_files.len() {
        1 => {
            let inter = inter_files.remove(0);
            let beside = |ext: &str| Some(inter.with_extension(ext)).filter(|p| p.is_file());
            let (item, user) = (beside("item"), beside("user"));
            Ok(Source::RecBole(AtomicFiles { inter, item, user }))
        }
        0 => Err(Error::io(
            dir,
            "no data set here: expected ratings.csv + movies.csv (MovieLens) or NAME.inter + \
             NAME.item (RecBole atomic files)",
        )),
        _ => Err(Error::io(
            dir,
            format!(
                "{} .inter files found; expected exactly one",
                inter_files.len()
            ),
        )),
    }
}

fn require(path: PathBuf) -> Result<PathBuf> {
    if path.exists() {
        Ok(path)
    } else {
        Err(Error::io(
            &path,
            "file is missing (it is required next to the interaction file)",
        ))
    }
}
