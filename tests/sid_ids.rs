//! SID construction properties that need no PyTorch reference: k-means recovers separated
//! clusters and is deterministic, the whole build gives the same SIDs (bit for bit) at any
//! thread count, collision resolution makes a set built to collide unique (checked against a
//! hand-worked case, and with an added level when a prefix overflows).

use ilrec::cpu::pool::{num_threads, set_num_threads};
use ilrec::rng::Rng;
use ilrec::sid::kmeans::kmeans;
use ilrec::sid::{build_sids, collision_rate, resolve_collisions, SidSizes, SidTrainOptions};
use ilrec::Tensor;

/// `k` blobs of `per` points in `d` dims: centres 10 apart on the axes, noise 0.1.
fn blobs(k: usize, per: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let (mut points, mut labels) = (Vec::new(), Vec::new());
    for i in 0..per {
        for c in 0..k {
            for j in 0..d {
                let centre = if j == c % d {
                    10.0 * (1 + c / d) as f32
                } else {
                    0.0
                };
                points.push(centre + 0.1 * rng.normal());
            }
            labels.push(c);
            let _ = i;
        }
    }
    (points, labels)
}

#[test]
fn kmeans_recovers_separated_clusters_deterministically() {
    let (k, d) = (6, 4);
    let (points, labels) = blobs(k, 30, d, 3);
    let a = kmeans(&points, d, k, 50, 11).unwrap();
    let b = kmeans(&points, d, k, 50, 11).unwrap();
    assert_eq!(a, b, "same seed, same clustering");
    // Same partition as the generating labels (cluster numbering may differ).
    for i in 0..labels.len() {
        for j in 0..labels.len() {
            assert_eq!(
                labels[i] == labels[j],
                a.assignment[i] == a.assignment[j],
                "points {i}, {j}"
            );
        }
    }
    // Each centroid is its blob's mean: within 0.1 of the centre.
    for (p, &c) in points.chunks(d).zip(&a.assignment) {
        let dist: f32 = p
            .iter()
            .zip(&a.centroids[c * d..(c + 1) * d])
            .map(|(x, y)| (x - y).powi(2))
            .sum();
        assert!(dist.sqrt() < 1.0, "point far from its centroid: {dist}");
    }
}

#[test]
fn kmeans_reseeds_empty_clusters_so_every_distinct_point_gets_a_code() {
    // 8 distinct points, 8 clusters: whatever the seeding, every cluster ends non-empty.
    let d = 2;
    let points: Vec<f32> = (0..8)
        .flat_map(|i| [i as f32, (i * i) as f32 * 0.1])
        .collect();
    for seed in 0..5 {
        let km = kmeans(&points, d, 8, 20, seed).unwrap();
        let mut used = km.assignment.clone();
        used.sort();
        used.dedup();
        assert_eq!(used.len(), 8, "seed {seed}: assignment {:?}", km.assignment);
    }
}

fn small_build(threads: usize) -> (Vec<Vec<u32>>, Vec<Vec<u32>>, Vec<f32>) {
    let before = num_threads();
    set_num_threads(threads);
    let x = Tensor::randn(&[1200, 64], 1.0, &mut Rng::new(5));
    let sizes = SidSizes {
        levels: 3,
        codes: 8,
        e_dim: 6,
        hidden: vec![256, 128],
    };
    let opts = SidTrainOptions {
        epochs: 3,
        batch: 600,
        kmeans_iters: 20,
        eval_every: 3,
        ..SidTrainOptions::default()
    };
    let b = build_sids(&x, &sizes, &opts, |_| {}).unwrap();
    set_num_threads(before);
    let params: Vec<f32> = b
        .model
        .params
        .ids()
        .flat_map(|id| b.model.params.value(id).to_vec())
        .collect();
    (b.raw_codes, b.resolution.codes, params)
}

#[test]
fn same_sids_bit_for_bit_at_any_thread_count() {
    let one = small_build(1);
    let two = small_build(2);
    let three = small_build(3);
    assert_eq!(one.0, two.0, "raw codes, 1 vs 2 threads");
    assert_eq!(one.1, two.1, "resolved codes, 1 vs 2 threads");
    assert_eq!(one.0, three.0, "raw codes, 1 vs 3 threads");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&one.2),
        bits(&two.2),
        "trained parameters, 1 vs 2 threads"
    );
    assert_eq!(collision_rate(&one.1), 0.0, "resolved SIDs are unique");
}

#[test]
fn resolution_matches_a_hand_worked_case() {
    // One prefix, last codebook (e = 1) at 0, 1, 2, 3; three items on code 0 with residuals
    // 0.1, 0.9, 2.6, a fourth alone on code 2 at 2.2. Item 0 is nearest to code 0 and keeps it.
    // Free codes: 1 and 3. Pairs by distance: (item 1, code 1) 0.01 first, then (item 2, code 3)
    // 0.16 (code 2 is taken by item 3). So: [0, 1, 3] and item 3 stays on 2.
    let codes = vec![vec![5, 0], vec![5, 0], vec![5, 0], vec![5, 2]];
    let r = resolve_collisions(&codes, &[0.1, 0.9, 2.6, 2.2], &[0.0, 1.0, 2.0, 3.0], 1, 4).unwrap();
    let last: Vec<u32> = r.codes.iter().map(|c| c[1]).collect();
    assert_eq!(last, vec![0, 1, 3, 2]);
    assert!(
        r.codes.iter().all(|c| c[0] == 5),
        "the prefix is never touched"
    );
    assert_eq!(r.reassigned, 2);
    assert!(
        (r.rate_before - 0.5).abs() < 1e-12,
        "4 items, 2 distinct SIDs: {}",
        r.rate_before
    );
    assert!(r.added_level.is_none());
}

#[test]
fn a_set_built_to_collide_ends_unique() {
    // 200 items on 10 prefixes, all on last code 0, 32 codes per level: every prefix has 20
    // items (fits), so reassignment alone must make them unique.
    let (n, e, codes_per_level) = (200, 3, 32);
    let mut rng = Rng::new(9);
    let codes: Vec<Vec<u32>> = (0..n).map(|i| vec![(i % 10) as u32, 0]).collect();
    let residual: Vec<f32> = (0..n * e).map(|_| rng.normal()).collect();
    let codebook: Vec<f32> = (0..codes_per_level * e).map(|_| rng.normal()).collect();
    let r = resolve_collisions(&codes, &residual, &codebook, e, codes_per_level).unwrap();
    assert!(r.rate_before > 0.9);
    assert_eq!(collision_rate(&r.codes), 0.0);
    assert!(r.added_level.is_none());
    for (a, b) in codes.iter().zip(&r.codes) {
        assert_eq!(a[0], b[0], "only the last level changes");
    }
    // 40 items on one prefix with 32 codes: a level must be added, and it makes them unique.
    let crowded: Vec<Vec<u32>> = (0..40).map(|i| vec![1, (i % 4) as u32]).collect();
    let r =
        resolve_collisions(&crowded, &residual[..40 * e], &codebook, e, codes_per_level).unwrap();
    let (size, why) = r.added_level.clone().expect("a level is added");
    assert_eq!(
        size, 10,
        "4 codes x 10 items each: the new level needs 10 codes"
    );
    assert!(why.contains("40 items"), "{why}");
    assert!(r.codes.iter().all(|c| c.len() == 3));
    assert_eq!(collision_rate(&r.codes), 0.0);
}
