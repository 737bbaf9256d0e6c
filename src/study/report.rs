//! The study's report, from `results.jsonl`'s rows alone: per protocol and data set, a
//! markdown table of every method's mean +- std over seeds, the paired-bootstrap rows (ILRec
//! vs SFT, each ablation and the sequential schedule vs ILRec) on NDCG@10 and Hit@10, and an
//! SVG bar chart of test NDCG@10 with the std as error bars. Written next to `results.jsonl`
//! as `results.md` and `results-<protocol>.svg`.

use super::grid::Method;
use super::results::Row;
use super::stats::{mean_std, paired_bootstrap, user_metric, Bootstrap, Metric};
use crate::rec::Protocol;
use crate::report::{bar_chart, Bar, BarGroup};
use crate::{Error, Result};
use std::fmt::Write;
use std::path::Path;

/// How the bootstrap runs and what the header says about the hyper-parameters.
pub struct ReportOptions {
    pub resamples: usize,
    pub seed: u64,
    /// One line on where the hyper-parameters came from (selection or not).
    pub hyper_parameters: String,
}

/// The columns of the mean +- std table: (label, metric, on validation).
const COLUMNS: [(&str, Metric, bool); 5] = [
    ("Hit@5", Metric::Hit(5), false),
    ("Hit@10", Metric::Hit(10), false),
    ("NDCG@5", Metric::Ndcg(5), false),
    ("NDCG@10", Metric::Ndcg(10), false),
    ("valid NDCG@10", Metric::Ndcg(10), true),
];

/// The metrics the bootstrap compares.
const COMPARED: [Metric; 2] = [Metric::Ndcg(10), Metric::Hit(10)];

/// One line of the bootstrap table.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub dataset: String,
    pub protocol: Protocol,
    /// A vs B: is A better than B?
    pub a: Method,
    pub b: Method,
    pub metric: Metric,
    pub seeds: usize,
    pub result: Bootstrap,
}

/// Writes `results.md` and one SVG per protocol into `dir`; returns the markdown.
pub fn write_report(dir: &Path, rows: &[Row], opts: &ReportOptions) -> Result<String> {
    let comparisons = comparisons(rows, opts)?;
    let md = markdown(rows, &comparisons, opts);
    crate::files::write_atomic(&dir.join("results.md"), md.as_bytes())?;
    for protocol in protocols(rows) {
        let svg = chart(rows, protocol);
        let path = dir.join(format!("results-{}.svg", protocol.name()));
        crate::files::write_atomic(&path, svg.as_bytes())?;
    }
    Ok(md)
}

/// The protocols, data sets and methods present, in table order.
fn protocols(rows: &[Row]) -> Vec<Protocol> {
    let mut p: Vec<Protocol> = rows.iter().map(|r| r.protocol).collect();
    p.sort();
    p.dedup();
    p
}

fn datasets(rows: &[Row]) -> Vec<String> {
    let mut d: Vec<String> = Vec::new();
    for r in rows {
        if !d.contains(&r.dataset) {
            d.push(r.dataset.clone());
        }
    }
    d
}

fn methods(rows: &[&Row]) -> Vec<Method> {
    let mut m: Vec<Method> = rows.iter().map(|r| r.method).collect();
    m.sort();
    m.dedup();
    m
}

/// The rows of one (protocol, data set, method), ordered by seed.
fn cell_rows<'a>(rows: &'a [Row], p: Protocol, d: &str, m: Method) -> Vec<&'a Row> {
    let mut out: Vec<&Row> = rows
        .iter()
        .filter(|r| r.protocol == p && r.dataset == d && r.method == m)
        .collect();
    out.sort_by_key(|r| r.seed);
    out
}

/// A metric's value of a row: the mean over its users, recomputed from its ranks.
fn row_metric(r: &Row, metric: Metric, valid: bool) -> f64 {
    let ranks = if valid { &r.valid_ranks } else { &r.test_ranks };
    let sum: f64 = ranks.iter().map(|&k| user_metric(metric, k)).sum();
    sum / ranks.len().max(1) as f64
}

