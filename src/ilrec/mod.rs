//! ILRec itself (ILREC.md section 5): the logit lens of intermediate layers, self-hard negatives,
//! and the CPO / CRR / CPD objective.
//!
//! - [`negatives`]  the ensemble of lens layers, the dynamic threshold, the negative weights
//! - [`lens_report`] top-k tokens of the lens at chosen blocks and every position (`lens` binary)
//! - [`explain`]    one item's response through the lens: each layer's rank of the chosen
//!   token and the self-hard negatives there (`recommend --explain`)
//! - [`loss`]       the fused objective op (CPO + CRR + CPD) with its closed-form gradient
//! - [`gradients`]  one training step's gradients (SFT or ILRec) on a batch
//! - [`trainer`]    the loop of a stage: batches, update, logging, resumable checkpoints

pub mod explain;
pub mod gradients;
pub mod lens;
pub mod lens_report;
pub mod loss;
pub mod negatives;
pub mod schedule;
pub mod step;
pub mod trainer;

pub use lens::LensLayers;
pub use loss::{ItemVocab, Normalizer, ObjectiveTerms, ObjectiveWeights, ResponsePosition};
pub use negatives::{
    crr_tokens, ensemble_logits, self_hard_negatives, Candidates, Ensemble, PositionNegatives,
};
