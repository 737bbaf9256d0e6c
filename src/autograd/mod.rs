//! A minimal reverse-mode autograd.
//!
//! - [`Tape`] records ops on [`Var`]s; [`Tape::backward`] walks them in reverse.
//! - [`Params`] holds named parameters and their accumulated gradients across tapes.
//! - One file per op family, each holding that family's forward AND backward.
//! - [`GradCheck`] checks any op against central finite differences.
//!
//! Typical step:
//! ```text
//! let mut tape = Tape::new();
//! let loss = model.loss(&mut tape, &params, &batch)?;
//! let grads = tape.backward(loss)?;
//! drop(tape);                  // release the tape's references to the weights
//! params.accumulate(&grads)?;  // grads of several micro-batches add up
//! optimizer.step(&mut params)?;
//! params.zero_grad();
//! ```

mod attention;
mod dropout;
mod elementwise;
mod embedding;
mod gradcheck;
mod linalg;
mod lora_linear;
mod loss;
mod norm;
mod overwrite;
mod params;
mod pieces;
pub mod profile;
mod reduce;
mod rope;
mod shape;
mod softmax;
mod tape;

pub use elementwise::{erf, gelu, sigmoid, silu};
pub use gradcheck::GradCheck;
pub use linalg::weight_gradient_products;
pub use lora_linear::LowRankUpdate;
pub use params::{ParamId, Params};
pub use rope::default_inv_freq;
/// The vectorisable exp and 8-lane log-sum-exp, shared with the ILRec objective's row loops.
pub use tape::{BackwardFn, Grads, Tape, Var};
