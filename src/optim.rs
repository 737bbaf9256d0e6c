//! The optimizer side of training: AdamW, the cosine learning-rate schedule with linear warm-up,
//! global gradient-norm clipping, and gradient scaling for accumulation over micro-batches.
//!
//! AdamW follows PyTorch's `torch.optim.AdamW` (single-tensor path) operation for operation, so a
//! run can be compared with a PyTorch one step by step. Per step t of a parameter p with gradient g:
//! ```text
//! p *= 1 - lr * wd                      (decoupled weight decay, skipped for the no-decay set)
//! m += (1 - b1) * (g - m)               (= b1 m + (1 - b1) g, written as PyTorch's lerp)
//! v  = b2 v + (1 - b2) g^2
//! p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//! Like PyTorch, t counts the steps *this parameter* received a gradient; parameters without a
//! gradient are left alone (neither decayed nor moved).

use crate::autograd::{ParamId, Params};
use crate::cpu::par::{for_each_chunk, DisjointMut, CHUNK};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// AdamW hyper-parameters (PyTorch's defaults in `Default`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Moment estimates of one parameter.
#[derive(Clone, Debug)]
struct Moments {
    /// First moment (mean of gradients), same length as the parameter.
    m: Vec<f32>,
    /// Second moment (mean of squared gradients).
    v: Vec<f32>,
    /// Steps this parameter has taken (for bias correction).
    t: u64,
}

