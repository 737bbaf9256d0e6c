//! The statistics of a study, from per-user ranks alone (so anyone holding `results.jsonl` can
//! recompute them):
//!
//! - [`user_metric`]: a user's Hit@K (1 if the target is in the top K) or NDCG@K
//!   (1 / log2(rank + 2) for a 0-based rank inside the top K, else 0), as in `rec::metrics`;
//! - [`mean_std`]: mean and sample standard deviation (n - 1) over seeds;
//! - [`paired_bootstrap`]: the difference of a metric between two methods on the same users,
//!   resampling users with replacement: the observed difference, a 95% percentile interval and
//!   the one-sided p-value, the fraction of resampled differences <= 0 (small when method A is
//!   better than B on every resample).

use crate::rng::Rng;

/// Which per-user metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Hit(usize),
    Ndcg(usize),
}

impl Metric {
    /// `hit@10`, `ndcg@10` (the keys of the metrics objects).
    pub fn name(self) -> String {
        match self {
            Metric::Hit(k) => format!("hit@{k}"),
            Metric::Ndcg(k) => format!("ndcg@{k}"),
        }
    }

    /// `Hit@10`, `NDCG@10` (tables).
    pub fn label(self) -> String {
        match self {
            Metric::Hit(k) => format!("Hit@{k}"),
            Metric::Ndcg(k) => format!("NDCG@{k}"),
        }
    }
}

/// The metric of one user whose target sat at 0-based `rank` (None: not in the list).
pub fn user_metric(metric: Metric, rank: Option<usize>) -> f64 {
    match (metric, rank) {
        (Metric::Hit(k), Some(r)) if r < k => 1.0,
        (Metric::Ndcg(k), Some(r)) if r < k => 1.0 / ((r + 2) as f64).log2(),
        _ => 0.0,
    }
}

/// Mean and sample standard deviation (divisor n - 1; 0 for a single value, NaN for none).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() == 1 {
        return (mean, 0.0);
    }
    let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// The q-quantile (0 <= q <= 1) of ascending `sorted` values, interpolating linearly between
/// the two nearest (NumPy's default `percentile`): position q * (n - 1).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, frac) = (h.floor() as usize, h - h.floor());
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}

/// What a paired bootstrap found for "A minus B".
#[derive(Clone, Debug, PartialEq)]
pub struct Bootstrap {
    /// Mean over users of a_i - b_i on the data as observed.
    pub diff: f64,
    /// 2.5% and 97.5% quantiles of the resampled mean differences.
    pub lo: f64,
    pub hi: f64,
    /// Fraction of resamples whose mean difference is <= 0 (one-sided: is A better than B?).
    pub p_value: f64,
    pub resamples: usize,
    pub users: usize,
}

