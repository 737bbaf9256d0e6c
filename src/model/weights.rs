//! Safetensors checkpoints: reading (single file or sharded via `model.safetensors.index.json`)
//! and writing with Hugging Face tensor names.
//!
//! Files are memory-mapped (memmap2) and parsed by the `safetensors` crate, which validates the
//! header (offsets contiguous, sizes = shape x dtype, data covering the file). A tensor is read by
//! one copy from the map into the tensor's own storage: a plain memcpy for little-endian f32 at an
//! aligned offset, an element-wise conversion for bf16/f16 (compute is f32, so converting once at
//! load time saves converting on every forward). The `Tensor` type owns its storage, so a true
//! zero-copy view of the map is not possible; the map itself costs no memory beyond page cache.
//!
//! Every error names the file and, where there is one, the tensor.

use crate::autograd::{ParamId, Params};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensorError, TensorInfo, View};
use safetensors::SafeTensors;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One memory-mapped `.safetensors` file with its parsed header.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mmap,
    /// Byte offset of the data section (8-byte length + JSON header).
    data_start: usize,
    meta: Metadata,
}

impl SafetensorsFile {
    /// Maps `path` and validates its header against the file size.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsFile> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only; a checkpoint being rewritten while we read it is outside
        // what we can guard against (the same holds for every mmap-based loader).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let (header_len, meta) = SafeTensors::read_metadata(&map)
            .map_err(|e| Error::format(&path, describe_header_error(&map, e)))?;
        Ok(SafetensorsFile {
            path,
            map,
            data_start: 8 + header_len,
            meta,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.meta.tensors().into_keys().collect();
        names.sort();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.meta.info(name).is_some()
    }

    /// (dtype name as in the file, shape) of a tensor.
    pub fn describe(&self, name: &str) -> Option<(String, Vec<usize>)> {
        self.meta
            .info(name)
            .map(|i| (format!("{:?}", i.dtype), i.shape.clone()))
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.meta
            .info(name)
            .ok_or_else(|| Error::format(&self.path, format!("tensor `{name}` is missing")))
    }

    fn bytes(&self, info: &TensorInfo) -> &[u8] {
        let (s, e) = info.data_offsets;
        &self.map[self.data_start + s..self.data_start + e]
    }

    /// A floating-point tensor converted to f32 (from F32, BF16, F16 or F64 storage).
    pub fn tensor_f32(&self, name: &str) -> Result<Tensor> {
        let info = self.info(name)?;
        let bytes = self.bytes(info);
        let data: Vec<f32> = match info.dtype {
            Dtype::F32 => f32_from_le(bytes),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            other => {
                return Err(Error::format(
                    &self.path,
                    format!("tensor `{name}`: dtype {other:?} is not a float type (F32/BF16/F16)"),
                ))
            }
        };
        Tensor::from_vec(data, &info.shape)
            .map_err(|e| Error::format(&self.path, format!("tensor `{name}`: {e}")))
    }

    /// A floating-point tensor in its stored precision: bf16 and f16 stay half precision (no
    /// f32 detour, half the memory of [`SafetensorsFile::tensor_f32`]); f32 and f64 give f32.
    pub fn tensor_stored(&self, name: &str) -> Result<Tensor> {
        let info = self.info(name)?;
        let bytes = self.bytes(info);
        let half = |b: &[u8]| [b[0], b[1]];
        let tensor = match info.dtype {
            Dtype::BF16 => {
                let v = bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes(half(b)));
                Tensor::from_bf16(v.collect(), &info.shape)
            }
            Dtype::F16 => {
                let v = bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes(half(b)));
                Tensor::from_f16(v.collect(), &info.shape)
            }
            _ => return self.tensor_f32(name),
        };
        tensor.map_err(|e| Error::format(&self.path, format!("tensor `{name}`: {e}")))
    }

    /// An integer tensor (I64 or I32) as i64 values with its shape (token ids, labels).
    pub fn tensor_i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let info = self.info(name)?;
        let bytes = self.bytes(info);
        let data = match info.dtype {
            Dtype::I64 => bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
            Dtype::I32 => bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as i64)
                .collect(),
            other => {
                return Err(Error::format(
                    &self.path,
                    format!("tensor `{name}`: expected I64 or I32, found {other:?}"),
                ))
            }
        };
        Ok((data, info.shape.clone()))
    }
}

