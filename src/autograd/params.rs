//! Named parameters and their accumulated gradients, kept outside any tape.
//!
//! Names are the checkpoint's names (`model.layers.0.self_attn.q_proj.weight`), so loading,
//! saving and error messages all speak the same language.

use super::pieces::add_into;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub usize);

#[derive(Clone, Default)]
pub struct Params {
    names: Vec<String>,
    values: Vec<Tensor>,
    grads: Vec<Option<Tensor>>,
    trainable: Vec<bool>,
    by_name: HashMap<String, ParamId>,
}

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Adds a parameter; errors if the name is taken.
    pub fn add(&mut self, name: &str, value: Tensor, trainable: bool) -> Result<ParamId> {
        if self.by_name.contains_key(name) {
            return Err(Error::config(
                format!("parameter `{name}` is defined twice"),
                "",
            ));
        }
        let id = ParamId(self.names.len());
        self.names.push(name.to_string());
        self.values.push(value);
        self.grads.push(None);
        self.trainable.push(trainable);
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.names.len()).map(ParamId)
    }

    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, id: ParamId) -> &str {
        &self.names[id.0]
    }

    pub fn value(&self, id: ParamId) -> &Tensor {
        &self.values[id.0]
    }

    pub fn value_mut(&mut self, id: ParamId) -> &mut Tensor {
        &mut self.values[id.0]
    }

    /// Replaces a parameter's value; the shape must stay the same.
    pub fn set_value(&mut self, id: ParamId, value: Tensor) -> Result<()> {
        value.expect_shape(
            "Params::set_value",
            &self.names[id.0],
            self.values[id.0].shape(),
        )?;
        self.values[id.0] = value;
        Ok(())
    }

    /// Replaces a parameter's value and shape (vocabulary resize); drops its gradient.
    pub fn replace(&mut self, id: ParamId, value: Tensor) {
        self.values[id.0] = value;
        self.grads[id.0] = None;
    }

    pub fn grad(&self, id: ParamId) -> Option<&Tensor> {
        self.grads[id.0].as_ref()
    }

    pub fn grad_mut(&mut self, id: ParamId) -> Option<&mut Tensor> {
        self.grads[id.0].as_mut()
    }

    pub fn is_trainable(&self, id: ParamId) -> bool {
        self.trainable[id.0]
    }

    pub fn set_trainable(&mut self, id: ParamId, trainable: bool) {
        self.trainable[id.0] = trainable;
    }

    /// Adds the gradients of one backward pass into the stored ones (gradient accumulation):
    /// `params.accumulate(&grads)` with the tape's `Grads`, or any (parameter, gradient) pairs.
    pub fn accumulate<'a>(
        &mut self,
        grads: impl IntoIterator<Item = (ParamId, &'a Tensor)>,
    ) -> Result<()> {
        for (id, g) in grads {
            match &mut self.grads[id.0] {
                slot @ None => *slot = Some(g.clone()),
                Some(acc) => add_into(acc, g)?,
            }
        }
        Ok(())
    }

    /// Forgets all gradients.
    pub fn zero_grad(&mut self) {
        self.grads.iter_mut().for_each(|g| *g = None);
    }

    /// Names of trainable parameters that have no gradient, or a gradient that is all zeros or
    /// not finite: after a backward that should reach everything, this must be empty.
    pub fn params_without_gradient(&self) -> Vec<String> {
        self.ids()
            .filter(|&id| self.is_trainable(id))
            .filter(|&id| match self.grad(id) {
                None => true,
                Some(g) => {
                    let v = g.to_vec();
                    v.iter().any(|x| !x.is_finite()) || v.iter().all(|&x| x == 0.0)
                }
            })
            .map(|id| self.names[id.0].clone())
            .collect()
    }

    /// Names of the parameters that hold a gradient (in id order). For a frozen base with
    /// adapters this must be exactly the adapter parameters: a frozen matrix never gets a
    /// gradient buffer (the tape does not ask for its gradient at all).
    pub fn params_with_gradient(&self) -> Vec<String> {
        self.ids()
            .filter(|&id| self.grads[id.0].is_some())
            .map(|id| self.names[id.0].clone())
            .collect()
    }

    /// Total number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.values.iter().map(|v| v.numel()).sum()
    }
}
