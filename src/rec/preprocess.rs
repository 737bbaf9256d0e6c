//! Pre-processing of interaction rows (LC-Rec protocol, ILREC.md section 1): chronological
//! order with repeated (user, item) pairs removed, then the iterative k-core filter.

use super::loader::Interaction;

/// Sorts rows by (user, timestamp, file line) and drops every repeat of a (user, item) pair,
/// keeping its earliest occurrence (ties by file order). Returns how many rows were dropped.
///
/// Sorting first makes "the first" mean the first in the user's history even when the file is
/// not in time order (MovieLens `ratings.csv` is sorted by movie, not by time).
pub fn chronological_dedup(rows: &mut Vec<Interaction>) -> usize {
    // Timestamps are finite (the loaders reject NaN/inf), so total_cmp is the numeric order.
    rows.sort_by(|a, b| {
        a.user
            .cmp(&b.user)
            .then(a.timestamp.total_cmp(&b.timestamp))
            .then(a.line.cmp(&b.line))
    });
    let before = rows.len();
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    rows.retain(|r| seen.insert((r.user, r.item)));
    before - rows.len()
}

/// Iterative k-core: repeatedly removes every row whose user or item has fewer than `k` rows,
/// until no row is removed (removing an item can push a user below `k` and back again).
/// `k = 0` (and `k = 1`) keep everything. Row order is preserved. `num_users`/`num_items`
/// bound the ids in `rows`.
pub fn kcore_filter(
    mut rows: Vec<Interaction>,
    k: usize,
    num_users: usize,
    num_items: usize,
) -> Vec<Interaction> {
    if k <= 1 {
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
        rows.retain(|r| user_count[r.user as usize] >= k && item_count[r.item as usize] >= k);
        if rows.len() == before {
            return rows;
        }
    }
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
        }
    }

    #[test]
    fn dedup_keeps_the_earliest_not_the_first_in_file() {
        // Line 2 repeats (0, 7) with an earlier time than line 1: line 2 is the one kept.
        let mut rows = vec![row(0, 7, 50.0, 1), row(0, 7, 10.0, 2), row(0, 3, 30.0, 3)];
        assert_eq!(chronological_dedup(&mut rows), 1);
        assert_eq!(rows, vec![row(0, 7, 10.0, 2), row(0, 3, 30.0, 3)]);
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
