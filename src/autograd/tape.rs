//! The tape: a list of nodes in the order they were computed. Each op appends one node holding its
//! output value and, if any input needs a gradient, a closure that maps the gradient of the output
//! to gradients of the inputs. `backward` walks the list in reverse, so every node's gradient is
//! complete (all its consumers came later) before its closure runs.
//!
//! Parameters live outside the tape, in [`Params`](super::Params): a fresh tape is built for every
//! step, parameters enter it as leaves ([`Tape::param`]), and their gradients are added into the
//! `Params` afterwards ([`Params::accumulate`](super::Params::accumulate)), which is also how
//! gradient accumulation over micro-batches works.

use super::params::{ParamId, Params};
use super::pieces::{add_into, add_pieces, tiled_runs, Piece, Placement};
use super::profile;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::time::Instant;

/// A handle to a value on a tape (an index into its node list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub(crate) usize);

/// Maps the output gradient to one optional gradient per input. `needs[i]` says whether input i
/// wants a gradient, so an op can skip work nobody will read (e.g. dX of the first layer).
pub type BackwardFn = Box<dyn FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>>>;

enum GradFn {
    /// A leaf: an input, a constant, or a parameter.
    Leaf,
    /// An op whose inputs need gradients.
    Op(BackwardFn),
    /// An op that has no backward, recorded on inputs that need gradients: reaching it in
    /// `backward` is an error, never a silently frozen parameter.
    Missing,
    /// An op none of whose inputs need a gradient (nothing to do).
    Constant,
    /// A piece of its one input (`split`, `index_select`, `embedding`): its gradient is added
    /// into that place of the input's gradient by the tape itself, when the input is reached
    /// (see `pieces.rs`).
    Piece(Placement),
}

struct Node {
    value: Tensor,
    op: &'static str,
    inputs: Vec<Var>,
    requires_grad: bool,
    grad_fn: GradFn,
    param: Option<ParamId>,
}

pub struct Tape {
    nodes: Vec<Node>,
    grad_enabled: bool,
    /// When the previous node was recorded (only with `ILREC_PROFILE`; see `profile.rs`).
    profile_mark: Option<Instant>,
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

impl Tape {
    /// A tape that records gradients.
    pub fn new() -> Tape {
        // Training steps free and reallocate the same large buffers: keep them in the process.
        crate::cpu::alloc::retain_freed_memory();
        Tape {
            nodes: Vec::new(),
            grad_enabled: true,
            profile_mark: None,
        }
    }

    /// A tape that never records gradients (evaluation, decoding).
    pub fn inference() -> Tape {
        Tape {
            nodes: Vec::new(),
            grad_enabled: false,
            profile_mark: None,
        }
    }

    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled
    }

    /// Runs `f` with recording switched off: values it creates are constants for `backward`.
    pub fn no_grad<T>(&mut self, f: impl FnOnce(&mut Tape) -> T) -> T {
        let was = self.grad_enabled;
        self.grad_enabled = false;
        let out = f(self);
        self.grad_enabled = was;
        out
    }

    /// A leaf value. `requires_grad` makes `backward` report its gradient (tests, inputs).
    pub fn leaf(&mut self, value: Tensor, requires_grad: bool) -> Var {
        self.push(Node {
            value,
            op: "leaf",
            inputs: Vec::new(),
            requires_grad: requires_grad && self.grad_enabled,
            grad_fn: GradFn::Leaf,
            param: None,
        })
    }

    /// A constant (never receives a gradient).
    pub fn constant(&mut self, value: Tensor) -> Var {
        self.leaf(value, false)
    }

    /// Parameter `id` of `params` as a leaf; trainable parameters require gradients.
    pub fn param(&mut self, params: &Params, id: ParamId) -> Var {
        let requires_grad = params.is_trainable(id) && self.grad_enabled;
        self.push(Node {
            value: params.value(id).to_f32(),
            op: "param",
            inputs: Vec::new(),
            requires_grad,
            grad_fn: GradFn::Leaf,
            param: Some(id),
        })
    }

    /// A weight matrix of parameter `id` for an op that reads half-precision storage itself
    /// (`linear`, `embedding`: they convert one matrix, or the rows they gather, at a time). A
    /// frozen bf16 / f16 weight enters the tape as stored, never as a full f32 copy, so a frozen
    /// half-precision base (LoRA) costs half the memory; a weight that needs a gradient is
    /// fetched as [`Tape::param`] fetches it. For f32 storage both are the same shared tensor.
    pub fn weight(&mut self, params: &Params, id: ParamId) -> Var {
        if params.is_trainable(id) && self.grad_enabled {
            return self.param(params, id);
        }
        self.push(Node {
            value: params.value(id).clone(), // shares the storage, in its own dtype
            op: "param",
            inputs: Vec::new(),
            requires_grad: false,
            grad_fn: GradFn::Leaf,
            param: Some(id),
        })
    }

