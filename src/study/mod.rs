//! `study`: the results study of issue 22 ("does ILRec beat SFT?"): a grid of data sets x
//! methods x seeds run through `pipeline::run`, with the statistics a reviewer asks for. Data
//! flows down the list:
//!
//! - [`grid`]     what to run: data sets, seeds, methods, protocols, shared train options,
//!   the search space (flags or a JSON file)
//! - [`flags`]    the command line (`study --help`)
//! - [`select`]   selection on validation only: lr (by SFT), then alpha, lambda, mu and the lens
//!   layers (by ILRec), frozen before any test number
//! - [`cell`]     one data set and seed = one run folder, every method from one warm-up, rows
//!   from its per-user ranks
//! - [`record`]   a run's settings as the rows and trials record them (select and cell)
//! - [`results`]  `results.jsonl`: one line per data set x method x seed x protocol with every
//!   metric and the per-user ranks; unfinished cells dropped on reading
//! - [`stats`]    mean +- std, per-user metrics from ranks, the paired bootstrap
//! - [`report`]   `results.md` and `results-<protocol>.svg` from the rows alone
//! - [`driver`]   the whole study, resumable cell by cell
//! - [`negatives`], [`negatives_report`]: the analyses of ILRec's self-hard negatives on a
//!   trained run folder (per block, false negatives, CRR's soft labels), `bin/negatives.rs`
//!
//! It sits above `pipeline` (it calls `pipeline::run` and reads its per-user ranks) and below
//! `bin/study.rs`.

pub mod cell;
pub mod driver;
pub mod flags;
pub mod grid;
pub mod negatives;
pub mod negatives_report;
pub mod record;
pub mod report;
pub mod results;
pub mod select;
pub mod stats;

pub use driver::{run_study, Study};
