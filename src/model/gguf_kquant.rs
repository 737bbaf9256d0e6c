//! The k-quant block formats of ggml (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) decoded to f32.
//!
//! A k-quant *super-block* holds 256 elements, split into sub-blocks (16 of 16 elements for
//! Q2_K / Q3_K / Q6_K, 8 of 32 for Q4_K / Q5_K). Each sub-block has its own small integer scale
//! (and for Q2_K / Q4_K / Q5_K a minimum), and one or two f16 super-scales turn those integers
//! into f32: element = (d * scale) * q - (dmin * min). The quants themselves are bit-packed in
//! planes: the low bits of 32 (or 64) consecutive elements share a run of bytes, each plane of
//! bits taken with a different shift.
//!
//! Every function below evaluates the same f32 operations in the same order as the `gguf`
//! package's reference dequantisation (products of exactly representable values, one rounding
//! each), so the results are bit for bit those of llama.cpp's Python reference. Rust never fuses
//! `a * b - c` into an FMA on its own, which that equality relies on.

use half::f16;

/// Elements per super-block of the k-quant formats (Q2_K .. Q8_K).
pub const QK_K: usize = 256;

/// A little-endian f16 at `bytes[at..at + 2]`, widened to f32.
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Q2_K, 84 bytes: `scales: [u8; 16]`, `qs: [u8; 64]`, `d: f16`, `dmin: f16`.
///
/// Sub-block j (16 elements) has scale `scales[j] & 0xF` and min `scales[j] >> 4`. Element
/// e = 128 h + 32 s + l (h in 0..2, s in 0..4, l in 0..32) is the 2-bit field
/// `(qs[32 h + l] >> 2 s) & 3`.
pub fn decode_q2_k(block: &[u8], out: &mut [f32]) {
    let (scales, qs) = (&block[..16], &block[16..80]);
    let d = f16_at(block, 80);
    let dmin = f16_at(block, 82);
    for (e, x) in out.iter_mut().enumerate().take(QK_K) {
        let (h, s, l) = (e / 128, (e / 32) % 4, e % 32);
        let q = (qs[32 * h + l] >> (2 * s)) & 3;
        let sc = scales[e / 16];
        let dl = d * (sc & 0xF) as f32;
        let ml = dmin * (sc >> 4) as f32;
        *x = dl * q as f32 - ml;
    }
}

/// The 16 signed 6-bit sub-block scales of Q3_K, packed in 12 bytes: the low nibbles come from
/// bytes 0..8 (sub-block j < 8 from the low nibble of byte j, j >= 8 from the high nibble of
/// byte j - 8), the top two bits from bytes 8..12 (sub-block 4 s + i from bits 2 s of byte
/// 8 + i). The stored value is offset by 32.
fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    let mut scales = [0i8; 16];
    for (j, scale) in scales.iter_mut().enumerate() {
        let low = if j < 8 {
            packed[j] & 0x0F
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 0x03;
        *scale = (low | (high << 4)) as i8 - 32;
    }
    scales
}

/// Q3_K, 110 bytes: `hmask: [u8; 32]`, `qs: [u8; 64]`, `scales: [u8; 12]`, `d: f16`.
///
/// Element e = 128 h + 32 s + l has low bits `(qs[32 h + l] >> 2 s) & 3` and a high bit
/// `(hmask[l] >> (e / 32)) & 1`; the quant is low - 4 when the high bit is 0, low otherwise
/// (a signed 3-bit value in -4..4). Sub-block j = e / 16 has the scale `d * scales[j]`.
pub fn decode_q3_k(block: &[u8], out: &mut [f32]) {
    let (hmask, qs) = (&block[..32], &block[32..96]);
    let scales = q3_k_scales(&block[96..108]);
    let d = f16_at(block, 108);
    for (e, x) in out.iter_mut().enumerate().take(QK_K) {
        let (h, s, l) = (e / 128, (e / 32) % 4, e % 32);
        let low = ((qs[32 * h + l] >> (2 * s)) & 3) as i8;
        let high_clear = ((hmask[l] >> (e / 32)) & 1) ^ 1;
        let q = low - ((high_clear << 2) as i8);
        let dl = d * scales[e / 16] as f32;
        *x = dl * q as f32;
    }
}

