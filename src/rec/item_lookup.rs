//! Finding items the way a person names them: by the data set's own item id (`movieId`), or by
//! title, exactly first and then ignoring case. A history may be written as one comma-separated
//! list of titles even though titles hold commas themselves ("Big Lebowski, The (1998)"): the
//! list is read left to right, each time taking the longest run of comma-separated pieces that
//! is a title. An unknown title is an error that lists the closest titles, so a typo is one
//! step from fixed.

use super::dataset::Dataset;
use crate::{Error, Result};
use std::collections::HashMap;

/// How many close titles an "unknown title" error suggests.
const SUGGESTIONS: usize = 3;

/// Title and id lookups over one data set (dense item ids).
pub struct ItemLookup<'a> {
    dataset: &'a Dataset,
    /// The titles as a run writes them: unique, a shared title followed by ` [raw id]`.
    unique: Vec<String>,
    by_raw_id: HashMap<&'a str, u32>,
    /// Title (unique form and plain form) -> items; and the same keys lowercased.
    exact: HashMap<String, Vec<u32>>,
    folded: HashMap<String, Vec<u32>>,
}

impl<'a> ItemLookup<'a> {
    pub fn new(dataset: &'a Dataset) -> ItemLookup<'a> {
        let unique = dataset.unique_titles();
        let (mut exact, mut folded) = (HashMap::new(), HashMap::new());
        for (i, item) in dataset.items.iter().enumerate() {
            let mut names = vec![item.title.clone(), unique[i].clone()];
            names.dedup();
            for name in names {
                let folded_name = name.to_lowercase();
                exact.entry(name).or_insert_with(Vec::new).push(i as u32);
                folded
                    .entry(folded_name)
                    .or_insert_with(Vec::new)
                    .push(i as u32);
            }
        }
        let by_raw_id = dataset
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.raw_id.as_str(), i as u32))
            .collect();
        ItemLookup {
            dataset,
            unique,
            by_raw_id,
            exact,
            folded,
        }
    }

    /// The item whose data-set id is `raw` (e.g. a MovieLens `movieId`).
    pub fn by_raw_id(&self, raw: &str) -> Result<u32> {
        self.by_raw_id.get(raw.trim()).copied().ok_or_else(|| {
            Error::config(
                format!("item id {raw} is not in the data set"),
                "ids are the data set's own (e.g. movieId of movies.csv), of items kept by the \
                 k-core filter; or name the items with --history \"title, title\"",
            )
        })
    }

    /// Items from a comma-separated list of data-set ids ("1,5,9"), in order.
    pub fn by_raw_ids(&self, list: &str) -> Result<Vec<u32>> {
        let ids: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        ids.iter().map(|raw| self.by_raw_id(raw)).collect()
    }

    /// The one item called `title`: exactly, else ignoring case. None when no item is; an error
    /// when several are (the message lists their unique forms, `Title [raw id]`).
    pub fn by_title(&self, title: &str) -> Result<Option<u32>> {
        let title = title.trim();
        let found = self
            .exact
            .get(title)
            .or_else(|| self.folded.get(&title.to_lowercase()));
        match found.map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([item]) => Ok(Some(*item)),
            Some(items) => {
                let names: Vec<String> = items
                    .iter()
                    .map(|&i| format!("{:?}", self.unique[i as usize]))
                    .collect();
                Err(Error::config(
                    format!(
                        "title {title:?} names {} items: {}",
                        items.len(),
                        names.join(", ")
                    ),
                    "write the title with its id in brackets as listed, or use --history-ids",
                ))
            }
        }
    }

    /// Items from a comma-separated list of titles, in order (see the module docs for titles
    /// that hold commas). An unknown title is an error listing the closest titles.
    pub fn by_titles(&self, list: &str) -> Result<Vec<u32>> {
        let pieces: Vec<&str> = list.split(',').collect();
        let mut items = Vec::new();
        let mut i = 0;
        'next: while i < pieces.len() {
            if pieces[i].trim().is_empty() {
                i += 1; // tolerate ", ," and a trailing comma
                continue;
            }
            // The longest run pieces[i..j] that is a title.
            for j in (i + 1..=pieces.len()).rev() {
                if let Some(item) = self.by_title(&pieces[i..j].join(","))? {
                    items.push(item);
                    i = j;
                    continue 'next;
                }
            }
            return Err(self.unknown_title(pieces[i].trim()));
        }
        Ok(items)
    }

    /// "no item is titled X", with the closest titles as the hint.
    fn unknown_title(&self, title: &str) -> Error {
        let close: Vec<String> = self
            .closest_titles(title, SUGGESTIONS)
            .iter()
            .map(|t| format!("{t:?}"))
            .collect();
        Error::config(
            format!("no item of {} is titled {title:?}", self.dataset.name),
            format!("closest titles: {}", close.join(", ")),
        )
    }

    /// The `n` titles closest to `query`: titles containing it (ignoring case) first, then by
    /// how few edits turn `query` into some part of the title (a misspelt word of a long title
    /// is close), then by edits to the whole title, then by item order.
    pub fn closest_titles(&self, query: &str, n: usize) -> Vec<String> {
        let q_text = query.to_lowercase();
        let q: Vec<char> = q_text.chars().collect();
        let mut scored: Vec<(bool, usize, usize, usize)> = self
            .unique
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = t.to_lowercase();
                let chars: Vec<char> = t.chars().collect();
                let part = substring_edit_distance(&q, &chars);
                (!t.contains(&q_text), part, edit_distance(&q, &chars), i)
            })
            .collect();
        scored.sort_unstable();
        scored
            .iter()
            .take(n)
            .map(|&(.., i)| self.unique[i].clone())
            .collect()
    }
}

