//! A GGUF v2/v3 reader on a memory map: header, metadata, tensor infos, tensor bytes.
//!
//! File layout (all integers little-endian):
//!
//! ```text
//! magic "GGUF" | version: u32 | tensor_count: u64 | kv_count: u64
//! kv_count x  (key: string, value_type: u32, value)
//! tensor_count x (name: string, n_dims: u32, dims: [u64; n_dims], ggml_type: u32, offset: u64)
//! padding to `general.alignment` (default 32)
//! tensor data; tensor i lives at data_start + offset_i, each offset a multiple of the alignment
//! ```
//!
//! A string is `len: u64` then `len` UTF-8 bytes (no terminator). An array value is
//! `elem_type: u32, len: u64, elems...`; arrays may nest. Tensor dims are listed innermost
//! first (`dims[0]` is the row length), so the row-major shape is the reversed list.
//!
//! The file is untrusted input: [`GgufFile::open`] validates everything up front (every count
//! against the bytes that remain, every tensor extent against the file size, alignment, no
//! overlapping tensors), so later accessors cannot fail on a corrupt file and nothing is ever
//! allocated from a count before that count is known to fit in the file.

use super::gguf_quant::{self, GgmlType};
use crate::{Error, Result};
use memmap2::Mmap;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// GGUF's limits: keys are ASCII of at most 65,535 bytes (the format description), tensor
/// names at most 63 bytes (ggml's GGML_MAX_NAME of 64 with the terminating zero).
const MAX_KEY_BYTES: u64 = 65_535;
const MAX_TENSOR_NAME_BYTES: u64 = 63;
/// Alignment of tensor data when the file does not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most this many dimensions.
pub const MAX_DIMS: u32 = 4;
/// Deepest array nesting we accept (the format allows any; real files use at most 2). The bound
/// keeps a malicious file from overflowing the stack through recursion.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// One metadata value. Integer types keep their on-disk width so that a writer can round-trip.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// Any integer value that is non-negative, widened to u64.
    pub fn as_u64(&self) -> Option<u64> {
        use GgufValue::*;
        match *self {
            U8(v) => Some(v as u64),
            U16(v) => Some(v as u64),
            U32(v) => Some(v as u64),
            U64(v) => Some(v),
            I8(v) => u64::try_from(v).ok(),
            I16(v) => u64::try_from(v).ok(),
            I32(v) => u64::try_from(v).ok(),
            I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value, as i64 (None for a u64 above i64::MAX).
    pub fn as_i64(&self) -> Option<i64> {
        use GgufValue::*;
        match *self {
            I8(v) => Some(v as i64),
            I16(v) => Some(v as i64),
            I32(v) => Some(v as i64),
            I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// A float value (or an integer, which config fields sometimes are), as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The GGUF name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        use GgufValue::*;
        match self {
            U8(_) => "uint8",
            I8(_) => "int8",
            U16(_) => "uint16",
            I16(_) => "int16",
            U32(_) => "uint32",
            I32(_) => "int32",
            U64(_) => "uint64",
            I64(_) => "int64",
            F32(_) => "float32",
            F64(_) => "float64",
            Bool(_) => "bool",
            String(_) => "string",
            Array(_) => "array",
        }
    }
}

/// GGUF metadata value type ids (`enum gguf_type`).
mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// One tensor's description from the header.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` is the innermost (row length).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset of the data, relative to the start of the tensor data section.
    pub offset: u64,
    /// Product of `dims`.
    pub n_elements: u64,
    /// Bytes the data takes: `n_elements / block_elems * block_bytes`.
    pub n_bytes: u64,
}

impl GgufTensorInfo {
    /// The row-major (PyTorch / safetensors) shape: the reversed dims.
    pub fn row_major_shape(&self) -> Vec<usize> {
        // Each dim fits in usize: open() checked n_bytes against the file length.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// An opened, fully validated GGUF file.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    /// Absolute file offset where the tensor data section starts.
    data_start: u64,
}

impl GgufFile {
    /// Maps `path` and parses and validates its header, metadata and tensor infos.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; like every mmap user we assume the file is not
        // truncated by another process while we hold it.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let header = parse_header(path, &mmap)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap,
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            alignment: header.alignment,
            data_start: header.data_start,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// All key/value pairs, in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Alignment of the tensor data (from `general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the tensor data section.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// The raw bytes of a tensor (validated to lie inside the file by `open`).
    pub fn tensor_bytes(&self, info: &GgufTensorInfo) -> &[u8] {
        let start = (self.data_start + info.offset) as usize;
        &self.mmap[start..start + info.n_bytes as usize]
    }

    /// Tensor `name` decoded to f32, with its row-major shape (the reversed GGUF dims).
    pub fn dequantize(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self.tensor(name).ok_or_else(|| {
            Error::format(&self.path, format!("no tensor named {name:?} in the file"))
        })?;
        if !info.ggml_type.can_dequantize() {
            return Err(Error::format(
                &self.path,
                format!(
                    "tensor {name}: type {} is not one we decode (supported: {})",
                    info.ggml_type.name(),
                    gguf_quant::DECODED_TYPES
                ),
            ));
        }
        let values = gguf_quant::dequantize(
            info.ggml_type,
            self.tensor_bytes(info),
            info.n_elements as usize,
        )
        .map_err(|e| {
            Error::format(
                &self.path,
                format!("tensor {name} ({}): {e}", info.ggml_type.name()),
            )
        })?;
        Ok((info.row_major_shape(), values))
    }
}

/// What `parse_header` found.
struct Header {
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    data_start: u64,
}

/// Parses and validates everything before the tensor data, and the tensor extents.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let mut cur = Cursor {
        bytes,
        pos: 0,
        path,
    };
    let version = read_preamble(&mut cur)?;
    let tensor_count = cur.u64("tensor_count")?;
    let kv_count = cur.u64("metadata_kv_count")?;
    // Smallest possible encodings: a kv is key length (8) + value type (4) + a one-byte value
    // (keys may be empty); a tensor info is name length (8) + n_dims (4) + type (4) + offset (8).
    // A count whose items cannot fit in the rest of the file is corrupt.
    cur.check_count(kv_count, 8 + 4 + 1, "metadata_kv_count")?;
    cur.check_count(tensor_count, 8 + 4 + 4 + 8, "tensor_count")?;

    let mut metadata = Vec::with_capacity(kv_count as usize);
    let mut seen_keys = HashSet::new();
    for _ in 0..kv_count {
        let key = cur.name("metadata key", MAX_KEY_BYTES)?;
        let ty = cur.u32("metadata value type")?;
        let value = read_value(&mut cur, ty, &key, 0)?;
        if !seen_keys.insert(key.clone()) {
            return Err(cur.error(format!("metadata key {key:?} appears twice")));
        }
        metadata.push((key, value));
    }
    let alignment = read_alignment(&cur, &metadata)?;

    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut seen_names = HashSet::new();
    for _ in 0..tensor_count {
        let info = read_tensor_info(&mut cur, alignment)?;
        if !seen_names.insert(info.name.clone()) {
            return Err(cur.error(format!("tensor {:?} appears twice", info.name)));
        }
        tensors.push(info);
    }
    // The data section starts at the next multiple of the alignment after the header.
    let data_start = (cur.pos as u64).div_ceil(alignment) * alignment;
    check_tensor_extents(path, bytes.len() as u64, data_start, &tensors)?;
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
    })
}