/// AdamW with decoupled weight decay and bias correction; state indexed by `ParamId`.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    state: Vec<Option<Moments>>,
    no_decay: Vec<bool>,
    steps: u64,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> AdamW {
        AdamW {
            config,
            state: Vec::new(),
            no_decay: Vec::new(),
            steps: 0,
        }
    }

    /// Excludes these parameters from weight decay (biases and norm weights, by convention).
    pub fn set_no_decay(&mut self, ids: impl IntoIterator<Item = ParamId>) {
        for id in ids {
            if self.no_decay.len() <= id.0 {
                self.no_decay.resize(id.0 + 1, false);
            }
            self.no_decay[id.0] = true;
        }
    }

    fn decays(&self, id: ParamId) -> bool {
        !self.no_decay.get(id.0).copied().unwrap_or(false)
    }

    /// Allocates the moments of every trainable parameter now and writes them (zeros), instead
    /// of at its first update. Called before the first step: the moments then take memory ahead
    /// of the first step's tape rather than memory that tape has just freed, so the second step's
    /// tape does not grow the heap into never-touched pages again. On the 2-core VM this removed
    /// the 5-11 s second step of every SmolLM2 run (80 k fewer page faults; BENCHMARKS.md).
    /// Values and updates are unchanged: a zero moment with t = 0 is what the first update
    /// would have created.
    pub fn allocate_state(&mut self, params: &Params) {
        if self.state.len() < params.len() {
            self.state.resize(params.len(), None);
        }
        for id in params.ids().filter(|&id| params.is_trainable(id)) {
            let n = params.value(id).numel();
            self.state[id.0].get_or_insert_with(|| Moments {
                m: touched_zeros(n),
                v: touched_zeros(n),
                t: 0,
            });
        }
    }

    /// Number of `step` calls so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update of every trainable parameter that has a gradient, at learning rate `lr`
    /// (from a schedule; `config.lr` is only the default a caller may pass).
    pub fn step(&mut self, params: &mut Params, lr: f32) -> Result<()> {
        self.step_scaled(params, lr, 1.0)
    }

    /// [`AdamW::step`] on the gradients times `grad_scale`, the clipping factor of
    /// [`clip_factor`]: the same bits as [`scale_grads`] then `step` (each g * s is rounded once
    /// either way), without the pass that reads and writes every gradient to scale it (for
    /// SmolLM2, 540 MB each way on a step that is memory-bound here).
    pub fn step_scaled(&mut self, params: &mut Params, lr: f32, grad_scale: f32) -> Result<()> {
        if self.state.len() < params.len() {
            self.state.resize(params.len(), None);
        }
        let c = self.config;
        for id in params.ids().collect::<Vec<_>>() {
            if !params.is_trainable(id) {
                continue;
            }
            let Some(grad) = params.grad(id) else {
                continue;
            };
            let grad = grad.to_f32();
            let n = params.value(id).numel();
            if grad.numel() != n {
                return Err(Error::shape(
                    "AdamW::step",
                    format!(
                        "gradient of `{}` has {} elements, the parameter {n}",
                        params.name(id),
                        grad.numel()
                    ),
                ));
            }
            let moments = self.state[id.0].get_or_insert_with(|| Moments {
                m: vec![0.0; n],
                v: vec![0.0; n],
                t: 0,
            });
            if moments.m.len() != n {
                return Err(Error::shape(
                    "AdamW::step",
                    format!(
                        "optimizer state of `{}` has {} elements, the parameter now {n} \
                         (resize the vocabulary before creating the optimizer)",
                        params.name(id),
                        moments.m.len()
                    ),
                ));
            }
            moments.t += 1;
            let decay = if self.no_decay.get(id.0).copied().unwrap_or(false) {
                0.0
            } else {
                c.weight_decay
            };
            let name = params.name(id).to_string();
            let p = params
                .value_mut(id)
                .data_mut()
                .map_err(|e| Error::Autograd(format!("AdamW: parameter `{name}`: {e}")))?;
            adamw_update(p, grad.data()?, moments, (&c, lr, decay), grad_scale);
        }
        self.steps += 1;
        Ok(())
    }

    /// The state as named tensors for a checkpoint: `adam.m.<param>`, `adam.v.<param>`,
    /// `adam.t.<param>` (step count as a 1-element f32, exact up to 2^24 steps) and `adam.steps`.
    pub fn state_to_tensors(&self, params: &Params) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![("adam.steps".to_string(), Tensor::scalar(self.steps as f32))];
        for id in params.ids() {
            let Some(Some(s)) = self.state.get(id.0) else {
                continue;
            };
            let name = params.name(id);
            let shape = params.value(id).shape();
            out.push((
                format!("adam.m.{name}"),
                Tensor::from_vec(s.m.clone(), shape)?,
            ));
            out.push((
                format!("adam.v.{name}"),
                Tensor::from_vec(s.v.clone(), shape)?,
            ));
            out.push((format!("adam.t.{name}"), Tensor::scalar(s.t as f32)));
        }
        Ok(out)
    }

    /// Restores the state written by [`AdamW::state_to_tensors`]; `get(name)` looks a tensor up.
    /// Parameters without saved moments start fresh; shapes must match the parameters.
    pub fn load_state(
        &mut self,
        params: &Params,
        get: impl Fn(&str) -> Option<Tensor>,
    ) -> Result<()> {
        self.state = vec![None; params.len()];
        self.steps = match get("adam.steps") {
            Some(t) => t.item()? as u64,
            None => 0,
        };
        for id in params.ids() {
            let name = params.name(id);
            let (Some(m), Some(v), Some(t)) = (
                get(&format!("adam.m.{name}")),
                get(&format!("adam.v.{name}")),
                get(&format!("adam.t.{name}")),
            ) else {
                continue;
            };
            let shape = params.value(id).shape();
            m.expect_shape("AdamW::load_state", &format!("adam.m.{name}"), shape)?;
            v.expect_shape("AdamW::load_state", &format!("adam.v.{name}"), shape)?;
            self.state[id.0] = Some(Moments {
                m: m.to_vec(),
                v: v.to_vec(),
                t: t.item()? as u64,
            });
        }
        Ok(())
    }

    /// Whether `id` is decayed (for tests and logs).
    pub fn is_decayed(&self, id: ParamId) -> bool {
        self.decays(id)
    }
}

/// `n` zeros written one by one: `vec![0.0; n]` comes from calloc, whose pages stay untouched
/// (and unbacked) until the first update writes them.
fn touched_zeros(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, 0.0);
    v
}

/// The AdamW update of one parameter, in PyTorch's order of operations (f32 arithmetic, bias
/// corrections computed in f64 as Python floats are).
/// `hyper` = (config, learning rate, weight decay); the gradient is read as g * `grad_scale`.
fn adamw_update(
    p: &mut [f32],
    g: &[f32],
    s: &mut Moments,
    hyper: (&AdamWConfig, f32, f32),
    grad_scale: f32,
) {
    let (c, lr, decay) = hyper;
    let t = s.t as i32;
    let bias1 = 1.0 - (c.beta1 as f64).powi(t);
    let bias2_sqrt = (1.0 - (c.beta2 as f64).powi(t)).sqrt();
    let step_size = (lr as f64 / bias1) as f32;
    let bias2_sqrt = bias2_sqrt as f32;
    let keep = 1.0 - lr * decay;
    let (one_m_b1, one_m_b2) = (1.0 - c.beta1, 1.0 - c.beta2);
    // Elementwise and independent per element: fixed chunks over the pool give the same bits
    // with any thread count.
    let n = p.len();
    let (p, m, v) = (
        DisjointMut::new(p),
        DisjointMut::new(&mut s.m[..n]),
        DisjointMut::new(&mut s.v[..n]),
    );
    for_each_chunk(n, CHUNK, |r| {
        // SAFETY: chunks are disjoint.
        let (p, m, v) = unsafe { (p.range(r.clone()), m.range(r.clone()), v.range(r.clone())) };
        for (((p, &g), m), v) in p.iter_mut().zip(&g[r]).zip(m).zip(v) {
            let g = g * grad_scale; // exact when 1
            *p *= keep;
            *m += one_m_b1 * (g - *m);
            *v = *v * c.beta2 + one_m_b2 * g * g;
            let denom = v.sqrt() / bias2_sqrt + c.eps;
            *p -= step_size * *m / denom;
        }
    });
}

