//! The RecBole atomic-file loader: `NAME.inter` (user_id, item_id, timestamp) and `NAME.item`
//! (item_id, title; brand, categories, description, genres join the item text when present).
//! Tab-separated; the header names are typed (`title:token_seq`), and only the part before the
//! ':' is used, so columns may come in any order and extra columns are ignored. RecBole fields
//! hold no quoting: a value is everything between two tabs.

use super::loader::{
    column, field, item_text, parse_timestamp, read_text, Item, RawBuilder, RawData,
};
use crate::{Error, Result};
use std::path::Path;

/// Optional text fields, in the order they join the item text.
const TEXT_FIELDS: [&str; 4] = ["genres", "brand", "categories", "description"];

pub fn load(inter: &Path, item: &Path, max_text_chars: usize) -> Result<RawData> {
    let mut builder = RawBuilder::new();
    read_items(item, max_text_chars, &mut builder)?;
    read_interactions(inter, &mut builder)?;
    builder.finish(inter)
}

fn read_items(path: &Path, max_text_chars: usize, builder: &mut RawBuilder) -> Result<()> {
    let text = read_text(path)?;
    let mut rows = rows(&text);
    let header = header(path, rows.next())?;
    let id_col = column(path, &header, "item_id")?;
    let title_col = column(path, &header, "title")?;
    let text_cols: Vec<(&str, usize)> = TEXT_FIELDS
        .iter()
        .filter_map(|name| header.iter().position(|h| h == name).map(|c| (*name, c)))
        .collect();
    for (line, fields) in rows {
        let id = field(path, line, &fields, id_col, "item_id")?;
        let title = field(path, line, &fields, title_col, "title")?;
        let mut extra = Vec::with_capacity(text_cols.len());
        for &(name, col) in &text_cols {
            extra.push((name, field(path, line, &fields, col, name)?));
        }
        let (title, text) = item_text(title, &extra, max_text_chars);
        builder.add_item(
            path,
            line,
            Item {
                raw_id: id.to_string(),
                title,
                text,
            },
        )?;
    }
    Ok(())
}

fn read_interactions(path: &Path, builder: &mut RawBuilder) -> Result<()> {
    let text = read_text(path)?;
    let mut rows = rows(&text);
    let header = header(path, rows.next())?;
    let user_col = column(path, &header, "user_id")?;
    let item_col = column(path, &header, "item_id")?;
    let time_col = column(path, &header, "timestamp")?;
    for (line, fields) in rows {
        let user = field(path, line, &fields, user_col, "user_id")?;
        let item = field(path, line, &fields, item_col, "item_id")?;
        let time = field(path, line, &fields, time_col, "timestamp")?;
        let time = parse_timestamp(path, line, "timestamp", time)?;
        builder.add_interaction(path, line, ("user_id", "item_id"), user, item, time)?;
    }
    Ok(())
}

/// Non-blank lines as (1-based line number, tab-separated fields).
fn rows(text: &str) -> impl Iterator<Item = (usize, Vec<String>)> + '_ {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.split('\t').map(str::to_string).collect()))
}

/// Header names with their `:type` suffix removed.
fn header(path: &Path, first: Option<(usize, Vec<String>)>) -> Result<Vec<String>> {
    match first {
        Some((_, names)) => Ok(names
            .iter()
            .map(|h| h.split(':').next().unwrap_or("").trim().to_string())
            .collect()),
        None => Err(Error::format(
            path,
            "line 1: the file is empty (expected a typed header row)",
        )),
    }
}