/// Levenshtein distance (insertions, deletions, substitutions each cost 1), one row at a time.
pub fn edit_distance(a: &[char], b: &[char]) -> usize {
    distance(a, b, false)
}

/// The fewest edits that turn `a` into some contiguous part of `b` (skipping the rest of `b` is
/// free): "lebowsky" is 1 edit from "big lebowski, the (1998)".
pub fn substring_edit_distance(a: &[char], b: &[char]) -> usize {
    distance(a, b, true)
}

/// `row[j]` = edits from a[..i] to b[..j] (or, `anywhere`, to the best part of b ending at j).
fn distance(a: &[char], b: &[char], anywhere: bool) -> usize {
    let mut row: Vec<usize> = match anywhere {
        true => vec![0; b.len() + 1], // the part may start at any j
        false => (0..=b.len()).collect(),
    };
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0]; // the cell (i, j-1) of the previous row
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    match anywhere {
        true => row.into_iter().min().unwrap_or(0), // the part may end at any j
        false => row[b.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rec::{Format, Item};

    fn dataset(titles: &[&str]) -> Dataset {
        Dataset {
            name: "toy".into(),
            format: Format::MovieLens,
            interactions_path: "ratings.csv".into(),
            items: titles
                .iter()
                .enumerate()
                .map(|(i, t)| Item {
                    raw_id: format!("{}", 10 + i),
                    title: t.to_string(),
                    text: t.to_string(),
                })
                .collect(),
            users: Vec::new(),
            sequences: Vec::new(),
            rows_read: 0,
            users_read: 0,
            items_read: titles.len(),
            removed_duplicates: 0,
            removed_by_rating: 0,
            removed_by_kcore: 0,
            items_without_text: 0,
        }
    }

    #[test]
    fn titles_with_commas_case_and_duplicates() {
        let d = dataset(&[
            "Big Lebowski, The (1998)",
            "Heat (1995)",
            "Crash (1996)",
            "Crash (1996)",
            "Toy Story (1995)",
        ]);
        let look = ItemLookup::new(&d);
        assert_eq!(
            look.by_titles("big lebowski, the (1998), Heat (1995),")
                .unwrap(),
            vec![0, 1]
        );
        assert_eq!(look.by_titles("Crash (1996) [13]").unwrap(), vec![3]);
        let err = look.by_titles("Crash (1996)").unwrap_err().to_string();
        assert!(
            err.contains("names 2 items") && err.contains("[12]"),
            "{err}"
        );
        let err = look
            .by_titles("Heat (1995), Toy Storey")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"Toy Storey\"") && err.contains("\"Toy Story (1995)\""),
            "{err}"
        );
        assert_eq!(look.by_raw_ids(" 11, 14").unwrap(), vec![1, 4]);
        assert!(look.by_raw_id("99").unwrap_err().to_string().contains("99"));
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        let d = |a: &str, b: &str| {
            edit_distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("flaw", "lawn"), 2);
        assert_eq!(d("same", "same"), 0);
        let part = |a: &str, b: &str| {
            substring_edit_distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(part("lebowsky", "big lebowski, the (1998)"), 1);
        assert_eq!(part("heat", "heat (1995)"), 0);
        assert_eq!(part("abc", ""), 3);
    }

    #[test]
    fn a_misspelt_word_of_a_long_title_is_suggested_before_short_titles() {
        let d = dataset(&[
            "M (1931)",
            "Big Lebowski, The (1998)",
            "Pi (1998)",
            "9 (2009)",
        ]);
        let close = ItemLookup::new(&d).closest_titles("Lebowsky", 1);
        assert_eq!(close, vec!["Big Lebowski, The (1998)".to_string()]);
    }
}
