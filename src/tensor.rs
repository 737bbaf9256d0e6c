//! `Tensor`: a shape plus contiguous row-major storage.
//!
//! Compute is f32. Weights may be *stored* as bf16 or f16 (half the memory; what checkpoints ship)
//! and are converted with [`Tensor::to_f32`] before an op touches them. Storage sits behind an `Arc`,
//! so cloning a tensor is cheap (the autograd tape keeps many references to the same weights) and
//! writing goes through copy-on-write ([`Tensor::data_mut`]): the optimizer updates a parameter in
//! place once the tape that shared it has been dropped.
//!
//! Every layout is contiguous: a transpose materialises a new tensor. This keeps every kernel simple
//! (one layout to get right) at the cost of a copy where a strided view would have been free.

use crate::error::{Error, Result};
use crate::rng::Rng;
use half::{bf16, f16};
use std::sync::Arc;

/// Element type of a tensor's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    BF16,
    F16,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        }
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
        }
    }
}

/// Where the numbers live: host memory, as f32 (compute) or bf16 / f16 (storage of loaded
/// checkpoints). There is no device storage: the CUDA kernels (`cuda`, feature `cuda`) take and
/// return host slices.
#[derive(Clone, Debug)]
pub enum Storage {
    F32(Arc<Vec<f32>>),
    BF16(Arc<Vec<bf16>>),
    F16(Arc<Vec<f16>>),
}

#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

impl Tensor {
    /// Wraps `data` as a tensor of `shape`; errors when the element count does not match.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape(
                "Tensor::from_vec",
                format!(
                    "shape {:?} holds {n} elements, data has {}",
                    shape,
                    data.len()
                ),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Storage::F32(Arc::new(data)),
        })
    }

    /// bf16 storage (e.g. a checkpoint's weights), converted on use by [`Tensor::to_f32`].
    pub fn from_bf16(data: Vec<bf16>, shape: &[usize]) -> Result<Tensor> {
        check_len("Tensor::from_bf16", shape, data.len())?;
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Storage::BF16(Arc::new(data)),
        })
    }

    /// f16 storage, converted on use by [`Tensor::to_f32`].
    pub fn from_f16(data: Vec<f16>, shape: &[usize]) -> Result<Tensor> {
        check_len("Tensor::from_f16", shape, data.len())?;
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Storage::F16(Arc::new(data)),
        })
    }

    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    pub fn full(shape: &[usize], value: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape: shape.to_vec(),
            storage: Storage::F32(Arc::new(vec![value; n])),
        }
    }

    pub fn scalar(value: f32) -> Tensor {
        Tensor::full(&[1], value)
    }

    /// Normal(0, std^2) entries from a seeded generator.
    pub fn randn(shape: &[usize], std: f32, rng: &mut Rng) -> Tensor {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| rng.normal() * std).collect();
        Tensor {
            shape: shape.to_vec(),
            storage: Storage::F32(Arc::new(data)),
        }
    }

    /// Uniform entries in [lo, hi) from a seeded generator.
    pub fn rand_uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut Rng) -> Tensor {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect();
        Tensor {
            shape: shape.to_vec(),
            storage: Storage::F32(Arc::new(data)),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the last axis (1 for a 0-d shape).
    pub fn last_dim(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }

    /// Number of rows when the tensor is seen as (rows, last_dim).
    pub fn rows(&self) -> usize {
        self.numel().checked_div(self.last_dim()).unwrap_or(0)
    }

    pub fn dtype(&self) -> DType {
        match &self.storage {
            Storage::F32(_) => DType::F32,
            Storage::BF16(_) => DType::BF16,
            Storage::F16(_) => DType::F16,
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The f32 elements. Errors (naming the dtype) for half-precision storage: call `to_f32` first.
    pub fn data(&self) -> Result<&[f32]> {
        match &self.storage {
            Storage::F32(v) => Ok(v.as_slice()),
            _ => Err(Error::DType {
                op: "Tensor::data",
                expected: "f32".into(),
                found: self.dtype().name().into(),
            }),
        }
    }

    /// Mutable f32 elements; copies the storage first if another tensor shares it.
    pub fn data_mut(&mut self) -> Result<&mut [f32]> {
        let dtype = self.dtype();
        match &mut self.storage {
            Storage::F32(v) => Ok(Arc::make_mut(v).as_mut_slice()),
            _ => Err(Error::DType {
                op: "Tensor::data_mut",
                expected: "f32".into(),
                found: dtype.name().into(),
            }),
        }
    }

    /// The elements as a `Vec<f32>` (a copy), converting half precision.
    pub fn to_vec(&self) -> Vec<f32> {
        match &self.storage {
            Storage::F32(v) => v.to_vec(),
            Storage::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Storage::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        }
    }

    /// Rows `rows` of this tensor seen as (rows, last_dim), as f32 values one row after the
    /// other (half-precision storage converted row by row, never as a whole).
    pub fn rows_to_f32(&self, rows: impl Iterator<Item = usize>) -> Vec<f32> {
        let d = self.last_dim();
        let mut out = Vec::new();
        for r in rows {
            let span = r * d..(r + 1) * d;
            match &self.storage {
                Storage::F32(v) => out.extend_from_slice(&v[span]),
                Storage::BF16(v) => out.extend(v[span].iter().map(|x| x.to_f32())),
                Storage::F16(v) => out.extend(v[span].iter().map(|x| x.to_f32())),
            }
        }
        out
    }

    /// An f32 tensor with the same values (cheap clone when already f32).
    pub fn to_f32(&self) -> Tensor {
        match &self.storage {
            Storage::F32(_) => self.clone(),
            _ => Tensor {
                shape: self.shape.clone(),
                storage: Storage::F32(Arc::new(self.to_vec())),
            },
        }
    }

    /// Converts the storage to `dtype` (rounding to nearest for half precision).
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        let shape = self.shape.clone();
        let storage = match dtype {
            DType::F32 => return self.to_f32(),
            DType::BF16 => Storage::BF16(Arc::new(
                self.to_vec().into_iter().map(bf16::from_f32).collect(),
            )),
            DType::F16 => Storage::F16(Arc::new(
                self.to_vec().into_iter().map(f16::from_f32).collect(),
            )),
        };
        Tensor { shape, storage }
    }

    /// Same data, new shape (no copy). Errors when the element counts differ.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot view {:?} ({} elements) as {:?} ({n})",
                    self.shape,
                    self.numel(),
                    shape
                ),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: self.storage.clone(),
        })
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!("expected one element, shape is {:?}", self.shape),
            ));
        }
        Ok(self.to_vec()[0])
    }

    /// Errors unless this tensor has exactly `shape`.
    pub fn expect_shape(&self, op: &'static str, what: &str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(Error::shape(
                op,
                format!("{what}: expected {:?}, found {:?}", shape, self.shape),
            ));
        }
        Ok(())
    }

    /// Largest absolute elementwise difference (for tests and parity checks).
    pub fn max_abs_diff(&self, other: &Tensor) -> Result<f32> {
        if self.shape != other.shape {
            return Err(Error::shape(
                "max_abs_diff",
                format!("{:?} vs {:?}", self.shape, other.shape),
            ));
        }
        let (a, b) = (self.to_vec(), other.to_vec());
        Ok(a.iter()
            .zip(&b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs())))
    }
}