    pub fn value(&self, v: Var) -> &Tensor {
        &self.nodes[v.0].value
    }

    pub fn shape(&self, v: Var) -> &[usize] {
        self.nodes[v.0].value.shape()
    }

    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// Number of nodes recorded so far.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Appends an op's output. `backward` is kept only when some input needs a gradient.
    pub fn record(
        &mut self,
        op: &'static str,
        value: Tensor,
        inputs: &[Var],
        backward: impl FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + 'static,
    ) -> Var {
        self.push_op(op, value, inputs, || GradFn::Op(Box::new(backward)))
    }

    /// Appends `value`, a piece of `input` at `placement` (elements `offset ..` of it, or rows
    /// `rows` of it), whose gradient flows back into exactly that place of `input`'s gradient.
    pub(super) fn record_piece(
        &mut self,
        op: &'static str,
        value: Tensor,
        input: Var,
        placement: Placement,
    ) -> Var {
        self.push_op(op, value, &[input], || GradFn::Piece(placement))
    }

    /// Appends the output of an op that has no backward. If an input needs a gradient the node is
    /// marked so that `backward` fails when the loss depends on it.
    pub fn record_no_backward(&mut self, op: &'static str, value: Tensor, inputs: &[Var]) -> Var {
        self.push_op(op, value, inputs, || GradFn::Missing)
    }

    /// An op node: `grad_fn()` when some input needs a gradient (and recording is on), else a
    /// constant.
    fn push_op(
        &mut self,
        op: &'static str,
        value: Tensor,
        inputs: &[Var],
        grad_fn: impl FnOnce() -> GradFn,
    ) -> Var {
        let requires_grad =
            self.grad_enabled && inputs.iter().any(|v| self.nodes[v.0].requires_grad);
        let grad_fn = if requires_grad {
            grad_fn()
        } else {
            GradFn::Constant
        };
        self.push(Node {
            value,
            op,
            inputs: inputs.to_vec(),
            requires_grad,
            grad_fn,
            param: None,
        })
    }

    fn push(&mut self, node: Node) -> Var {
        if profile::enabled() {
            profile::forward_mark(node.op, &mut self.profile_mark);
        }
        self.nodes.push(node);
        Var(self.nodes.len() - 1)
    }

    /// Backpropagates from a scalar `loss` (seed gradient 1).
    pub fn backward(&mut self, loss: Var) -> Result<Grads> {
        let n = self.value(loss).numel();
        if n != 1 {
            return Err(Error::Autograd(format!(
                "backward needs a scalar loss, got shape {:?}; reduce it first (sum/mean)",
                self.shape(loss)
            )));
        }
        let seed = Tensor::full(self.shape(loss), 1.0);
        self.backward_from(loss, seed)
    }

    /// Backpropagates an arbitrary upstream gradient `seed` (same shape as `out`).
    pub fn backward_from(&mut self, out: Var, seed: Tensor) -> Result<Grads> {
        seed.expect_shape("backward", "seed gradient", self.shape(out))?;
        if !self.nodes[out.0].requires_grad {
            return Err(Error::Autograd(
                "backward: the output does not depend on anything that requires a gradient".into(),
            ));
        }
        let mut grads: Vec<Option<Tensor>> = (0..=out.0).map(|_| None).collect();
        let mut pieces: Vec<Vec<Piece>> = (0..=out.0).map(|_| Vec::new()).collect();
        grads[out.0] = Some(seed);
        let mut result = Grads { leaves: Vec::new() };
        for i in (0..=out.0).rev() {
            let Some(g) = self.complete_grad(i, &mut grads, &mut pieces)? else {
                continue;
            };
            let node = &mut self.nodes[i];
            match std::mem::replace(&mut node.grad_fn, GradFn::Constant) {
                GradFn::Leaf => result.leaves.push((Var(i), node.param, g)),
                GradFn::Constant => {}
                GradFn::Missing => {
                    return Err(Error::Autograd(format!(
                        "op `{}` has no backward, but the loss depends on it through values that \
                         need gradients (a parameter would silently receive none)",
                        node.op
                    )))
                }
                GradFn::Piece(placement) => {
                    let (op, input) = (node.op, node.inputs[0]);
                    if self.nodes[input.0].requires_grad {
                        pieces[input.0].push(Piece {
                            op,
                            placement,
                            grad: g,
                        });
                    }
                }
                GradFn::Op(f) => {
                    let op = node.op;
                    let inputs = node.inputs.clone();
                    let needs: Vec<bool> = inputs
                        .iter()
                        .map(|v| self.nodes[v.0].requires_grad)
                        .collect();
                    let started = profile::enabled().then(Instant::now);
                    let input_grads = f(&g, &needs)?;
                    self.accumulate(op, &inputs, &needs, input_grads, &mut grads)?;
                    if let Some(t) = started {
                        profile::backward_time(op, t.elapsed().as_secs_f64());
                    }
                }
            }
        }
        Ok(result)
    }