/// Magic and version; returns the version.
fn read_preamble(cur: &mut Cursor) -> Result<u32> {
    let magic = cur.take(4, "magic")?;
    if magic != GGUF_MAGIC {
        return Err(cur.error(format!(
            "not a GGUF file: magic is {magic:02x?}, expected \"GGUF\" ({:02x?})",
            GGUF_MAGIC
        )));
    }
    let version = cur.u32("version")?;
    match version {
        2 | 3 => Ok(version),
        1 => Err(cur.error(
            "GGUF v1 (32-bit counts) is not supported; re-convert with a current llama.cpp".into(),
        )),
        v if v.swap_bytes() <= 3 => Err(cur.error(format!(
            "big-endian GGUF (version reads as {v:#x}) is not supported"
        ))),
        v => Err(cur.error(format!("unsupported GGUF version {v}, expected 2 or 3"))),
    }
}

/// `general.alignment`: a non-zero power of two stored as uint32; default 32.
fn read_alignment(cur: &Cursor, metadata: &[(String, GgufValue)]) -> Result<u64> {
    match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some((_, GgufValue::U32(a))) if a.is_power_of_two() => Ok(*a as u64),
        Some((_, v)) => Err(cur.error(format!(
            "general.alignment must be a power-of-two uint32, found {} {v:?}",
            v.type_name()
        ))),
    }
}