/// Global L2 norm of all stored gradients (f64 accumulation). Each gradient is summed in fixed
/// chunks of [`CHUNK`] elements on the pool, and the chunk sums are added in order, so the
/// result is the same with any thread count.
pub fn grad_norm(params: &Params) -> f32 {
    let sum_sq: f64 = params
        .ids()
        .filter_map(|id| params.grad(id))
        .map(|g| match g.data() {
            Ok(x) => sum_of_squares(x),
            Err(_) => sum_of_squares(&g.to_vec()), // half-precision storage
        })
        .sum();
    sum_sq.sqrt() as f32
}

/// sum x^2 in f64, per chunk in parallel, chunk sums added in index order.
fn sum_of_squares(x: &[f32]) -> f64 {
    let mut partial = vec![0.0f64; x.len().div_ceil(CHUNK)];
    {
        let out = DisjointMut::new(&mut partial);
        for_each_chunk(x.len(), CHUNK, |r| {
            let sum = chunk_sum_of_squares(&x[r.clone()]);
            // SAFETY: one cell per chunk.
            unsafe { out.range(r.start / CHUNK..r.start / CHUNK + 1)[0] = sum };
        });
    }
    partial.iter().sum()
}

/// sum x^2 of one chunk in f64, over 8 independent running sums (element i goes to sum i % 8)
/// added in a fixed order at the end. One running sum is a chain of dependent additions, 4
/// cycles each: 135 M gradients took ~150 ms a step, latency-bound, where reading them takes a
/// fraction of that.
fn chunk_sum_of_squares(x: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut blocks = x.chunks_exact(8);
    for block in &mut blocks {
        for (lane, &v) in lanes.iter_mut().zip(block) {
            *lane += (v as f64) * (v as f64);
        }
    }
    let tail: f64 = blocks
        .remainder()
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum();
    lanes.iter().sum::<f64>() + tail
}

/// Scales every gradient so that the global norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: factor max_norm / (norm + 1e-6), applied only when below 1). Returns the
/// norm before clipping; a non-finite norm is returned as is and the gradients are left alone so
/// the caller can see and skip the step.
pub fn clip_grad_norm(params: &mut Params, max_norm: f32) -> Result<f32> {
    let norm = grad_norm(params);
    if !norm.is_finite() {
        return Ok(norm);
    }
    let factor = clip_factor(norm, max_norm);
    if factor < 1.0 {
        scale_grads(params, factor)?;
    }
    Ok(norm)
}

/// The factor [`clip_grad_norm`] scales the gradients by: max_norm / (norm + 1e-6) when that is
/// below 1, else exactly 1 (for [`AdamW::step_scaled`], which applies it inside the update).
pub fn clip_factor(norm: f32, max_norm: f32) -> f32 {
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        factor
    } else {
        1.0
    }
}

/// Multiplies every stored gradient by `s` (e.g. 1 / micro-batches for gradient accumulation).
pub fn scale_grads(params: &mut Params, s: f32) -> Result<()> {
    for id in params.ids().collect::<Vec<_>>() {
        if let Some(g) = params.grad_mut(id) {
            let data = DisjointMut::new(g.data_mut()?);
            for_each_chunk(data.len(), CHUNK, |r| {
                // SAFETY: chunks are disjoint.
                unsafe { data.range(r) }.iter_mut().for_each(|x| *x *= s);
            });
        }
    }
    Ok(())
}

/// Linear warm-up from 0 to `base_lr` over `warmup_steps`, then a half cosine down to `min_lr` at
/// `total_steps` (HF's `get_cosine_schedule_with_warmup` when min_lr = 0). `lr(step)` is the rate
/// for the update that follows `step` completed updates, so `lr(0) = 0` when there is a warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineSchedule {
    pub base_lr: f32,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub min_lr: f32,
}