/// Every paired bootstrap the rows allow: per protocol and data set, ILRec vs SFT and each
/// ablation / the sequential schedule vs ILRec, on the seeds both have.
pub fn comparisons(rows: &[Row], opts: &ReportOptions) -> Result<Vec<Comparison>> {
    let mut out = Vec::new();
    for protocol in protocols(rows) {
        for dataset in datasets(rows) {
            let present = |m: Method| !cell_rows(rows, protocol, &dataset, m).is_empty();
            let mut pairs = vec![(Method::Ilrec, Method::Sft)];
            pairs.extend(
                Method::ALL
                    .into_iter()
                    .filter(|m| m.is_ablation() || *m == Method::Sequential)
                    .map(|m| (m, Method::Ilrec)),
            );
            for (a, b) in pairs.into_iter().filter(|&(a, b)| present(a) && present(b)) {
                let ra = cell_rows(rows, protocol, &dataset, a);
                let rb = cell_rows(rows, protocol, &dataset, b);
                for metric in COMPARED {
                    let (ua, ub, seeds) = paired_users(&ra, &rb, metric)?;
                    if seeds == 0 {
                        continue; // no seed in common: nothing is paired
                    }
                    out.push(Comparison {
                        dataset: dataset.clone(),
                        protocol,
                        a,
                        b,
                        metric,
                        seeds,
                        result: paired_bootstrap(&ua, &ub, opts.resamples, opts.seed),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Per-user metric of A and of B, each averaged over the seeds both have (the user is the
/// resampling unit; the seeds' spread stays inside each user's value). Every row must rank
/// the same users in the same order (`--test-users` draws them with a fixed seed).
fn paired_users(a: &[&Row], b: &[&Row], metric: Metric) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let seeds: Vec<u64> = a
        .iter()
        .map(|r| r.seed)
        .filter(|s| b.iter().any(|r| r.seed == *s))
        .collect();
    let users = &a[0].test_users;
    let pick = |rows: &[&Row]| -> Result<Vec<f64>> {
        let mut sum = vec![0.0; users.len()];
        for r in rows.iter().filter(|r| seeds.contains(&r.seed)) {
            if &r.test_users != users || r.test_ranks.len() != users.len() {
                return Err(Error::config(
                    format!(
                        "{} {} seed {}: other test users than its pair",
                        r.dataset,
                        r.method.key(),
                        r.seed
                    ),
                    "every cell of a data set must rank the same test users (same --test-users)",
                ));
            }
            for (s, &rank) in sum.iter_mut().zip(&r.test_ranks) {
                *s += user_metric(metric, rank);
            }
        }
        Ok(sum.iter().map(|s| s / seeds.len().max(1) as f64).collect())
    };
    Ok((pick(a)?, pick(b)?, seeds.len()))
}

/// The markdown report (module docs).
fn markdown(rows: &[Row], comparisons: &[Comparison], opts: &ReportOptions) -> String {
    let mut md = String::from("# Results study\n\n");
    let _ = writeln!(
        md,
        "Test metrics, mean ± sample std over seeds (per seed: the mean over the test users). {}\n\n\
         Paired bootstrap over test users: {} resamples (seed {}), each user's metric averaged \
         over the seeds first; difference = first method minus second; 95% percentile interval; \
         p = fraction of resampled differences <= 0 (one-sided: is the first method better?).\n",
        opts.hyper_parameters, opts.resamples, opts.seed
    );
    for protocol in protocols(rows) {
        let _ = writeln!(
            md,
            "## Protocol `{}`: {}\n",
            protocol.name(),
            describe(protocol)
        );
        for dataset in datasets(rows) {
            let of_set: Vec<&Row> = rows
                .iter()
                .filter(|r| r.protocol == protocol && r.dataset == dataset)
                .collect();
            if of_set.is_empty() {
                continue;
            }
            let users = of_set[0].test_users.len();
            let _ = writeln!(md, "### {dataset} ({users} test users)\n");
            md.push_str(&means_table(rows, protocol, &dataset, &methods(&of_set)));
            let ours: Vec<&Comparison> = comparisons
                .iter()
                .filter(|c| c.protocol == protocol && c.dataset == dataset)
                .collect();
            if !ours.is_empty() {
                md.push('\n');
                md.push_str(&bootstrap_table(&ours));
            }
            md.push('\n');
        }
    }
    md
}

fn describe(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::AllItems => {
            "every item ranked, the user's history included (the ILRec / LC-Rec protocol, `train`'s)"
        }
        Protocol::ExcludeHistory => {
            "items the user interacted with before the target are never ranked (RecBole's full-sort protocol, `--exclude-history`)"
        }
    }
}

/// | method | seeds | Hit@5 | ... | valid NDCG@10 |, one line per method.
fn means_table(rows: &[Row], protocol: Protocol, dataset: &str, methods: &[Method]) -> String {
    let mut t = String::from("| method | seeds |");
    for (label, _, _) in COLUMNS {
        let _ = write!(t, " {label} |");
    }
    t.push_str("\n|---|---|");
    t.push_str(&"---|".repeat(COLUMNS.len()));
    t.push('\n');
    for &m in methods {
        let of_method = cell_rows(rows, protocol, dataset, m);
        let _ = write!(t, "| {} | {} |", m.label(), of_method.len());
        for (_, metric, valid) in COLUMNS {
            let per_seed: Vec<f64> = of_method
                .iter()
                .map(|r| row_metric(r, metric, valid))
                .collect();
            let (mean, std) = mean_std(&per_seed);
            let _ = write!(t, " {mean:.4} ± {std:.4} |");
        }
        t.push('\n');
    }
    t
}

/// | comparison | metric | seeds | difference | 95% interval | p (one-sided) |
fn bootstrap_table(comparisons: &[&Comparison]) -> String {
    let mut t = String::from(
        "| comparison | metric | seeds | difference | 95% interval | p (one-sided) |\n|---|---|---|---|---|---|\n",
    );
    for c in comparisons {
        let r = &c.result;
        let _ = writeln!(
            t,
            "| {} vs {} | {} | {} | {:+.4} | [{:+.4}, {:+.4}] | {:.4} |",
            c.a.label(),
            c.b.label(),
            c.metric.label(),
            c.seeds,
            r.diff,
            r.lo,
            r.hi,
            r.p_value
        );
    }
    t
}

/// Test NDCG@10 per data set and method under `protocol`, error bars = std over seeds.
fn chart(rows: &[Row], protocol: Protocol) -> String {
    let groups: Vec<BarGroup> = datasets(rows)
        .into_iter()
        .map(|dataset| {
            let of_set: Vec<&Row> = rows
                .iter()
                .filter(|r| r.protocol == protocol && r.dataset == dataset)
                .collect();
            let bars = methods(&of_set)
                .into_iter()
                .map(|m| {
                    let per_seed: Vec<f64> = cell_rows(rows, protocol, &dataset, m)
                        .iter()
                        .map(|r| row_metric(r, Metric::Ndcg(10), false))
                        .collect();
                    let (value, error) = mean_std(&per_seed);
                    Bar {
                        name: m.label().into(),
                        value,
                        error,
                    }
                })
                .collect();
            BarGroup {
                name: dataset,
                bars,
            }
        })
        .collect();
    let title = format!("test NDCG@10, mean ± std over seeds ({})", protocol.name());
    bar_chart(&title, "NDCG@10", &groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(method: Method, seed: u64, ranks: &[Option<usize>], users: &[&str]) -> Row {
        let r = crate::pipeline::ranks::Ranks {
            ranks: ranks.to_vec(),
            invalid_rate: 0.0,
        };
        Row {
            cell: format!("d/seed-{seed}"),
            cell_rows: 2,
            dataset: "d".into(),
            method,
            seed,
            protocol: Protocol::AllItems,
            valid: r.metrics(),
            test: r.metrics(),
            invalid_rate: 0.0,
            valid_ranks: ranks.to_vec(),
            test_ranks: ranks.to_vec(),
            test_users: users.iter().map(|u| u.to_string()).collect(),
            hyper: json!({}),
            run_dir: String::new(),
        }
    }

    fn opts() -> ReportOptions {
        ReportOptions {
            resamples: 200,
            seed: 0,
            hyper_parameters: String::new(),
        }
    }

    #[test]
    fn comparisons_pair_users_over_shared_seeds_only() {
        let users = ["u1", "u2"];
        // ILRec hits both users at rank 0 in both seeds; SFT only user 1, in seed 0 only.
        let rows = vec![
            row(Method::Sft, 0, &[Some(0), None], &users),
            row(Method::Ilrec, 0, &[Some(0), Some(0)], &users),
            row(Method::Sft, 1, &[None, None], &users),
            row(Method::Ilrec, 1, &[Some(0), Some(0)], &users),
        ];
        let c = comparisons(&rows, &opts()).unwrap();
        assert_eq!(c.len(), 2, "NDCG@10 and Hit@10 of ILRec vs SFT");
        // Per user over the two seeds: ILRec 1 and 1, SFT 0.5 and 0: mean difference 0.75.
        assert!((c[0].result.diff - 0.75).abs() < 1e-12);
        assert_eq!(c[0].seeds, 2);
        // No seed in common: no comparison; other users in a pair: an error naming the fix.
        let disjoint = vec![rows[0].clone(), rows[3].clone()];
        assert!(comparisons(&disjoint, &opts()).unwrap().is_empty());
        let mut other = rows.clone();
        other[3].test_users = vec!["u2".into(), "u1".into()];
        let err = comparisons(&other, &opts()).unwrap_err().to_string();
        assert!(err.contains("--test-users"), "{err}");
    }

    #[test]
    fn the_markdown_has_mean_std_and_bootstrap_rows() {
        let users = ["u1", "u2"];
        let rows = vec![
            row(Method::Sft, 0, &[Some(2), None], &users),
            row(Method::Ilrec, 0, &[Some(0), Some(6)], &users),
        ];
        let c = comparisons(&rows, &opts()).unwrap();
        let md = markdown(&rows, &c, &opts());
        // SFT NDCG@10: (1/log2(4) + 0) / 2 = 0.25; one seed: std 0.
        assert!(md.contains("| SFT | 1 |"), "{md}");
        assert!(md.contains("0.2500 ± 0.0000 |"), "{md}");
        // ILRec - SFT on NDCG@10: ((1 - 0.5) + (1/3 - 0)) / 2 = 0.4167.
        assert!(
            md.contains("| ILRec vs SFT | NDCG@10 | 1 | +0.4167 |"),
            "{md}"
        );
    }
}
