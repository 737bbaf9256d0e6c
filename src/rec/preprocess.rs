//! Pre-processing of interaction rows, in RecBole's order (`Dataset._data_filtering`):
//! chronological order with repeated (user, item) pairs removed (`rm_dup_inter`), then the
//! rating threshold (RecBole's `val_interval` on the rating), then the iterative interaction-count
//! filter (`user_inter_num_interval` / `item_inter_num_interval`; k-core is `[k,inf)`).

use super::interval::Intervals;
use super::loader::Interaction;
use crate::{Error, Result};

/// Which row of a repeated (user, item) pair survives (RecBole's `rm_dup_inter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepDuplicate {
    /// The earliest (ties by file line): the LC-Rec protocol, our default.
    #[default]
    First,
    /// The latest: the item sits where the user last interacted with it.
    Last,
}

impl KeepDuplicate {
    pub fn parse(s: &str) -> Result<KeepDuplicate> {
        match s {
            "first" => Ok(KeepDuplicate::First),
            "last" => Ok(KeepDuplicate::Last),
            other => Err(Error::config(
                format!("--rm-dup-inter {other}: not supported"),
                "use first (keep the earliest of a repeated user-item pair, the default) or last",
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeepDuplicate::First => "first",
            KeepDuplicate::Last => "last",
        }
    }
}

/// Sorts rows by (user, timestamp, file line) and drops every repeat of a (user, item) pair,
/// keeping its first or last occurrence in that order. Returns how many rows were dropped.
///
/// Sorting first makes "the first" mean the first in the user's history even when the file is
/// not in time order (MovieLens `ratings.csv` is sorted by movie, not by time).
pub fn chronological_dedup(rows: &mut Vec<Interaction>, keep: KeepDuplicate) -> usize {
    // Timestamps are finite (the loaders reject NaN/inf), so total_cmp is the numeric order.
    rows.sort_by(|a, b| {
        a.user
            .cmp(&b.user)
            .then(a.timestamp.total_cmp(&b.timestamp))
            .then(a.line.cmp(&b.line))
    });
    let before = rows.len();
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    match keep {
        KeepDuplicate::First => rows.retain(|r| seen.insert((r.user, r.item))),
        KeepDuplicate::Last => {
            // Walk from the end, so the first occurrence seen is the last in time.
            rows.reverse();
            rows.retain(|r| seen.insert((r.user, r.item)));
            rows.reverse();
        }
    }
    before - rows.len()
}

/// Keeps the rows rated at least `min_rating` (the usual conversion of ratings into implicit
/// feedback: a low rating is not a positive interaction). Returns how many rows were dropped.
/// Every row carries a rating here: the loaders read one whenever a threshold is set.
pub fn rating_filter(rows: &mut Vec<Interaction>, min_rating: f64) -> usize {
    let before = rows.len();
    rows.retain(|r| r.rating.is_some_and(|x| x >= min_rating));
    before - rows.len()
}

/// The iterative interaction-count filter: counts every user's and item's rows, removes every
/// row whose user count is outside `users` or whose item count is outside `items` (both sides
/// in the same pass), and repeats on what is left until no row is removed. Removing an item can
/// push a user out of its interval (and, with an upper bound, back into it), hence the loop;
/// this is the fixed point RecBole's `_filter_by_inter_num` reaches too. Row order is
/// preserved. `num_users` / `num_items` bound the ids in `rows`.
pub fn inter_num_filter(
    mut rows: Vec<Interaction>,
    (users, items): (&Intervals, &Intervals),
    num_users: usize,
    num_items: usize,
) -> Vec<Interaction> {
    if users.keeps_every_present_id() && items.keeps_every_present_id() {
        return rows;
    }
    loop {
        let mut user_count = vec![0usize; num_users];
        let mut item_count = vec![0usize; num_items];
        for r in &rows {
            user_count[r.user as usize] += 1;
            item_count[r.item as usize] += 1;
        }
        let before = rows.len();
        rows.retain(|r| {
            users.contains(user_count[r.user as usize])
                && items.contains(item_count[r.item as usize])
        });
        if rows.len() == before {
            return rows;
        }
    }
}

/// Iterative k-core: [`inter_num_filter`] with `[k,inf)` on both sides. `k = 0` (and `k = 1`)
/// keep everything.
pub fn kcore_filter(
    rows: Vec<Interaction>,
    k: usize,
    num_users: usize,
    num_items: usize,
) -> Vec<Interaction> {
    let at_least = Intervals::at_least(k);
    inter_num_filter(rows, (&at_least, &at_least), num_users, num_items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: u32, item: u32, timestamp: f64, line: usize) -> Interaction {
        Interaction {
            user,
            item,
            timestamp,
            line,
            rating: None,
        }
    }

    #[test]
    fn dedup_keeps_the_earliest_not_the_first_in_file() {
        // Line 2 repeats (0, 7) with an earlier time than line 1: line 2 is the one kept.
        let mut rows = vec![row(0, 7, 50.0, 1), row(0, 7, 10.0, 2), row(0, 3, 30.0, 3)];
        assert_eq!(chronological_dedup(&mut rows, KeepDuplicate::First), 1);
        assert_eq!(rows, vec![row(0, 7, 10.0, 2), row(0, 3, 30.0, 3)]);
    }

    #[test]
    fn dedup_last_keeps_the_latest_in_time_order() {
        // (0, 7) at t = 10, 50, 20: `last` keeps t = 50, which then follows item 3 (t = 30).
        let rows = vec![
            row(0, 7, 10.0, 1),
            row(0, 7, 50.0, 2),
            row(0, 3, 30.0, 3),
            row(0, 7, 20.0, 4),
        ];
        let mut last = rows.clone();
        assert_eq!(chronological_dedup(&mut last, KeepDuplicate::Last), 2);
        assert_eq!(last, vec![row(0, 3, 30.0, 3), row(0, 7, 50.0, 2)]);
        assert_eq!(KeepDuplicate::parse("last").unwrap(), KeepDuplicate::Last);
        assert!(KeepDuplicate::parse("none").is_err());
    }

    #[test]
    fn rating_filter_keeps_at_or_above_the_threshold() {
        let rated = |r: f64, line| Interaction {
            rating: Some(r),
            ..row(0, line as u32, 0.0, line)
        };
        let mut rows = vec![rated(3.5, 1), rated(4.0, 2), rated(5.0, 3), rated(1.0, 4)];
        assert_eq!(rating_filter(&mut rows, 4.0), 2);
        assert_eq!(rows, vec![rated(4.0, 2), rated(5.0, 3)]);
    }

    #[test]
    fn upper_bounds_remove_heavy_users_and_cascade() {
        // User 0 has 3 rows, users 1 and 2 one each; items: 0 x3 (users 0, 1, 2), 1 x1, 2 x1.
        let rows = vec![
            row(0, 0, 0.0, 1),
            row(0, 1, 1.0, 2),
            row(0, 2, 2.0, 3),
            row(1, 0, 0.0, 4),
            row(2, 0, 0.0, 5),
        ];
        // Users in [1,3) drop user 0; items in [2,inf) then keep item 0 (users 1, 2: 2 rows).
        let users = Intervals::parse("[1,3)").unwrap();
        let items = Intervals::parse("[2,inf)").unwrap();
        let kept = inter_num_filter(rows.clone(), (&users, &items), 3, 3);
        assert_eq!(kept, vec![row(1, 0, 0.0, 4), row(2, 0, 0.0, 5)]);
        // Items in [3,inf) as well: after user 0 goes, item 0 has 2 rows and goes too.
        let items = Intervals::parse("[3,inf)").unwrap();
        assert!(inter_num_filter(rows, (&users, &items), 3, 3).is_empty());
    }

    #[test]
    fn kcore_cascades() {
        // k = 2: removals cascade until nothing is left.
        let rows = vec![
            row(0, 0, 0.0, 1),
            row(0, 1, 1.0, 2),
            row(1, 1, 0.0, 3),
            row(1, 2, 1.0, 4),
            row(2, 0, 0.0, 5),
        ];
        // user counts: u0=2 u1=2 u2=1; item counts: i0=2 i1=2 i2=1.
        // pass 1 drops u2's row and i2's row -> u0:{i0,i1}, u1:{i1}; i0=1 -> pass 2 drops i0 row and u1 row
        // -> u0:{i1}; pass 3 drops it.
        assert!(kcore_filter(rows.clone(), 2, 3, 3).is_empty());
        assert_eq!(kcore_filter(rows.clone(), 0, 3, 3), rows);
        assert_eq!(kcore_filter(rows.clone(), 1, 3, 3), rows);
    }
}