/// One metadata value of type id `ty` (for key `key`, which messages name).
fn read_value(cur: &mut Cursor, ty: u32, key: &str, depth: usize) -> Result<GgufValue> {
    use value_type as t;
    Ok(match ty {
        t::U8 => GgufValue::U8(cur.take(1, key)?[0]),
        t::I8 => GgufValue::I8(cur.take(1, key)?[0] as i8),
        t::U16 => GgufValue::U16(u16::from_le_bytes(cur.array(key)?)),
        t::I16 => GgufValue::I16(i16::from_le_bytes(cur.array(key)?)),
        t::U32 => GgufValue::U32(cur.u32(key)?),
        t::I32 => GgufValue::I32(i32::from_le_bytes(cur.array(key)?)),
        t::U64 => GgufValue::U64(cur.u64(key)?),
        t::I64 => GgufValue::I64(i64::from_le_bytes(cur.array(key)?)),
        t::F32 => GgufValue::F32(f32::from_le_bytes(cur.array(key)?)),
        t::F64 => GgufValue::F64(f64::from_le_bytes(cur.array(key)?)),
        t::BOOL => match cur.take(1, key)?[0] {
            0 => GgufValue::Bool(false),
            1 => GgufValue::Bool(true),
            b => return Err(cur.error(format!("{key}: bool byte is {b}, expected 0 or 1"))),
        },
        t::STRING => GgufValue::String(cur.string(key)?),
        t::ARRAY => read_array(cur, key, depth)?,
        other => return Err(cur.error(format!("{key}: unknown metadata value type {other}"))),
    })
}

/// An array value: element type, length, elements.
fn read_array(cur: &mut Cursor, key: &str, depth: usize) -> Result<GgufValue> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(cur.error(format!(
            "{key}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
        )));
    }
    let elem_ty = cur.u32(key)?;
    let len = cur.u64(key)?;
    cur.check_count(len, min_value_size(elem_ty), key)?;
    let mut elems = Vec::with_capacity(len as usize);
    for _ in 0..len {
        elems.push(read_value(cur, elem_ty, key, depth + 1)?);
    }
    Ok(GgufValue::Array(elems))
}

/// The fewest bytes one value of type `ty` can take (unknown types: 1; they fail when read).
fn min_value_size(ty: u32) -> u64 {
    use value_type as t;
    match ty {
        t::U16 | t::I16 => 2,
        t::U32 | t::I32 | t::F32 => 4,
        t::U64 | t::I64 | t::F64 | t::STRING => 8,
        t::ARRAY => 12,
        _ => 1,
    }
}

