//! What loading a data set does beyond reading it: RecBole's field names, the filters
//! (duplicates, rating threshold, k-core or interaction-count intervals) and the item-text
//! rules. The readers (`movielens.rs`, `recbole.rs`) and the assembly (`dataset.rs`) all read
//! these options; they sit here, below all three, so none imports another back.

use super::atomic::FieldNames;
use super::interval::Intervals;
use super::preprocess::KeepDuplicate;

/// Loading options; the defaults are the LC-Rec protocol this crate has always used.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// k-core on users and items: `[k,inf)` on both sides of the interaction-count filter.
    /// `0` turns it off (the Amazon folders were filtered upstream and must be loaded that way).
    pub kcore: usize,
    /// RecBole's `user_inter_num_interval`: replaces the user side of `kcore` when set.
    pub user_inter_num: Option<Intervals>,
    /// RecBole's `item_inter_num_interval`: replaces the item side of `kcore` when set.
    pub item_inter_num: Option<Intervals>,
    /// Which row of a repeated (user, item) pair is kept (RecBole's `rm_dup_inter`; default
    /// first).
    pub keep_duplicate: KeepDuplicate,
    /// Keep only interactions rated at least this (implicit feedback); None: ratings ignored.
    pub min_rating: Option<f64>,
    /// Item text is capped at this many characters.
    pub max_text_chars: usize,
    /// RecBole atomic files: which column is what (RecBole's names and defaults).
    pub fields: FieldNames,
    /// An item without text is titled by its raw id (counted) instead of being an error.
    pub allow_missing_text: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            kcore: 5,
            user_inter_num: None,
            item_inter_num: None,
            keep_duplicate: KeepDuplicate::First,
            min_rating: None,
            max_text_chars: 512,
            fields: FieldNames::default(),
            allow_missing_text: false,
        }
    }
}

impl LoadOptions {
    /// The (user, item) intervals of the interaction-count filter: each side's interval option,
    /// or `[kcore,inf)`.
    pub fn inter_num_intervals(&self) -> (Intervals, Intervals) {
        let kcore = Intervals::at_least(self.kcore);
        (
            self.user_inter_num.clone().unwrap_or_else(|| kcore.clone()),
            self.item_inter_num.clone().unwrap_or(kcore),
        )
    }
}
