//! k-means (Lloyd's algorithm with k-means++ seeding), used to initialise each RQ-VAE codebook
//! from the first batch of that level's residuals (TIGER / LC-Rec do the same: random codebooks
//! leave most codes dead from the first step).
//!
//! Deterministic by construction: the seeding draws from our seeded [`Rng`], assignments are
//! independent per point (nearest centroid, ties to the lowest index, the same rule as the
//! quantiser), and centroid sums run serially in point order in f64. No thread count enters.
//!
//! Empty clusters are re-seeded after every assignment with the point farthest from its own
//! centroid (each such point used once per iteration), so every code ends up used whenever
//! there are at least `k` distinct points.

use super::rqvae::nearest_codes;
use crate::rng::Rng;
use crate::{Error, Result};

/// What [`kmeans`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// (k, d) row-major.
    pub centroids: Vec<f32>,
    /// Cluster of every point (after the last update).
    pub assignment: Vec<usize>,
    /// Lloyd iterations run (stops early when no assignment changes).
    pub iterations: usize,
}

/// Clusters `points` (n, d) into `k` clusters with at most `iters` Lloyd iterations.
pub fn kmeans(points: &[f32], d: usize, k: usize, iters: usize, seed: u64) -> Result<KMeans> {
    if d == 0 || k == 0 || points.is_empty() || !points.len().is_multiple_of(d) {
        return Err(Error::config(
            format!(
                "k-means over {} values of width {d} into {k} clusters",
                points.len()
            ),
            "needs at least one point, d >= 1, k >= 1, and a whole number of points",
        ));
    }
    let mut rng = Rng::new(seed);
    let mut centroids = plus_plus_seeds(points, d, k, &mut rng);
    let mut assignment = nearest_codes(points, &centroids, d);
    let mut iterations = 0;
    for _ in 0..iters {
        iterations += 1;
        centroids = update_centroids(points, d, k, &assignment, &centroids);
        let next = nearest_codes(points, &centroids, d);
        let changed = next != assignment;
        assignment = next;
        if !changed {
            break;
        }
    }
    Ok(KMeans {
        centroids,
        assignment,
        iterations,
    })
}

/// k-means++: the first centroid uniform, each next one drawn with probability proportional to
/// the squared distance to the nearest centroid so far (uniform when every distance is 0).
fn plus_plus_seeds(points: &[f32], d: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let n = points.len() / d;
    let row = |i: usize| &points[i * d..(i + 1) * d];
    let mut centroids = Vec::with_capacity(k * d);
    centroids.extend_from_slice(row(rng.below(n)));
    let mut nearest: Vec<f64> = (0..n).map(|i| sq_dist(row(i), &centroids[..d])).collect();
    for _ in 1..k {
        let total: f64 = nearest.iter().sum();
        let pick = if total > 0.0 {
            let target = rng.uniform() as f64 * total;
            let mut acc = 0.0;
            nearest
                .iter()
                .position(|&w| {
                    acc += w;
                    acc > target
                })
                .unwrap_or(n - 1)
        } else {
            rng.below(n)
        };
        let start = centroids.len();
        centroids.extend_from_slice(row(pick));
        for (i, best) in nearest.iter_mut().enumerate() {
            *best = best.min(sq_dist(row(i), &centroids[start..start + d]));
        }
    }
    centroids
}

/// New centroids = means of their points; empty clusters take the points farthest from their
/// current centroid (module docs).
fn update_centroids(
    points: &[f32],
    d: usize,
    k: usize,
    assignment: &[usize],
    old: &[f32],
) -> Vec<f32> {
    let mut sums = vec![0.0f64; k * d];
    let mut counts = vec![0usize; k];
    for (p, &c) in points.chunks(d).zip(assignment) {
        counts[c] += 1;
        sums[c * d..(c + 1) * d]
            .iter_mut()
            .zip(p)
            .for_each(|(s, &x)| *s += x as f64);
    }
    let mut centroids: Vec<f32> = sums
        .chunks(d)
        .zip(&counts)
        .flat_map(|(s, &n)| s.iter().map(move |&v| (v / n.max(1) as f64) as f32))
        .collect();
    let empty: Vec<usize> = (0..k).filter(|&c| counts[c] == 0).collect();
    if !empty.is_empty() {
        // Points by decreasing distance to their own centroid; ties: the lower index first.
        let mut far: Vec<(f64, usize)> = points
            .chunks(d)
            .zip(assignment)
            .enumerate()
            .map(|(i, (p, &c))| (sq_dist(p, &old[c * d..(c + 1) * d]), i))
            .collect();
        far.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (&c, &(_, i)) in empty.iter().zip(&far) {
            centroids[c * d..(c + 1) * d].copy_from_slice(&points[i * d..(i + 1) * d]);
        }
    }
    centroids
}

fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum()
}