/// Little-endian f32 bytes to f32: one memcpy when the bytes happen to be aligned.
fn f32_from_le(bytes: &[u8]) -> Vec<f32> {
    if cfg!(target_endian = "little") {
        if let Ok(aligned) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
            return aligned.to_vec();
        }
    }
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Turns the crate's header errors into a sentence; for a truncated file, names the first
/// tensor whose data lies beyond the end. Every variant is spelled out (no catch-all): the
/// crate's Display is its Debug, so a variant that fell through would reach the user as a bare
/// enum name (`InvalidHeaderDeserialization`, a fuzz finding).
fn describe_header_error(map: &[u8], e: SafeTensorError) -> String {
    match e {
        SafeTensorError::MetadataIncompleteBuffer | SafeTensorError::InvalidHeaderLength => {
            match first_cut_tensor(map) {
                Some((name, need, have)) => format!(
                    "file is truncated or padded: tensor `{name}` needs bytes up to {need}, \
                     the file has {have}"
                ),
                None => format!(
                    "file is truncated: {} bytes cannot hold the header it declares",
                    map.len()
                ),
            }
        }
        SafeTensorError::HeaderTooSmall => "file is too short to be safetensors".into(),
        SafeTensorError::InvalidOffset(name) => {
            format!("tensor `{name}`: data offsets are not contiguous")
        }
        SafeTensorError::HeaderTooLarge => format!(
            "the header length field says {} bytes, more than safetensors allows (100 MB)",
            declared_header_len(map)
        ),
        SafeTensorError::InvalidHeader => "the header is not UTF-8 text".into(),
        SafeTensorError::InvalidHeaderStart => "the header does not start with `{`".into(),
        SafeTensorError::InvalidHeaderDeserialization => {
            "the header is not a JSON object of tensors (name: dtype, shape, data_offsets)".into()
        }
        SafeTensorError::JsonError(e) => format!("the header is not valid JSON: {e}"),
        SafeTensorError::TensorInvalidInfo => first_mis_sized_tensor(map).unwrap_or_else(|| {
            "a tensor's data_offsets do not span the bytes its shape and dtype need".into()
        }),
        SafeTensorError::ValidationOverflow => {
            "a tensor's shape overflows when its sizes are multiplied".into()
        }
        SafeTensorError::TensorNotFound(name) => format!("tensor `{name}` is not in the file"),
        SafeTensorError::InvalidTensorView(dtype, shape, bytes) => {
            format!("a {dtype:?} tensor of shape {shape:?} cannot hold {bytes} bytes")
        }
        SafeTensorError::IoError(e) => format!("cannot read the file: {e}"),
    }
}

/// A safetensors *write* error as one line in words: an I/O failure (full disk, no such folder,
/// permission) as the OS says it, anything else as `describe_header_error` describes it. The
/// crate's own Display is its Debug (`IoError(Os { code: 28, .. })`).
pub fn write_error(path: &std::path::Path, e: SafeTensorError) -> Error {
    match e {
        SafeTensorError::IoError(io) => Error::io(path, io),
        other => Error::format(path, describe_header_error(&[], other)),
    }
}

