//! `sids.json`: LC-Rec's `.index.json` shape, `{"<item index>": ["<a_12>", "<b_3>", ...]}`,
//! keys in increasing item order, plus a side file `sids.item_ids.json`,
//! `{"<item index>": "<the data set's item id>"}`, that ties the indices to the data set.
//!
//! Reading checks everything before any training: the keys name items of the data set (through
//! the side file when present, else as dense item indices), every item has exactly one SID, all
//! SIDs have the same number of levels, each token is `<x_N>` with the letter of its level, and
//! no two items share a SID. Each error is one line naming the file and the item.

use super::tokens::{parse_sid_token, sid_text, sid_token};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The side file of `path`: `sids.json` -> `sids.item_ids.json`.
pub fn item_ids_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or("sids".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.item_ids.json"))
}

/// Writes `codes[item][level]` to `path` and the raw ids to [`item_ids_path`].
pub fn write_sids(path: &Path, codes: &[Vec<u32>], raw_item_ids: &[String]) -> Result<()> {
    if codes.len() != raw_item_ids.len() {
        return Err(Error::config(
            format!(
                "{}: {} SIDs for {} items",
                path.display(),
                codes.len(),
                raw_item_ids.len()
            ),
            "write one SID per item of the data set",
        ));
    }
    let mut index = String::from("{\n");
    let mut ids = String::from("{\n");
    for (item, (c, raw)) in codes.iter().zip(raw_item_ids).enumerate() {
        let sep = if item + 1 < codes.len() { ",\n" } else { "\n" };
        let tokens: Vec<String> = c
            .iter()
            .enumerate()
            .map(|(l, &code)| format!("\"{}\"", sid_token(l, code)))
            .collect();
        index.push_str(&format!("  \"{item}\": [{}]{sep}", tokens.join(", ")));
        ids.push_str(&format!(
            "  \"{item}\": {}{sep}",
            serde_json::Value::from(raw.as_str())
        ));
    }
    index.push_str("}\n");
    ids.push_str("}\n");
    crate::files::write_atomic(path, index.as_bytes())?;
    let side = item_ids_path(path);
    crate::files::write_atomic(&side, ids.as_bytes())
}

/// Reads a `sids.json` for a data set whose items have `raw_item_ids` (dense order); returns
/// `codes[item][level]` in dense item order. See the module docs for what is checked.
pub fn read_sids(path: &Path, raw_item_ids: &[String]) -> Result<Vec<Vec<u32>>> {
    let object = read_object(path)?;
    let side = item_ids_path(path);
    let key_to_item: Option<HashMap<String, usize>> = if side.exists() {
        Some(side_map(&side, raw_item_ids)?)
    } else {
        None
    };
    let n = raw_item_ids.len();
    let mut codes: Vec<Option<Vec<u32>>> = vec![None; n];
    let mut levels = None;
    for (key, value) in &object {
        let item = match &key_to_item {
            Some(map) => map.get(key).copied(),
            None => key.parse::<usize>().ok().filter(|&i| i < n),
        }
        .ok_or_else(|| {
            Error::format(path, format!("key \"{key}\" is not an item of the data set ({n} items; keys are item indices{})",
                if key_to_item.is_some() { format!(" mapped through {}", side.display()) } else { String::new() }))
        })?;
        let sid = parse_sid(path, key, value)?;
        if *levels.get_or_insert(sid.len()) != sid.len() {
            return Err(Error::format(
                path,
                format!(
                    "item \"{key}\" has {} levels, earlier items {}",
                    sid.len(),
                    levels.unwrap_or(0)
                ),
            ));
        }
        if codes[item].is_some() {
            return Err(Error::format(
                path,
                format!("item {item} (raw id {}) appears twice", raw_item_ids[item]),
            ));
        }
        codes[item] = Some(sid);
    }
    let codes = codes
        .into_iter()
        .enumerate()
        .map(|(item, c)| {
            c.ok_or_else(|| {
                Error::format(
                    path,
                    format!(
                        "item {item} (raw id {}) has no SID ({} of {n} items listed)",
                        raw_item_ids[item],
                        object.len()
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    check_unique(path, &codes)?;
    Ok(codes)
}

/// The top-level JSON object of `path`.
fn read_object(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::format(
            path,
            "expected an object {\"<item index>\": [\"<a_1>\", ...]}",
        )),
        Err(e) => Err(Error::format(path, format!("not valid JSON: {e}"))),
    }
}

/// Key of the side file -> dense item id, through the raw ids.
fn side_map(side: &Path, raw_item_ids: &[String]) -> Result<HashMap<String, usize>> {
    let dense: HashMap<&str, usize> = raw_item_ids
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i))
        .collect();
    let mut map = HashMap::new();
    for (key, value) in read_object(side)? {
        let raw = value.as_str().ok_or_else(|| {
            Error::format(
                side,
                format!("key \"{key}\": the item id must be a string, found {value}"),
            )
        })?;
        let item = dense.get(raw).copied().ok_or_else(|| {
            Error::format(
                side,
                format!("key \"{key}\": item id \"{raw}\" is not an item of the data set"),
            )
        })?;
        map.insert(key, item);
    }
    Ok(map)
}

/// One SID: an array of `<x_N>` strings whose letters run a, b, c, ...
fn parse_sid(path: &Path, key: &str, value: &serde_json::Value) -> Result<Vec<u32>> {
    let bad = |msg: String| Error::format(path, format!("item \"{key}\": {msg}"));
    let tokens = value.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
        bad(format!(
            "expected a non-empty array of SID tokens, found {value}"
        ))
    })?;
    let mut codes = Vec::with_capacity(tokens.len());
    for (level, t) in tokens.iter().enumerate() {
        let s = t.as_str().unwrap_or("");
        match parse_sid_token(s) {
            Some((l, code)) if l == level => codes.push(code),
            _ => {
                return Err(bad(format!(
                "token {level} is {t}, expected {} with some code (level letters run a, b, c, ...)",
                sid_token(level, 0).replace("_0", "_N")
            )))
            }
        }
    }
    Ok(codes)
}

fn check_unique(path: &Path, codes: &[Vec<u32>]) -> Result<()> {
    let mut seen: HashMap<&[u32], usize> = HashMap::with_capacity(codes.len());
    for (item, c) in codes.iter().enumerate() {
        if let Some(first) = seen.insert(c.as_slice(), item) {
            return Err(Error::format(
                path,
                format!(
                    "items {first} and {item} share the SID {} (SIDs must be unique)",
                    sid_text(c)
                ),
            ));
        }
    }
    Ok(())
}

/// Codes per level of a set of SIDs: the largest code + 1 at every level.
pub fn codes_per_level(codes: &[Vec<u32>]) -> Vec<usize> {
    let levels = codes.first().map_or(0, Vec::len);
    (0..levels)
        .map(|l| codes.iter().map(|c| c[l] as usize + 1).max().unwrap_or(0))
        .collect()
}
