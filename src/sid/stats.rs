//! How well a set of SIDs uses its codes: per level, the codes used and the perplexity
//! `exp(entropy)` of the code distribution (= the number of codes if all were equally used),
//! and the largest groups of items under one first-level code.

/// Usage of one level.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelUsage {
    /// Distinct codes that some item has.
    pub used: usize,
    /// exp of the entropy (nats) of the codes' frequencies.
    pub perplexity: f64,
}

/// Usage of every level of `codes[item][level]` (levels from the first item).
pub fn level_usage(codes: &[Vec<u32>]) -> Vec<LevelUsage> {
    let levels = codes.first().map_or(0, Vec::len);
    (0..levels)
        .map(|l| {
            let mut counts = std::collections::BTreeMap::<u32, usize>::new();
            for c in codes {
                *counts.entry(c[l]).or_insert(0) += 1;
            }
            let n = codes.len() as f64;
            let entropy: f64 = counts
                .values()
                .map(|&k| {
                    let p = k as f64 / n;
                    -p * p.ln()
                })
                .sum();
            LevelUsage {
                used: counts.len(),
                perplexity: entropy.exp(),
            }
        })
        .collect()
}

/// The `top` first-level codes with the most items: (code, items), largest first (ties: the
/// lower code).
pub fn largest_first_level_groups(codes: &[Vec<u32>], top: usize) -> Vec<(u32, usize)> {
    let mut counts = std::collections::BTreeMap::<u32, usize>::new();
    for c in codes {
        *counts.entry(c[0]).or_insert(0) += 1;
    }
    let mut groups: Vec<(u32, usize)> = counts.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    groups.truncate(top);
    groups
}
