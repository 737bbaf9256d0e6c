//! Full-ranking metrics with one ground truth (ILREC.md section 1): Hit@K = 1 if the target is
//! in the top K; NDCG@K = 1 / log2(rank + 2) with a 0-based rank, 0 outside the top K (the ideal
//! DCG of a single relevant item is 1). Averaged over users, for K in [`KS`].

/// The cut-offs reported.
pub const KS: [usize; 4] = [1, 5, 10, 20];

/// 0-based position of `target` in `ranked`, or None if absent.
pub fn rank_of(target: u32, ranked: &[u32]) -> Option<usize> {
    ranked.iter().position(|&item| item == target)
}

/// Running sums of Hit@K and NDCG@K over users.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankingMetrics {
    pub users: usize,
    hit_sum: [f64; 4],
    ndcg_sum: [f64; 4],
}

/// Means over users; `hit[j]` and `ndcg[j]` are at cut-off `KS[j]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsMean {
    pub users: usize,
    pub hit: [f64; 4],
    pub ndcg: [f64; 4],
}

impl RankingMetrics {
    pub fn new() -> RankingMetrics {
        RankingMetrics::default()
    }

    /// Adds one user whose target was at 0-based `rank` (None: not ranked at all).
    pub fn add(&mut self, rank: Option<usize>) {
        self.users += 1;
        let Some(rank) = rank else { return };
        let gain = 1.0 / ((rank + 2) as f64).log2();
        for (j, &k) in KS.iter().enumerate() {
            if rank < k {
                self.hit_sum[j] += 1.0;
                self.ndcg_sum[j] += gain;
            }
        }
    }

    /// Merges another accumulator (e.g. one per worker thread).
    pub fn merge(&mut self, other: &RankingMetrics) {
        self.users += other.users;
        for j in 0..KS.len() {
            self.hit_sum[j] += other.hit_sum[j];
            self.ndcg_sum[j] += other.ndcg_sum[j];
        }
    }

    /// Means over the users added (all zeros when none were).
    pub fn mean(&self) -> MetricsMean {
        let n = self.users.max(1) as f64;
        MetricsMean {
            users: self.users,
            hit: self.hit_sum.map(|s| s / n),
            ndcg: self.ndcg_sum.map(|s| s / n),
        }
    }
}

impl MetricsMean {
    /// Hit@k for a k in [`KS`].
    pub fn hit_at(&self, k: usize) -> Option<f64> {
        KS.iter().position(|&x| x == k).map(|j| self.hit[j])
    }
    /// NDCG@k for a k in [`KS`].
    pub fn ndcg_at(&self, k: usize) -> Option<f64> {
        KS.iter().position(|&x| x == k).map(|j| self.ndcg[j])
    }

    /// `{"users": n, "hit@1": .., "hit@5": .., ..., "ndcg@20": ..}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("users".into(), self.users.into());
        for (j, k) in KS.iter().enumerate() {
            map.insert(format!("hit@{k}"), self.hit[j].into());
        }
        for (j, k) in KS.iter().enumerate() {
            map.insert(format!("ndcg@{k}"), self.ndcg[j].into());
        }
        serde_json::Value::Object(map)
    }
}
