//! The training log: one JSON object per line (`log.jsonl`), appended as training goes, so a
//! killed run leaves a readable log and `--resume` can continue it.
//!
//! A line is whatever the caller puts in it (the trainer writes stage, step, loss terms,
//! negatives per position, lr, grad norm, tokens/s). Resuming truncates the log to the lines
//! written up to the checkpoint, so the resumed run's log equals an uninterrupted run's.

use crate::{Error, Result};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// An append-only JSON-lines file plus the records kept in memory (for the plots).
pub struct RunLog {
    path: PathBuf,
    records: Vec<Value>,
}

impl RunLog {
    /// Starts a new, empty log at `path` (an existing file is replaced).
    pub fn create(path: &Path) -> Result<RunLog> {
        std::fs::write(path, "").map_err(|e| Error::io(path, e))?;
        Ok(RunLog {
            path: path.to_path_buf(),
            records: Vec::new(),
        })
    }

    /// Reopens the log of a killed run with every record it holds.
    pub fn open(path: &Path) -> Result<RunLog> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut records = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str(line) {
                Ok(value) => records.push(value),
                // A kill or a full disk mid-append tears the last line; the resume truncates the
                // log to its checkpoint anyway, so that line is dropped (and said).
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {
                    eprintln!("{}: dropped a torn last line {}", path.display(), i + 1);
                }
                Err(e) => return Err(Error::format(path, format!("line {}: {e}", i + 1))),
            }
        }
        Ok(RunLog {
            path: path.to_path_buf(),
            records,
        })
    }

    /// Keeps only the first `keep` records (those a checkpoint covers), in memory and on disk.
    pub fn truncate(&mut self, keep: usize) -> Result<()> {
        if self.records.len() < keep {
            return Err(Error::format(
                &self.path,
                format!(
                    "the checkpoint covers {keep} log lines but the log has {}",
                    self.records.len()
                ),
            ));
        }
        self.records.truncate(keep);
        self.rewrite()
    }

    /// Appends one record to the file and to memory.
    pub fn append(&mut self, record: Value) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        writeln!(file, "{record}").map_err(|e| Error::io(&self.path, e))?;
        self.records.push(record);
        Ok(())
    }

    pub fn records(&self) -> &[Value] {
        &self.records
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// `(x, y)` points of the records whose `filter_key` equals `filter_value`, with x and y read
    /// from the named numeric fields (records missing either are skipped).
    pub fn series(&self, filter: (&str, &str), x: &str, y: &str) -> Vec<(f64, f64)> {
        self.records
            .iter()
            .filter(|r| r.get(filter.0).and_then(Value::as_str) == Some(filter.1))
            .filter_map(|r| Some((r.get(x)?.as_f64()?, r.get(y)?.as_f64()?)))
            .collect()
    }

    fn rewrite(&mut self) -> Result<()> {
        let mut text = String::new();
        for r in &self.records {
            text.push_str(&r.to_string());
            text.push('\n');
        }
        crate::files::write_atomic(&self.path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_torn_last_line_is_dropped_a_torn_middle_line_is_an_error() {
        let dir = std::env::temp_dir().join(format!("ilrec-runlog-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.jsonl");
        std::fs::write(&path, "{\"step\":1}\n{\"step\":2}\n{\"ste").unwrap();
        assert_eq!(RunLog::open(&path).unwrap().len(), 2);
        std::fs::write(&path, "{\"step\":1}\n{\"ste\n{\"step\":3}\n").unwrap();
        let err = RunLog::open(&path)
            .err()
            .expect("a torn middle line is corruption");
        assert!(err.to_string().contains("line 2"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn append_then_resume_truncates_to_the_checkpoint() {
        let dir = std::env::temp_dir().join(format!("ilrec-runlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.jsonl");
        let mut log = RunLog::create(&path).unwrap();
        for step in 0..5 {
            log.append(json!({"stage": "sft", "step": step, "loss": 5.0 - step as f64}))
                .unwrap();
        }
        let mut resumed = RunLog::open(&path).unwrap();
        assert_eq!(resumed.len(), 5);
        resumed.truncate(3).unwrap();
        assert_eq!(resumed.len(), 3);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        assert_eq!(
            resumed.series(("stage", "sft"), "step", "loss"),
            vec![(0.0, 5.0), (1.0, 4.0), (2.0, 3.0)]
        );
        assert!(resumed.truncate(4).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
