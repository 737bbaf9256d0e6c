//! The results table: one row per method (popularity, SASRec, SFT, ILRec, ablations), the
//! ILREC.md metrics on the test split, as aligned text for people and JSON for programs.

use crate::rec::MetricsMean;
use serde_json::{json, Value};

/// One method's test metrics.
#[derive(Clone, Debug)]
pub struct ResultRow {
    /// `popularity`, `sasrec`, `sft`, `ilrec`, or an ablation name.
    pub method: String,
    pub test: MetricsMean,
    /// Fraction of returned recommendations that are not real, distinct items (0 for rankers
    /// that score the item list directly).
    pub invalid_rate: f64,
    /// Validation NDCG@10 of the same model (None when not evaluated).
    pub valid_ndcg10: Option<f64>,
}

/// The rows in display order, and a caption line printed above them (the run's ranking
/// protocol; empty: none).
#[derive(Clone, Debug, Default)]
pub struct ResultsTable {
    pub rows: Vec<ResultRow>,
    pub caption: String,
}

const COLUMNS: [(&str, usize); 5] = [
    ("hit@1", 1),
    ("hit@5", 5),
    ("hit@10", 10),
    ("ndcg@5", 5),
    ("ndcg@10", 10),
];

impl ResultRow {
    fn metric(&self, column: usize) -> f64 {
        let (name, k) = COLUMNS[column];
        let v = if name.starts_with("hit") {
            self.test.hit_at(k)
        } else {
            self.test.ndcg_at(k)
        };
        v.unwrap_or(f64::NAN)
    }

    /// `{"method": .., "hit@1": .., ..., "ndcg@10": .., "invalid_rate": ..}`.
    pub fn to_json(&self) -> Value {
        let mut row = serde_json::Map::new();
        row.insert("method".into(), json!(self.method));
        for (c, (name, _)) in COLUMNS.iter().enumerate() {
            row.insert((*name).into(), json!(self.metric(c)));
        }
        row.insert("invalid_rate".into(), json!(self.invalid_rate));
        Value::Object(row)
    }
}

impl ResultsTable {
    /// An empty table under `caption`.
    pub fn with_caption(caption: impl Into<String>) -> ResultsTable {
        ResultsTable {
            rows: Vec::new(),
            caption: caption.into(),
        }
    }

    pub fn push(&mut self, row: ResultRow) {
        self.rows.push(row);
    }

    pub fn get(&self, method: &str) -> Option<&ResultRow> {
        self.rows.iter().find(|r| r.method == method)
    }

    /// A fixed-width text table (Markdown-compatible), the caption line above it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if !self.caption.is_empty() {
            out.push_str(&self.caption);
            out.push('\n');
        }
        out.push_str("| method       |  hit@1 |  hit@5 | hit@10 | ndcg@5 | ndcg@10 | invalid | valid ndcg@10 |\n");
        out.push_str("|--------------|-------:|-------:|-------:|-------:|--------:|--------:|--------------:|\n");
        for r in &self.rows {
            let valid = r
                .valid_ndcg10
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "| {:<12} | {:.4} | {:.4} | {:.4} | {:.4} |  {:.4} |  {:.4} | {:>13} |\n",
                r.method,
                r.metric(0),
                r.metric(1),
                r.metric(2),
                r.metric(3),
                r.metric(4),
                r.invalid_rate,
                valid
            ));
        }
        out
    }

    pub fn rows_json(&self) -> Value {
        Value::Array(self.rows.iter().map(ResultRow::to_json).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rec::RankingMetrics;

    #[test]
    fn rows_carry_the_issue_fields() {
        let mut m = RankingMetrics::new();
        m.add(Some(0));
        m.add(Some(7));
        m.add(None);
        let mut table = ResultsTable::default();
        table.push(ResultRow {
            method: "sft".into(),
            test: m.mean(),
            invalid_rate: 0.0,
            valid_ndcg10: Some(0.5),
        });
        let row = &table.rows_json()[0];
        assert_eq!(row["method"], "sft");
        assert!((row["hit@1"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!((row["hit@10"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        let ndcg10 = (1.0 + 1.0 / 9f64.log2()) / 3.0;
        assert!((row["ndcg@10"].as_f64().unwrap() - ndcg10).abs() < 1e-12);
        assert_eq!(row["invalid_rate"], 0.0);
        assert!(table.to_text().starts_with("| method"));
        table.caption = "ranking protocol: all-items".into();
        assert!(table
            .to_text()
            .starts_with("ranking protocol: all-items\n| method"));
        assert!(table.to_text().contains("| sft "));
    }
}
