//! The loader toolkit the format readers (`movielens.rs`, `recbole.rs`) and the pre-processing
//! share: the raw types ([`Item`], [`Interaction`], [`RawData`]), file and field helpers whose
//! errors name file, line and column, the `RawBuilder` that interns ids, and [`item_text`].
//! `dataset.rs` dispatches to the readers and assembles their output; nothing here imports it.

use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One item: its id in the source file, its title, and its full text (title plus the other text
/// fields present, capped at [`LoadOptions::max_text_chars`](super::LoadOptions::max_text_chars) characters).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub raw_id: String,
    pub title: String,
    pub text: String,
}

/// One interaction row as read: `user` indexes [`RawData::users`], `item` indexes
/// [`RawData::items`], `line` is the 1-based line in the interaction file (the tie-breaker for
/// equal timestamps, and what error messages point at). `rating` is read only when a rating
/// threshold is set (`LoadOptions::min_rating`); otherwise the rating column is ignored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    pub timestamp: f64,
    pub line: usize,
    pub rating: Option<f64>,
}

/// A folder as read from disk, before any pre-processing.
#[derive(Debug, Clone)]
pub struct RawData {
    /// The interaction file (named in "empty after filtering" errors).
    pub interactions_path: PathBuf,
    /// Raw user ids, in order of first appearance in the interaction file.
    pub users: Vec<String>,
    /// All items of the item file, in file order.
    pub items: Vec<Item>,
    pub interactions: Vec<Interaction>,
    /// Items written as their raw id because they had no text (`--allow-missing-text`): a blank
    /// title, or no row in the item file.
    pub items_without_text: usize,
}

/// Reads a whole text file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// The index of header column `name`, or an error naming the file and the columns found.
pub(crate) fn column(path: &Path, header: &[String], name: &str) -> Result<usize> {
    header.iter().position(|h| h == name).ok_or_else(|| {
        Error::format(
            path,
            format!(
                "line 1: required column '{name}' is missing (columns found: {})",
                header.join(", ")
            ),
        )
    })
}

/// Field `col` of a row, or an error naming the file, line and column.
pub(crate) fn field<'a>(
    path: &Path,
    line: usize,
    fields: &'a [String],
    col: usize,
    name: &str,
) -> Result<&'a str> {
    fields.get(col).map(String::as_str).ok_or_else(|| {
        Error::format(
            path,
            format!(
                "line {line}, column {} '{name}': missing (the row has {} fields)",
                col + 1,
                fields.len()
            ),
        )
    })
}

/// A finite number (timestamp, rating) in column `col` (0-based), or an error naming the file,
/// line and column.
pub(crate) fn parse_number(
    path: &Path,
    (line, col): (usize, usize),
    name: &str,
    value: &str,
) -> Result<f64> {
    match value.trim().parse::<f64>() {
        Ok(t) if t.is_finite() => Ok(t),
        _ => Err(Error::format(
            path,
            format!(
                "line {line}, column {} '{name}': expected a number, found '{value}'",
                col + 1
            ),
        )),
    }
}

/// Builds the raw tables shared by both loaders: items by raw id, users interned by first
/// appearance. With `allow_missing_text`, an interaction with an item the item file lacks adds
/// that item, its raw id as its text (counted in `items_without_text`).
pub(crate) struct RawBuilder {
    allow_missing_text: bool,
    items_without_text: usize,
    items: Vec<Item>,
    item_index: HashMap<String, u32>,
    /// The line each item was read from (for "appears twice" errors).
    item_lines: Vec<usize>,
    users: Vec<String>,
    user_index: HashMap<String, u32>,
    interactions: Vec<Interaction>,
}

impl RawBuilder {
    pub(crate) fn new(allow_missing_text: bool) -> RawBuilder {
        RawBuilder {
            allow_missing_text,
            items_without_text: 0,
            items: Vec::new(),
            item_index: HashMap::new(),
            item_lines: Vec::new(),
            users: Vec::new(),
            user_index: HashMap::new(),
            interactions: Vec::new(),
        }
    }

    /// Adds an item row; a raw id seen before is an error naming both lines.
    pub(crate) fn add_item(&mut self, path: &Path, line: usize, item: Item) -> Result<()> {
        if let Some(&first) = self.item_index.get(&item.raw_id) {
            return Err(Error::format(
                path,
                format!(
                    "line {line}: item id '{}' appears twice (first on line {})",
                    item.raw_id, self.item_lines[first as usize]
                ),
            ));
        }
        self.item_index
            .insert(item.raw_id.clone(), self.items.len() as u32);
        self.items.push(item);
        self.item_lines.push(line);
        Ok(())
    }

