//! The BPE model: vocab, ranked merges, and the merge loop, with a per-word cache.
//!
//! A word starts as one symbol per unit — per byte when the pre-tokenizer is ByteLevel (the byte's
//! GPT-2 character is looked up once in a 256-entry table), else per character — and the adjacent
//! pair with the lowest merge rank is merged until none is left, ties going to the leftmost pair.
//! This is the order of HF's priority queue, so the ids are the same.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use super::byte_fallback::byte_token;
use super::byte_level::{byte_to_char, to_byte_level};
use crate::{Error, Result};

/// A small multiplicative hasher (in the style of FxHash). The default SipHash guards against
/// hash flooding, which does not matter for a local tokenizer and costs a third of encode time.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// HashMap with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Words longer than this (in bytes) are not cached: they are rare and would bloat the cache.
const MAX_CACHED_WORD: usize = 256;
/// The cache is cleared when it reaches this many words, bounding its memory.
const MAX_CACHE_ENTRIES: usize = 200_000;

/// What to merge a pair of ids into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Merge {
    rank: u32,
    new_id: u32,
}

fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// The byte-pair-encoding model.
#[derive(Debug)]
pub struct Bpe {
    /// token string -> id
    pub vocab: FastMap<String, u32>,
    /// (left, right) packed by `pair_key` -> rank and merged id
    merges: FastMap<u64, Merge>,
    /// id of the one-character token of each byte, for byte-level words
    byte_ids: [Option<u32>; 256],
    unk_id: Option<u32>,
    fuse_unk: bool,
    byte_fallback: bool,
    ignore_merges: bool,
    /// True when the pre-tokenizer is ByteLevel: words are split into bytes.
    byte_level: bool,
    /// word -> ids, filled on first sight of each word
    cache: Mutex<FastMap<Box<str>, Vec<u32>>>,
}

fn get_str<'a>(model: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    model.get(key).and_then(|v| v.as_str())
}

