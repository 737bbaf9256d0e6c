//! PEFT's initialisation of a fresh adapter (`init_lora_weights=True`): A by
//! `torch.nn.init.kaiming_uniform_(A, a=sqrt(5))`, B all zeros, so the adapted model starts
//! exactly at the base model.
//!
//! Kaiming-uniform draws from U(-bound, bound) with `bound = gain * sqrt(3 / fan_in)`, where
//! `gain = sqrt(2 / (1 + a^2))` (leaky-ReLU gain with negative slope a) and `fan_in` is the
//! number of columns of A (its input width). With a = sqrt(5): gain = sqrt(1/3), so
//! `bound = 1 / sqrt(fan_in)`, the same bound `nn.Linear` uses for its own weights. The numbers
//! come from our seeded generator, not torch's: same distribution, different draws.

use crate::rng::Rng;
use crate::tensor::Tensor;

/// The bound of PEFT's Kaiming-uniform for a matrix with `fan_in` columns, computed the way
/// torch does (gain and sqrt(3 / fan_in) in f64).
pub fn kaiming_bound(fan_in: usize) -> f32 {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    (gain * (3.0 / fan_in as f64).sqrt()) as f32
}

/// A fresh A (r, fan_in): U(-bound, bound) entries in row-major order from `rng`.
pub fn lora_a(r: usize, fan_in: usize, rng: &mut Rng) -> Tensor {
    let bound = kaiming_bound(fan_in);
    Tensor::rand_uniform(&[r, fan_in], -bound, bound, rng)
}

/// A fresh B (out, r): zeros, so the update B A starts at zero.
pub fn lora_b(out: usize, r: usize) -> Tensor {
    Tensor::zeros(&[out, r])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_is_uniform_within_one_over_sqrt_fan_in_and_b_is_zero() {
        let (r, fan_in) = (64, 400);
        let a = lora_a(r, fan_in, &mut Rng::new(3)).to_vec();
        let bound = 1.0 / (fan_in as f32).sqrt();
        assert!((kaiming_bound(fan_in) - bound).abs() < 1e-7);
        assert!(a.iter().all(|x| x.abs() <= bound));
        // U(-b, b): mean 0, variance b^2 / 3.
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let want = (bound as f64).powi(2) / 3.0;
        assert!(mean.abs() < 0.01 * bound as f64, "mean {mean}");
        assert!((var / want - 1.0).abs() < 0.03, "variance {var} vs {want}");
        // Seeded: the same seed gives the same matrix, another seed another.
        assert_eq!(a, lora_a(r, fan_in, &mut Rng::new(3)).to_vec());
        assert_ne!(a, lora_a(r, fan_in, &mut Rng::new(4)).to_vec());
        assert!(lora_b(8, 4).to_vec().iter().all(|&x| x == 0.0));
    }
}
