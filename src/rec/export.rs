//! A loaded data set written back out as RecBole atomic files (`dataset --export-atomic DIR`),
//! so that RecBole, or anything else that reads atomic files, trains and evaluates on exactly
//! our pre-processed interactions and our leave-one-out split.
//!
//! Two files, named after the data set:
//! - `NAME.inter`: `user_id:token item_id:token timestamp:float`; users in dense-id order, each
//!   user's items in our chronological order. The **timestamp is the item's 0-based position in
//!   the user's sequence**, not its time. Why: our order breaks equal timestamps by file line,
//!   which another tool's sort need not reproduce, and RecBole keeps float columns as 32-bit
//!   floats, which cannot tell apart Unix times within about two minutes of each other. With
//!   positions, any sort by (user, timestamp) gives back our order exactly, so each user's last
//!   item is our test target and the one before it our validation target.
//! - `NAME.item`: `item_id:token title:token_seq`, in dense-id order, so that loading the folder
//!   back (`--kcore 0`) gives the same dense ids. Only the title is written (the genres or other
//!   text fields of `Item::text` are not).
//!
//! A raw id holding a tab, a line break or a leading quote could not be read back as the same
//! token, so it is an error naming the id; a title that starts with a quote is written quoted
//! (`""` for a quote inside), as pandas and our reader expect.

use super::dataset::Dataset;
use crate::files::write_atomic;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The two files written by [`export_atomic`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedFiles {
    pub inter: PathBuf,
    pub item: PathBuf,
}

/// Writes `DIR/NAME.inter` and `DIR/NAME.item` (module docs); creates `dir` if needed.
pub fn export_atomic(dataset: &Dataset, dir: &Path) -> Result<ExportedFiles> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let files = ExportedFiles {
        inter: dir.join(format!("{}.inter", dataset.name)),
        item: dir.join(format!("{}.item", dataset.name)),
    };
    write_atomic(&files.inter, inter_text(dataset)?.as_bytes())?;
    write_atomic(&files.item, item_text(dataset)?.as_bytes())?;
    Ok(files)
}

/// The `.inter` file: one row per interaction, the position in the user's sequence as its time.
fn inter_text(dataset: &Dataset) -> Result<String> {
    let mut text = String::from("user_id:token\titem_id:token\ttimestamp:float\n");
    for (user, seq) in dataset.users.iter().zip(&dataset.sequences) {
        let user = token(user)?;
        for (position, &item) in seq.iter().enumerate() {
            let item = token(&dataset.items[item as usize].raw_id)?;
            text += &format!("{user}\t{item}\t{position}\n");
        }
    }
    Ok(text)
}

/// The `.item` file: raw id and title of every item, in dense-id order.
fn item_text(dataset: &Dataset) -> Result<String> {
    let mut text = String::from("item_id:token\ttitle:token_seq\n");
    for item in &dataset.items {
        text += &format!(
            "{}\t{}\n",
            token(&item.raw_id)?,
            quoted_if_needed(&item.title)
        );
    }
    Ok(text)
}

/// A raw id as a `token` field; refuses what would not read back as the same id.
fn token(id: &str) -> Result<&str> {
    if id.is_empty() || id.starts_with('"') || id.contains(['\t', '\n', '\r']) {
        return Err(Error::config(
            format!("raw id {id:?} cannot be written as an atomic-file token"),
            "ids must be non-empty and hold no tab, line break or leading quote",
        ));
    }
    Ok(id)
}

/// A text field, quoted when unquoted text would not read back the same (a leading quote, a
/// tab or a line break).
fn quoted_if_needed(text: &str) -> String {
    if text.starts_with('"') || text.contains(['\t', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_quoted_only_when_they_must_be() {
        assert_eq!(quoted_if_needed("Heat (1995)"), "Heat (1995)");
        assert_eq!(quoted_if_needed("12\" ruler"), "12\" ruler");
        assert_eq!(
            quoted_if_needed("\"Great Performances\" Cats (1998)"),
            "\"\"\"Great Performances\"\" Cats (1998)\""
        );
    }

    #[test]
    fn ids_that_would_not_read_back_are_refused() {
        assert_eq!(token("42").unwrap(), "42");
        for bad in ["", "a\tb", "a\nb", "\"q"] {
            assert!(token(bad).is_err(), "{bad:?}");
        }
    }
}
