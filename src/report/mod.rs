//! What a run tells the person watching it and leaves behind on disk.
//!
//! - [`progress`]  a progress bar with rate and ETA on stderr, one per long stage
//! - [`runlog`]    the training log as JSON lines (one object per optimizer step)
//! - [`svg`]       hand-written SVG line plots (loss terms, validation NDCG@10) and bar charts
//!   with error bars (`study`)
//! - [`table`]     the results table (popularity, SASRec, SFT, ILRec) as text and JSON

pub mod progress;
pub mod runlog;
pub mod svg;
pub mod table;

pub use progress::Progress;
pub use runlog::RunLog;
pub use svg::{bar_chart, line_plot, Bar, BarGroup, Series};
pub use table::{ResultRow, ResultsTable};
