//! The RecBole atomic-file loader: `NAME.inter` (interactions; any extra columns, such as
//! `rating`, are ignored), `NAME.item` (item text) and, when present, `NAME.user`.
//!
//! Rules, as RecBole defines the files (see `atomic.rs` for the typed header):
//! - tab-separated, one row per line, a typed header first; columns in any order; `\r\n` line
//!   ends and a UTF-8 byte-order mark are accepted; lines holding only whitespace are skipped;
//! - a field that starts with `"` is quoted (it may hold tabs and line breaks, `""` is one
//!   quote), any other quote is an ordinary character: how pandas reads the files for RecBole;
//! - every row has exactly the header's number of fields: an unquoted tab inside a text would
//!   shift every later column, so a row with more or fewer fields is an error naming the line;
//! - the user and item columns (`--user-field`, `--item-field`) are `token`s, the time column
//!   (`--time-field`) a `float`, and so is the rating (`--rating-field`, read only with
//!   `--min-rating`);
//! - item text: `--item-text-fields A,B,...` (the first is the title), or by default the first of
//!   [`TITLE_FIELDS`] that exists, then every other `token_seq` column of the item file in file
//!   order (ml-100k: `movie_title`, then `class`; Amazon: `title`, then `categories`,
//!   `description`). `token` columns (brand, release year) join only when named;
//! - an item without text (a blank title, or an `.inter` item with no `.item` row) is an error,
//!   or with `--allow-missing-text` the item is titled by its id (counted). With that option the
//!   `.item` file itself may be absent;
//! - `.user`, when present, must list every user of `.inter` (its other columns are not used).

use super::atomic::{FieldNames, FieldType, Header, TITLE_FIELDS};
use super::csv::{CsvReader, ATOMIC_TSV};
use super::loader::{item_text, parse_number, read_text, Item, RawBuilder, RawData};
use super::options::LoadOptions;
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The files of one atomic data set.
#[derive(Debug, Clone, PartialEq)]
pub struct AtomicFiles {
    pub inter: PathBuf,
    pub item: Option<PathBuf>,
    pub user: Option<PathBuf>,
}

pub fn load(files: &AtomicFiles, opts: &LoadOptions) -> Result<RawData> {
    let mut builder = RawBuilder::new(opts.allow_missing_text);
    if let Some(item) = &files.item {
        read_items(item, opts, &mut builder)?;
    }
    let known_users = match &files.user {
        Some(user) => Some(read_users(user, &opts.fields)?),
        None => None,
    };
    read_interactions(&files.inter, opts, known_users.as_ref(), &mut builder)?;
    builder.finish(&files.inter)
}

/// An atomic file being read: its header and its data rows.
struct Table<'a> {
    path: &'a Path,
    header: Header,
    reader: CsvReader<'a>,
}

impl<'a> Table<'a> {
    fn open(path: &'a Path, text: &'a str) -> Result<Table<'a>> {
        let mut reader = CsvReader::with_dialect(text, ATOMIC_TSV);
        let first = reader
            .next_record()
            .transpose()
            .map_err(|msg| Error::format(path, msg))?;
        let Some(first) = first else {
            return Err(Error::format(
                path,
                "line 1: the file is empty (expected a typed header row)",
            ));
        };
        let header = Header::parse(path, &first.fields)?;
        Ok(Table {
            path,
            header,
            reader,
        })
    }

    /// The next data row as (line, fields), with exactly the header's number of fields.
    fn next_row(&mut self) -> Result<Option<(usize, Vec<String>)>> {
        loop {
            let record = match self.reader.next_record() {
                None => return Ok(None),
                Some(r) => r.map_err(|msg| Error::format(self.path, msg))?,
            };
            if record.fields.iter().all(|f| f.trim().is_empty()) {
                continue; // a whitespace-only line holds no row
            }
            let (found, want) = (record.fields.len(), self.header.names.len());
            if found != want {
                return Err(Error::format(
                    self.path,
                    format!(
                        "line {}: {found} tab-separated fields, the header has {want} (a tab \
                         inside a value must be quoted: \"...\")",
                        record.line
                    ),
                ));
            }
            return Ok(Some((record.line, record.fields)));
        }
    }
}