    /// Node i's whole gradient, now that every consumer has run: the dense sum that arrived
    /// plus its deferred pieces (when only pieces arrived: copied side by side if they are split
    /// runs tiling the input, else added onto zeros). None when nothing arrived.
    fn complete_grad(
        &self,
        i: usize,
        grads: &mut [Option<Tensor>],
        pieces: &mut [Vec<Piece>],
    ) -> Result<Option<Tensor>> {
        let arrived = std::mem::take(&mut pieces[i]);
        let dense = grads[i].take();
        if arrived.is_empty() {
            return Ok(dense);
        }
        let started = profile::enabled().then(Instant::now);
        let shape = self.shape(Var(i));
        let g = match dense {
            Some(mut g) => {
                add_pieces(&mut g, &arrived)?;
                g
            }
            None => match tiled_runs(shape.iter().product(), &arrived)? {
                Some(whole) => Tensor::from_vec(whole, shape)?,
                None => {
                    let mut g = Tensor::zeros(shape);
                    add_pieces(&mut g, &arrived)?;
                    g
                }
            },
        };
        if let Some(t) = started {
            profile::backward_time(arrived[0].op, t.elapsed().as_secs_f64());
        }
        Ok(Some(g))
    }

    /// Adds each input gradient into that input's running gradient, checking shapes.
    fn accumulate(
        &self,
        op: &'static str,
        inputs: &[Var],
        needs: &[bool],
        input_grads: Vec<Option<Tensor>>,
        grads: &mut [Option<Tensor>],
    ) -> Result<()> {
        if input_grads.len() != inputs.len() {
            return Err(Error::Autograd(format!(
                "op `{op}` returned {} gradients for {} inputs",
                input_grads.len(),
                inputs.len()
            )));
        }
        for ((v, need), g) in inputs.iter().zip(needs).zip(input_grads) {
            let Some(g) = g else {
                if *need {
                    return Err(Error::Autograd(format!(
                        "op `{op}` returned no gradient for an input that needs one"
                    )));
                }
                continue;
            };
            if !need {
                continue;
            }
            g.expect_shape(op, "input gradient", self.shape(*v))?;
            match &mut grads[v.0] {
                slot @ None => *slot = Some(g),
                Some(acc) => add_into(acc, &g)?,
            }
        }
        Ok(())
    }
}

/// The gradients `backward` produced for the leaves of the tape.
pub struct Grads {
    leaves: Vec<(Var, Option<ParamId>, Tensor)>,
}

impl Grads {
    /// The gradient of a leaf (None when the loss does not depend on it).
    pub fn of(&self, v: Var) -> Option<&Tensor> {
        self.leaves
            .iter()
            .find(|(w, _, _)| *w == v)
            .map(|(_, _, g)| g)
    }

    /// (parameter, gradient) pairs; a parameter used twice on the tape appears twice.
    pub fn params(&self) -> impl Iterator<Item = (ParamId, &Tensor)> {
        self.into_iter()
    }
}

/// A leaf's (parameter, gradient) pair, if the leaf is a parameter.
type ParamGrad<'a> = Option<(ParamId, &'a Tensor)>;

/// Iterating `&Grads` gives its (parameter, gradient) pairs, as [`Grads::params`] does: what
/// `Params::accumulate` adds up (so that `params.rs` need not know the tape's types).
impl<'a> IntoIterator for &'a Grads {
    type Item = (ParamId, &'a Tensor);
    type IntoIter = std::iter::FilterMap<
        std::slice::Iter<'a, (Var, Option<ParamId>, Tensor)>,
        fn(&'a (Var, Option<ParamId>, Tensor)) -> ParamGrad<'a>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.leaves.iter().filter_map(|(_, p, g)| p.map(|p| (p, g)))
    }
}
