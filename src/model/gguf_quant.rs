//! ggml tensor types: how many bytes a block of elements takes, and how blocks decode to f32.
//!
//! ggml stores a tensor row as a sequence of fixed-size *blocks*. A plain type (F32, F16, BF16)
//! is a block of one element; a quantised type packs 32 (or 256) elements plus their scale(s)
//! into a few bytes. All multi-byte fields are little-endian. The reader ([`super::gguf`])
//! needs the sizes of every type it may meet (to validate tensor extents), even of the types we
//! cannot decode; [`dequantize`] decodes the plain types, the classic 32-element formats here
//! and the 256-element k-quants of [`super::gguf_kquant`] (what Q4_K_M, Q5_K_M, ... files mix).

use super::gguf_kquant::{self, QK_K};
use crate::{Error, Result};
use half::{bf16, f16};

/// Elements per block of the classic quantisation formats (Q4_0, Q4_1, Q8_0, ...).
pub const QK: usize = 32;

/// Decodes one block's bytes into its elements (the output holds one block of f32).
type BlockDecoder = fn(&[u8], &mut [f32]);

/// A ggml tensor element type, numbered as in ggml's `enum ggml_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
}

impl GgmlType {
    /// The type with ggml id `id`, or None for ids we do not know the block size of
    /// (e.g. the IQ* formats, or the ids ggml has retired).
    pub fn from_id(id: u32) -> Option<GgmlType> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            _ => return None,
        })
    }

    /// ggml's name for the type, for messages.
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            BF16 => "BF16",
        }
    }

    /// (elements per block, bytes per block). A row's length must be a multiple of the first.
    pub fn block_layout(self) -> (usize, usize) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (QK, 2 + QK / 2),
            Q4_1 => (QK, 2 + 2 + QK / 2),
            Q5_0 => (QK, 2 + 4 + QK / 2),
            Q5_1 => (QK, 2 + 2 + 4 + QK / 2),
            Q8_0 => (QK, 2 + QK),
            Q8_1 => (QK, 2 + 2 + QK),
            // k-quants: super-blocks of 256 with packed sub-block scales.
            Q2K => (QK_K, QK_K / 16 + QK_K / 4 + 2 + 2),
            Q3K => (QK_K, QK_K / 8 + QK_K / 4 + 12 + 2),
            Q4K => (QK_K, 2 + 2 + 12 + QK_K / 2),
            Q5K => (QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2),
            Q6K => (QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2),
            Q8K => (QK_K, 4 + QK_K + QK_K / 16 * 2),
        }
    }

    /// Whether [`dequantize`] can decode this type.
    pub fn can_dequantize(self) -> bool {
        self.block_decoder().is_some()
    }

    /// The function that decodes one block of this type, for the types we decode.
    fn block_decoder(self) -> Option<BlockDecoder> {
        use GgmlType::*;
        Some(match self {
            F32 => decode_f32,
            F16 => decode_f16,
            BF16 => decode_bf16,
            Q8_0 => decode_q8_0,
            Q4_0 => decode_q4_0,
            Q4_1 => decode_q4_1,
            Q5_0 => decode_q5_0,
            Q5_1 => decode_q5_1,
            Q2K => gguf_kquant::decode_q2_k,
            Q3K => gguf_kquant::decode_q3_k,
            Q4K => gguf_kquant::decode_q4_k,
            Q5K => gguf_kquant::decode_q5_k,
            Q6K => gguf_kquant::decode_q6_k,
            Q8_1 | Q8K | I8 | I16 | I32 | I64 | F64 => return None,
        })
    }
}

/// The tensor types [`dequantize`] decodes, for messages.
pub const DECODED_TYPES: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

/// ggml's name for a type id we do not know the layout of (the IQ* and ternary formats, ...),
/// so that a refusal can say what the file holds.
pub fn unknown_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

/// Decodes `n_elements` elements of type `ty` stored in `bytes` (exactly the tensor's bytes).
///
/// Errors when the type is one we do not decode, or when `bytes` does not hold exactly
/// `n_elements` elements of that type (the reader checks this already; we check again because
/// this function is public).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    let (block_elems, block_bytes) = ty.block_layout();
    if !n_elements.is_multiple_of(block_elems)
        || bytes.len() != n_elements / block_elems * block_bytes
    {
        return Err(Error::shape(
            "dequantize",
            format!(
                "{} elements of {} need {} bytes (blocks of {block_elems}), found {}",
                n_elements,
                ty.name(),
                n_elements / block_elems * block_bytes,
                bytes.len()
            ),
        ));
    }
    let decode_block = ty.block_decoder().ok_or_else(|| Error::DType {
        op: "dequantize",
        expected: DECODED_TYPES.into(),
        found: ty.name().into(),
    })?;
    // out: [n_elements], filled one block at a time.
    let mut out = vec![0f32; n_elements];
    for (block, dst) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block_elems))
    {
        decode_block(block, dst);
    }
    Ok(out)
}

/// A little-endian f16 at `bytes[at..at + 2]`, widened to f32.
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// F32: one element, 4 bytes.
fn decode_f32(block: &[u8], out: &mut [f32]) {
    out[0] = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
}