/// Paired bootstrap over users: `a[i]` and `b[i]` are the same user's metric under methods A
/// and B. Each of `resamples` rounds draws `n` users with replacement (`Rng::below`, seeded
/// with `seed`, so the result is reproducible) and takes the mean of their differences.
pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Bootstrap {
    assert_eq!(
        a.len(),
        b.len(),
        "paired bootstrap: the same users on both sides"
    );
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = diffs.len();
    if n == 0 || resamples == 0 {
        let nan = f64::NAN;
        return Bootstrap {
            diff: nan,
            lo: nan,
            hi: nan,
            p_value: nan,
            resamples,
            users: n,
        };
    }
    let mut rng = Rng::new(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| diffs[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at_most_zero = means.iter().filter(|&&m| m <= 0.0).count();
    Bootstrap {
        diff: diffs.iter().sum::<f64>() / n as f64,
        lo: quantile(&means, 0.025),
        hi: quantile(&means, 0.975),
        p_value: at_most_zero as f64 / resamples as f64,
        resamples,
        users: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn per_user_metrics_by_hand() {
        assert_eq!(user_metric(Metric::Hit(10), Some(9)), 1.0);
        assert_eq!(user_metric(Metric::Hit(10), Some(10)), 0.0);
        assert_eq!(user_metric(Metric::Hit(10), None), 0.0);
        assert!(close(user_metric(Metric::Ndcg(10), Some(0)), 1.0));
        // Rank 2 (the third item): 1 / log2(4) = 0.5; rank 6: 1 / log2(8) = 1/3.
        assert!(close(user_metric(Metric::Ndcg(10), Some(2)), 0.5));
        assert!(close(user_metric(Metric::Ndcg(10), Some(6)), 1.0 / 3.0));
        assert_eq!(user_metric(Metric::Ndcg(5), Some(6)), 0.0);
    }

    #[test]
    fn mean_and_sample_std_by_hand() {
        // 0.1, 0.2, 0.3: mean 0.2, squared deviations 0.01 + 0 + 0.01 over n - 1 = 2: std 0.1.
        let (m, s) = mean_std(&[0.1, 0.2, 0.3]);
        assert!(close(m, 0.2) && close(s, 0.1), "{m} {s}");
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sum of squares 32, 32 / 7.
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!(close(m, 5.0) && close(s, (32.0f64 / 7.0).sqrt()));
        assert_eq!(mean_std(&[0.7]), (0.7, 0.0));
        assert!(mean_std(&[]).0.is_nan());
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&xs, 0.0), 1.0);
        assert_eq!(quantile(&xs, 1.0), 5.0);
        assert_eq!(quantile(&xs, 0.5), 3.0);
        // q = 0.1: position 0.4 -> 1 + 0.4 * (2 - 1); numpy.percentile([1..5], 10) = 1.4.
        assert!(close(quantile(&xs, 0.1), 1.4));
        assert!(close(quantile(&[0.0, 10.0], 0.975), 9.75));
    }

    #[test]
    fn a_constant_difference_has_a_point_interval() {
        let a = [0.5, 0.25, 1.0, 0.0];
        let b: Vec<f64> = a.iter().map(|x| x - 0.125).collect();
        let boot = paired_bootstrap(&a, &b, 500, 3);
        assert!(close(boot.diff, 0.125) && close(boot.lo, 0.125) && close(boot.hi, 0.125));
        assert_eq!(boot.p_value, 0.0);
        // B better everywhere: every resampled difference is negative, p = 1.
        assert_eq!(paired_bootstrap(&b, &a, 500, 3).p_value, 1.0);
        // Equal methods: every difference is 0, which counts as "<= 0".
        assert_eq!(paired_bootstrap(&a, &a, 500, 3).p_value, 1.0);
    }

    /// Two users, differences 1 and 0: a resample of two users has mean 0 (both the second,
    /// probability 1/4), 0.5 (one of each, 1/2) or 1 (both the first, 1/4). So p = P(mean <= 0)
    /// = 1/4 and the 95% interval is [0, 1] (2.5% of the resamples are 0, 2.5% are 1).
    #[test]
    fn two_users_match_the_hand_computed_distribution() {
        let boot = paired_bootstrap(&[1.0, 0.0], &[0.0, 0.0], 10_000, 7);
        assert!(close(boot.diff, 0.5));
        assert!((boot.p_value - 0.25).abs() < 0.015, "p = {}", boot.p_value);
        assert_eq!((boot.lo, boot.hi), (0.0, 1.0));
        assert_eq!((boot.resamples, boot.users), (10_000, 2));
        // Seeded: the same seed gives the same answer.
        assert_eq!(boot, paired_bootstrap(&[1.0, 0.0], &[0.0, 0.0], 10_000, 7));
    }

    /// Three users with differences 1, 0, 0: P(mean <= 0) = P(the first user never drawn in 3
    /// draws) = (2/3)^3 = 8/27.
    #[test]
    fn three_users_p_value_is_eight_over_twenty_seven() {
        let boot = paired_bootstrap(&[1.0, 0.0, 0.0], &[0.0; 3], 20_000, 11);
        assert!(
            (boot.p_value - 8.0 / 27.0).abs() < 0.015,
            "p = {}",
            boot.p_value
        );
        assert!(close(boot.diff, 1.0 / 3.0));
    }
}
