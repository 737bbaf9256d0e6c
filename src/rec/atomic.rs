//! RecBole's atomic-file header and field names.
//!
//! Every atomic file (`.inter`, `.item`, `.user`) starts with a typed header: tab-separated
//! `name:type` with type `token` (one categorical value: an id, a brand), `token_seq` (a
//! space-separated sequence of tokens: a title, categories), `float` or `float_seq`. Which column
//! plays which part is decided by name, mapped by options with RecBole's own names and defaults
//! ([`FieldNames`]: `USER_ID_FIELD` = `user_id`, `ITEM_ID_FIELD` = `item_id`, `TIME_FIELD` =
//! `timestamp`, `RATING_FIELD` = `rating`). A header field without a type, with an unknown type,
//! or named twice is an error naming the file, line 1 and the column.

use crate::{Error, Result};
use std::path::Path;

/// A column's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Token,
    TokenSeq,
    Float,
    FloatSeq,
}

impl FieldType {
    fn parse(s: &str) -> Option<FieldType> {
        match s {
            "token" => Some(FieldType::Token),
            "token_seq" => Some(FieldType::TokenSeq),
            "float" => Some(FieldType::Float),
            "float_seq" => Some(FieldType::FloatSeq),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::Token => "token",
            FieldType::TokenSeq => "token_seq",
            FieldType::Float => "float",
            FieldType::FloatSeq => "float_seq",
        }
    }
}

/// Which columns are the user, item, time and rating, and which make the item text.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldNames {
    /// `--user-field` (default user_id).
    pub user: String,
    /// `--item-field` (default item_id).
    pub item: String,
    /// `--time-field` (default timestamp).
    pub time: String,
    /// `--rating-field` (default rating); read only with a rating threshold.
    pub rating: String,
    /// `--item-text-fields`: the title first, then the fields appended to the item text.
    /// None: the default rule of `recbole.rs` ([`TITLE_FIELDS`], then the other `token_seq`s).
    pub item_text: Option<Vec<String>>,
}

impl Default for FieldNames {
    fn default() -> Self {
        FieldNames {
            user: "user_id".into(),
            item: "item_id".into(),
            time: "timestamp".into(),
            rating: "rating".into(),
            item_text: None,
        }
    }
}

/// The title field when `--item-text-fields` is not given: the first of these that exists
/// (`title`: Amazon and our folders; `movie_title`: RecBole's ml-100k / ml-1m; `item_name`,
/// `name`: other RecBole sets).
pub const TITLE_FIELDS: [&str; 4] = ["title", "movie_title", "item_name", "name"];

/// A parsed header: names (without the type) and types, in column order.
#[derive(Debug, Clone)]
pub struct Header {
    pub names: Vec<String>,
    pub types: Vec<FieldType>,
}

impl Header {
    /// Parses the header row of `path`; every field must be `name:type` with a known type, and
    /// no name may repeat.
    pub fn parse(path: &Path, fields: &[String]) -> Result<Header> {
        let mut header = Header {
            names: Vec::with_capacity(fields.len()),
            types: Vec::with_capacity(fields.len()),
        };
        for (col, field) in fields.iter().enumerate() {
            let at = |msg: String| {
                Error::format(path, format!("line 1, column {} '{field}': {msg}", col + 1))
            };
            let (name, ty) = field.trim().split_once(':').ok_or_else(|| {
                at(
                    "the header field has no type (RecBole headers are typed: name:token, \
                    name:token_seq, name:float or name:float_seq)"
                        .into(),
                )
            })?;
            let ty = FieldType::parse(ty.trim()).ok_or_else(|| {
                at(format!(
                    "unknown type '{}' (expected token, token_seq, float or float_seq)",
                    ty.trim()
                ))
            })?;
            let name = name.trim();
            if name.is_empty() {
                return Err(at("the header field has no name".into()));
            }
            if let Some(first) = header.find(name) {
                return Err(at(format!("'{name}' is already column {}", first + 1)));
            }
            header.names.push(name.to_string());
            header.types.push(ty);
        }
        Ok(header)
    }

    /// The column named `name`, if any.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The column named `name` (the value of `option`, e.g. `--user-field`), which must have
    /// one of the `allowed` types; errors name the file, the option and the columns found.
    pub fn require(
        &self,
        path: &Path,
        (option, name): (&str, &str),
        allowed: &[FieldType],
    ) -> Result<usize> {
        let Some(col) = self.find(name) else {
            return Err(Error::format(
                path,
                format!(
                    "line 1: no column '{name}' ({option} {name}; columns found: {})",
                    self.names.join(", ")
                ),
            ));
        };
        let ty = self.types[col];
        if !allowed.contains(&ty) {
            let want: Vec<&str> = allowed.iter().map(|t| t.name()).collect();
            return Err(Error::format(
                path,
                format!(
                    "line 1, column {} '{name}:{}': {option} needs type {}",
                    col + 1,
                    ty.name(),
                    want.join(" or ")
                ),
            ));
        }
        Ok(col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fields: &[&str]) -> Result<Header> {
        let fields: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        Header::parse(Path::new("x.inter"), &fields)
    }

    #[test]
    fn typed_fields_parse_and_are_found_by_name() {
        let h = header(&["user_id:token", " rating:float ", "class:token_seq"]).unwrap();
        assert_eq!(h.names, vec!["user_id", "rating", "class"]);
        assert_eq!(h.types[2], FieldType::TokenSeq);
        let path = Path::new("x.inter");
        assert_eq!(
            h.require(path, ("--rating-field", "rating"), &[FieldType::Float])
                .unwrap(),
            1
        );
        let e = h
            .require(path, ("--user-field", "uid"), &[FieldType::Token])
            .unwrap_err();
        assert!(e.to_string().contains("--user-field uid"), "{e}");
        let e = h
            .require(path, ("--time-field", "class"), &[FieldType::Float])
            .unwrap_err();
        assert!(e.to_string().contains("column 3 'class:token_seq'"), "{e}");
    }

    #[test]
    fn untyped_mistyped_and_repeated_fields_are_errors() {
        let cases: [(&[&str], &str); 4] = [
            (
                &["user_id", "item_id:token"],
                "column 1 'user_id': the header field has no type",
            ),
            (
                &["user_id:token", "item_id:int"],
                "column 2 'item_id:int': unknown type 'int'",
            ),
            (
                &["user_id:token", ":float"],
                "column 2 ':float': the header field has no name",
            ),
            (
                &["a:token", "a:float"],
                "column 2 'a:float': 'a' is already column 1",
            ),
        ];
        for (fields, want) in cases {
            let e = header(fields).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("x.inter: line 1"), "{e}");
        }
    }
}
