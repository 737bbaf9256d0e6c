//! Recommendation data sets: the in-memory types, format detection, and the assembly of a
//! loaded folder into a [`Dataset`] (dedup, k-core, chronological order, dense ids).
//!
//! Two on-disk formats are read (see `movielens.rs` and `recbole.rs`):
//! - MovieLens CSV: `ratings.csv` (userId, movieId, timestamp; `rating` is ignored, so every
//!   rating of any value is one interaction) and `movies.csv` (movieId, title, genres).
//! - RecBole atomic files: `NAME.inter` (user_id, item_id, timestamp) and `NAME.item`
//!   (item_id, title; brand, categories, description when present), tab-separated with typed
//!   headers (`title:token_seq`), any column order, extra columns ignored.
//!
//! Dense ids are stable: users are numbered in order of first appearance in the interaction
//! file, items in the order of the item file (`movies.csv`, `NAME.item`), both after filtering.
//! Items that nobody interacted with (after filtering) get no id.

use super::loader::{Interaction, Item, RawData};
use super::preprocess::{chronological_dedup, kcore_filter};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The two supported folder layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    MovieLens,
    RecBole,
}

/// Loading options. `kcore = 0` turns the k-core filter off (the Amazon folders were filtered
/// upstream and must be loaded that way).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    pub kcore: usize,
    pub max_text_chars: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            kcore: 5,
            max_text_chars: 512,
        }
    }
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
    /// Rows dropped because the (user, item) pair was seen before.
    pub removed_duplicates: usize,
    /// Rows dropped by the k-core filter.
    pub removed_by_kcore: usize,
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
    /// " [raw_id]" appended on each of them. Unique titles are unchanged.
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

    /// Pre-processes raw rows: dedup (keep each user's earliest interaction with an item),
    /// iterative k-core (`kcore = 0`: off), chronological order, dense ids.
    pub fn from_raw(name: &str, format: Format, raw: RawData, kcore: usize) -> Result<Dataset> {
        let rows_read = raw.interactions.len();
        let mut rows = raw.interactions;
        let removed_duplicates = chronological_dedup(&mut rows);
        let after_dedup = rows.len();
        let rows = kcore_filter(rows, kcore, raw.users.len(), raw.items.len());
        if rows.is_empty() {
            return Err(Error::format(
                &raw.interactions_path,
                format!(
                    "no interactions left after filtering ({rows_read} rows read, {after_dedup} after \
                     removing repeated pairs, 0 after the {kcore}-core filter) (hint: lower --kcore, \
                     or 0 to turn it off)"
                ),
            ));
        }
        let (users, items, sequences) = compact_ids(&rows, raw.users, raw.items);
        Ok(Dataset {
            name: name.to_string(),
            format,
            interactions_path: raw.interactions_path,
            items,
            users,
            sequences,
            removed_duplicates,
            removed_by_kcore: after_dedup - rows.len(),
        })
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

/// Loads and pre-processes a data folder, detecting its format from the files in it.
pub fn load_dataset(dir: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let (format, raw) = match detect_format(dir)? {
        (Format::MovieLens, ratings, movies) => (
            Format::MovieLens,
            super::movielens::load(&ratings, &movies, opts.max_text_chars)?,
        ),
        (Format::RecBole, inter, item) => (
            Format::RecBole,
            super::recbole::load(&inter, &item, opts.max_text_chars)?,
        ),
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Dataset::from_raw(&name, format, raw, opts.kcore)
}

/// Which format a folder holds, with its (interaction file, item file). MovieLens when
/// `ratings.csv` is present; RecBole when exactly one `*.inter` file is.
pub fn detect_format(dir: &Path) -> Result<(Format, PathBuf, PathBuf)> {
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
        return Ok((Format::MovieLens, ratings, require(dir.join("movies.csv"))?));
    }
    match inter_files.len() {
        1 => {
            let inter = inter_files.remove(0);
            let item = require(inter.with_extension("item"))?;
            Ok((Format::RecBole, inter, item))
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
