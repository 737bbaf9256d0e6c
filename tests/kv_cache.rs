//! Decoding with a KV cache gives the same logits as running the whole sequence, and reordering
//! the cache follows the beams.

mod common;

use ilrec::model::llama::{BatchInput, Llama};
use ilrec::Tape;

fn full_logits(model: &Llama, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut tape = Tape::inference();
    let input = BatchInput::new(ids.to_vec(), 1, ids.len()).unwrap();
    let out = model.forward(&mut tape, &input, None).unwrap();
    let v = model.config.vocab_size;
    tape.value(out.logits)
        .to_vec()
        .chunks(v)
        .map(|r| r.to_vec())
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn prompt_then_token_by_token_matches_the_full_forward() {
    let model = Llama::from_dir(common::fixture("tiny-llama")).unwrap();
    let ids: Vec<u32> = vec![5, 17, 99, 3, 250, 42, 7, 8, 300, 11];
    let full = full_logits(&model, &ids);
    let mut cache = model.new_cache(1);
    let mut tape = Tape::inference();
    let first = model
        .forward_cached(&mut tape, &ids[..4], 4, &mut cache)
        .unwrap();
    assert!(max_diff(&tape.value(first).to_vec(), &full[3]) < 1e-4);
    for t in 4..ids.len() {
        let mut tape = Tape::inference();
        let z = model
            .forward_cached(&mut tape, &ids[t..t + 1], 1, &mut cache)
            .unwrap();
        assert!(
            max_diff(&tape.value(z).to_vec(), &full[t]) < 1e-4,
            "position {t}"
        );
    }
    assert_eq!(cache.len(), ids.len());
}

#[test]
fn reordered_beams_continue_their_parents_sequences() {
    let model = Llama::from_dir(common::fixture("tiny-qwen2")).unwrap();
    let prompt: Vec<u32> = vec![9, 8, 7, 6];
    let mut cache = model.new_cache(1);
    let mut tape = Tape::inference();
    model
        .forward_cached(&mut tape, &prompt, 4, &mut cache)
        .unwrap();
    // Expand to 3 beams, continue each with a different token, then swap the beams around.
    cache.reorder(&[0, 0, 0]).unwrap();
    let step1 = [20u32, 30, 40];
    model
        .forward_cached(&mut Tape::inference(), &step1, 1, &mut cache)
        .unwrap();
    let parents = [2usize, 0, 2];
    cache.reorder(&parents).unwrap();
    let step2 = [50u32, 60, 70];
    let mut tape = Tape::inference();
    let z = model
        .forward_cached(&mut tape, &step2, 1, &mut cache)
        .unwrap();
    let v = model.config.vocab_size;
    let got = tape.value(z).to_vec();
    for (i, &p) in parents.iter().enumerate() {
        let seq = [prompt.clone(), vec![step1[p], step2[i]]].concat();
        let want = full_logits(&model, &seq);
        assert!(
            max_diff(&got[i * v..(i + 1) * v], want.last().unwrap()) < 1e-4,
            "beam {i}"
        );
    }
    assert!(cache.reorder(&[3]).is_err());
}

/// The fixture's first input row, as token ids.
fn reference_row(name: &str) -> Vec<u32> {
    let path = common::fixture(&format!("{name}/reference.safetensors"));
    let reference = ilrec::model::weights::SafetensorsFile::open(path).unwrap();
    let (ids, shape) = reference.tensor_i64("input_ids").unwrap();
    ids[..shape[1]].iter().map(|&x| x as u32).collect()
}

/// Llama 3.1 (llama3-scaled RoPE at cached positions) and Qwen3 (per-head q/k norms before the
/// cached keys): a prompt, then one token at a time, equals the full forward at every position.
#[test]
fn llama31_and_qwen3_decode_like_the_full_forward() {
    for name in ["tiny-llama31", "tiny-qwen3"] {
        let model = Llama::from_dir(common::fixture(name)).unwrap();
        let ids = reference_row(name);
        let full = full_logits(&model, &ids);
        let prompt = ids.len() / 3;
        let mut cache = model.new_cache(1);
        let mut tape = Tape::inference();
        let first = model
            .forward_cached(&mut tape, &ids[..prompt], prompt, &mut cache)
            .unwrap();
        let d = max_diff(&tape.value(first).to_vec(), &full[prompt - 1]);
        assert!(d < 1e-4, "{name}: prompt logits differ by {d}");
        for t in prompt..ids.len() {
            let mut tape = Tape::inference();
            let z = model
                .forward_cached(&mut tape, &ids[t..t + 1], 1, &mut cache)
                .unwrap();
            let d = max_diff(&tape.value(z).to_vec(), &full[t]);
            assert!(d < 1e-4, "{name}: position {t} differs by {d}");
        }
        assert_eq!(cache.len(), ids.len());
    }
}
