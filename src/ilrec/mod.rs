//! ILRec itself (ILREC.md section 5): the logit lens of intermediate layers, self-hard negatives,
//! and the CPO / CRR / CPD objective.
//!
//! - [`negatives`]  the ensemble of lens layers, the dynamic threshold, the negative weights
//! - [`loss`]       the fused objective op (CPO + CRR + CPD) with its closed-form gradient

pub mod lens;
pub mod loss;
pub mod negatives;

pub use lens::LensLayers;
pub use loss::{ItemVocab, ObjectiveTerms, ObjectiveWeights, ResponsePosition};
pub use negatives::{
    crr_tokens, ensemble_logits, self_hard_negatives, Candidates, Ensemble, PositionNegatives,
};