/// The 8 (scale, min) pairs of Q4_K / Q5_K, 6 bits each, packed in 12 bytes. Sub-blocks 0..4
/// keep theirs in the low 6 bits of bytes 0..4 (scales) and 4..8 (mins); sub-blocks 4..8 put
/// their low 4 bits in the nibbles of bytes 8..12 and their top 2 bits in the spare top bits of
/// bytes 0..8.
fn k_scale_min(packed: &[u8]) -> [(u8, u8); 8] {
    let mut pairs = [(0u8, 0u8); 8];
    for (j, pair) in pairs.iter_mut().enumerate() {
        *pair = if j < 4 {
            (packed[j] & 0x3F, packed[j + 4] & 0x3F)
        } else {
            let i = j - 4;
            (
                (packed[8 + i] & 0x0F) | ((packed[i] >> 2) & 0x30),
                (packed[8 + i] >> 4) | ((packed[4 + i] >> 2) & 0x30),
            )
        };
    }
    pairs
}

/// Q4_K, 144 bytes: `d: f16`, `dmin: f16`, `scales: [u8; 12]`, `qs: [u8; 128]`.
///
/// Element e = 64 c + 32 n + l (c in 0..4, n in 0..2, l in 0..32) is the nibble n of
/// `qs[32 c + l]`; sub-block e / 32 gives `(d * scale) * q - dmin * min`.
pub fn decode_q4_k(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let dmin = f16_at(block, 2);
    let pairs = k_scale_min(&block[4..16]);
    let qs = &block[16..144];
    for (e, x) in out.iter_mut().enumerate().take(QK_K) {
        let (c, n, l) = (e / 64, (e / 32) % 2, e % 32);
        let q = (qs[32 * c + l] >> (4 * n)) & 0x0F;
        let (sc, m) = pairs[e / 32];
        *x = (d * sc as f32) * q as f32 - dmin * m as f32;
    }
}

/// Q5_K, 176 bytes: `d: f16`, `dmin: f16`, `scales: [u8; 12]`, `qh: [u8; 32]`, `qs: [u8; 128]`.
///
/// As Q4_K, with a fifth bit for element e: `(qh[e % 32] >> (e / 32)) & 1`.
pub fn decode_q5_k(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let dmin = f16_at(block, 2);
    let pairs = k_scale_min(&block[4..16]);
    let (qh, qs) = (&block[16..48], &block[48..176]);
    for (e, x) in out.iter_mut().enumerate().take(QK_K) {
        let (c, n, l) = (e / 64, (e / 32) % 2, e % 32);
        let low = (qs[32 * c + l] >> (4 * n)) & 0x0F;
        let high = (qh[l] >> (e / 32)) & 1;
        let q = low | (high << 4);
        let (sc, m) = pairs[e / 32];
        *x = (d * sc as f32) * q as f32 - dmin * m as f32;
    }
}

/// Q6_K, 210 bytes: `ql: [u8; 128]`, `qh: [u8; 64]`, `scales: [i8; 16]`, `d: f16`.
///
/// Element e = 128 h + r (h in 0..2, r in 0..128) takes its low nibble n = r / 64 of
/// `ql[64 h + r % 64]` and its top two bits `(qh[32 h + r % 32] >> 2 (r / 32)) & 3`; the 6-bit
/// value is offset by 32. Sub-block e / 16 gives `(d * scale) * q`.
pub fn decode_q6_k(block: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&block[..128], &block[128..192], &block[192..208]);
    let d = f16_at(block, 208);
    for (e, x) in out.iter_mut().enumerate().take(QK_K) {
        let (h, r) = (e / 128, e % 128);
        let low = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
        let high = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 0x03;
        let q = (low | (high << 4)) as i8 - 32;
        let dl = d * (scales[e / 16] as i8) as f32;
        *x = dl * q as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q3_k_scales_unpack_by_hand() {
        // Sub-block 0: low nibble 0x5 of byte 0, top bits 0b10 from byte 8 bits 0..2 -> 0x25 = 37,
        // minus 32 = 5. Sub-block 8: high nibble 0x7 of byte 0, top bits of byte 8 bits 4..6 = 0
        // -> 7 - 32 = -25.
        let mut packed = [0u8; 12];
        packed[0] = 0x75;
        packed[8] = 0b0000_0010;
        let s = q3_k_scales(&packed);
        assert_eq!((s[0], s[8], s[1]), (5, -25, -32));
    }

    #[test]
    fn k_scale_min_unpacks_by_hand() {
        // Sub-block 5: scale = low nibble of byte 9 (0xA) | top 2 bits of byte 1 (0b11 << 4);
        // min = high nibble of byte 9 (0x3) | top 2 bits of byte 5 (0b01 << 4).
        let mut packed = [0u8; 12];
        packed[1] = 0b1100_0001;
        packed[5] = 0b0100_0010;
        packed[9] = 0x3A;
        let pairs = k_scale_min(&packed);
        assert_eq!(pairs[1], (1, 2));
        assert_eq!(pairs[5], (0x3A & 0x0F | 0x30, 0x3 | 0x10));
    }
}