impl CosineSchedule {
    pub fn lr(&self, step: usize) -> f32 {
        if step < self.warmup_steps {
            return self.base_lr * step as f32 / self.warmup_steps as f32;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        (self.min_lr as f64 + (self.base_lr - self.min_lr) as f64 * cosine) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_param(value: Vec<f32>, grad: Vec<f32>) -> (Params, ParamId) {
        let mut p = Params::new();
        let n = value.len();
        let id = p
            .add("w", Tensor::from_vec(value, &[n]).unwrap(), true)
            .unwrap();
        set_grad(&mut p, id, grad);
        (p, id)
    }

    fn set_grad(p: &mut Params, id: ParamId, grad: Vec<f32>) {
        // Route the gradient through a tape so the test uses the public accumulation path.
        let mut tape = crate::autograd::Tape::new();
        let w = tape.param(p, id);
        let n = grad.len();
        let r = tape.constant(Tensor::from_vec(grad, &[n]).unwrap());
        let prod = tape.mul(w, r).unwrap();
        let seed = Tensor::full(&[n], 1.0);
        let grads = tape.backward_from(prod, seed).unwrap();
        p.zero_grad();
        p.accumulate(&grads).unwrap();
    }

    /// Two AdamW steps on one scalar, written out by hand in f64.
    #[test]
    fn adamw_matches_a_hand_computed_two_step_update() {
        let c = AdamWConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.5,
        };
        let (mut params, id) = one_param(vec![1.0], vec![0.5]);
        let mut opt = AdamW::new(c);
        opt.step(&mut params, 0.1).unwrap();
        // step 1: p = 1*(1-0.05) = 0.95; m = 0.05; v = 0.0025; m_hat = 0.5, v_hat = 0.25
        // p = 0.95 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.85
        let p1 = params.value(id).to_vec()[0];
        assert!((p1 - 0.85).abs() < 1e-6, "{p1}");
        set_grad(&mut params, id, vec![-1.0]);
        opt.step(&mut params, 0.1).unwrap();
        let p = 0.85f64 * (1.0 - 0.05);
        let m = 0.9 * 0.05 - 0.1;
        let v = 0.99 * 0.0025 + 0.01 * 1.0;
        let m_hat = m / (1.0 - 0.81);
        let v_hat = v / (1.0 - 0.99f64 * 0.99);
        let expect = p - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        let p2 = params.value(id).to_vec()[0] as f64;
        assert!((p2 - expect).abs() < 1e-6, "{p2} vs {expect}");
    }

    #[test]
    fn no_decay_and_missing_gradients() {
        let c = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        };
        let mut params = Params::new();
        let a = params
            .add("a", Tensor::from_vec(vec![2.0], &[1]).unwrap(), true)
            .unwrap();
        let b = params
            .add("b", Tensor::from_vec(vec![3.0], &[1]).unwrap(), true)
            .unwrap();
        set_grad(&mut params, a, vec![0.0]);
        let mut opt = AdamW::new(c);
        opt.set_no_decay([a]);
        opt.step(&mut params, 0.1).unwrap();
        // a: no decay, zero gradient -> unchanged; b: no gradient -> untouched (not even decayed).
        assert_eq!(params.value(a).to_vec(), vec![2.0]);
        assert_eq!(params.value(b).to_vec(), vec![3.0]);
        assert!(!opt.is_decayed(a) && opt.is_decayed(b));
    }

