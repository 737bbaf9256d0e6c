//! Dequantisation of every GGUF block type against llama.cpp's reference (`gguf` Python
//! package), bit for bit: `../shared/fixtures/gguf-quants/quants.safetensors` holds, per type
//! T, random blocks `T.raw` (u8, blocks x bytes per block) and their reference values `T.f32`.
//! The blocks are decoded both directly and through a GGUF file this test writes, one tensor per
//! type (a file of mixed types, as Q4_K_M files are).

mod common;

use common::gguf_writer::Writer;

use ilrec::model::gguf::GgufFile;
use ilrec::model::gguf_quant::{dequantize, GgmlType};
use safetensors::{Dtype, SafeTensors};

/// The types the fixture covers, with their ggml ids (from ggml's `enum ggml_type`).
const TYPES: [(&str, GgmlType, u32); 10] = [
    ("Q4_0", GgmlType::Q4_0, 2),
    ("Q4_1", GgmlType::Q4_1, 3),
    ("Q5_0", GgmlType::Q5_0, 6),
    ("Q5_1", GgmlType::Q5_1, 7),
    ("Q8_0", GgmlType::Q8_0, 8),
    ("Q2_K", GgmlType::Q2K, 10),
    ("Q3_K", GgmlType::Q3K, 11),
    ("Q4_K", GgmlType::Q4K, 12),
    ("Q5_K", GgmlType::Q5K, 13),
    ("Q6_K", GgmlType::Q6K, 14),
];

/// One type's fixture: raw block bytes, reference values, (blocks, values per block).
struct Case {
    raw: Vec<u8>,
    reference: Vec<f32>,
    blocks: usize,
    per_block: usize,
}

fn load_case(st: &SafeTensors, name: &str) -> Case {
    let raw = st
        .tensor(&format!("{name}.raw"))
        .unwrap_or_else(|e| panic!("fixture has no {name}.raw: {e}"));
    let values = st
        .tensor(&format!("{name}.f32"))
        .unwrap_or_else(|e| panic!("fixture has no {name}.f32: {e}"));
    assert_eq!(raw.dtype(), Dtype::U8, "{name}.raw");
    assert_eq!(values.dtype(), Dtype::F32, "{name}.f32");
    let (blocks, per_block) = (values.shape()[0], values.shape()[1]);
    assert_eq!(
        raw.shape()[0],
        blocks,
        "{name}: block counts of .raw and .f32"
    );
    let reference = values
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Case {
        raw: raw.data().to_vec(),
        reference,
        blocks,
        per_block,
    }
}

/// Bit-for-bit comparison; reports the first differing element.
fn assert_bits_equal(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: element {i} is {g:e} ({:#010x}), reference {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(common::fixture("gguf-quants/quants.safetensors")).expect("fixture readable")
}

#[test]
fn every_block_type_matches_the_reference_bit_for_bit() {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes).expect("fixture is safetensors");
    for (name, ty, _) in TYPES {
        let case = load_case(&st, name);
        let (per_block, bytes_per_block) = ty.block_layout();
        assert_eq!(case.per_block, per_block, "{name}: values per block");
        assert_eq!(
            case.raw.len(),
            case.blocks * bytes_per_block,
            "{name}: bytes"
        );
        let got = dequantize(ty, &case.raw, case.blocks * per_block).expect(name);
        assert_bits_equal(&got, &case.reference, name);
    }
    // The fixture covers exactly the types listed here: a new type in it must be added above.
    let raw_names = st
        .names()
        .into_iter()
        .filter(|n| n.ends_with(".raw"))
        .count();
    assert_eq!(raw_names, TYPES.len(), "types in the fixture");
}

/// A GGUF with one tensor per type: dims [values per block * blocks] as one row.
fn mixed_gguf(st: &SafeTensors) -> Vec<u8> {
    let mut writer = Writer::new();
    for (name, _, id) in TYPES {
        let case = load_case(st, name);
        let dims = [(case.blocks * case.per_block) as u64];
        writer = writer.tensor(name, &dims, id, case.raw);
    }
    writer.bytes()
}

#[test]
fn a_gguf_of_mixed_types_decodes_tensor_by_tensor() {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes).expect("fixture is safetensors");
    let dir = std::env::temp_dir().join(format!("ilrec-gguf-quants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mixed.gguf");
    std::fs::write(&path, mixed_gguf(&st)).unwrap();
    let g = GgufFile::open(&path).expect("mixed-type GGUF opens");
    for (name, ty, _) in TYPES {
        let case = load_case(&st, name);
        assert_eq!(g.tensor(name).expect(name).ggml_type, ty);
        let (shape, values) = g.dequantize(name).expect(name);
        assert_eq!(shape, [case.blocks * case.per_block], "{name}");
        assert_bits_equal(&values, &case.reference, &format!("{name} via GGUF"));
    }
    std::fs::remove_dir_all(&dir).ok();
}
