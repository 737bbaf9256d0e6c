//! Constrained beam search on a tiny trie against exhaustive scoring of every item, with and
//! without excluded items (`--exclude-history`).

use ilrec::eval::beam::{beam_search, beam_search_excluding, PrefixScorer};
use ilrec::rec::ItemTrie;
use ilrec::rng::Rng;
use ilrec::Result;

const V: usize = 12;
const EOS: u32 = 0;

/// A fake "model": next-token log-probabilities are a fixed pseudo-random function of the prefix
/// (a stand-in for a language model with a KV cache: it keeps each beam's prefix).
struct TableScorer {
    beams: Vec<Vec<u32>>,
    calls: usize,
}

fn log_probs(prefix: &[u32]) -> Vec<f32> {
    let seed = prefix
        .iter()
        .fold(17u64, |h, &t| h.wrapping_mul(31).wrapping_add(t as u64 + 1));
    let mut rng = Rng::new(seed);
    let logits: Vec<f32> = (0..V).map(|_| 3.0 * rng.normal()).collect();
    let m = logits.iter().cloned().fold(f32::MIN, f32::max);
    let lse = m + logits.iter().map(|x| (x - m).exp()).sum::<f32>().ln();
    logits.iter().map(|x| x - lse).collect()
}

impl PrefixScorer for TableScorer {
    fn start(&mut self, _prompt: &[u32]) -> Result<Vec<f32>> {
        self.beams = vec![vec![]];
        Ok(log_probs(&[]))
    }
    fn step(&mut self, parents: &[usize], tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        self.calls += 1;
        self.beams = parents
            .iter()
            .zip(tokens)
            .map(|(&p, &t)| [self.beams[p].clone(), vec![t]].concat())
            .collect();
        Ok(self.beams.iter().map(|b| log_probs(b)).collect())
    }
}

fn items() -> Vec<Vec<u32>> {
    // shared prefixes, different lengths, one item a prefix of another (EOS separates them)
    vec![
        vec![1, 2, 3],
        vec![1, 2],
        vec![1, 4],
        vec![5],
        vec![5, 6, 7, 8],
        vec![9, 10],
        vec![9, 11, 3],
        vec![2],
    ]
}

fn exhaustive(trie: &ItemTrie) -> Vec<(u32, f32)> {
    let mut scored: Vec<(u32, f32)> = (0..trie.num_items() as u32)
        .map(|i| {
            let seq = trie.item_seq(i);
            let lp = (0..seq.len())
                .map(|k| log_probs(&seq[..k])[seq[k] as usize])
                .sum();
            (i, lp)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
}

#[test]
fn enough_beams_find_every_item_with_its_exact_score() {
    let trie = ItemTrie::build(&items(), EOS).unwrap();
    let want = exhaustive(&trie);
    let mut scorer = TableScorer {
        beams: vec![],
        calls: 0,
    };
    let got = beam_search(&mut scorer, &trie, &[1, 2, 3], trie.num_items()).unwrap();
    assert_eq!(got.len(), want.len());
    for (g, (item, lp)) in got.iter().zip(&want) {
        assert_eq!(g.item, *item);
        assert!((g.log_prob - lp).abs() < 1e-5);
    }
}

#[test]
fn fewer_beams_return_distinct_valid_items_sorted_by_score() {
    let trie = ItemTrie::build(&items(), EOS).unwrap();
    let all = exhaustive(&trie);
    for beams in 1..trie.num_items() {
        let mut scorer = TableScorer {
            beams: vec![],
            calls: 0,
        };
        let got = beam_search(&mut scorer, &trie, &[], beams).unwrap();
        assert!(!got.is_empty() && got.len() <= beams);
        let mut ids: Vec<u32> = got.iter().map(|s| s.item).collect();
        assert!(got.windows(2).all(|w| w[0].log_prob >= w[1].log_prob));
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), got.len(), "items must be distinct");
        // every returned score is that item's true sequence log-probability
        for s in &got {
            let want = all.iter().find(|(i, _)| *i == s.item).unwrap().1;
            assert!((s.log_prob - want).abs() < 1e-5);
        }
        // the best item overall is found by any beam width that keeps it (greedy may miss it);
        // with beams >= 1 the top-1 result is at least as good as greedy decoding.
        assert!(got[0].log_prob <= all[0].1 + 1e-6);
    }
}

fn scorer() -> TableScorer {
    TableScorer {
        beams: vec![],
        calls: 0,
    }
}

#[test]
fn excluded_items_never_return_and_the_others_fill_every_beam() {
    let trie = ItemTrie::build(&items(), EOS).unwrap();
    let all = exhaustive(&trie);
    let n = trie.num_items();
    // Every set of excluded items (including all and none), every beam width.
    for mask in 0u32..(1 << n) {
        let excluded: Vec<u32> = (0..n as u32).filter(|i| mask >> i & 1 == 1).collect();
        let rest: Vec<(u32, f32)> = all
            .iter()
            .copied()
            .filter(|(i, _)| !excluded.contains(i))
            .collect();
        for beams in 1..=n {
            let got = beam_search_excluding(&mut scorer(), &trie, &[4], beams, &excluded).unwrap();
            // No beam is lost to an excluded item: as many items as beams, or all the others.
            assert_eq!(
                got.len(),
                beams.min(rest.len()),
                "{excluded:?} beams {beams}"
            );
            for g in &got {
                assert!(
                    !excluded.contains(&g.item),
                    "{excluded:?}: {} returned",
                    g.item
                );
                let want = rest.iter().find(|(i, _)| *i == g.item).unwrap().1;
                assert!((g.log_prob - want).abs() < 1e-5);
            }
        }
        // Beams for every item: exactly the exhaustive order of the others.
        let got = beam_search_excluding(&mut scorer(), &trie, &[4], n, &excluded).unwrap();
        let ids: Vec<u32> = got.iter().map(|g| g.item).collect();
        let want: Vec<u32> = rest.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, want, "{excluded:?}");
    }
    // Nothing excluded is the plain search, beam for beam.
    for beams in 1..=n {
        let plain = beam_search(&mut scorer(), &trie, &[4], beams).unwrap();
        let none = beam_search_excluding(&mut scorer(), &trie, &[4], beams, &[]).unwrap();
        assert_eq!(plain, none);
    }
}
