//! What `negatives` writes from [`super::negatives`]' sums: `negatives.json` (the sums
//! themselves, so every rate can be recomputed), `negatives.md` (the rates), `lens-ranks.svg`
//! (per block and model: how often the truth ranks worse than at the final layer) and
//! `negatives-over-training.svg` (the negatives per position that training logged, step by step).

use super::negatives::{DepthStats, LayerStats, StageAnalysis};
use crate::report::svg::{bar_chart, line_plot, Bar, BarGroup, Series};
use crate::report::RunLog;
use serde_json::{json, Value};
use std::fmt::Write;

/// `a / b`, NaN when b is 0 (printed as "-").
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        a / b
    }
}

fn cell(x: f64, digits: usize) -> String {
    match x.is_finite() {
        true => format!("{x:.digits$}"),
        false => "-".into(),
    }
}

/// The sums as JSON (one object per model).
pub fn to_json(stages: &[StageAnalysis]) -> Value {
    let layer = |l: &LayerStats| {
        json!({"layer": l.layer, "rank_sum": l.rank_sum, "worse_than_final": l.worse_than_final,
               "self_hard": l.self_hard})
    };
    let depth = |d: &DepthStats| {
        json!({"positions": d.positions, "positions_with_negatives": d.positions_with_negatives,
               "negatives": d.negatives, "on_test_path": d.on_test_path,
               "non_target_candidates": d.non_target_candidates,
               "non_target_on_test_path": d.non_target_on_test_path,
               "q_on_test_path": d.q_on_test_path, "q_other": d.q_other})
    };
    Value::Array(
        stages
            .iter()
            .map(|s| {
                json!({"stage": s.stage, "samples": s.samples, "positions": s.positions,
                       "layers": s.layers.iter().map(layer).collect::<Vec<_>>(),
                       "depths": s.depths.iter().map(depth).collect::<Vec<_>>()})
            })
            .collect(),
    )
}

/// Table 1: per model and block, the truth's mean rank, how often it is worse than at the final
/// layer, and the self-hard negatives per position that block alone would propose.
pub fn layers_table(stages: &[StageAnalysis]) -> String {
    let mut md = String::from(
        "| model | block | truth's mean rank among the candidates | positions where it ranks worse than at the final layer | self-hard negatives per position (this block alone) |\n|---|---|---|---|---|\n",
    );
    for s in stages {
        let n = s.positions as f64;
        for l in &s.layers {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                s.stage,
                l.layer,
                cell(ratio(l.rank_sum, n), 2),
                cell(100.0 * ratio(l.worse_than_final as f64, n), 1) + "%",
                cell(ratio(l.self_hard as f64, n), 2),
            );
        }
    }
    md
}

/// Table 2: per model and response depth, the mined negatives, the false-negative rate against
/// its chance rate, and CRR's mean soft label on false negatives and on the others.
pub fn depths_table(stages: &[StageAnalysis]) -> String {
    let mut md = String::from(
        "| model | depth | positions with negatives | negatives per such position | on the test item's path | chance rate | CRR q: false negatives | CRR q: other negatives |\n|---|---|---|---|---|---|---|---|\n",
    );
    for s in stages {
        let mut total = DepthStats::default();
        for (j, d) in s.depths.iter().enumerate() {
            add(&mut total, d);
            md.push_str(&depth_row(&s.stage, &j.to_string(), d));
        }
        md.push_str(&depth_row(&s.stage, "all", &total));
    }
    md
}

fn add(total: &mut DepthStats, d: &DepthStats) {
    total.positions += d.positions;
    total.positions_with_negatives += d.positions_with_negatives;
    total.negatives += d.negatives;
    total.on_test_path += d.on_test_path;
    total.non_target_candidates += d.non_target_candidates;
    total.non_target_on_test_path += d.non_target_on_test_path;
    total.q_on_test_path += d.q_on_test_path;
    total.q_other += d.q_other;
}

fn depth_row(stage: &str, depth: &str, d: &DepthStats) -> String {
    let pct = |a: usize, b: usize| cell(100.0 * ratio(a as f64, b as f64), 2) + "%";
    let others = d.negatives - d.on_test_path;
    format!(
        "| {stage} | {depth} | {} ({}) | {} | {} ({} of {}) | {} | {} | {} |\n",
        pct(d.positions_with_negatives, d.positions),
        d.positions_with_negatives,
        cell(
            ratio(d.negatives as f64, d.positions_with_negatives as f64),
            2
        ),
        pct(d.on_test_path, d.negatives),
        d.on_test_path,
        d.negatives,
        pct(d.non_target_on_test_path, d.non_target_candidates),
        cell(ratio(d.q_on_test_path, d.on_test_path as f64), 3),
        cell(ratio(d.q_other, others as f64), 3),
    )
}

/// Bars: per model (group), per block, the share of positions where the truth ranks worse than
/// at the final layer.
pub fn lens_ranks_svg(stages: &[StageAnalysis]) -> String {
    let groups: Vec<BarGroup> = stages
        .iter()
        .map(|s| BarGroup {
            name: s.stage.clone(),
            bars: s
                .layers
                .iter()
                .map(|l| Bar {
                    name: format!("block {}", l.layer),
                    value: ratio(l.worse_than_final as f64, s.positions as f64),
                    error: 0.0,
                })
                .collect(),
        })
        .collect();
    bar_chart(
        "truth ranked worse by the block's logit lens than by the final layer",
        "share of response positions",
        &groups,
    )
}

/// Lines: the negatives per position training logged, per stage, averaged over windows of
/// `window` steps (one step's batch is noisy).
pub fn over_training_svg(log: &RunLog, stages: &[&str], window: usize) -> String {
    let series: Vec<Series> = stages
        .iter()
        .map(|&stage| Series {
            name: stage.to_string(),
            points: windowed(
                &log.series(("stage", stage), "step", "negatives_per_position"),
                window,
            ),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    line_plot(
        "self-hard negatives per response position during fine-tuning",
        &format!("step (mean of {window})"),
        "negatives per position",
        &series,
    )
}

/// Means of consecutive windows of `window` points (x = the window's last x).
fn windowed(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    points
        .chunks(window.max(1))
        .map(|c| {
            let mean = c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64;
            (c[c.len() - 1].0, mean)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_average_their_points_and_keep_the_last_x() {
        let pts = [(1.0, 2.0), (2.0, 4.0), (3.0, 6.0)];
        assert_eq!(windowed(&pts, 2), vec![(2.0, 3.0), (3.0, 6.0)]);
        assert_eq!(windowed(&pts, 5), vec![(3.0, 4.0)]);
    }

    #[test]
    fn the_depth_table_adds_the_depths_into_an_all_row() {
        let d = |negatives, on_test_path| DepthStats {
            positions: 10,
            positions_with_negatives: 4,
            negatives,
            on_test_path,
            non_target_candidates: 40,
            non_target_on_test_path: 2,
            q_on_test_path: 0.5,
            q_other: 1.0,
        };
        let stage = StageAnalysis {
            stage: "ilrec".into(),
            depths: vec![d(8, 1), d(12, 3)],
            ..Default::default()
        };
        let md = depths_table(&[stage]);
        // all: 20 negatives, 4 on the test path (20%), chance 4 of 80 (5%), q 1.0 / 4 and 2.0 / 16.
        let all = md.lines().last().unwrap();
        assert!(
            all.starts_with(
                "| ilrec | all | 40.00% (8) | 2.50 | 20.00% (4 of 20) | 5.00% | 0.250 | 0.125 |"
            ),
            "{all}"
        );
    }
}
