//! Added tokens (special ones such as `<|im_start|>` and ordinary ones such as item tokens
//! `<a_12>`): found in the text before pre-tokenization, so they are never split by BPE.
//!
//! As in HF tokenizers there are two sets: tokens with `normalized: false` are searched in the raw
//! text, those with `normalized: true` in the text after normalization (their own content is
//! normalized too). The search is leftmost-longest over a byte trie, and the `single_word`,
//! `lstrip` and `rstrip` flags are applied to each match the way HF applies them.

use super::char_class::is_word_char;
use super::normalizer::Normalizer;

/// One added token with its flags.
#[derive(Debug, Clone, PartialEq)]
pub struct AddedToken {
    pub content: String,
    pub id: u32,
    pub special: bool,
    /// Searched in normalized text (true) or in the raw text (false).
    pub normalized: bool,
    pub lstrip: bool,
    pub rstrip: bool,
    pub single_word: bool,
}

/// A node of the byte trie: children sorted by byte, and the token ending here, if any.
#[derive(Debug, Clone, Default)]
struct TrieNode {
    children: Vec<(u8, u32)>,
    token: Option<u32>,
}

/// Byte trie over token contents; matches return indices into `AddedVocabulary::tokens`.
#[derive(Debug, Clone)]
struct Trie {
    nodes: Vec<TrieNode>,
    /// Bytes that start some pattern, to skip the rest quickly.
    first_bytes: [bool; 256],
}

impl Trie {
    fn new() -> Trie {
        Trie {
            nodes: vec![TrieNode::default()],
            first_bytes: [false; 256],
        }
    }

    fn insert(&mut self, pattern: &str, token: u32) {
        let Some(&first) = pattern.as_bytes().first() else {
            return;
        };
        self.first_bytes[first as usize] = true;
        let mut node = 0usize;
        for &b in pattern.as_bytes() {
            let found = self.nodes[node]
                .children
                .binary_search_by_key(&b, |&(c, _)| c);
            node = match found {
                Ok(i) => self.nodes[node].children[i].1 as usize,
                Err(i) => {
                    let child = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[node].children.insert(i, (b, child as u32));
                    child
                }
            };
        }
        // The first token with a given content wins, like the lowest pattern id in HF's matcher.
        self.nodes[node].token.get_or_insert(token);
    }

    /// The longest pattern starting at `pos`: (end, token index).
    fn longest_at(&self, text: &[u8], pos: usize) -> Option<(usize, u32)> {
        let mut node = 0usize;
        let mut best = None;
        for (offset, &b) in text[pos..].iter().enumerate() {
            let children = &self.nodes[node].children;
            match children.binary_search_by_key(&b, |&(c, _)| c) {
                Ok(i) => node = children[i].1 as usize,
                Err(_) => break,
            }
            if let Some(token) = self.nodes[node].token {
                best = Some((pos + offset + 1, token));
            }
        }
        best
    }

    /// Leftmost-longest, non-overlapping matches: (start, end, token index).
    fn find_all(&self, text: &str) -> Vec<(usize, usize, u32)> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            if self.first_bytes[bytes[pos] as usize] {
                if let Some((end, token)) = self.longest_at(bytes, pos) {
                    found.push((pos, end, token));
                    pos = end;
                    continue;
                }
            }
            pos += 1;
        }
        found
    }
}

/// A part of a text: an added token, or text to be encoded normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Token(u32),
    Text(usize, usize),
}

/// All added tokens and the two tries that find them.
#[derive(Debug, Clone)]
pub struct AddedVocabulary {
    pub tokens: Vec<AddedToken>,
    raw_trie: Trie,
    normalized_trie: Trie,
}

impl AddedVocabulary {
    pub fn new(tokens: Vec<AddedToken>, normalizer: Option<&Normalizer>) -> AddedVocabulary {
        let mut vocab = AddedVocabulary {
            tokens,
            raw_trie: Trie::new(),
            normalized_trie: Trie::new(),
        };
        vocab.rebuild(normalizer);
        vocab
    }

    /// Rebuilds both tries after tokens were added.
    pub fn rebuild(&mut self, normalizer: Option<&Normalizer>) {
        self.raw_trie = Trie::new();
        self.normalized_trie = Trie::new();
        for (index, token) in self.tokens.iter().enumerate() {
            if token.normalized {
                let content = match normalizer {
                    Some(n) => n.normalize(&token.content),
                    None => token.content.as_str().into(),
                };
                self.normalized_trie.insert(&content, index as u32);
            } else {
                self.raw_trie.insert(&token.content, index as u32);
            }
        }
    }

    /// Splits raw text on the tokens with `normalized: false`.
    pub fn split_raw(&self, text: &str) -> Vec<Segment> {
        self.split(text, &self.raw_trie)
    }

    /// Splits normalized text on the tokens with `normalized: true`.
    pub fn split_normalized(&self, text: &str) -> Vec<Segment> {
        self.split(text, &self.normalized_trie)
    }

    /// HF's `find_matches`: applies single_word (drop matches inside words), lstrip / rstrip
    /// (swallow the spaces beside the token) and returns tokens and the text between them.
    fn split(&self, text: &str, trie: &Trie) -> Vec<Segment> {
        let mut segments = Vec::new();
        let mut done = 0; // end of the last segment emitted
        for (match_start, match_end, index) in trie.find_all(text) {
            let token = &self.tokens[index as usize];
            let (mut start, mut end) = (match_start, match_end);
            if token.single_word {
                let word_before = text[..start].chars().next_back().is_some_and(is_word_char);
                let word_after = text[end..].chars().next().is_some_and(is_word_char);
                if word_before || word_after {
                    continue;
                }
            }
            if token.lstrip {
                let trimmed = text[..start].trim_end_matches(char::is_whitespace).len();
                start = trimmed.max(done);
            }
            if token.rstrip {
                end +=
                    text[end..].len() - text[end..].trim_start_matches(char::is_whitespace).len();
            }
            if done < start {
                segments.push(Segment::Text(done, start));
            }
            segments.push(Segment::Token(token.id));
            done = end;
        }
        if done < text.len() {
            segments.push(Segment::Text(done, text.len()));
        }
        segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(content: &str, id: u32) -> AddedToken {
        AddedToken {
            content: content.into(),
            id,
            special: false,
            normalized: false,
            lstrip: false,
            rstrip: false,
            single_word: false,
        }
    }

    #[test]
    fn longest_match_first() {
        let vocab = AddedVocabulary::new(
            vec![token("<a>", 1), token("<a><b>", 2), token("<b>", 3)],
            None,
        );
        let text = "x<a><b>y<a>";
        assert_eq!(
            vocab.split_raw(text),
            [
                Segment::Text(0, 1),
                Segment::Token(2),
                Segment::Text(7, 8),
                Segment::Token(1)
            ]
        );
    }

    #[test]
    fn strip_and_single_word_flags() {
        let mut t = token("<m>", 9);
        t.lstrip = true;
        t.rstrip = true;
        let vocab = AddedVocabulary::new(vec![t], None);
        // "a  <m>  b": the spaces on both sides belong to the token.
        assert_eq!(
            vocab.split_raw("a  <m>  b"),
            [Segment::Text(0, 1), Segment::Token(9), Segment::Text(8, 9)]
        );
        let mut w = token("cat", 4);
        w.single_word = true;
        let vocab = AddedVocabulary::new(vec![w], None);
        assert_eq!(
            vocab.split_raw("concat cat"),
            [Segment::Text(0, 7), Segment::Token(4)]
        );
    }
}