    #[test]
    fn state_round_trips() {
        let (mut params, id) = one_param(vec![1.0, 2.0], vec![0.5, -0.25]);
        let mut opt = AdamW::new(AdamWConfig::default());
        opt.step(&mut params, 0.01).unwrap();
        let saved = opt.state_to_tensors(&params).unwrap();
        let mut restored = AdamW::new(AdamWConfig::default());
        restored
            .load_state(&params, |n| {
                saved.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone())
            })
            .unwrap();
        let mut p2 = params.clone();
        opt.step(&mut params, 0.01).unwrap();
        restored.step(&mut p2, 0.01).unwrap();
        assert_eq!(params.value(id).to_vec(), p2.value(id).to_vec());
        assert_eq!(restored.steps(), 2);
    }

    #[test]
    fn clipping_scales_to_max_norm_and_reports_the_old_norm() {
        let (mut params, id) = one_param(vec![0.0, 0.0], vec![3.0, 4.0]);
        let norm = clip_grad_norm(&mut params, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let g = params.grad(id).unwrap().to_vec();
        assert!(
            (g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5,
            "{g:?}"
        );
        // Below the threshold: untouched.
        let norm = clip_grad_norm(&mut params, 10.0).unwrap();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!((params.grad(id).unwrap().to_vec()[1] - 0.8).abs() < 1e-5);
    }

    #[test]
    fn clipping_inside_the_update_gives_the_bits_of_clipping_first() {
        let n = 3 * CHUNK + 17; // several chunks, a ragged last one
        let value: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01)
            .collect();
        let grad: Vec<f32> = (0..n)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.3)
            .collect();
        for max_norm in [1.0, 1e6] {
            let (mut a, id) = one_param(value.clone(), grad.clone());
            let (mut b, _) = one_param(value.clone(), grad.clone());
            let (mut opt_a, mut opt_b) = (
                AdamW::new(AdamWConfig::default()),
                AdamW::new(AdamWConfig::default()),
            );
            for _ in 0..2 {
                let norm = clip_grad_norm(&mut a, max_norm).unwrap();
                opt_a.step(&mut a, 0.01).unwrap();
                let factor = clip_factor(grad_norm(&b), max_norm);
                assert_eq!(factor < 1.0, max_norm == 1.0, "norm {norm}");
                opt_b.step_scaled(&mut b, 0.01, factor).unwrap();
                let bits = |p: &Params| {
                    p.value(id)
                        .to_vec()
                        .iter()
                        .map(|x| x.to_bits())
                        .collect::<Vec<_>>()
                };
                assert_eq!(bits(&a), bits(&b), "max_norm {max_norm}");
                for p in [&mut a, &mut b] {
                    p.zero_grad();
                    set_grad(p, id, grad.clone());
                }
            }
        }
    }

    #[test]
    fn grad_norm_equals_the_plain_sum_over_chunks_lanes_and_tails() {
        // Integers whose squares sum exactly in f64: any order of the additions gives the same
        // value, so the lanes, the chunk tails and the chunk order can be checked exactly.
        for n in [1, 7, 8, 9, CHUNK - 1, 2 * CHUNK + 13] {
            let grad: Vec<f32> = (0..n).map(|i| ((i * 7919) % 61) as f32 - 30.0).collect();
            let (params, _) = one_param(vec![0.0; n], grad.clone());
            let want: f64 = grad.iter().map(|&g| (g as f64) * (g as f64)).sum();
            assert_eq!(grad_norm(&params), want.sqrt() as f32, "n = {n}");
        }
    }

    #[test]
    fn moments_allocated_up_front_change_no_update() {
        let value: Vec<f32> = (0..40).map(|i| i as f32 * 0.1 - 2.0).collect();
        let grad: Vec<f32> = (0..40).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.5).collect();
        let (mut a, id) = one_param(value.clone(), grad.clone());
        let (mut b, _) = one_param(value, grad);
        let frozen = b
            .add(
                "frozen",
                Tensor::from_vec(vec![1.0; 3], &[3]).unwrap(),
                false,
            )
            .unwrap();
        let (mut lazy, mut eager) = (
            AdamW::new(AdamWConfig::default()),
            AdamW::new(AdamWConfig::default()),
        );
        eager.allocate_state(&b);
        let names = |o: &AdamW, p: &Params| -> Vec<String> {
            o.state_to_tensors(p)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(
            names(&eager, &b),
            ["adam.steps", "adam.m.w", "adam.v.w", "adam.t.w"]
        );
        assert!(
            eager.state[frozen.0].is_none(),
            "a frozen parameter gets no moments"
        );
        for _ in 0..3 {
            lazy.step(&mut a, 0.01).unwrap();
            eager.step(&mut b, 0.01).unwrap();
            assert_eq!(a.value(id).to_vec(), b.value(id).to_vec());
        }
    }

    #[test]
    fn cosine_schedule_values() {
        let s = CosineSchedule {
            base_lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            min_lr: 0.0,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 0.5).abs() < 1e-7);
        assert!((s.lr(10) - 1.0).abs() < 1e-7);
        assert!((s.lr(60) - 0.5).abs() < 1e-6); // half way: cos(pi/2) = 0
        assert!(
            (s.lr(35) - (0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos())) as f32).abs() < 1e-6
        );
        assert!(s.lr(110).abs() < 1e-7 && s.lr(500).abs() < 1e-7);
        let floor = CosineSchedule { min_lr: 0.1, ..s };
        assert!((floor.lr(110) - 0.1).abs() < 1e-7);
    }
}
