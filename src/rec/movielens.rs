//! The MovieLens CSV loader: `ratings.csv` (userId, movieId, timestamp; other columns are
//! ignored, and so is `rating` unless `--min-rating` is set: then rows rated below it are
//! dropped later, counted) and `movies.csv` (movieId, title; `genres` joins the item text when
//! present). Columns are found by header name, in any order. A blank title is an error, or with
//! `--allow-missing-text` the movie is titled by its id.

use super::csv::{CsvReader, CsvRecord};
use super::loader::{column, field, item_text, parse_number, read_text, RawBuilder, RawData};
use super::options::LoadOptions;
use crate::{Error, Result};
use std::path::Path;

pub fn load(ratings: &Path, movies: &Path, opts: &LoadOptions) -> Result<RawData> {
    let mut builder = RawBuilder::new(opts.allow_missing_text);
    read_movies(movies, opts.max_text_chars, &mut builder)?;
    read_ratings(ratings, opts.min_rating.is_some(), &mut builder)?;
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
        let item = super::loader::Item {
            raw_id: id.to_string(),
            title,
            text,
        };
        let item = builder.titled_item(path, (record.line, title_col, "title"), item)?;
        builder.add_item(path, record.line, item)?;
    }
    Ok(())
}

/// The rating rows; `with_rating`: read the `rating` column too (for `--min-rating`).
fn read_ratings(path: &Path, with_rating: bool, builder: &mut RawBuilder) -> Result<()> {
    let text = read_text(path)?;
    let mut reader = CsvReader::new(&text);
    let header = read_header(path, &mut reader)?;
    let user_col = column(path, &header, "userId")?;
    let item_col = column(path, &header, "movieId")?;
    let time_col = column(path, &header, "timestamp")?;
    let rating_col = match with_rating {
        true => Some(column(path, &header, "rating")?),
        false => None,
    };
    while let Some(record) = next(path, &mut reader)? {
        let (f, line) = (&record.fields, record.line);
        let user = field(path, line, f, user_col, "userId")?;
        let item = field(path, line, f, item_col, "movieId")?;
        let time = field(path, line, f, time_col, "timestamp")?;
        let time = parse_number(path, (line, time_col), "timestamp", time)?;
        let rating = match rating_col {
            Some(c) => Some(parse_number(
                path,
                (line, c),
                "rating",
                field(path, line, f, c, "rating")?,
            )?),
            None => None,
        };
        let cols = ("userId", "movieId");
        builder.add_interaction(path, line, cols, (user, item), (time, rating))?;
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