/// (name, column) of the item text fields, the title first. Empty when no title field exists
/// and `--allow-missing-text` titles every item by its id.
fn text_columns(path: &Path, header: &Header, opts: &LoadOptions) -> Result<Vec<(String, usize)>> {
    let text_types = [FieldType::Token, FieldType::TokenSeq];
    if let Some(names) = &opts.fields.item_text {
        return names
            .iter()
            .map(|n| {
                let col = header.require(path, ("--item-text-fields", n), &text_types)?;
                Ok((n.clone(), col))
            })
            .collect();
    }
    let Some(title) = TITLE_FIELDS.iter().find_map(|n| header.find(n)) else {
        if opts.allow_missing_text {
            return Ok(Vec::new());
        }
        return Err(Error::format(
            path,
            format!(
                "line 1: no title column (looked for {}; columns found: {}) (hint: name the \
                 text columns with --item-text-fields, or --allow-missing-text)",
                TITLE_FIELDS.join(", "),
                header.names.join(", ")
            ),
        ));
    };
    let id = header.find(&opts.fields.item);
    let mut cols = vec![(header.names[title].clone(), title)];
    for (col, name) in header.names.iter().enumerate() {
        let other = col != title && Some(col) != id;
        if other && header.types[col] == FieldType::TokenSeq {
            cols.push((name.clone(), col));
        }
    }
    Ok(cols)
}

fn read_items(path: &Path, opts: &LoadOptions, builder: &mut RawBuilder) -> Result<()> {
    let text = read_text(path)?;
    let mut table = Table::open(path, &text)?;
    let item_field = opts.fields.item.as_str();
    let id_col = table
        .header
        .require(path, ("--item-field", item_field), &[FieldType::Token])?;
    let text_cols = text_columns(path, &table.header, opts)?;
    while let Some((line, fields)) = table.next_row()? {
        let id = fields[id_col].trim();
        if id.is_empty() {
            return Err(Error::format(
                path,
                format!(
                    "line {line}, column {} '{item_field}': empty item id",
                    id_col + 1
                ),
            ));
        }
        let title = text_cols.first().map_or("", |(_, c)| fields[*c].as_str());
        let extra: Vec<(&str, &str)> = text_cols
            .iter()
            .skip(1)
            .map(|(name, c)| (name.as_str(), fields[*c].as_str()))
            .collect();
        let (title, text) = item_text(title, &extra, opts.max_text_chars);
        let item = Item {
            raw_id: id.to_string(),
            title,
            text,
        };
        let (title_col, title_name) = text_cols.first().map_or((0, ""), |(n, c)| (*c, n.as_str()));
        let item = builder.titled_item(path, (line, title_col, title_name), item)?;
        builder.add_item(path, line, item)?;
    }
    Ok(())
}

/// The user ids of a `.user` file (each once).
fn read_users(path: &Path, fields: &FieldNames) -> Result<HashSet<String>> {
    let text = read_text(path)?;
    let mut table = Table::open(path, &text)?;
    let col = table
        .header
        .require(path, ("--user-field", &fields.user), &[FieldType::Token])?;
    let mut first_line: HashMap<String, usize> = HashMap::new();
    while let Some((line, row)) = table.next_row()? {
        let id = row[col].trim().to_string();
        if let Some(first) = first_line.insert(id.clone(), line) {
            return Err(Error::format(
                path,
                format!("line {line}: user id '{id}' appears twice (first on line {first})"),
            ));
        }
    }
    Ok(first_line.into_keys().collect())
}

fn read_interactions(
    path: &Path,
    opts: &LoadOptions,
    known_users: Option<&HashSet<String>>,
    builder: &mut RawBuilder,
) -> Result<()> {
    let text = read_text(path)?;
    let mut table = Table::open(path, &text)?;
    let (h, f) = (&table.header, &opts.fields);
    let user_col = h.require(path, ("--user-field", &f.user), &[FieldType::Token])?;
    let item_col = h.require(path, ("--item-field", &f.item), &[FieldType::Token])?;
    let time_col = h.require(path, ("--time-field", &f.time), &[FieldType::Float])?;
    let rating_col = match opts.min_rating {
        Some(_) => Some(h.require(path, ("--rating-field", &f.rating), &[FieldType::Float])?),
        None => None,
    };
    while let Some((line, row)) = table.next_row()? {
        let (user, item) = (row[user_col].trim(), row[item_col].trim());
        if known_users.is_some_and(|users| !users.contains(user)) {
            return Err(Error::format(
                path,
                format!(
                    "line {line}, column {} '{}': user '{user}' is not in the .user file",
                    user_col + 1,
                    f.user
                ),
            ));
        }
        let time = parse_number(path, (line, time_col), &f.time, &row[time_col])?;
        let rating = match rating_col {
            Some(c) => Some(parse_number(path, (line, c), &f.rating, &row[c])?),
            None => None,
        };
        let cols = (f.user.as_str(), f.item.as_str());
        builder.add_interaction(path, line, cols, (user, item), (time, rating))?;
    }
    Ok(())
}
