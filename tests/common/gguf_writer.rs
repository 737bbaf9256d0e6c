//! A tiny GGUF writer for the tests, written from the format description and independent of
//! the reader in `ilrec::model::gguf` (so the reader is checked against code that does not share
//! its mistakes). It can also write corrupt files (count and offset overrides).
#![allow(dead_code)]

use ilrec::model::gguf::GgufValue;
use std::path::PathBuf;

/// GGUF metadata type ids, written out by hand from the format description.
pub fn type_id(v: &GgufValue) -> u32 {
    match v {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

pub fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The value's bytes without its type id. Arrays take their element type from the first
/// element (u8 for an empty array).
pub fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.push(*x as u8),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(*x as u8),
        GgufValue::String(s) => put_string(out, s),
        GgufValue::Array(items) => {
            let elem_type = items.first().map(type_id).unwrap_or(0);
            out.extend_from_slice(&elem_type.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

pub struct TestTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
    /// When set, written instead of the computed offset (to corrupt files).
    pub offset_override: Option<u64>,
}

pub struct Writer {
    pub version: u32,
    pub kvs: Vec<(String, GgufValue)>,
    pub tensors: Vec<TestTensor>,
    pub alignment: u64,
    /// When set, written instead of the real counts.
    pub tensor_count_override: Option<u64>,
    pub kv_count_override: Option<u64>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
            tensor_count_override: None,
            kv_count_override: None,
        }
    }

    pub fn kv(mut self, key: &str, v: GgufValue) -> Writer {
        if key == "general.alignment" {
            // Invalid alignments are written as-is for the reader to refuse; the writer itself
            // keeps padding to 32 then.
            if let GgufValue::U32(a) = v {
                if a.is_power_of_two() {
                    self.alignment = a as u64;
                }
            }
        }
        self.kvs.push((key.to_string(), v));
        self
    }

    pub fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, data: Vec<u8>) -> Writer {
        self.tensors.push(TestTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ggml_type,
            data,
            offset_override: None,
        });
        self
    }

    /// Header, metadata and tensor infos, without the padding and data that follow.
    pub fn header_bytes(&self) -> Vec<u8> {
        self.encode(false)
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.encode(true)
    }

    pub fn encode(&self, with_data: bool) -> Vec<u8> {
        let align = |n: u64| n.div_ceil(self.alignment) * self.alignment;
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        let n_tensors = self
            .tensor_count_override
            .unwrap_or(self.tensors.len() as u64);
        let n_kv = self.kv_count_override.unwrap_or(self.kvs.len() as u64);
        out.extend_from_slice(&n_tensors.to_le_bytes());
        out.extend_from_slice(&n_kv.to_le_bytes());
        for (key, v) in &self.kvs {
            put_string(&mut out, key);
            out.extend_from_slice(&type_id(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.to_le_bytes());
            out.extend_from_slice(&t.offset_override.unwrap_or(next).to_le_bytes());
            offsets.push(next);
            next = align(next + t.data.len() as u64);
        }
        if !with_data {
            return out;
        }
        let data_start = align(out.len() as u64);
        out.resize(data_start as usize, 0);
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend_from_slice(&t.data);
        }
        out
    }

    pub fn write(&self, name: &str) -> PathBuf {
        write_bytes(name, &self.bytes())
    }
}

/// Writes `bytes` to a per-process temporary file and returns its path.
pub fn write_bytes(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ilrec-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}
