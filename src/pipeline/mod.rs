//! The training pipeline as typed stages, in the order a run calls them ([`run`] tells the
//! story and is the one call `train` and `study` make; each stage lives here so other front
//! ends and tests can call it):
//!
//! 1. [`data`]      load ([`data_flags`]), split, render items ([`config::ItemRepr`]), vocabulary,
//!    trie, examples, the evaluation protocol's exclusions
//! 2. [`model`]     resolve `--model` (preset, HF folder, GGUF), tokenizer, build the model
//! 3. [`cf`]        train SASRec, the CF reward model
//! 4. [`stage`]     train one stage, resumably (warm-up, then each [`variants`] method)
//! 5. [`evaluate`]  trie-constrained beam search on validation / test, each outcome kept on
//!    disk by [`eval_cache`] so a resumed run does not search again
//! 6. [`results`]   run folder, config.json, plots, results.json, the verdict
//!
//! [`ranks`] holds the per-user ranks of every method under both protocols (`study`).
//!
//! And back: [`saved_run`] opens a run folder (its config, its trained stages) and
//! [`recommender`] loads a stage as a recommender (`recommend`, `eval`).
//!
//! Every hyper-parameter is a field of [`config::PipelineConfig`] with a documented default;
//! [`flags`] is its command line (`train --help`).

pub mod ablations;
pub mod cf;
pub mod config;
pub mod data;
pub mod data_flags;
pub mod eval_cache;
pub mod evaluate;
pub mod flags;
pub mod model;
pub mod ranks;
pub mod recommender;
pub mod results;
pub mod run;
pub mod saved_run;
pub mod sids;
pub mod stage;
pub mod variants;