/// F16: one element, 2 bytes (IEEE half).
fn decode_f16(block: &[u8], out: &mut [f32]) {
    out[0] = f16_at(block, 0);
}

/// BF16: one element, 2 bytes (the upper half of an f32).
fn decode_bf16(block: &[u8], out: &mut [f32]) {
    out[0] = bf16::from_le_bytes([block[0], block[1]]).to_f32();
}

/// Q8_0, 34 bytes per 32 elements: `d: f16`, then `qs: [i8; 32]`; element j = qs[j] * d.
fn decode_q8_0(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    for (x, &q) in out.iter_mut().zip(&block[2..2 + QK]) {
        *x = (q as i8) as f32 * d;
    }
}

/// Q4_0, 18 bytes per 32 elements: `d: f16`, then `qs: [u8; 16]` of 4-bit quants.
/// Byte j holds element j in its low nibble and element j + 16 in its high nibble;
/// a quant q in 0..16 stands for (q - 8) * d, so the grid is symmetric around zero.
fn decode_q4_0(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let (lo, hi) = out.split_at_mut(QK / 2);
    for (j, &byte) in block[2..2 + QK / 2].iter().enumerate() {
        lo[j] = ((byte & 0x0F) as i32 - 8) as f32 * d;
        hi[j] = ((byte >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1, 20 bytes per 32 elements: `d: f16`, `m: f16`, then `qs: [u8; 16]` as in Q4_0
/// (low nibbles = elements 0..16, high nibbles = 16..32); element = q * d + m, an asymmetric
/// grid whose minimum m is stored explicitly.
fn decode_q4_1(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let m = f16_at(block, 2);
    let (lo, hi) = out.split_at_mut(QK / 2);
    for (j, &byte) in block[4..4 + QK / 2].iter().enumerate() {
        lo[j] = (byte & 0x0F) as f32 * d + m;
        hi[j] = (byte >> 4) as f32 * d + m;
    }
}

/// The 32 fifth bits of Q5_0 / Q5_1 (`qh`, a little-endian u32: bit j for element j) joined to
/// the nibbles of `qs` (low nibbles = elements 0..16, high = 16..32): quants in 0..32.
fn q5_quants(qh: &[u8], qs: &[u8]) -> [u8; QK] {
    let high = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut quants = [0u8; QK];
    for (j, q) in quants.iter_mut().enumerate() {
        let nibble = if j < QK / 2 {
            qs[j] & 0x0F
        } else {
            qs[j - QK / 2] >> 4
        };
        *q = nibble | ((((high >> j) & 1) as u8) << 4);
    }
    quants
}

/// Q5_0, 22 bytes per 32 elements: `d: f16`, `qh: [u8; 4]`, `qs: [u8; 16]`; a 5-bit quant q
/// stands for (q - 16) * d, symmetric like Q4_0.
fn decode_q5_0(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    for (x, &q) in out.iter_mut().zip(&q5_quants(&block[2..6], &block[6..22])) {
        *x = d * (q as i32 - 16) as f32;
    }
}

/// Q5_1, 24 bytes per 32 elements: `d: f16`, `m: f16`, `qh: [u8; 4]`, `qs: [u8; 16]`;
/// element = d * q + m, asymmetric like Q4_1.
fn decode_q5_1(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let m = f16_at(block, 2);
    for (x, &q) in out.iter_mut().zip(&q5_quants(&block[4..8], &block[8..24])) {
        *x = d * q as f32 + m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_ggml() {
        // Sizes from ggml's static_asserts on the block structs.
        assert_eq!(GgmlType::Q4_0.block_layout(), (32, 18));
        assert_eq!(GgmlType::Q4_1.block_layout(), (32, 20));
        assert_eq!(GgmlType::Q5_0.block_layout(), (32, 22));
        assert_eq!(GgmlType::Q5_1.block_layout(), (32, 24));
        assert_eq!(GgmlType::Q8_0.block_layout(), (32, 34));
        assert_eq!(GgmlType::Q8_1.block_layout(), (32, 36));
        assert_eq!(GgmlType::Q2K.block_layout(), (256, 84));
        assert_eq!(GgmlType::Q3K.block_layout(), (256, 110));
        assert_eq!(GgmlType::Q4K.block_layout(), (256, 144));
        assert_eq!(GgmlType::Q5K.block_layout(), (256, 176));
        assert_eq!(GgmlType::Q6K.block_layout(), (256, 210));
        assert_eq!(GgmlType::Q8K.block_layout(), (256, 292));
    }

    #[test]
    fn wrong_byte_count_is_an_error() {
        assert!(dequantize(GgmlType::Q4_0, &[0u8; 17], 32).is_err());
        assert!(dequantize(GgmlType::Q4_0, &[0u8; 18], 31).is_err());
        assert!(dequantize(GgmlType::Q6K, &[0u8; 210], 255).is_err());
        assert!(dequantize(GgmlType::Q8K, &[0u8; 292], 256).is_err());
    }
}
