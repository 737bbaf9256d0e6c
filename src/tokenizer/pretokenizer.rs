//! Pre-tokenizers of tokenizer.json: `ByteLevel`, `Digits`, `Split` (known patterns, Isolated),
//! `Metaspace` (SentencePiece's `▁`, [`super::metaspace`]) and `Sequence`. They cut the normalized
//! text into pieces ("words") that BPE encodes separately.
//!
//! Pieces are byte ranges into one text buffer, so splitting allocates no strings. Only ByteLevel's
//! `add_prefix_space` and Metaspace change the text, which rebuilds the buffer.
//! ByteLevel's byte-to-character mapping itself is left to the BPE model (it maps bytes straight to
//! ids), which is why ByteLevel must come last in a Sequence.

use std::borrow::Cow;

use super::char_class::is_number;
use super::metaspace::Metaspace;
use super::splitter::SplitPattern;
use crate::{Error, Result};

/// One pre-tokenization step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Byte-level: optional space before each piece, optional GPT-2 split.
    ByteLevel {
        add_prefix_space: bool,
        use_regex: bool,
    },
    /// Numbers apart from the rest: each digit alone, or runs of digits.
    Digits { individual_digits: bool },
    /// A known regex, matches kept as pieces ("Isolated").
    Split(SplitPattern),
    /// Spaces to `▁`, an optional leading `▁`, optional cut before each `▁`.
    Metaspace(Metaspace),
}

/// The flattened sequence of steps (empty = the whole text is one piece).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreTokenizer {
    steps: Vec<Step>,
}

/// A text and the byte ranges of its pieces.
pub struct Pieces<'a> {
    pub text: Cow<'a, str>,
    pub ranges: Vec<(usize, usize)>,
}

fn field_bool(value: &serde_json::Value, key: &str, default: bool) -> bool {
    value.get(key).and_then(|v| v.as_bool()).unwrap_or(default)
}

impl PreTokenizer {
    /// Parses the `pre_tokenizer` object (None or null = no pre-tokenizer).
    pub fn from_json(value: Option<&serde_json::Value>, origin: &str) -> Result<PreTokenizer> {
        let mut steps = Vec::new();
        if let Some(v) = value.filter(|v| !v.is_null()) {
            parse_into(v, origin, &mut steps)?;
        }
        let byte_level_at = steps
            .iter()
            .position(|s| matches!(s, Step::ByteLevel { .. }));
        if let Some(at) = byte_level_at {
            if at + 1 != steps.len() {
                return Err(Error::format(
                    origin,
                    format!(
                        "pre_tokenizer: ByteLevel must be the last step, found {} after it",
                        steps[at + 1].name()
                    ),
                ));
            }
        }
        Ok(PreTokenizer { steps })
    }

    /// True when the last step is ByteLevel: the model then works on bytes.
    pub fn is_byte_level(&self) -> bool {
        matches!(self.steps.last(), Some(Step::ByteLevel { .. }))
    }

    /// Cuts `text` into pieces; `starts_input` tells whether `text` begins the input (nothing,
    /// not even an added token, before it), which Metaspace's `first` scheme needs.
    pub fn split<'a>(&self, text: &'a str, starts_input: bool) -> Pieces<'a> {
        let mut pieces = Pieces {
            text: Cow::Borrowed(text),
            ranges: Vec::new(),
        };
        if !text.is_empty() {
            pieces.ranges.push((0, text.len()));
        }
        for step in &self.steps {
            pieces = step.apply(pieces, starts_input);
        }
        pieces
    }
}

/// Appends the steps of `value` (flattening nested Sequences) to `steps`.
fn parse_into(value: &serde_json::Value, origin: &str, steps: &mut Vec<Step>) -> Result<()> {
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("<missing type>");
    match kind {
        "Sequence" => {
            let items = value
                .get("pretokenizers")
                .and_then(|p| p.as_array())
                .ok_or_else(|| {
                    Error::format(
                        origin,
                        "pre_tokenizer Sequence: `pretokenizers` is not an array",
                    )
                })?;
            for item in items {
                parse_into(item, origin, steps)?;
            }
        }
        "ByteLevel" => steps.push(Step::ByteLevel {
            add_prefix_space: field_bool(value, "add_prefix_space", true),
            use_regex: field_bool(value, "use_regex", true),
        }),
        "Digits" => steps.push(Step::Digits {
            individual_digits: field_bool(value, "individual_digits", false),
        }),
        "Split" => steps.push(Step::Split(parse_split(value, origin)?)),
        "Metaspace" => steps.push(Step::Metaspace(Metaspace::from_json(
            value,
            "pre_tokenizer",
            origin,
        )?)),
        other => {
            return Err(Error::format(
                origin,
                format!(
                    "pre_tokenizer type `{other}` is not supported \
                     (supported: ByteLevel, Digits, Split, Metaspace, Sequence)"
                ),
            ))
        }
    }
    Ok(())
}