impl Bpe {
    /// Parses the `model` object. `byte_level` comes from the pre-tokenizer.
    pub fn from_json(model: &serde_json::Value, byte_level: bool, origin: &str) -> Result<Bpe> {
        let kind = get_str(model, "type").unwrap_or("BPE"); // old files omit the type of BPE
        if kind != "BPE" {
            return Err(Error::format(
                origin,
                format!("model type `{kind}` is not supported (only BPE)"),
            ));
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if get_str(model, key).is_some_and(|s| !s.is_empty()) {
                return Err(Error::format(
                    origin,
                    format!("model.{key} is not supported"),
                ));
            }
        }
        if model
            .get("dropout")
            .and_then(|d| d.as_f64())
            .is_some_and(|d| d > 0.0)
        {
            return Err(Error::format(
                origin,
                "model.dropout > 0 is random; not supported",
            ));
        }
        let vocab = parse_vocab(model, origin)?;
        let merges = parse_merges(model, &vocab, origin)?;
        let unk_id = match get_str(model, "unk_token") {
            Some(unk) => Some(*vocab.get(unk).ok_or_else(|| {
                Error::format(
                    origin,
                    format!("model.unk_token {unk:?} is not in the vocab"),
                )
            })?),
            None => None,
        };
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let mut buf = [0u8; 4];
            *slot = vocab
                .get(&*byte_to_char(b as u8).encode_utf8(&mut buf))
                .copied();
        }
        let flag = |key: &str| model.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
        Ok(Bpe {
            merges,
            byte_ids,
            unk_id,
            fuse_unk: flag("fuse_unk"),
            byte_fallback: flag("byte_fallback"),
            ignore_merges: flag("ignore_merges"),
            byte_level,
            vocab,
            cache: Mutex::new(FastMap::default()),
        })
    }

    /// Appends the ids of one pre-tokenized word to `out`.
    pub fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        let cacheable = word.len() <= MAX_CACHED_WORD;
        if cacheable {
            if let Some(ids) = self.cache.lock().ok().as_ref().and_then(|c| c.get(word)) {
                out.extend_from_slice(ids);
                return;
            }
        }
        let ids = self.encode_uncached(word);
        out.extend_from_slice(&ids);
        if cacheable {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= MAX_CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(word.into(), ids);
            }
        }
    }

    fn encode_uncached(&self, word: &str) -> Vec<u32> {
        if self.ignore_merges {
            // Llama-3 style: a word that is a whole vocab entry is taken as is.
            let key: Cow<str> = if self.byte_level {
                Cow::Owned(to_byte_level(word))
            } else {
                Cow::Borrowed(word)
            };
            if let Some(&id) = self.vocab.get(&*key) {
                return vec![id];
            }
        }
        let mut symbols = self.initial_symbols(word);
        self.merge_all(&mut symbols);
        symbols
    }

    /// One id per unit of the word, before any merge.
    fn initial_symbols(&self, word: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(word.len());
        if self.byte_level {
            for b in word.bytes() {
                match self.byte_ids[b as usize] {
                    Some(id) => ids.push(id),
                    None => self.push_unknown(&[b], &mut ids),
                }
            }
            return ids;
        }
        let mut buf = [0u8; 4];
        for c in word.chars() {
            let unit = c.encode_utf8(&mut buf);
            match self.vocab.get(&*unit) {
                Some(&id) => ids.push(id),
                None => self.push_unknown(unit.as_bytes(), &mut ids),
            }
        }
        ids
    }

    /// A unit missing from the vocab: its bytes as `<0xXX>` tokens (byte_fallback), else the unk
    /// token (fused with a preceding unk when fuse_unk), else nothing — as HF does.
    fn push_unknown(&self, bytes: &[u8], ids: &mut Vec<u32>) {
        if self.byte_fallback {
            let fallback: Option<Vec<u32>> = bytes
                .iter()
                .map(|&b| self.vocab.get(&byte_token(b)).copied())
                .collect();
            if let Some(fallback) = fallback {
                ids.extend(fallback);
                return;
            }
        }
        if let Some(unk) = self.unk_id {
            if !(self.fuse_unk && ids.last() == Some(&unk)) {
                ids.push(unk);
            }
        }
    }

    /// Merges `ids` in place: lowest rank first, leftmost first among equal ranks.
    fn merge_all(&self, ids: &mut Vec<u32>) {
        const NONE: usize = usize::MAX;
        if ids.len() < 2 {
            return;
        }
        // Doubly linked list over the symbols; a merged-away symbol gets id u32::MAX.
        let mut next: Vec<usize> = (1..=ids.len()).collect();
        next[ids.len() - 1] = NONE;
        let mut prev: Vec<usize> = (0..ids.len()).map(|i| i.wrapping_sub(1)).collect();
        prev[0] = NONE;
        // Min-heap of candidate merges: (rank, position of the left symbol, merged id).
        let mut heap: BinaryHeap<Reverse<(u32, usize, u32)>> = BinaryHeap::with_capacity(ids.len());
        for pos in 0..ids.len() - 1 {
            if let Some(m) = self.merges.get(&pair_key(ids[pos], ids[pos + 1])) {
                heap.push(Reverse((m.rank, pos, m.new_id)));
            }
        }
        while let Some(Reverse((rank, pos, new_id))) = heap.pop() {
            let right = next[pos];
            if ids[pos] == u32::MAX || right == NONE {
                continue;
            }
            // Stale entry: the pair at `pos` changed since it was pushed.
            let current = self.merges.get(&pair_key(ids[pos], ids[right]));
            if current != Some(&Merge { rank, new_id }) {
                continue;
            }
            ids[pos] = new_id;
            ids[right] = u32::MAX;
            next[pos] = next[right];
            if next[pos] != NONE {
                prev[next[pos]] = pos;
            }
            if prev[pos] != NONE {
                self.push_pair(ids, prev[pos], pos, &mut heap);
            }
            if next[pos] != NONE {
                self.push_pair(ids, pos, next[pos], &mut heap);
            }
        }
        ids.retain(|&id| id != u32::MAX);
    }

    fn push_pair(
        &self,
        ids: &[u32],
        left: usize,
        right: usize,
        heap: &mut BinaryHeap<Reverse<(u32, usize, u32)>>,
    ) {
        if let Some(m) = self.merges.get(&pair_key(ids[left], ids[right])) {
            heap.push(Reverse((m.rank, left, m.new_id)));
        }
    }
}

/// Ids beyond this are refused: a tokenizer with holes that large is corrupt, and `id_to_token`
/// tables are sized by the largest id.
pub const MAX_TOKEN_ID: u32 = 1 << 24;

