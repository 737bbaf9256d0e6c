//! Making SIDs unique. Two items with one SID would be one leaf of the item trie, so after
//! training every collision is resolved on the last level (ILREC.md section 2):
//!
//! 1. Items are grouped by their prefix (all codes but the last). Within a group, an item alone
//!    on its last code keeps it; of several items on one code, the one nearest to it (squared
//!    distance of its last-level residual to the code; ties: lower item index) keeps it.
//! 2. The displaced items take the group's free codes: all (item, free code) pairs are sorted
//!    by distance (ties: item, then code) and taken greedily, each item and code once. Every
//!    item thus gets its nearest code that no nearer item claimed, in a fixed order.
//! 3. If some prefix has more items than the last level has codes, reassignment cannot work:
//!    instead a level is added (TIGER's collision level): every item gets one more code, its
//!    rank among the items sharing its full SID (nearest first), and the caller says so.

use crate::{Error, Result};
use std::collections::BTreeMap;

/// Share of items whose SID some other item also has: `(items - distinct SIDs) / items`, the
/// definition LC-Rec reports.
pub fn collision_rate(codes: &[Vec<u32>]) -> f64 {
    if codes.is_empty() {
        return 0.0;
    }
    let mut sorted: Vec<&Vec<u32>> = codes.iter().collect();
    sorted.sort();
    sorted.dedup();
    (codes.len() - sorted.len()) as f64 / codes.len() as f64
}

/// What [`resolve_collisions`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// `codes[item][level]`, unique across items.
    pub codes: Vec<Vec<u32>>,
    /// [`collision_rate`] before resolution.
    pub rate_before: f64,
    /// Items whose last code changed (0 when a level was added).
    pub reassigned: usize,
    /// Some((codes of the new level, why)) when a level was added.
    pub added_level: Option<(usize, String)>,
}

/// Resolves collisions (module docs). `last_residual` (items, e) and `last_codebook` (codes, e)
/// give the distances on the last level; `codes_per_level` is the last level's size.
pub fn resolve_collisions(
    codes: &[Vec<u32>],
    last_residual: &[f32],
    last_codebook: &[f32],
    e: usize,
    codes_per_level: usize,
) -> Result<Resolution> {
    let levels = codes.first().map_or(0, Vec::len);
    let n = codes.len();
    if levels == 0 || codes.iter().any(|c| c.len() != levels) || last_residual.len() != n * e {
        return Err(Error::shape(
            "resolve_collisions",
            format!(
                "{n} items with codes of mixed/zero length or {} residual values for e {e}",
                last_residual.len()
            ),
        ));
    }
    let dist = |item: usize, code: u32| -> f64 {
        let r = &last_residual[item * e..(item + 1) * e];
        let c = &last_codebook[code as usize * e..(code as usize + 1) * e];
        r.iter()
            .zip(c)
            .map(|(&a, &b)| ((a - b) as f64).powi(2))
            .sum()
    };
    let rate_before = collision_rate(codes);
    let mut groups: BTreeMap<&[u32], Vec<usize>> = BTreeMap::new();
    for (item, c) in codes.iter().enumerate() {
        groups.entry(&c[..levels - 1]).or_default().push(item);
    }
    if let Some((prefix, members)) = groups.iter().find(|(_, m)| m.len() > codes_per_level) {
        let why = format!(
            "prefix {prefix:?} holds {} items, more than the {codes_per_level} codes of the last level",
            members.len()
        );
        let (codes, extra) = add_collision_level(codes, &dist);
        return Ok(Resolution {
            codes,
            rate_before,
            reassigned: 0,
            added_level: Some((extra, why)),
        });
    }
    let mut out = codes.to_vec();
    let mut reassigned = 0;
    for members in groups.values() {
        reassigned += resolve_group(members, &mut out, levels - 1, codes_per_level, &dist);
    }
    Ok(Resolution {
        codes: out,
        rate_before,
        reassigned,
        added_level: None,
    })
}

/// Steps 1 and 2 of the module docs for the items `members` of one prefix; returns how many
/// items moved.
fn resolve_group(
    members: &[usize],
    codes: &mut [Vec<u32>],
    last: usize,
    codes_per_level: usize,
    dist: &dyn Fn(usize, u32) -> f64,
) -> usize {
    let mut on_code: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &item in members {
        on_code.entry(codes[item][last]).or_default().push(item);
    }
    let mut displaced = Vec::new();
    for (&code, items) in &on_code {
        let mut items = items.clone();
        items.sort_by(|&a, &b| dist(a, code).total_cmp(&dist(b, code)).then(a.cmp(&b)));
        displaced.extend_from_slice(&items[1..]);
    }
    if displaced.is_empty() {
        return 0;
    }
    let free: Vec<u32> = (0..codes_per_level as u32)
        .filter(|c| !on_code.contains_key(c))
        .collect();
    let mut pairs: Vec<(f64, usize, u32)> = displaced
        .iter()
        .flat_map(|&item| free.iter().map(move |&c| (item, c)))
        .map(|(item, c)| (dist(item, c), item, c))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut item_done = vec![false; codes.len()];
    let mut code_taken = vec![false; codes_per_level];
    for (_, item, code) in pairs {
        if !item_done[item] && !code_taken[code as usize] {
            item_done[item] = true;
            code_taken[code as usize] = true;
            codes[item][last] = code;
        }
    }
    displaced.len()
}

/// Step 3: one more level, the rank of each item among those sharing its SID. Returns the new
/// codes and the size of the new level (the largest group).
fn add_collision_level(
    codes: &[Vec<u32>],
    dist: &dyn Fn(usize, u32) -> f64,
) -> (Vec<Vec<u32>>, usize) {
    let last = codes[0].len() - 1;
    let mut groups: BTreeMap<&[u32], Vec<usize>> = BTreeMap::new();
    for (item, c) in codes.iter().enumerate() {
        groups.entry(c.as_slice()).or_default().push(item);
    }
    let mut out = codes.to_vec();
    let mut largest = 1;
    for members in groups.values() {
        let mut members = members.clone();
        let code = codes[members[0]][last];
        members.sort_by(|&a, &b| dist(a, code).total_cmp(&dist(b, code)).then(a.cmp(&b)));
        largest = largest.max(members.len());
        for (rank, &item) in members.iter().enumerate() {
            out[item].push(rank as u32);
        }
    }
    (out, largest)
}