/// One tensor info; checks dims, type, row length against the block size, and offset alignment.
fn read_tensor_info(cur: &mut Cursor, alignment: u64) -> Result<GgufTensorInfo> {
    let name = cur.name("tensor name", MAX_TENSOR_NAME_BYTES)?;
    let n_dims = cur.u32(&name)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(cur.error(format!(
            "tensor {name}: {n_dims} dims, expected 1..={MAX_DIMS}"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(cur.u64(&name)?);
    }
    let type_id = cur.u32(&name)?;
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
        let known =
            gguf_quant::unknown_type_name(type_id).map_or_else(String::new, |n| format!(" ({n})"));
        cur.error(format!(
            "tensor {name}: ggml type id {type_id}{known} is not supported (supported: {})",
            gguf_quant::DECODED_TYPES
        ))
    })?;
    let offset = cur.u64(&name)?;
    let n_elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let n_elements = n_elements
        .ok_or_else(|| cur.error(format!("tensor {name}: dims {dims:?} overflow u64")))?;
    let (block_elems, block_bytes) = ggml_type.block_layout();
    if dims[0] % block_elems as u64 != 0 {
        return Err(cur.error(format!(
            "tensor {name}: row length {} is not a multiple of the {} block size {block_elems}, \
             so its {} blocks cannot cover the shape {dims:?}",
            dims[0],
            ggml_type.name(),
            ggml_type.name()
        )));
    }
    // Plain 8-byte types take 8 bytes per element, so this can overflow for absurd dims.
    let n_bytes = (n_elements / block_elems as u64)
        .checked_mul(block_bytes as u64)
        .ok_or_else(|| cur.error(format!("tensor {name}: byte size overflows u64")))?;
    if offset % alignment != 0 {
        return Err(cur.error(format!(
            "tensor {name}: offset {offset} is not a multiple of the alignment {alignment}"
        )));
    }
    Ok(GgufTensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_elements,
        n_bytes,
    })
}

/// Every tensor must lie inside the file, after the header, without overlapping another.
fn check_tensor_extents(
    path: &Path,
    file_len: u64,
    data_start: u64,
    tensors: &[GgufTensorInfo],
) -> Result<()> {
    let mut extents: Vec<(u64, u64, &str)> = Vec::with_capacity(tensors.len());
    for t in tensors {
        let end = data_start
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.n_bytes));
        match end {
            Some(end) if end <= file_len => extents.push((t.offset, t.offset + t.n_bytes, &t.name)),
            _ => {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor {}: data at {}+{} ({} bytes) runs past the end of the file ({} \
                         bytes); the file is truncated or the offset is corrupt",
                        t.name, data_start, t.offset, t.n_bytes, file_len
                    ),
                ))
            }
        }
    }
    extents.sort_unstable();
    for pair in extents.windows(2) {
        let ((_, end_a, a), (start_b, _, b)) = (pair[0], pair[1]);
        if start_b < end_a {
            return Err(Error::format(path, format!("tensors {a} and {b} overlap")));
        }
    }
    Ok(())
}

/// A read position in the header; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn error(&self, msg: String) -> Error {
        Error::format(self.path, format!("at byte {}: {msg}", self.pos))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes; `what` names the field for the error message.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "{what}: needs {n} bytes, only {} left; the file is truncated",
                self.remaining()
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed UTF-8 string; the length is checked against the bytes left.
    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(self.error(format!(
                "{what}: string of {len} bytes, only {} left in the file",
                self.remaining()
            )));
        }
        let raw = self.take(len as usize, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|e| self.error(format!("{what}: string is not UTF-8 ({e})")))
    }

    /// A metadata key or tensor name: at most `max_bytes` printable ASCII bytes. Real files
    /// never break this, so a breach means the length field before it is corrupt; saying so
    /// beats quoting the bytes it swallowed as if they were a name.
    fn name(&mut self, what: &str, max_bytes: u64) -> Result<String> {
        let start = self.pos;
        let len = self.u64(what)?;
        // A length past the end of the file gets `string`'s own error, which says so.
        let in_file = len <= self.remaining() as u64;
        let plausible = !in_file
            || (len <= max_bytes
                && self.bytes[self.pos..self.pos + len as usize]
                    .iter()
                    .all(|b| (0x20..0x7f).contains(b)));
        self.pos = start;
        if !plausible {
            return Err(self.error(format!(
                "{what}: length {len}, expected at most {max_bytes} printable ASCII bytes; \
                 the length field is probably corrupt"
            )));
        }
        self.string(what)
    }

    /// Refuses `count` items of at least `min_size` bytes each when they cannot fit in the rest
    /// of the file: this is what keeps a corrupt count from turning into a huge allocation.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<()> {
        let fits = count
            .checked_mul(min_size)
            .is_some_and(|need| need <= self.remaining() as u64);
        if fits {
            Ok(())
        } else {
            Err(self.error(format!(
                "{what}: {count} items cannot fit in the {} bytes left; the count is corrupt",
                self.remaining()
            )))
        }
    }
}