fn check_len(op: &'static str, shape: &[usize], len: usize) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != len {
        return Err(Error::shape(
            op,
            format!("shape {shape:?} holds {n} elements, data has {len}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_name_the_op_and_shapes() {
        let e = Tensor::from_vec(vec![1.0; 5], &[2, 3])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("from_vec") && e.contains("[2, 3]") && e.contains('5'),
            "{e}"
        );
        let t = Tensor::zeros(&[2, 3]);
        let e = t.reshape(&[4, 2]).unwrap_err().to_string();
        assert!(e.contains("reshape") && e.contains("[4, 2]"), "{e}");
    }

    #[test]
    fn half_storage_round_trips_and_refuses_direct_f32_access() {
        let t = Tensor::from_vec(vec![1.0, -2.5, 3.0e-3, 65504.0], &[4]).unwrap();
        let b = t.to_dtype(DType::BF16);
        assert_eq!(b.dtype(), DType::BF16);
        assert!(b.data().is_err());
        let back = b.to_f32().to_vec();
        assert_eq!(back[0], 1.0);
        assert_eq!(back[1], -2.5);
        assert!((back[2] - 3.0e-3).abs() < 3.0e-3 / 128.0);
        let h = t.to_dtype(DType::F16).to_f32().to_vec();
        assert_eq!(h[3], 65504.0);
    }

    #[test]
    fn copy_on_write_leaves_the_shared_clone_intact() {
        let a = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
        let mut b = a.clone();
        b.data_mut().unwrap()[0] = 9.0;
        assert_eq!(a.to_vec(), vec![1.0, 2.0]);
        assert_eq!(b.to_vec(), vec![9.0, 2.0]);
    }
}