fn parse_vocab(model: &serde_json::Value, origin: &str) -> Result<FastMap<String, u32>> {
    let entries = model
        .get("vocab")
        .and_then(|v| v.as_object())
        .ok_or_else(|| {
            Error::format(
                origin,
                "model.vocab is missing or not an object {token: id}",
            )
        })?;
    let mut vocab = FastMap::default();
    vocab.reserve(entries.len());
    for (token, id) in entries {
        let id =
            id.as_u64()
                .filter(|&id| id < u64::from(MAX_TOKEN_ID))
                .ok_or_else(|| {
                    Error::format(
                origin,
                format!("model.vocab[{token:?}]: expected an id in 0..{MAX_TOKEN_ID}, found {id}"),
            )
                })?;
        vocab.insert(token.clone(), id as u32);
    }
    Ok(vocab)
}

/// One merge entry: "a b" (older files) or ["a", "b"].
fn merge_parts(entry: &serde_json::Value) -> Option<(&str, &str)> {
    if let Some(line) = entry.as_str() {
        let mut parts = line.split(' ');
        let (a, b) = (parts.next()?, parts.next()?);
        return parts.next().is_none().then_some((a, b));
    }
    match entry.as_array()?.as_slice() {
        [a, b] => Some((a.as_str()?, b.as_str()?)),
        _ => None,
    }
}

fn parse_merges(
    model: &serde_json::Value,
    vocab: &FastMap<String, u32>,
    origin: &str,
) -> Result<FastMap<u64, Merge>> {
    let entries = match model.get("merges") {
        None | Some(serde_json::Value::Null) => return Ok(FastMap::default()),
        Some(m) => m
            .as_array()
            .ok_or_else(|| Error::format(origin, "model.merges is not an array"))?,
    };
    let lookup = |token: &str, rank: usize| {
        vocab.get(token).copied().ok_or_else(|| {
            Error::format(
                origin,
                format!("model.merges[{rank}]: token {token:?} is not in the vocab"),
            )
        })
    };
    let mut merges = FastMap::default();
    merges.reserve(entries.len());
    for (rank, entry) in entries.iter().enumerate() {
        let (a, b) = merge_parts(entry).ok_or_else(|| {
            Error::format(
                origin,
                format!("model.merges[{rank}]: expected \"a b\" or [\"a\", \"b\"], found {entry}"),
            )
        })?;
        let new_id = lookup(&format!("{a}{b}"), rank)?;
        // A repeated pair keeps its last rank, as in HF (which collects merges into a map).
        merges.insert(
            pair_key(lookup(a, rank)?, lookup(b, rank)?),
            Merge {
                rank: rank as u32,
                new_id,
            },
        );
    }
    Ok(merges)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy byte-level model: vocab a b c ab bc abc; merges "b c" (rank 0), "a b" (1), "a bc" (2).
    fn toy() -> Bpe {
        let model = serde_json::json!({"type": "BPE",
            "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5},
            "merges": ["b c", ["a", "b"], "a bc"]});
        Bpe::from_json(&model, true, "toy").unwrap()
    }

    #[test]
    fn lowest_rank_first() {
        let bpe = toy();
        let mut out = Vec::new();
        // "abc": (b,c) has rank 0, so a + bc, then (a, bc) -> abc. Merging (a,b) first would
        // leave ab + c with no merge.
        bpe.encode_word("abc", &mut out);
        assert_eq!(out, [5]);
        out.clear();
        bpe.encode_word("abab", &mut out); // leftmost-first ties: ab ab
        assert_eq!(out, [3, 3]);
        out.clear();
        bpe.encode_word("abcd", &mut out); // 'd' is unknown and there is no unk: dropped
        assert_eq!(out, [5]);
    }

    #[test]
    fn bad_merges_are_errors() {
        let model = serde_json::json!({"vocab": {"a": 0}, "merges": ["a"]});
        let err = Bpe::from_json(&model, true, "m.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("merges[0]"), "{err}");
        let model = serde_json::json!({"vocab": {"a": 0}, "merges": [["a", "z"]]});
        assert!(Bpe::from_json(&model, true, "m.json").is_err());
        let model = serde_json::json!({"type": "WordPiece", "vocab": {}});
        assert!(Bpe::from_json(&model, true, "m.json")
            .unwrap_err()
            .to_string()
            .contains("WordPiece"));
    }
}
