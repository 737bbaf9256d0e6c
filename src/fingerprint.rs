//! A 64-bit fingerprint of inputs (FNV-1a), the key of on-disk caches: the LLM item embeddings
//! (`sid::embeddings`) and the evaluation outcomes of a run (`pipeline::eval_cache`). Not a
//! cryptographic hash: it guards against stale caches after a change of inputs, not against an
//! adversary.

use crate::tensor::Tensor;
use crate::Result;

/// FNV-1a over everything fed to it, in order.
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Fingerprint {
        Fingerprint::new()
    }
}

impl Fingerprint {
    pub fn new() -> Fingerprint {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// A string and a separator byte no UTF-8 text holds, so ["ab", "c"] differs from ["a", "bc"].
    pub fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
        self.bytes(&[0xff]);
    }

    /// A length, then the values (little-endian), so `[[1], [2, 3]]` differs from `[[1, 2], [3]]`.
    pub fn u32s(&mut self, values: &[u32]) {
        self.bytes(&(values.len() as u64).to_le_bytes());
        for v in values {
            self.bytes(&v.to_le_bytes());
        }
    }

    /// The f32 values of `t` (little-endian; half precision converted first).
    pub fn tensor_values(&mut self, t: &Tensor) -> Result<()> {
        for v in t.to_f32().data()? {
            self.bytes(&v.to_le_bytes());
        }
        Ok(())
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference (isthe.com/chongo/tech/comp/fnv): "" and "a" under FNV-1a 64.
        assert_eq!(Fingerprint::new().finish(), 0xcbf29ce484222325);
        let mut f = Fingerprint::new();
        f.bytes(b"a");
        assert_eq!(f.finish(), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn separators_keep_different_splits_apart() {
        let of = |parts: &[&[u32]]| {
            let mut f = Fingerprint::new();
            parts.iter().for_each(|p| f.u32s(p));
            f.finish()
        };
        assert_ne!(of(&[&[1], &[2, 3]]), of(&[&[1, 2], &[3]]));
    }
}
