//! The LC-Rec sequential-recommendation prompt (ILREC.md section 3) and the causal-LM training
//! example built from it.
//!
//! Items appear as their token strings: SID tokens (`<a_12><b_3>...`) or titles. The tokenizer
//! lives elsewhere, so this file works on strings and on token ids handed in by the caller.
//!
//! Tokenise the prompt and the response separately and concatenate the ids: generation starts
//! from exactly the prompt's ids, and the response ids are the item's sequence in the item trie
//! (its tokens then EOS), so training and constrained decoding see the same tokens.

use super::split::Sample;

/// Label value the loss ignores (the PyTorch / HF convention).
pub const IGNORE_INDEX: i64 = -100;

const PREAMBLE: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nThe user has interacted with items ";
const INSTRUCTION_END: &str = " in chronological order. Can you predict the next possible item that the user may expect?\n\n### Response:";

/// The prompt text up to and including `### Response:` (the target follows with no space).
/// History items are joined by ", ".
pub fn seqrec_prompt(history_items: &[&str]) -> String {
    let history = history_items.join(", ");
    let mut prompt = String::with_capacity(PREAMBLE.len() + history.len() + INSTRUCTION_END.len());
    prompt.push_str(PREAMBLE);
    prompt.push_str(&history);
    prompt.push_str(INSTRUCTION_END);
    prompt
}

/// The prompt for a sample, rendering each history item with `item_text` (its SID string or
/// title).
pub fn sample_prompt(sample: &Sample, item_text: &dyn Fn(u32) -> String) -> String {
    let rendered: Vec<String> = sample.history.iter().map(|&item| item_text(item)).collect();
    let refs: Vec<&str> = rendered.iter().map(String::as_str).collect();
    seqrec_prompt(&refs)
}

/// The full training text of a sample (prompt then target item), for display and debugging.
pub fn sample_text(sample: &Sample, item_text: &dyn Fn(u32) -> String) -> String {
    sample_prompt(sample, item_text) + &item_text(sample.target)
}

/// One causal-LM example. `labels` is aligned with `input_ids` (the model shifts internally, as
/// in HF): `IGNORE_INDEX` on the prompt, the token id itself on the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    /// Index of the first response token in `input_ids` (= the prompt length).
    pub resp_start: usize,
}

/// Concatenates prompt and response ids; only the response is labelled.
pub fn build_example(prompt_ids: Vec<u32>, response_ids: Vec<u32>) -> Example {
    let resp_start = prompt_ids.len();
    // (prompt_len + response_len,)
    let mut labels = vec![IGNORE_INDEX; resp_start];
    labels.extend(response_ids.iter().map(|&t| t as i64));
    let mut input_ids = prompt_ids;
    input_ids.extend_from_slice(&response_ids);
    Example {
        input_ids,
        labels,
        resp_start,
    }
}

/// The training example of a sample: `tokenize` turns the prompt text into ids (adding BOS if
/// the model wants one), and `item_tokens(target)` gives the target's ids as stored in the item
/// trie (its tokens then EOS; `ItemTrie::item_seq`).
pub fn encode_sample<E>(
    sample: &Sample,
    item_text: &dyn Fn(u32) -> String,
    tokenize: &mut dyn FnMut(&str) -> Result<Vec<u32>, E>,
    item_tokens: &dyn Fn(u32) -> Vec<u32>,
) -> Result<Example, E> {
    let prompt_ids = tokenize(&sample_prompt(sample, item_text))?;
    Ok(build_example(prompt_ids, item_tokens(sample.target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_is_the_lcrec_template_verbatim() {
        let expected = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nThe user has interacted with items <a_1><b_2>, <a_3><b_4> in chronological order. Can you predict the next possible item that the user may expect?\n\n### Response:";
        assert_eq!(seqrec_prompt(&["<a_1><b_2>", "<a_3><b_4>"]), expected);
    }

    #[test]
    fn labels_cover_the_response_only() {
        let ex = build_example(vec![5, 6, 7], vec![8, 2]);
        assert_eq!(ex.input_ids, vec![5, 6, 7, 8, 2]);
        assert_eq!(ex.labels, vec![-100, -100, -100, 8, 2]);
        assert_eq!(ex.resp_start, 3);
    }

    #[test]
    fn encode_sample_renders_history_and_target() {
        let sample = Sample {
            user: 0,
            history: vec![1, 2],
            target: 3,
        };
        let names = |i: u32| format!("item{i}");
        let mut seen = String::new();
        let mut tok = |s: &str| -> Result<Vec<u32>, ()> {
            seen = s.to_string();
            Ok(vec![1, 1])
        };
        let ex = encode_sample(&sample, &names, &mut tok, &|i| vec![100 + i, 0]).unwrap();
        assert!(seen.contains("items item1, item2 in chronological"));
        assert_eq!(ex.input_ids, vec![1, 1, 103, 0]);
        assert_eq!(ex.labels, vec![-100, -100, 103, 0]);
        assert!(sample_text(&sample, &names).ends_with("### Response:item3"));
    }
}