    /// Adds an interaction row; its item must be in the item file (or, with
    /// `allow_missing_text`, is added with its id as its text).
    pub(crate) fn add_interaction(
        &mut self,
        path: &Path,
        line: usize,
        (user_col, item_col): (&str, &str),
        (user, item): (&str, &str),
        (timestamp, rating): (f64, Option<f64>),
    ) -> Result<()> {
        if user.is_empty() {
            return Err(Error::format(
                path,
                format!("line {line}, column '{user_col}': empty user id"),
            ));
        }
        let item = match self.item_index.get(item) {
            Some(&index) => index,
            None if self.allow_missing_text && !item.is_empty() => {
                self.items_without_text += 1;
                self.add_item(path, line, id_as_text(item))?;
                self.items.len() as u32 - 1
            }
            None => {
                return Err(Error::format(
                    path,
                    format!(
                        "line {line}, column '{item_col}': item '{item}' is not in the item file \
                         (every interacted item needs a row there; --allow-missing-text writes \
                         such an item as its id)"
                    ),
                ))
            }
        };
        let next_user = self.users.len() as u32;
        let user = *self.user_index.entry(user.to_string()).or_insert_with(|| {
            self.users.push(user.to_string());
            next_user
        });
        self.interactions.push(Interaction {
            user,
            item,
            timestamp,
            line,
            rating,
        });
        Ok(())
    }

    /// An item row whose title is blank: an error naming the line and column, or with
    /// `allow_missing_text` the item titled with its raw id (counted); its other text fields
    /// still follow in its text.
    pub(crate) fn titled_item(
        &mut self,
        path: &Path,
        (line, col, name): (usize, usize, &str),
        item: Item,
    ) -> Result<Item> {
        if !item.title.is_empty() {
            return Ok(item);
        }
        if !self.allow_missing_text {
            return Err(Error::format(
                path,
                format!(
                    "line {line}, column {} '{name}': item '{}' has no text (hint: \
                     --allow-missing-text writes it as its id)",
                    col + 1,
                    item.raw_id
                ),
            ));
        }
        self.items_without_text += 1;
        // With a blank title, `item_text` left the other fields as "; name: value; ...".
        Ok(Item {
            title: item.raw_id.clone(),
            text: format!("{}{}", item.raw_id, item.text),
            raw_id: item.raw_id,
        })
    }

    pub(crate) fn finish(self, interactions_path: &Path) -> Result<RawData> {
        if self.interactions.is_empty() {
            return Err(Error::format(
                interactions_path,
                "no interaction rows (only a header?)",
            ));
        }
        Ok(RawData {
            interactions_path: interactions_path.to_path_buf(),
            users: self.users,
            items: self.items,
            interactions: self.interactions,
            items_without_text: self.items_without_text,
        })
    }
}

/// An item whose title and text are its raw id (an item without text, `--allow-missing-text`).
fn id_as_text(raw_id: &str) -> Item {
    Item {
        raw_id: raw_id.to_string(),
        title: raw_id.to_string(),
        text: raw_id.to_string(),
    }
}

/// `title; name: value; ...` over the non-empty extra fields, whitespace collapsed, capped at
/// `max_chars` characters (on a character boundary). The title is capped too.
pub fn item_text(title: &str, extra: &[(&str, &str)], max_chars: usize) -> (String, String) {
    let title = cap_chars(&collapse_whitespace(title), max_chars);
    let mut text = title.clone();
    for (name, value) in extra {
        let value = collapse_whitespace(value);
        if is_blank_value(&value) {
            continue;
        }
        text.push_str("; ");
        text.push_str(name);
        text.push_str(": ");
        text.push_str(&value);
    }
    (title, cap_chars(&text, max_chars))
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Empty, or only list punctuation (`[]`, `['', '']`, which the Amazon descriptions use for
/// "no description").
fn is_blank_value(s: &str) -> bool {
    s.chars()
        .all(|c| matches!(c, '[' | ']' | '\'' | '"' | ',' | ' '))
}

fn cap_chars(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((byte, _)) => s[..byte].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_text_joins_fields_skips_blank_and_caps() {
        let (title, text) = item_text(
            "Toy  Story",
            &[("genres", "A|B"), ("description", "['', '']")],
            100,
        );
        assert_eq!(title, "Toy Story");
        assert_eq!(text, "Toy Story; genres: A|B");
        let (title, text) = item_text("Ünïcode title", &[("brand", "X")], 4);
        assert_eq!(title, "Ünïc");
        assert_eq!(text, "Ünïc");
    }
}