/// The header length the file's first 8 bytes declare (0 when it is shorter).
fn declared_header_len(map: &[u8]) -> u64 {
    map.get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The header as JSON with its length, when it is readable at all (for naming the tensor an
/// error is about).
fn header_json(map: &[u8]) -> Option<(usize, Value)> {
    let n = usize::try_from(declared_header_len(map)).ok()?;
    let header = serde_json::from_slice(map.get(8..8usize.checked_add(n)?)?).ok()?;
    Some((n, header))
}

/// "tensor `name`: ..." for the first tensor whose data_offsets span another byte count than
/// its shape and dtype need.
fn first_mis_sized_tensor(map: &[u8]) -> Option<String> {
    let (_, header) = header_json(map)?;
    let field = |info: &Value, key: &str| info.get(key).cloned();
    header.as_object()?.iter().find_map(|(name, info)| {
        let dtype: Dtype = serde_json::from_value(field(info, "dtype")?).ok()?;
        let shape: Vec<usize> = serde_json::from_value(field(info, "shape")?).ok()?;
        let [start, end]: [usize; 2] = serde_json::from_value(field(info, "data_offsets")?).ok()?;
        let need = shape
            .iter()
            .try_fold(dtype.size(), |n, &d| n.checked_mul(d))?;
        let span = end.checked_sub(start)?;
        (need != span).then(|| {
            format!(
                "tensor `{name}`: shape {shape:?} of {dtype:?} needs {need} bytes, \
                 its data_offsets span {span}"
            )
        })
    })
}

/// (tensor, byte end it needs, file length) of the first tensor not fully inside `map`.
fn first_cut_tensor(map: &[u8]) -> Option<(String, usize, usize)> {
    let (n, header) = header_json(map)?;
    let mut ends: Vec<(usize, String)> = header
        .as_object()?
        .iter()
        .filter_map(|(name, info)| {
            let end = info.get("data_offsets")?.get(1)?.as_u64()? as usize;
            Some((8 + n + end, name.clone()))
        })
        .collect();
    ends.sort();
    let total = ends.last()?.0;
    let cut = ends.into_iter().find(|(end, _)| *end > map.len());
    match cut {
        Some((end, name)) => Some((name, end, map.len())),
        // Longer than declared: name the last tensor as the place where the data should end.
        None if total != map.len() => Some(("<after the last tensor>".into(), total, map.len())),
        None => None,
    }
}

/// A checkpoint directory: `model.safetensors`, or shards listed in `model.safetensors.index.json`.
pub struct Checkpoint {
    files: Vec<SafetensorsFile>,
    /// Tensor name -> index into `files`.
    location: HashMap<String, usize>,
    dir: PathBuf,
}

impl Checkpoint {
    /// Opens the safetensors weights in `dir` (sharded index preferred when present).
    pub fn open(dir: impl AsRef<Path>) -> Result<Checkpoint> {
        let dir = dir.as_ref().to_path_buf();
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let shard_names = if index.exists() {
            shards_of_index(&index)?
        } else if single.exists() {
            vec![("model.safetensors".to_string(), Vec::new())]
        } else {
            return Err(Error::io(
                &single,
                "no model.safetensors or model.safetensors.index.json in this directory",
            ));
        };
        let mut files = Vec::new();
        let mut location = HashMap::new();
        for (shard, listed) in shard_names {
            let file = SafetensorsFile::open(dir.join(&shard))?;
            for name in file.names() {
                location.insert(name, files.len());
            }
            for name in listed {
                if !file.contains(&name) {
                    return Err(Error::format(
                        file.path(),
                        format!(
                            "tensor `{name}` is listed in the index but missing from the shard"
                        ),
                    ));
                }
            }
            files.push(file);
        }
        Ok(Checkpoint {
            files,
            location,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `name`, if any.
    pub fn file_of(&self, name: &str) -> Option<&SafetensorsFile> {
        self.location.get(name).map(|&i| &self.files[i])
    }

    /// Every tensor name in the checkpoint, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.location.keys().cloned().collect();
        names.sort();
        names
    }

    /// The path errors about a missing tensor should name: the index, or the single file.
    fn where_missing(&self) -> PathBuf {
        let index = self.dir.join("model.safetensors.index.json");
        if index.exists() {
            index
        } else {
            self.dir.join("model.safetensors")
        }
    }

    /// Loads the `expected` tensors (name, shape) as f32 trainable parameters, in that order.
    /// Errors name the file and tensor: missing, not a float dtype, or wrong shape.
    pub fn load_params(&self, expected: &[(String, Vec<usize>)]) -> Result<Params> {
        self.load_params_as(expected, Some(DType::F32))
    }

    /// [`Checkpoint::load_params`] with the storage precision chosen: `Some(dtype)` converts
    /// every tensor (one at a time) to `dtype`; None keeps the file's (bf16 stays bf16: a frozen
    /// base held in half the memory of f32).
    pub fn load_params_as(
        &self,
        expected: &[(String, Vec<usize>)],
        dtype: Option<DType>,
    ) -> Result<Params> {
        let mut params = Params::new();
        for (name, shape) in expected {
            let file = self.file_of(name).ok_or_else(|| {
                Error::format(
                    self.where_missing(),
                    format!("tensor `{name}` is missing (expected shape {shape:?})"),
                )
            })?;
            let tensor = match dtype {
                Some(DType::F32) => file.tensor_f32(name)?,
                Some(other) => file.tensor_stored(name)?.to_dtype(other),
                None => file.tensor_stored(name)?,
            };
            if tensor.shape() != shape.as_slice() {
                return Err(Error::format(
                    file.path(),
                    format!(
                        "tensor `{name}`: shape {:?} does not match the config, which implies {shape:?}",
                        tensor.shape()
                    ),
                ));
            }
            params.add(name, tensor, true)?;
        }
        Ok(params)
    }
}

/// (shard file, tensors it should hold) from an index's `weight_map`, in first-seen order.
fn shards_of_index(index: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(index, format!("not valid JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::format(index, "field `weight_map` is missing or not an object"))?;
    // BTreeMap over names gives a deterministic shard order.
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::format(index, format!("weight_map[`{tensor}`] is not a file name"))
        })?;
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(Error::format(
                index,
                format!("weight_map[`{tensor}`] = `{file}` must be a file in the same directory"),
            ));
        }
        shards
            .entry(file.to_string())
            .or_default()
            .push(tensor.clone());
    }
    Ok(shards.into_iter().collect())
}

/// An f32 tensor's bytes, ready for `safetensors::serialize_to_file`.
struct F32View {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &F32View {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes the parameters `ids` of `params` to `path` as f32 safetensors (what training produces) under their names, with
/// the `{"format": "pt"}` metadata that transformers checks. Written to a temporary file first
/// and renamed, so a crash never leaves a half-written checkpoint under the real name.
pub fn save_params(params: &Params, ids: &[ParamId], path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let views: Vec<(String, F32View)> = ids
        .iter()
        .map(|&id| {
            let t = params.value(id);
            let bytes = t.to_vec().iter().flat_map(|x| x.to_le_bytes()).collect();
            (
                params.name(id).to_string(),
                F32View {
                    shape: t.shape().to_vec(),
                    bytes,
                },
            )
        })
        .collect();
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    // Written beside the target, synced, then renamed over it (crate::files): a crash or a full
    // disk mid-save leaves the previous file whole.
    let tmp = crate::files::temp_path(path);
    let written =
        safetensors::serialize_to_file(views.iter().map(|(n, v)| (n.as_str(), v)), &metadata, &tmp)
            .map_err(|e| write_error(path, e))
            .and_then(|()| crate::files::sync_file(&tmp));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    crate::files::commit(&tmp, path)
}
