//! The MovieLens CSV loader: `ratings.csv` (userId, movieId, timestamp; other columns such as
//! `rating` are ignored, so a rating of any value is an interaction) and `movies.csv`
//! (movieId, title; `genres` joins the item text when present). Columns are found by header
//! name, in any order.

use super::csv::{CsvReader, CsvRecord};
use super::loader::{column, field, item_text, parse_timestamp, read_text, RawBuilder, RawData};
use crate::{Error, Result};
use std::path::Path;

pub fn load(ratings: &Path, movies: &Path, max_text_chars: usize) -> Result<RawData> {
    let mut builder = RawBuilder::new();
    read_movies(movies, max_text_chars, &mut builder)?;
    read_ratings(ratings, &mut builder)?;
    builder.finish(ratings)
}

fn read_movies(path: &Path, max_text_chars: usize, builder: &mut RawBuilder) -> Result<()> {
    let text = read_text(path)?;
    let mut reader = CsvReader::new(&text);
    let header = read_header(path, &mut reader)?;
    let id_col = column(path, &header, "movieId")?;
    let title_col = column(path, &header, "title")?;
    let genres_col = header.iter().position(|h| h == "genres");
    while let Some(record) = next(path, &mut reader)? {
        let f = &record.fields;
        let id = field(path, record.line, f, id_col, "movieId")?;
        let title = field(path, record.line, f, title_col, "title")?;
        let genres = match genres_col {
            Some(c) => field(path, record.line, f, c, "genres")?,
            None => "",
        };
        // "(no genres listed)" is MovieLens for "none".
        let genres = if genres == "(no genres listed)" {
            String::new()
        } else {
            genres.replace('|', ", ")
        };
        let (title, text) = item_text(title, &[("genres", &genres)], max_text_chars);
        builder.add_item(
            path,
            record.line,
            super::loader::Item {
                raw_id: id.to_string(),
                title,
                text,
            },
        )?;
    }
    Ok(())
}

fn read_ratings(path: &Path, builder: &mut RawBuilder) -> Result<()> {
    let text = read_text(path)?;
    let mut reader = CsvReader::new(&text);
    let header = read_header(path, &mut reader)?;
    let user_col = column(path, &header, "userId")?;
    let item_col = column(path, &header, "movieId")?;
    let time_col = column(path, &header, "timestamp")?;
    while let Some(record) = next(path, &mut reader)? {
        let f = &record.fields;
        let user = field(path, record.line, f, user_col, "userId")?;
        let item = field(path, record.line, f, item_col, "movieId")?;
        let time = field(path, record.line, f, time_col, "timestamp")?;
        let time = parse_timestamp(path, record.line, "timestamp", time)?;
        builder.add_interaction(path, record.line, ("userId", "movieId"), user, item, time)?;
    }
    Ok(())
}

fn read_header(path: &Path, reader: &mut CsvReader) -> Result<Vec<String>> {
    match next(path, reader)? {
        Some(r) => Ok(r.fields.into_iter().map(|h| h.trim().to_string()).collect()),
        None => Err(Error::format(
            path,
            "line 1: the file is empty (expected a header row)",
        )),
    }
}

fn next(path: &Path, reader: &mut CsvReader) -> Result<Option<CsvRecord>> {
    reader
        .next_record()
        .transpose()
        .map_err(|msg| Error::format(path, msg))
}
