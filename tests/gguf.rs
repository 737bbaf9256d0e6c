//! GGUF reader, dequantisation and llama.cpp -> HF mapping, on small files this test writes
//! itself with its own encoder (so the reader is checked against an independent writer), plus
//! the real SmolLM2 file when scripts/get-smollm2.sh has fetched it.

mod common;

use common::gguf_writer::{put_string, write_bytes, Writer};

use half::{bf16, f16};
use ilrec::model::gguf::{GgufFile, GgufValue};
use ilrec::model::gguf_hf;
use std::path::PathBuf;

fn f16_bytes(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

fn assert_err_contains(path: &PathBuf, needle: &str) {
    match GgufFile::open(path) {
        Ok(_) => panic!(
            "{} opened, expected an error mentioning {needle:?}",
            path.display()
        ),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(needle),
                "error {msg:?} does not mention {needle:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata

fn every_type_kvs() -> Vec<(&'static str, GgufValue)> {
    use GgufValue::*;
    vec![
        ("t.u8", U8(200)),
        ("t.i8", I8(-100)),
        ("t.u16", U16(60000)),
        ("t.i16", I16(-30000)),
        ("t.u32", U32(4_000_000_000)),
        ("t.i32", I32(-2_000_000_000)),
        ("t.u64", U64(u64::MAX - 1)),
        ("t.i64", I64(i64::MIN + 1)),
        ("t.f32", F32(-1.25e-3)),
        ("t.f64", F64(std::f64::consts::PI)),
        ("t.bool_true", Bool(true)),
        ("t.bool_false", Bool(false)),
        ("t.string", String("héllo ✓".into())),
        ("t.empty_string", String("".into())),
        ("t.array_i32", Array(vec![I32(1), I32(-2), I32(3)])),
        (
            "t.array_str",
            Array(vec![String("a b".into()), String("Ġt".into())]),
        ),
        ("t.array_empty", Array(vec![])),
        (
            "t.array_nested",
            Array(vec![
                Array(vec![U16(1), U16(2)]),
                Array(vec![U16(3)]),
                Array(vec![]),
            ]),
        ),
        ("t.array_f64", Array(vec![F64(0.5), F64(-0.25)])),
        ("t.array_bool", Array(vec![Bool(true), Bool(false)])),
    ]
}

#[test]
fn every_metadata_type_round_trips_in_v2_and_v3() {
    for version in [2, 3] {
        let mut w = Writer::new();
        w.version = version;
        for (k, v) in every_type_kvs() {
            w = w.kv(k, v);
        }
        let path = w.write(&format!("types-v{version}.gguf"));
        let g = GgufFile::open(&path).unwrap();
        assert_eq!(g.version(), version);
        assert_eq!(g.metadata().len(), every_type_kvs().len());
        for (k, v) in every_type_kvs() {
            assert_eq!(g.get(k), Some(&v), "key {k}");
        }
        assert!(g.tensors().is_empty());
        assert_eq!(g.get("absent"), None);
    }
}

#[test]
fn value_accessors_widen_integers() {
    assert_eq!(GgufValue::U8(7).as_u64(), Some(7));
    assert_eq!(GgufValue::I32(-1).as_u64(), None);
    assert_eq!(GgufValue::I32(-1).as_i64(), Some(-1));
    assert_eq!(GgufValue::U64(u64::MAX).as_i64(), None);
    assert_eq!(GgufValue::F32(0.5).as_f64(), Some(0.5));
    assert_eq!(GgufValue::U32(3).as_f64(), Some(3.0));
    assert_eq!(GgufValue::String("x".into()).as_u64(), None);
}

// ---------------------------------------------------------------------------------------------
// Tensor types

/// Q8_0 blocks: d then 32 i8. Returns (bytes, expected values computed here).
fn q8_0_blocks(ds: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for (b, &d) in ds.iter().enumerate() {
        bytes.extend_from_slice(&f16_bytes(d));
        for j in 0..32i32 {
            let q = (j * 9 + b as i32 * 31) % 256 - 128; // spans -128..127
            bytes.push(q as i8 as u8);
            expected.push(q as f32 * d);
        }
    }
    (bytes, expected)
}

/// Q4_0 blocks: d then 16 bytes; byte j = element j (low nibble) | element j+16 (high).
fn q4_0_blocks(ds: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for (b, &d) in ds.iter().enumerate() {
        bytes.extend_from_slice(&f16_bytes(d));
        let quants: Vec<u8> = (0..32).map(|j| ((j * 7 + b * 3) % 16) as u8).collect();
        for j in 0..16 {
            bytes.push(quants[j] | (quants[j + 16] << 4));
        }
        expected.extend(quants.iter().map(|&q| (q as f32 - 8.0) * d));
    }
    (bytes, expected)
}

/// Q4_1 blocks: d, m, then 16 bytes as in Q4_0; value = q * d + m.
fn q4_1_blocks(dms: &[(f32, f32)]) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for (b, &(d, m)) in dms.iter().enumerate() {
        bytes.extend_from_slice(&f16_bytes(d));
        bytes.extend_from_slice(&f16_bytes(m));
        let quants: Vec<u8> = (0..32).map(|j| ((j * 5 + b) % 16) as u8).collect();
        for j in 0..16 {
            bytes.push(quants[j] | (quants[j + 16] << 4));
        }
        expected.extend(quants.iter().map(|&q| q as f32 * d + m));
    }
    (bytes, expected)
}

#[test]
fn q4_blocks_by_hand() {
    // One Q4_0 block, d = 0.5: byte 0 = 0x1F -> element 0 is (15-8)*0.5 = 3.5, element 16 is
    // (1-8)*0.5 = -3.5; the other bytes 0x80 -> (0-8)*0.5 = -4 low, (8-8)*0.5 = 0 high.
    let mut q4_0 = f16_bytes(0.5).to_vec();
    q4_0.push(0x1F);
    q4_0.extend_from_slice(&[0x80; 15]);
    // One Q4_1 block, d = 0.25, m = -1: byte 0 = 0xA3 -> element 0 = 3*0.25-1 = -0.25,
    // element 16 = 10*0.25-1 = 1.5; others 0x00 -> -1.
    let mut q4_1 = f16_bytes(0.25).to_vec();
    q4_1.extend_from_slice(&f16_bytes(-1.0));
    q4_1.push(0xA3);
    q4_1.extend_from_slice(&[0x00; 15]);
    let path = Writer::new()
        .tensor("a", &[32], 2, q4_0)
        .tensor("b", &[32], 3, q4_1)
        .write("q4-by-hand.gguf");
    let g = GgufFile::open(&path).unwrap();
    let (_, a) = g.dequantize("a").unwrap();
    assert_eq!((a[0], a[16], a[1], a[17]), (3.5, -3.5, -4.0, 0.0));
    let (_, b) = g.dequantize("b").unwrap();
    assert_eq!((b[0], b[16], b[1], b[17]), (-0.25, 1.5, -1.0, -1.0));
}

#[test]
fn every_supported_tensor_type_dequantises() {
    let plain: Vec<f32> = (0..8).map(|i| i as f32 * 0.75 - 2.0).collect();
    let f32_bytes: Vec<u8> = plain.iter().flat_map(|x| x.to_le_bytes()).collect();
    let f16_data: Vec<u8> = plain.iter().flat_map(|&x| f16_bytes(x)).collect();
    let bf16_data: Vec<u8> = plain
        .iter()
        .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
        .collect();
    // Four blocks each: dims [64, 2] = two rows of two blocks.
    let (q8, q8_expected) = q8_0_blocks(&[0.5, -0.125, 2.0, 0.0078125]);
    let (q40, q40_expected) = q4_0_blocks(&[0.25, 1.5, -0.5, 3.0]);
    let (q41, q41_expected) = q4_1_blocks(&[(0.25, -2.0), (0.5, 1.0), (0.125, 0.0), (1.0, -8.0)]);

    let path = Writer::new()
        .tensor("f32", &[4, 2], 0, f32_bytes)
        .tensor("f16", &[8], 1, f16_data)
        .tensor("bf16", &[2, 2, 2], 30, bf16_data)
        .tensor("q8_0", &[64, 2], 8, q8)
        .tensor("q4_0", &[64, 2], 2, q40)
        .tensor("q4_1", &[64, 2], 3, q41)
        .write("types.gguf");
    let g = GgufFile::open(&path).unwrap();
    let names: Vec<&str> = g.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"]);

    // plain values are exact in f16 and bf16 (multiples of 0.25 in -2..3.25)
    for (name, shape) in [
        ("f32", vec![2, 4]),
        ("f16", vec![8]),
        ("bf16", vec![2, 2, 2]),
    ] {
        assert_eq!(
            g.dequantize(name).unwrap(),
            (shape, plain.clone()),
            "tensor {name}"
        );
    }
    for (name, expected) in [
        ("q8_0", q8_expected),
        ("q4_0", q40_expected),
        ("q4_1", q41_expected),
    ] {
        assert_eq!(
            g.dequantize(name).unwrap(),
            (vec![2, 64], expected),
            "tensor {name}"
        );
    }
    assert!(g.dequantize("missing").is_err());
}

#[test]
fn undecodable_type_opens_but_dequantise_errors() {
    // Q8_K (id 15): 256 elements in 292 bytes. The reader must size it; we do not decode it.
    let path = Writer::new()
        .tensor("k", &[256], 15, vec![0; 292])
        .write("q8k-open.gguf");
    let g = GgufFile::open(&path).unwrap();
    assert_eq!(g.tensors()[0].n_bytes, 292);
    let err = g.dequantize("k").unwrap_err().to_string();
    assert!(err.contains("Q8_K"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Alignment

#[test]
fn non_default_alignment_is_honoured() {
    for alignment in [1u32, 8, 64, 256] {
        let values: Vec<f32> = vec![1.0, -2.0, 3.5];
        let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        // A 5-byte key makes the header length odd, so padding is really needed.
        let path = Writer::new()
            .kv("general.alignment", GgufValue::U32(alignment))
            .kv("odd.k", GgufValue::U8(1))
            .tensor("x", &[3], 0, bytes.clone())
            .tensor("y", &[3], 0, bytes)
            .write(&format!("align-{alignment}.gguf"));
        let g = GgufFile::open(&path).unwrap();
        assert_eq!(g.alignment(), alignment as u64);
        assert_eq!(g.data_start() % alignment as u64, 0);
        assert_eq!(
            g.tensors()[1].offset,
            12u64.div_ceil(alignment as u64) * alignment as u64
        );
        assert_eq!(g.dequantize("y").unwrap().1, values);
    }
}

#[test]
fn bad_alignment_values_are_refused() {
    let p = Writer::new()
        .kv("general.alignment", GgufValue::U32(48))
        .write("align-48.gguf");
    assert_err_contains(&p, "general.alignment");
    let p = Writer::new()
        .kv("general.alignment", GgufValue::U32(0))
        .write("align-0.gguf");
    assert_err_contains(&p, "general.alignment");
    let p = Writer::new()
        .kv("general.alignment", GgufValue::U64(32))
        .write("align-u64.gguf");
    assert_err_contains(&p, "general.alignment");
}

#[test]
fn misaligned_tensor_offset_is_refused() {
    let mut w = Writer::new().tensor("x", &[8], 0, vec![0; 32]);
    w.tensors[0].offset_override = Some(4);
    assert_err_contains(&w.write("misaligned.gguf"), "alignment");
}

// ---------------------------------------------------------------------------------------------
// Corrupt files: always Err, never a panic or a huge allocation.

fn small_valid_file() -> Writer {
    Writer::new()
        .kv("general.architecture", GgufValue::String("llama".into()))
        .kv(
            "a",
            GgufValue::Array(vec![
                GgufValue::String("x".into()),
                GgufValue::String("yz".into()),
            ]),
        )
        .tensor("t", &[32], 8, q8_0_blocks(&[1.0]).0)
}

#[test]
fn bad_magic_and_versions_are_refused() {
    let mut bytes = small_valid_file().bytes();
    bytes[0] = b'X';
    assert_err_contains(&write_bytes("magic.gguf", &bytes), "magic");
    for (version, needle) in [
        (1u32, "v1"),
        (4, "version 4"),
        (3u32.swap_bytes(), "big-endian"),
    ] {
        let mut w = small_valid_file();
        w.version = version;
        assert_err_contains(&w.write("version.gguf"), needle);
    }
    assert_err_contains(&write_bytes("empty.gguf", b""), "truncated");
}

#[test]
fn truncated_tensor_data_is_refused() {
    let bytes = small_valid_file().bytes();
    let path = write_bytes("truncated.gguf", &bytes[..bytes.len() - 1]);
    assert_err_contains(&path, "past the end");
}

#[test]
fn every_prefix_of_a_valid_file_is_an_error() {
    let bytes = small_valid_file().bytes();
    assert!(GgufFile::open(write_bytes("full.gguf", &bytes)).is_ok());
    for len in 0..bytes.len() {
        let path = write_bytes("prefix.gguf", &bytes[..len]);
        assert!(
            GgufFile::open(&path).is_err(),
            "prefix of {len} bytes opened"
        );
    }
}

#[test]
fn offset_out_of_range_is_refused() {
    for offset in [1u64 << 40, u64::MAX - 31] {
        let mut w = small_valid_file();
        w.tensors[0].offset_override = Some(offset);
        assert_err_contains(&w.write("offset.gguf"), "past the end");
    }
}

#[test]
fn absurd_counts_are_refused_without_allocating() {
    for count in [1u64 << 40, u64::MAX] {
        let mut w = small_valid_file();
        w.tensor_count_override = Some(count);
        assert_err_contains(&w.write("tcount.gguf"), "tensor_count");
        let mut w = small_valid_file();
        w.kv_count_override = Some(count);
        assert_err_contains(&w.write("kvcount.gguf"), "metadata_kv_count");
    }
    // An array whose length claims 2^60 u64s.
    let mut bytes = Writer::new().header_bytes();
    bytes[16..24].copy_from_slice(&1u64.to_le_bytes()); // kv_count = 1
    put_string(&mut bytes, "big");
    bytes.extend_from_slice(&9u32.to_le_bytes()); // array
    bytes.extend_from_slice(&10u32.to_le_bytes()); // of u64
    bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert_err_contains(&write_bytes("bigarray.gguf", &bytes), "big");
}

#[test]
fn string_length_beyond_eof_is_refused() {
    let mut bytes = Writer::new().header_bytes();
    bytes[16..24].copy_from_slice(&1u64.to_le_bytes()); // kv_count = 1
    bytes.extend_from_slice(&(1u64 << 50).to_le_bytes()); // key length
    bytes.extend_from_slice(&[b'a'; 40]); // enough bytes for the kv count to be plausible
    assert_err_contains(&write_bytes("longkey.gguf", &bytes), "string of");
}

/// A key length that is too long but still inside the file swallows the bytes after it; the
/// error says the length is corrupt instead of quoting those bytes as a key (fuzz finding: a
/// 400-character "key" of tabs and token strings).
#[test]
fn a_key_length_that_swallows_the_file_is_called_corrupt() {
    let w = Writer::new()
        .kv("general.name", GgufValue::String("tiny".into()))
        .kv("general.tabs", GgufValue::String("a\tb\u{1}c".repeat(40)));
    let mut bytes = w.bytes();
    // The first key's length (right after the 24-byte preamble) made 100 bytes longer.
    let real = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
    bytes[24..32].copy_from_slice(&(real + 100).to_le_bytes());
    let path = write_bytes("swallowing-key.gguf", &bytes);
    assert_err_contains(&path, "metadata key: length");
    assert_err_contains(&path, "probably corrupt");
}

#[test]
fn structural_corruptions_are_refused() {
    // Nesting deeper than the reader allows.
    let mut deep = GgufValue::Array(vec![GgufValue::U8(1)]);
    for _ in 0..20 {
        deep = GgufValue::Array(vec![deep]);
    }
    assert_err_contains(&Writer::new().kv("deep", deep).write("deep.gguf"), "nested");
    // Five dims, an unknown ggml type, a row not made of whole blocks.
    let five = Writer::new().tensor("t", &[1, 1, 1, 1, 1], 0, vec![0; 4]);
    assert_err_contains(&five.write("dims.gguf"), "dims");
    let unknown = Writer::new().tensor("t", &[1], 99, vec![0; 4]);
    assert_err_contains(&unknown.write("type.gguf"), "ggml type id 99");
    let partial = Writer::new().tensor("t", &[16], 2, vec![0; 18]);
    assert_err_contains(&partial.write("partial.gguf"), "block size");
    // Dims whose product overflows u64.
    let huge = Writer::new().tensor("t", &[1 << 32, 1 << 32, 2], 0, vec![0; 4]);
    assert_err_contains(&huge.write("huge.gguf"), "overflow");
    // Two tensors over the same bytes; a repeated tensor name; a repeated key.
    let mut overlap =
        Writer::new()
            .tensor("a", &[8], 0, vec![0; 32])
            .tensor("b", &[8], 0, vec![0; 32]);
    overlap.tensors[1].offset_override = Some(0);
    assert_err_contains(&overlap.write("overlap.gguf"), "overlap");
    let twice = Writer::new()
        .tensor("a", &[1], 0, vec![0; 4])
        .tensor("a", &[1], 0, vec![0; 4]);
    assert_err_contains(&twice.write("twice.gguf"), "twice");
    let keys = Writer::new()
        .kv("k", GgufValue::U8(1))
        .kv("k", GgufValue::U8(2));
    assert_err_contains(&keys.write("keys.gguf"), "twice");
    // A bool byte other than 0/1, an unknown value type, invalid UTF-8.
    let mut bytes = Writer::new().kv("b", GgufValue::Bool(true)).header_bytes();
    let last = bytes.len() - 1;
    bytes[last] = 2;
    assert_err_contains(&write_bytes("bool.gguf", &bytes), "bool");
    let mut bytes = Writer::new().kv("u", GgufValue::U8(1)).header_bytes();
    let last = bytes.len() - 1; // the value byte, preceded by its 4-byte type id
    bytes[last - 4..last].copy_from_slice(&13u32.to_le_bytes());
    assert_err_contains(&write_bytes("vtype.gguf", &bytes), "value type 13");
    let mut bytes = Writer::new()
        .kv("s", GgufValue::String("ab".into()))
        .header_bytes();
    let last = bytes.len() - 1;
    bytes[last] = 0xFF;
    assert_err_contains(&write_bytes("utf8.gguf", &bytes), "UTF-8");
}

#[test]
fn random_byte_flips_never_panic() {
    let original = small_valid_file().bytes();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        // xorshift64: a deterministic stream of positions and bytes.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..500 {
        let mut bytes = original.clone();
        for _ in 0..1 + round % 4 {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        let path = write_bytes("flip.gguf", &bytes);
        // Ok or Err are both fine; a panic fails the test.
        if let Ok(g) = GgufFile::open(&path) {
            for t in g.tensors().to_vec() {
                let _ = g.dequantize(&t.name);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// llama.cpp -> HF

#[test]
fn unpermute_undoes_the_converter_interleave_by_hand() {
    // One head, head_dim 4: HF pairs rows (0, 2) and (1, 3) for RoPE; llama.cpp stores the
    // pairs adjacent, so GGUF row order is HF rows [0, 2, 1, 3].
    let gguf_rows = [0.0, 0.1, 2.0, 2.1, 1.0, 1.1, 3.0, 3.1]; // [4, 2]: row r = (r, r + .1)
    let hf = gguf_hf::unpermute_qk_rows(&gguf_rows, 1, 2).unwrap();
    assert_eq!(hf, [0.0, 0.1, 1.0, 1.1, 2.0, 2.1, 3.0, 3.1]);
    // Two heads of dim 6 (rows 0..5 and 6..11), one column: GGUF head order is
    // [0, 3, 1, 4, 2, 5] within each head.
    let gguf_rows = [0., 3., 1., 4., 2., 5., 6., 9., 7., 10., 8., 11.];
    let hf = gguf_hf::unpermute_qk_rows(&gguf_rows, 2, 1).unwrap();
    assert_eq!(hf, (0..12).map(|r| r as f32).collect::<Vec<_>>());
    // Rows that do not split into heads of an even size.
    assert!(gguf_hf::unpermute_qk_rows(&[0.0; 6], 2, 1).is_err());
    assert!(gguf_hf::unpermute_qk_rows(&[0.0; 8], 0, 1).is_err());
}

#[test]
fn tensor_names_map_to_hf() {
    let cases = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
        (
            "blk.0.attn_norm.weight",
            "model.layers.0.input_layernorm.weight",
        ),
        (
            "blk.12.attn_q.weight",
            "model.layers.12.self_attn.q_proj.weight",
        ),
        (
            "blk.3.attn_k.weight",
            "model.layers.3.self_attn.k_proj.weight",
        ),
        (
            "blk.3.attn_v.weight",
            "model.layers.3.self_attn.v_proj.weight",
        ),
        (
            "blk.3.attn_output.weight",
            "model.layers.3.self_attn.o_proj.weight",
        ),
        (
            "blk.29.ffn_norm.weight",
            "model.layers.29.post_attention_layernorm.weight",
        ),
        (
            "blk.1.ffn_gate.weight",
            "model.layers.1.mlp.gate_proj.weight",
        ),
        ("blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight"),
        (
            "blk.1.ffn_down.weight",
            "model.layers.1.mlp.down_proj.weight",
        ),
    ];
    for (gguf, hf) in cases {
        assert_eq!(gguf_hf::hf_tensor_name(gguf).as_deref(), Some(hf));
    }
    for unknown in [
        "blk.x.attn_q.weight",
        "blk.1.attn_qkv.weight",
        "rope_freqs.weight",
        "blk",
    ] {
        assert_eq!(gguf_hf::hf_tensor_name(unknown), None, "{unknown}");
    }
}

fn f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A one-block Llama: hidden 4, 2 heads of dim 2, 1 KV head, FFN 3, vocab 5 (tied).
fn tiny_llama(pre: &str) -> Writer {
    use GgufValue::*;
    let strings = |v: &[&str]| Array(v.iter().map(|s| String(s.to_string())).collect());
    let seq = |n: usize| -> Vec<f32> { (0..n).map(|i| i as f32).collect() };
    Writer::new()
        .kv("general.architecture", String("llama".into()))
        .kv("llama.context_length", U32(256))
        .kv("llama.embedding_length", U32(4))
        .kv("llama.block_count", U32(1))
        .kv("llama.feed_forward_length", U32(3))
        .kv("llama.rope.dimension_count", U32(2))
        .kv("llama.attention.head_count", U32(2))
        .kv("llama.attention.head_count_kv", U32(1))
        .kv("llama.attention.layer_norm_rms_epsilon", F32(1e-5))
        .kv("llama.rope.freq_base", F32(100000.0))
        .kv("tokenizer.ggml.model", String("gpt2".into()))
        .kv("tokenizer.ggml.pre", String(pre.into()))
        .kv(
            "tokenizer.ggml.tokens",
            strings(&["<s>", "</s>", "a", "b", "ab"]),
        )
        .kv(
            "tokenizer.ggml.token_type",
            Array(vec![I32(3), I32(3), I32(1), I32(1), I32(4)]),
        )
        .kv("tokenizer.ggml.merges", strings(&["a b"]))
        .kv("tokenizer.ggml.bos_token_id", U32(0))
        .kv("tokenizer.ggml.eos_token_id", U32(1))
        .tensor("token_embd.weight", &[4, 5], 0, f32_le(&seq(20)))
        .tensor("blk.0.attn_norm.weight", &[4], 0, f32_le(&[1.0; 4]))
        .tensor("blk.0.attn_q.weight", &[4, 4], 0, f32_le(&seq(16)))
        .tensor("blk.0.attn_k.weight", &[4, 2], 0, f32_le(&seq(8)))
        .tensor("blk.0.attn_v.weight", &[4, 2], 0, f32_le(&seq(8)))
        .tensor("blk.0.attn_output.weight", &[4, 4], 0, f32_le(&seq(16)))
        .tensor("blk.0.ffn_norm.weight", &[4], 0, f32_le(&[1.0; 4]))
        .tensor("blk.0.ffn_gate.weight", &[4, 3], 0, f32_le(&seq(12)))
        .tensor("blk.0.ffn_up.weight", &[4, 3], 0, f32_le(&seq(12)))
        .tensor("blk.0.ffn_down.weight", &[3, 4], 0, f32_le(&seq(12)))
        .tensor("output_norm.weight", &[4], 0, f32_le(&[1.0; 4]))
}

#[test]
fn tiny_llama_config_tensors_and_tokenizer() {
    let g = GgufFile::open(tiny_llama("smollm").write("tiny-llama.gguf")).unwrap();
    let config = gguf_hf::hf_config(&g).unwrap();
    let expect = [
        ("model_type", serde_json::json!("llama")),
        ("hidden_size", 4.into()),
        ("intermediate_size", 3.into()),
        ("num_hidden_layers", 1.into()),
        ("num_attention_heads", 2.into()),
        ("num_key_value_heads", 1.into()),
        ("head_dim", 2.into()),
        ("rms_norm_eps", 1e-5.into()),
        ("rope_theta", 100000.0.into()),
        ("vocab_size", 5.into()),
        ("tie_word_embeddings", true.into()),
        ("bos_token_id", 0.into()),
        ("eos_token_id", 1.into()),
        ("max_position_embeddings", 256.into()),
    ];
    for (key, value) in expect {
        assert_eq!(config[key], value, "config.{key}");
    }

    let tensors = gguf_hf::hf_tensors(&g).unwrap();
    let find = |n: &str| {
        tensors
            .iter()
            .find(|t| t.0 == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    let embed = find("model.embed_tokens.weight");
    assert_eq!(embed.1, [5, 4]);
    assert_eq!(embed.2[4..8], [4.0, 5.0, 6.0, 7.0]); // row 1

    // q: 2 heads of dim 2 -> each head's two rows are one RoPE pair; with head_dim 2 the
    // interleave is the identity.
    assert_eq!(
        find("model.layers.0.self_attn.q_proj.weight").2,
        (0..16).map(|i| i as f32).collect::<Vec<_>>()
    );
    assert_eq!(find("model.layers.0.mlp.down_proj.weight").1, [4, 3]);
    assert_eq!(find("model.layers.0.mlp.gate_proj.weight").1, [3, 4]);
    assert_eq!(tensors.len(), 11);

    let tok = gguf_hf::hf_tokenizer_json(&g).unwrap();
    assert_eq!(tok["model"]["type"], "BPE");
    assert_eq!(tok["model"]["vocab"]["ab"], 4);
    assert_eq!(tok["model"]["merges"], serde_json::json!(["a b"]));
    let added = tok["added_tokens"].as_array().unwrap();
    let summary: Vec<(u64, &str, bool)> = added
        .iter()
        .map(|t| {
            (
                t["id"].as_u64().unwrap(),
                t["content"].as_str().unwrap(),
                t["special"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(0, "<s>", true), (1, "</s>", true), (4, "ab", false)]
    );
    let pre = &tok["pre_tokenizer"]["pretokenizers"];
    assert_eq!(
        pre[0],
        serde_json::json!({"type": "Digits", "individual_digits": true})
    );
    assert_eq!(pre[1]["type"], "ByteLevel");
    assert_eq!(pre[1]["add_prefix_space"], false);
    assert_eq!(tok["decoder"]["type"], "ByteLevel");
}

#[test]
fn head_dim_four_q_and_k_are_unpermuted() {
    // hidden 8, 2 query heads and 1 KV head of dim 4: rows inside each head go [0, 2, 1, 3].
    let mut w = tiny_llama("smollm");
    for (k, v) in w.kvs.iter_mut() {
        match k.as_str() {
            "llama.embedding_length" => *v = GgufValue::U32(8),
            "llama.rope.dimension_count" => *v = GgufValue::U32(4),
            _ => {}
        }
    }
    let row_ids = |rows: usize| -> Vec<f32> { (0..rows * 8).map(|i| (i / 8) as f32).collect() };
    w.tensors
        .retain(|t| !t.name.contains("attn_q") && !t.name.contains("attn_k"));
    // GGUF q rows hold HF rows [0, 2, 1, 3, 4, 6, 5, 7]; k rows hold HF rows [0, 2, 1, 3].
    let gguf_q: Vec<f32> = [0., 2., 1., 3., 4., 6., 5., 7.]
        .iter()
        .flat_map(|&r| [r; 8])
        .collect();
    let gguf_k: Vec<f32> = [0., 2., 1., 3.].iter().flat_map(|&r| [r; 8]).collect();
    let g = GgufFile::open(
        w.tensor("blk.0.attn_q.weight", &[8, 8], 0, f32_le(&gguf_q))
            .tensor("blk.0.attn_k.weight", &[8, 4], 0, f32_le(&gguf_k))
            .write("tiny-llama-hd4.gguf"),
    )
    .unwrap();
    // The raw GGUF rows un-permute to HF order, directly and through hf_tensors.
    let (q_shape, q) = g.dequantize("blk.0.attn_q.weight").unwrap();
    assert_eq!(q_shape, [8, 8]);
    assert_eq!(gguf_hf::unpermute_qk_rows(&q, 2, 8).unwrap(), row_ids(8));
    let (_, k) = g.dequantize("blk.0.attn_k.weight").unwrap();
    assert_eq!(gguf_hf::unpermute_qk_rows(&k, 1, 8).unwrap(), row_ids(4));
    let hf = gguf_hf::hf_tensors(&g).unwrap();
    let q_hf = &hf
        .iter()
        .find(|t| t.0 == "model.layers.0.self_attn.q_proj.weight")
        .unwrap()
        .2;
    assert_eq!(*q_hf, row_ids(8));
    let k_hf = &hf
        .iter()
        .find(|t| t.0 == "model.layers.0.self_attn.k_proj.weight")
        .unwrap()
        .2;
    assert_eq!(*k_hf, row_ids(4));
}

#[test]
fn unknown_pre_tokenizer_and_architecture_are_named() {
    let g = GgufFile::open(tiny_llama("llama-bpe").write("tiny-pre.gguf")).unwrap();
    let err = gguf_hf::hf_tokenizer_json(&g).unwrap_err().to_string();
    assert!(err.contains("llama-bpe"), "{err}");
    let mut w = tiny_llama("smollm");
    w.kvs[0].1 = GgufValue::String("qwen2".into());
    let g = GgufFile::open(w.write("tiny-arch.gguf")).unwrap();
    let err = gguf_hf::hf_config(&g).unwrap_err().to_string();
    assert!(err.contains("qwen2"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The real SmolLM2 file (present after `bash scripts/get-smollm2.sh`).

#[test]
fn smollm2_gguf_header_matches_the_published_architecture() {
    let Some(path) = common::smollm2("data/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
    else {
        return;
    };
    let g = GgufFile::open(&path).unwrap();
    let hp = gguf_hf::llama_hparams(&g).unwrap();
    assert_eq!(
        (
            hp.hidden_size,
            hp.num_hidden_layers,
            hp.num_attention_heads,
            hp.num_key_value_heads
        ),
        (576, 30, 9, 3)
    );
    assert_eq!(
        (hp.head_dim, hp.intermediate_size, hp.vocab_size),
        (64, 1536, 49152)
    );
    assert_eq!(hp.rope_theta, 100000.0);
    assert!(
        g.tensor("output.weight").is_none(),
        "SmolLM2 ties its embeddings"
    );
    // 30 blocks x 9 tensors + embedding + final norm
    assert_eq!(g.tensors().len(), 30 * 9 + 2);
    let (shape, values) = g.dequantize("blk.0.attn_q.weight").unwrap();
    assert_eq!(shape, [576, 576]);
    assert!(values.iter().all(|x| x.is_finite()));
}

#[test]
fn smollm2_tokenizer_matches_the_reference_vocab_and_merges() {
    let Some(path) = common::smollm2("data/models/smollm2-135m-hf/tokenizer.json") else {
        return;
    };
    let read = |p: &PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let ours = read(&path);
    let reference = read(&common::fixture("tokenizers/smollm2/tokenizer.json"));
    assert_eq!(ours["model"]["vocab"], reference["model"]["vocab"]);
    assert_eq!(ours["model"]["merges"], reference["model"]["merges"]);
    assert_eq!(ours["added_tokens"], reference["added_tokens"]);
    assert_eq!(ours["pre_tokenizer"], reference["pre_tokenizer"]);
}

// ---------------------------------------------------------------------------------------------
// Mixed quantisation types and the SentencePiece (llama) tokenizer, on files written here.

/// The reference blocks of one type from the gguf-quants fixture: (raw bytes, values).
fn fixture_blocks(st: &safetensors::SafeTensors, ty: &str) -> (Vec<u8>, Vec<f32>) {
    let raw = st.tensor(&format!("{ty}.raw")).expect("fixture raw blocks");
    let values = st.tensor(&format!("{ty}.f32")).expect("fixture values");
    let values = values
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (raw.data().to_vec(), values)
}

/// `n_values` values of type `ty` made by cycling the fixture's blocks: (bytes, expected values).
fn cycled(st: &safetensors::SafeTensors, ty: &str, n_values: usize) -> (Vec<u8>, Vec<f32>) {
    let (raw, values) = fixture_blocks(st, ty);
    let n_blocks_fixture = st.tensor(&format!("{ty}.raw")).unwrap().shape()[0];
    let (block_bytes, block_values) = (
        raw.len() / n_blocks_fixture,
        values.len() / n_blocks_fixture,
    );
    let blocks = n_values / block_values;
    let mut bytes = Vec::with_capacity(blocks * block_bytes);
    let mut expected = Vec::with_capacity(n_values);
    for b in 0..blocks {
        let k = b % n_blocks_fixture;
        bytes.extend_from_slice(&raw[k * block_bytes..(k + 1) * block_bytes]);
        expected.extend_from_slice(&values[k * block_values..(k + 1) * block_values]);
    }
    (bytes, expected)
}

#[test]
fn a_model_of_mixed_quant_types_loads_tensor_by_tensor() {
    use GgufValue::*;
    let bytes = std::fs::read(common::fixture("gguf-quants/quants.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // hidden 256 (k-quant rows are 256 wide), 2 heads of 128, 1 KV head, FFN 256, vocab 5.
    let (h, kv, ffn, vocab) = (256u64, 128u64, 256u64, 5u64);
    let layout: [(&str, &[u64], &str, u32); 8] = [
        ("token_embd.weight", &[h, vocab], "Q6_K", 14),
        ("blk.0.attn_q.weight", &[h, h], "Q4_K", 12),
        ("blk.0.attn_k.weight", &[h, kv], "Q5_K", 13),
        ("blk.0.attn_v.weight", &[h, kv], "Q3_K", 11),
        ("blk.0.attn_output.weight", &[h, h], "Q2_K", 10),
        ("blk.0.ffn_gate.weight", &[h, ffn], "Q5_0", 6),
        ("blk.0.ffn_up.weight", &[h, ffn], "Q5_1", 7),
        ("blk.0.ffn_down.weight", &[ffn, h], "Q8_0", 8),
    ];
    let mut w = tiny_llama("smollm");
    w.tensors.clear();
    for (k, v) in w.kvs.iter_mut() {
        match k.as_str() {
            "llama.embedding_length" => *v = U32(h as u32),
            "llama.feed_forward_length" => *v = U32(ffn as u32),
            "llama.rope.dimension_count" => *v = U32(128),
            _ => {}
        }
    }
    let mut expected = Vec::new();
    for (name, dims, ty, id) in layout {
        let (data, values) = cycled(&st, ty, dims.iter().product::<u64>() as usize);
        w = w.tensor(name, dims, id, data);
        expected.push((name, values));
    }
    for norm in [
        "blk.0.attn_norm.weight",
        "blk.0.ffn_norm.weight",
        "output_norm.weight",
    ] {
        w = w.tensor(norm, &[h], 0, f32_le(&vec![1.0; h as usize]));
    }
    let path = w.write("mixed-model.gguf");
    let (model, _) = ilrec::model::llama::Llama::from_gguf(&path).expect("mixed-type GGUF loads");
    for (gguf_name, values) in expected {
        let hf_name = gguf_hf::hf_tensor_name(gguf_name).unwrap();
        let id = model.params.id(&hf_name).expect(&hf_name);
        let got = model.params.value(id).to_vec();
        let want = match gguf_name {
            "blk.0.attn_q.weight" => gguf_hf::unpermute_qk_rows(&values, 2, h as usize).unwrap(),
            "blk.0.attn_k.weight" => gguf_hf::unpermute_qk_rows(&values, 1, h as usize).unwrap(),
            _ => values,
        };
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits())
                && got.len() == want.len(),
            "{hf_name}: loaded values differ from the reference dequantisation"
        );
    }
}

#[test]
fn undecodable_types_and_bad_block_counts_name_the_tensor() {
    // Q8_K (id 15) has a known layout but is not a weight format we decode.
    let path = Writer::new()
        .tensor("blk.0.w", &[256], 15, vec![0; 292])
        .write("q8k.gguf");
    let err = GgufFile::open(&path)
        .unwrap()
        .dequantize("blk.0.w")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("blk.0.w") && err.contains("Q8_K") && err.contains("Q4_K"),
        "{err}"
    );
    // IQ2_XXS (id 16): unknown layout, refused at open with its name.
    let path = Writer::new()
        .tensor("blk.0.iq", &[256], 16, vec![0; 66])
        .write("iq.gguf");
    assert_err_contains(&path, "IQ2_XXS");
    assert_err_contains(&path, "blk.0.iq");
    // A Q4_K row of 128 values is half a block.
    let path = Writer::new()
        .tensor("blk.0.half", &[128, 2], 12, vec![0; 144])
        .write("half.gguf");
    assert_err_contains(&path, "blk.0.half");
    assert_err_contains(&path, "Q4_K block size 256");
}

/// A SentencePiece GGUF made from the Llama 2-style fixture: tokens in id order, scores that rank
/// each token by the first merge that makes it (as SentencePiece's scores do), token types
/// (unknown, control, byte, normal), no merges.
fn sentencepiece_gguf() -> (PathBuf, serde_json::Value) {
    use GgufValue::*;
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("tokenizers/llama2/tokenizer.json")).unwrap(),
    )
    .unwrap();
    let vocab = fixture["model"]["vocab"].as_object().unwrap();
    let mut tokens: Vec<(&str, u64)> = vocab
        .iter()
        .map(|(t, id)| (t.as_str(), id.as_u64().unwrap()))
        .collect();
    tokens.sort_by_key(|&(_, id)| id);
    let mut first_merge = std::collections::HashMap::new();
    for (rank, m) in fixture["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        first_merge
            .entry(m.as_str().unwrap().replace(' ', ""))
            .or_insert(rank);
    }
    let specials: Vec<&str> = fixture["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["content"].as_str().unwrap())
        .collect();
    let unk = fixture["model"]["unk_token"].as_str().unwrap();
    let mut scores = Vec::new();
    let mut types = Vec::new();
    for &(token, id) in &tokens {
        scores.push(F32(match first_merge.get(token) {
            Some(&rank) => -(rank as f32),
            None => -1e6 - id as f32,
        }));
        let is_byte = token.len() == 6 && token.starts_with("<0x") && token.ends_with('>');
        types.push(I32(match token {
            t if t == unk => 2,
            t if specials.contains(&t) => 3,
            _ if is_byte => 6,
            _ => 1,
        }));
    }
    let w = tiny_llama("default");
    let mut w2 = Writer::new();
    for (k, v) in w
        .kvs
        .into_iter()
        .filter(|(k, _)| !k.starts_with("tokenizer."))
    {
        w2 = w2.kv(&k, v);
    }
    let w2 = w2
        .kv("tokenizer.ggml.model", String("llama".into()))
        .kv(
            "tokenizer.ggml.tokens",
            Array(tokens.iter().map(|(t, _)| String(t.to_string())).collect()),
        )
        .kv("tokenizer.ggml.scores", Array(scores))
        .kv("tokenizer.ggml.token_type", Array(types))
        .kv("tokenizer.ggml.bos_token_id", U32(1))
        .kv("tokenizer.ggml.eos_token_id", U32(2))
        .kv("tokenizer.ggml.unknown_token_id", U32(0))
        .kv("tokenizer.ggml.add_bos_token", Bool(true));
    (w2.write("sentencepiece.gguf"), fixture)
}

#[test]
fn sentencepiece_tokenizer_from_gguf_matches_hf() {
    let (path, fixture) = sentencepiece_gguf();
    let g = GgufFile::open(&path).unwrap();
    let json = gguf_hf::hf_tokenizer_json(&g).unwrap();
    // The merges rebuilt from the scores are the fixture's, in its order.
    assert_eq!(json["model"]["merges"], fixture["model"]["merges"]);
    assert_eq!(json["model"]["byte_fallback"], true);
    assert_eq!(json["model"]["unk_token"], "<unk>");
    assert_eq!(json["normalizer"], fixture["normalizer"]);
    let special: Vec<&str> = json["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["content"].as_str().unwrap())
        .collect();
    assert_eq!(special, ["<unk>", "<s>", "</s>"]);
    assert_eq!(
        json["post_processor"]["single"][0]["SpecialToken"]["id"],
        "<s>"
    );
    // Encoding and decoding through it give HF's ids on the fixture cases.
    let origin = path.display().to_string();
    let make = || {
        ilrec::tokenizer::Tokenizer::from_json(&json, &origin).expect("tokenizer from GGUF loads")
    };
    let n = common::check_tokenizer_cases(
        "llama2 via GGUF",
        &make,
        &common::fixture("tokenizers/llama2/cases.jsonl"),
    );
    assert!(n > 0);
}

#[test]
fn sentencepiece_gguf_without_scores_or_with_an_unknown_model_is_refused() {
    let g = GgufFile::open(
        tiny_llama("default")
            .kv("x", GgufValue::U8(0))
            .write("gpt2-ok.gguf"),
    )
    .unwrap();
    assert!(gguf_hf::hf_tokenizer_json(&g).is_ok());
    let mut w = tiny_llama("default");
    for (k, v) in w.kvs.iter_mut() {
        if k == "tokenizer.ggml.model" {
            *v = GgufValue::String("llama".into());
        }
    }
    w.kvs.retain(|(k, _)| k != "tokenizer.ggml.merges");
    let g = GgufFile::open(w.write("spm-no-scores.gguf")).unwrap();
    let err = gguf_hf::hf_tokenizer_json(&g).unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.scores"), "{err}");
    let mut w = tiny_llama("default");
    w.kvs
        .iter_mut()
        .find(|(k, _)| k == "tokenizer.ggml.model")
        .unwrap()
        .1 = GgufValue::String("bert".into());
    let err = gguf_hf::hf_tokenizer_json(&GgufFile::open(w.write("bert.gguf")).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bert") && err.contains("llama") && err.contains("gpt2"),
        "{err}"
    );
}

/// A corrupt `llama.block_count` is refused against the blocks the file holds before any
/// per-layer work (fuzz finding: the count drove the expected-tensor list first).
#[test]
fn a_block_count_beyond_the_tensors_is_refused_first() {
    for claimed in [2u32, 65_535, 16_777_215] {
        let mut w = tiny_llama("smollm");
        let entry = w
            .kvs
            .iter_mut()
            .find(|(k, _)| k == "llama.block_count")
            .unwrap();
        entry.1 = GgufValue::U32(claimed);
        let path = w.write(&format!("block-count-{claimed}.gguf"));
        let msg = match ilrec::model::llama::Llama::from_gguf(&path) {
            Ok(_) => panic!("block_count {claimed} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            msg.contains(&format!("says {claimed} layers")) && msg.contains("1 blocks"),
            "{msg}"
        );
    }
}
