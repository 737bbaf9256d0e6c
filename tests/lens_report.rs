//! `lens_top_k` against PyTorch on the tiny-llama fixture: the top-k of `lens.{1..3}` (final
//! norm + head on blocks 1..3) and of `logits` (block 4, the model's output), taken here by a
//! full sort of the reference rows, at every position of both sequences.

mod common;

use ilrec::ilrec::lens_report::lens_top_k;
use ilrec::model::llama::Llama;
use ilrec::model::weights::SafetensorsFile;

const K: usize = 7;

/// The reference top-k of one row: ids by descending value, ties by lower id.
fn naive_top_k(row: &[f32], k: usize) -> (Vec<u32>, Vec<f32>) {
    let mut order: Vec<u32> = (0..row.len() as u32).collect();
    order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
    order.truncate(k);
    let values = order.iter().map(|&i| row[i as usize]).collect();
    (order, values)
}

#[test]
fn tiny_llama_lens_top_k_matches_pytorch() {
    let model = Llama::from_dir(common::fixture("tiny-llama")).expect("fixture model loads");
    let reference = SafetensorsFile::open(common::fixture("tiny-llama/reference.safetensors"))
        .expect("reference.safetensors opens");
    let (input_ids, shape) = reference.tensor_i64("input_ids").expect("input_ids");
    let (batch, seq) = (shape[0], shape[1]);
    let vocab = model.config.vocab_size;
    let blocks = model.config.num_hidden_layers;
    let layers: Vec<usize> = (1..=blocks).collect();
    for b in 0..batch {
        let ids: Vec<u32> = input_ids[b * seq..(b + 1) * seq]
            .iter()
            .map(|&x| x as u32)
            .collect();
        let report = lens_top_k(&model, &ids, &layers, K).expect("lens_top_k");
        assert_eq!(report.len(), layers.len());
        for (layer, positions) in &report {
            let name = if *layer == blocks {
                "logits".to_string()
            } else {
                format!("lens.{layer}")
            };
            let all = reference
                .tensor_f32(&name)
                .expect("reference tensor")
                .to_vec(); // (B*T, V)
            assert_eq!(positions.len(), seq);
            for (t, (top_ids, top_logits)) in positions.iter().enumerate() {
                let row = &all[(b * seq + t) * vocab..(b * seq + t + 1) * vocab];
                let (ref_ids, ref_logits) = naive_top_k(row, K);
                assert_eq!(top_ids, &ref_ids, "{name} sequence {b} position {t}");
                for (z, rz) in top_logits.iter().zip(&ref_logits) {
                    assert!((z - rz).abs() < 1e-4, "{name} [{b}, {t}]: {z} vs {rz}");
                }
            }
        }
    }
}
