//! Our own mutator: byte-level edits plus two structure-aware ones that find the bugs loaders
//! have (numbers in text replaced by extreme values; aligned binary words overwritten by them).
//!
//! Every case is a pure function of (seed, case index), so `fuzz TARGET --seed S --case I`
//! rebuilds exactly the input a campaign reported.

use super::bundle::Bundle;
use ilrec::rng::Rng;

/// Values at the edges of every integer width, and the ones that overflow products.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    16,
    255,
    256,
    1023,
    4096,
    65535,
    65536,
    1_000_000,
    16_777_215,
    16_777_216,
    (1 << 31) - 1,
    1 << 31,
    u32::MAX as u64,
    1 << 32,
    (1 << 63) + 2,
    i64::MAX as u64,
    u64::MAX,
];

/// Text numbers to splice in (JSON/CSV fields): edges, negatives, floats, non-numbers.
const INTERESTING_TEXT: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "1000000",
    "16777215",
    "4294967296",
    "9223372036854775810",
    "18446744073709551615",
    "1e309",
    "-0",
    "0.5",
    "NaN",
    "null",
    "\"\"",
    "[]",
    "{}",
    "true",
];

/// The case `index` of a campaign with `seed`: a seed input with 1-8 stacked mutations.
pub fn case(seeds: &[Bundle], seed: u64, index: u64) -> Bundle {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut bundle = seeds[rng.below(seeds.len())].clone();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let file = rng.below(bundle.files.len());
        let other = seeds[rng.below(seeds.len())].clone();
        let donor = &other.files[rng.below(other.files.len())].1;
        mutate(&mut bundle.files[file].1, donor, &mut rng);
    }
    bundle
}

/// One mutation of `data` in place (`donor` supplies spliced bytes).
fn mutate(data: &mut Vec<u8>, donor: &[u8], rng: &mut Rng) {
    if data.is_empty() {
        data.push(rng.next_u64() as u8);
        return;
    }
    let pos = rng.below(data.len());
    match rng.below(10) {
        0 => data[pos] ^= 1 << rng.below(8),
        1 => data[pos] = rng.next_u64() as u8,
        2 => {
            let end = (pos + 1 + rng.below(64)).min(data.len());
            data.drain(pos..end);
        }
        3 => {
            let len = 1 + rng.below(32.min(data.len()));
            let from = rng.below(data.len() + 1 - len);
            let chunk: Vec<u8> = data[from..from + len].to_vec();
            data.splice(pos..pos, chunk);
        }
        4 => data.truncate(pos),
        5 => splice_donor(data, donor, pos, rng),
        6 | 7 => replace_text_number(data, rng),
        _ => overwrite_word(data, rng),
    }
}

/// Inserts a slice of another seed file at `pos`.
fn splice_donor(data: &mut Vec<u8>, donor: &[u8], pos: usize, rng: &mut Rng) {
    if donor.is_empty() {
        return;
    }
    let from = rng.below(donor.len());
    let len = 1 + rng.below((donor.len() - from).min(256));
    data.splice(pos..pos, donor[from..from + len].iter().copied());
}

/// Replaces one run of ASCII digits (a number in JSON or CSV) by an interesting value.
fn replace_text_number(data: &mut Vec<u8>, rng: &mut Rng) {
    let starts: Vec<usize> = (0..data.len())
        .filter(|&i| data[i].is_ascii_digit() && (i == 0 || !data[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = starts[rng.below(starts.len())];
    let end = (start..data.len())
        .find(|&i| !data[i].is_ascii_digit())
        .unwrap_or(data.len());
    let text = if rng.below(2) == 0 {
        INTERESTING_TEXT[rng.below(INTERESTING_TEXT.len())].to_string()
    } else {
        INTERESTING[rng.below(INTERESTING.len())].to_string()
    };
    data.splice(start..end, text.into_bytes());
}

/// Overwrites a 4- or 8-byte little-endian word at a 4-aligned offset (binary headers: counts,
/// dims, offsets, type ids) with an interesting value, or adds a small delta to it.
fn overwrite_word(data: &mut [u8], rng: &mut Rng) {
    let width = if rng.below(2) == 0 { 4 } else { 8 };
    if data.len() < width {
        return;
    }
    let slots = (data.len() - width) / 4 + 1;
    let at = rng.below(slots) * 4;
    let word = &mut data[at..at + width];
    let value = if rng.below(3) == 0 {
        let mut old = [0u8; 8];
        old[..width].copy_from_slice(word);
        let delta = rng.below(33) as i64 - 16;
        u64::from_le_bytes(old).wrapping_add(delta as u64)
    } else {
        INTERESTING[rng.below(INTERESTING.len())]
    };
    word.copy_from_slice(&value.to_le_bytes()[..width]);
}
