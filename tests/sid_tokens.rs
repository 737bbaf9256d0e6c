//! SID tokens in real tokenizers: registered as added tokens, a prompt holding SIDs encodes
//! each code to exactly its one id and decodes back to the same text; the model gets the new
//! rows; token spelling parses back.

mod common;

use common::fixture;
use ilrec::model::llama::Llama;
use ilrec::sid::tokens::{extend_model_vocab, parse_sid_token};
use ilrec::sid::{sid_text, sid_token, SidVocab};
use ilrec::tokenizer::Tokenizer;

#[test]
fn sid_prompts_round_trip_through_real_tokenizers() {
    for name in ["smollm2", "qwen3"] {
        let mut tok =
            Tokenizer::from_file(fixture(&format!("tokenizers/{name}/tokenizer.json"))).unwrap();
        let before = tok.vocab_size();
        let vocab = SidVocab::register(&mut tok, &[16, 16, 16]).unwrap();
        let ids = vocab.all_ids();
        assert_eq!(ids.len(), 48);
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 48, "{name}: one id per SID token");
        assert!(
            ids.iter().all(|&id| id as usize >= before),
            "{name}: new ids after the vocabulary"
        );
        for (sid_a, sid_b) in [([3u32, 15, 0], [7u32, 0, 12])] {
            let text = format!(
                "The user watched {} and then {}. Next:",
                sid_text(&sid_a),
                sid_text(&sid_b)
            );
            let enc = tok.encode(&text);
            for sid in [sid_a, sid_b] {
                let want = vocab.item_tokens(&sid).unwrap();
                assert!(
                    enc.windows(3).any(|w| w == want.as_slice()),
                    "{name}: {} not one id per code in {enc:?}",
                    sid_text(&sid)
                );
            }
            assert_eq!(
                tok.decode(&enc, false),
                text,
                "{name}: decode(encode(text))"
            );
            // Each id decodes to its token string, found independently via token_to_id.
            for (l, &c) in sid_a.iter().enumerate() {
                assert_eq!(
                    tok.token_to_id(&sid_token(l, c)),
                    Some(vocab.ids[l][c as usize])
                );
            }
        }
        // Registering again is idempotent (same ids, no growth).
        let again = SidVocab::register(&mut tok, &[16, 16, 16]).unwrap();
        assert_eq!(again, vocab);
    }
}

#[test]
fn token_spelling_parses_back_and_rejects_look_alikes() {
    assert_eq!(sid_token(0, 12), "<a_12>");
    assert_eq!(sid_token(3, 0), "<d_0>");
    assert_eq!(parse_sid_token("<c_255>"), Some((2, 255)));
    for bad in ["<a_>", "<A_1>", "<aa_1>", "a_1", "<a_01>", "<a_-1>", "<a_1"] {
        assert_eq!(parse_sid_token(bad), None, "{bad}");
    }
}

#[test]
fn new_token_rows_are_added_to_the_model() {
    let mut model = Llama::from_dir(fixture("tiny-llama")).unwrap();
    let mut tok = Tokenizer::from_file(fixture("tokenizers/smollm2/tokenizer.json")).unwrap();
    let old_rows = model.config.vocab_size;
    let old_embed = model.params.value(model.embed_id()).to_vec();
    SidVocab::register(&mut tok, &[4, 4]).unwrap();
    let added = extend_model_vocab(&mut model, &tok, 3).unwrap();
    assert_eq!(model.config.vocab_size, tok.vocab_size());
    assert_eq!(added, tok.vocab_size() - old_rows);
    let embed = model.params.value(model.embed_id()).to_vec();
    assert_eq!(
        &embed[..old_embed.len()],
        old_embed.as_slice(),
        "old rows unchanged"
    );
    let head = model.params.value(model.lm_head_id());
    assert_eq!(head.shape()[0], tok.vocab_size(), "untied head grown too");
    // A second call has nothing to add.
    assert_eq!(extend_model_vocab(&mut model, &tok, 3).unwrap(), 0);
}