fn parse_split(value: &serde_json::Value, origin: &str) -> Result<SplitPattern> {
    let behavior = value
        .get("behavior")
        .and_then(|b| b.as_str())
        .unwrap_or("<missing>");
    if behavior != "Isolated" || field_bool(value, "invert", false) {
        return Err(Error::format(
            origin,
            format!("pre_tokenizer Split: behavior `{behavior}` (or invert) is not supported; only Isolated, invert false"),
        ));
    }
    let regex = value
        .get("pattern")
        .and_then(|p| p.get("Regex"))
        .and_then(|r| r.as_str());
    let regex = regex.ok_or_else(|| {
        Error::format(
            origin,
            format!(
                "pre_tokenizer Split: pattern {} is not a {{\"Regex\": ...}}",
                value
                    .get("pattern")
                    .map_or("null".to_string(), |p| p.to_string())
            ),
        )
    })?;
    SplitPattern::from_regex(regex).ok_or_else(|| {
        Error::format(
            origin,
            format!(
                "pre_tokenizer Split: unknown pattern {regex:?}; known: the GPT-2, Llama-3 and Qwen2 patterns"
            ),
        )
    })
}

impl Step {
    /// The step's type name in tokenizer.json.
    fn name(&self) -> &'static str {
        match self {
            Step::ByteLevel { .. } => "ByteLevel",
            Step::Digits { .. } => "Digits",
            Step::Split(_) => "Split",
            Step::Metaspace(_) => "Metaspace",
        }
    }

    fn apply<'a>(&self, pieces: Pieces<'a>, starts_input: bool) -> Pieces<'a> {
        let Pieces { text, ranges } = pieces;
        let mut out = Vec::with_capacity(ranges.len() * 2);
        match *self {
            Step::Metaspace(metaspace) => {
                let mut new_text = String::with_capacity(text.len() + 3 * ranges.len());
                for &(a, b) in &ranges {
                    let first = starts_input && a == 0;
                    metaspace.pre_tokenize(&text[a..b], first, &mut new_text, &mut out);
                }
                return Pieces {
                    text: Cow::Owned(new_text),
                    ranges: out,
                };
            }
            Step::Split(pattern) => {
                for &(a, b) in &ranges {
                    pattern.split(&text, a, b, &mut out);
                }
            }
            Step::Digits { individual_digits } => {
                for &(a, b) in &ranges {
                    split_digits(&text, a, b, individual_digits, &mut out);
                }
            }
            Step::ByteLevel {
                add_prefix_space,
                use_regex,
            } => {
                let (text, ranges) = if add_prefix_space {
                    prefix_spaces(&text, &ranges)
                } else {
                    (text, ranges)
                };
                if !use_regex {
                    return Pieces { text, ranges };
                }
                for &(a, b) in &ranges {
                    SplitPattern::Gpt2.split(&text, a, b, &mut out);
                }
                return Pieces { text, ranges: out };
            }
        }
        Pieces { text, ranges: out }
    }
}

/// Digits: each number character alone (`individual`), or runs of them, as pieces between the
/// other runs.
fn split_digits(
    text: &str,
    start: usize,
    end: usize,
    individual: bool,
    out: &mut Vec<(usize, usize)>,
) {
    let mut piece_start = start;
    let mut piece_is_number = false;
    for (offset, c) in text[start..end].char_indices() {
        let at = start + offset;
        let number = is_number(c);
        let boundary = number != piece_is_number || (number && individual);
        if boundary && at > piece_start {
            out.push((piece_start, at));
            piece_start = at;
        }
        piece_is_number = number;
    }
    if end > piece_start {
        out.push((piece_start, end));
    }
}

/// ByteLevel `add_prefix_space`: a new text with a space before every piece that lacks one.
fn prefix_spaces<'a>(text: &str, ranges: &[(usize, usize)]) -> (Cow<'a, str>, Vec<(usize, usize)>) {
    let mut new_text = String::with_capacity(text.len() + ranges.len());
    let mut new_ranges = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges {
        let start = new_text.len();
        if !text[a..b].starts_with(' ') {
            new_text.push(' ');
        }
        new_text.push_str(&text[a..b]);
        new_ranges.push((start, new_text.len()));
    }
    (Cow::Owned(new_text), new_ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pre: &PreTokenizer, text: &str) -> Vec<String> {
        let p = pre.split(text, true);
        p.ranges
            .iter()
            .map(|&(a, b)| p.text[a..b].to_string())
            .collect()
    }

    #[test]
    fn digits_then_byte_level_like_smollm2() {
        let json = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]});
        let pre = PreTokenizer::from_json(Some(&json), "t").unwrap();
        assert!(pre.is_byte_level());
        assert_eq!(
            run(&pre, "Hello world! 123"),
            ["Hello", " world", "!", " ", "1", "2", "3"]
        );
    }

    #[test]
    fn prefix_space_per_piece() {
        let json =
            serde_json::json!({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true});
        let pre = PreTokenizer::from_json(Some(&json), "t").unwrap();
        assert_eq!(run(&pre, "Hi you"), [" Hi", " you"]);
        assert_eq!(run(&pre, " Hi"), [" Hi"]);
    }

    #[test]
    fn refuses_unknown_steps_and_misplaced_byte_level() {
        let unknown = serde_json::json!({"type": "Whitespace"});
        let err = PreTokenizer::from_json(Some(&unknown), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Whitespace"), "{err}");
        let pattern = serde_json::json!({"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false});
        let err = PreTokenizer::from_json(Some(&pattern), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\\\\w+"), "{err}");
        let misplaced = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "ByteLevel"}, {"type": "Digits"}]});
        assert!(PreTokenizer::from_json(Some(&misplaced), "t").is_err());
    }
}
