//! One CUDA device: its context, the stream every kernel runs on, a cache of loaded PTX modules
//! and kernel handles, and [`CudaBuffer`], an f32 array in device memory.
//!
//! Opening a device never panics on a machine without a GPU: cudarc loads libcuda lazily and
//! panics if it is missing, so [`CudaDevice::probe`] first asks
//! `cudarc::driver::sys::is_culib_present()` and answers [`Probe::Unavailable`] with the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DriverError,
};
use cudarc::nvrtc::Ptx;

use crate::{Error, Result};

/// Turns a cudarc driver error into the project error, saying what we were doing.
pub(crate) fn driver_error(doing: &str, e: DriverError) -> Error {
    Error::Cuda(format!("{doing}: {e}"))
}

/// A PTX file embedded in the binary: `name` is the cache key (the file stem in ptx/), `text`
/// the PTX itself. Declared next to the launch wrappers that use it.
#[derive(Debug, Clone, Copy)]
pub struct PtxModule {
    pub name: &'static str,
    pub text: &'static str,
}

/// What [`CudaDevice::probe`] found.
pub enum Probe {
    /// A device is open and ready for kernels.
    Ready(CudaDevice),
    /// No device can be used here, and that is not an error (a CPU-only machine); the string
    /// says why, for a skip message or a log line.
    Unavailable(String),
}

/// An open GPU: context + one stream. Kernels and copies are queued on that stream in order,
/// so a download after a launch sees the launch's result without explicit synchronisation.
pub struct CudaDevice {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Loaded modules by PTX name, so each PTX text is JIT-compiled by the driver once.
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    /// Kernel handles by (PTX name, kernel name), so a launch does no lookup in the driver.
    functions: Mutex<HashMap<(&'static str, &'static str), CudaFunction>>,
}

impl CudaDevice {
    /// Opens device `ordinal` if this machine can run CUDA at all. `Ok(Unavailable(why))` when
    /// there is no driver or no such device; `Err` only for a real driver failure.
    pub fn probe(ordinal: usize) -> Result<Probe> {
        // SAFETY: only tries to dlopen libcuda under its usual names and closes it again.
        if !unsafe { sys::is_culib_present() } {
            return Ok(Probe::Unavailable(
                "no CUDA driver present (libcuda could not be loaded)".into(),
            ));
        }
        let count = match CudaContext::device_count() {
            Ok(count) => count.max(0) as usize,
            // cuInit reports a driver with no GPU behind it as NO_DEVICE: not a failure.
            Err(DriverError(sys::CUresult::CUDA_ERROR_NO_DEVICE)) => 0,
            Err(e) => return Err(driver_error("initialising the CUDA driver", e)),
        };
        if ordinal >= count {
            return Ok(Probe::Unavailable(format!(
                "CUDA driver present but no device {ordinal} ({count} device(s) found)"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| driver_error(&format!("creating a context on device {ordinal}"), e))?;
        let stream = ctx.default_stream();
        Ok(Probe::Ready(CudaDevice {
            ordinal,
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        }))
    }

    /// [`CudaDevice::probe`] for callers that only need to know whether a device exists.
    pub fn new(ordinal: usize) -> Result<Option<CudaDevice>> {
        Ok(match CudaDevice::probe(ordinal)? {
            Probe::Ready(dev) => Some(dev),
            Probe::Unavailable(_) => None,
        })
    }

    /// The device index this was opened with.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The device's name as the driver reports it (e.g. "NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> Result<String> {
        self.ctx
            .name()
            .map_err(|e| driver_error("reading the device name", e))
    }

    /// The stream every kernel and copy of this device is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits until everything queued on the stream has finished (for timing, or to surface an
    /// asynchronous kernel fault at a known point).
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver_error("synchronizing the stream", e))
    }

    /// The kernel `kernel` of `ptx`, loading (and caching) the module on first use.
    pub fn function(&self, ptx: PtxModule, kernel: &'static str) -> Result<CudaFunction> {
        let key = (ptx.name, kernel);
        if let Some(f) = lock(&self.functions)?.get(&key) {
            return Ok(f.clone());
        }
        let module = self.module(ptx)?;
        let f = module.load_function(kernel).map_err(|e| {
            driver_error(
                &format!("finding kernel `{kernel}` in ptx/{}.ptx", ptx.name),
                e,
            )
        })?;
        lock(&self.functions)?.insert(key, f.clone());
        Ok(f)
    }

    /// The loaded module for `ptx`; the driver JIT-compiles the PTX for this GPU the first time.
    fn module(&self, ptx: PtxModule) -> Result<Arc<CudaModule>> {
        let mut modules = lock(&self.modules)?;
        if let Some(m) = modules.get(ptx.name) {
            return Ok(m.clone());
        }
        let m = self.ctx.load_module(Ptx::from_src(ptx.text)).map_err(|e| {
            driver_error(
                &format!(
                    "loading ptx/{}.ptx (PTX ISA 9.0 needs a driver for CUDA 13.0 or newer)",
                    ptx.name
                ),
                e,
            )
        })?;
        modules.insert(ptx.name, m.clone());
        Ok(m)
    }

    /// Copies `host` to a new device buffer.
    pub fn upload(&self, host: &[f32]) -> Result<CudaBuffer> {
        let slice = self
            .stream
            .memcpy_stod(host)
            .map_err(|e| driver_error(&format!("uploading {} floats", host.len()), e))?;
        Ok(CudaBuffer { slice })
    }

    /// A new device buffer of `len` zeros.
    pub fn zeros(&self, len: usize) -> Result<CudaBuffer> {
        let slice = self
            .stream
            .alloc_zeros::<f32>(len)
            .map_err(|e| driver_error(&format!("allocating {len} floats"), e))?;
        Ok(CudaBuffer { slice })
    }

    /// Copies bf16 values to a new device buffer (as their 16-bit patterns).
    pub fn upload_bf16(&self, host: &[half::bf16]) -> Result<CudaBf16Buffer> {
        let bits: &[u16] = bytemuck::cast_slice(host);
        let slice = self
            .stream
            .memcpy_stod(bits)
            .map_err(|e| driver_error(&format!("uploading {} bf16 values", host.len()), e))?;
        Ok(CudaBf16Buffer { slice })
    }

    /// A new bf16 device buffer of `len` zeros.
    pub fn zeros_bf16(&self, len: usize) -> Result<CudaBf16Buffer> {
        let slice = self
            .stream
            .alloc_zeros::<u16>(len)
            .map_err(|e| driver_error(&format!("allocating {len} bf16 values"), e))?;
        Ok(CudaBf16Buffer { slice })
    }

    /// Copies integers (token ids, targets, positions) to a new device buffer.
    pub fn upload_i32(&self, host: &[i32]) -> Result<CudaI32Buffer> {
        let slice = self
            .stream
            .memcpy_stod(host)
            .map_err(|e| driver_error(&format!("uploading {} integers", host.len()), e))?;
        Ok(CudaI32Buffer { slice })
    }

    /// Fails with a clear message if `buf` lives on another device than `self`.
    pub(crate) fn check_owns(&self, op: &str, buf: &impl OnDevice) -> Result<()> {
        if buf.device_ordinal() != self.ordinal {
            return Err(Error::Cuda(format!(
                "{op}: buffer is on device {}, kernel launched on device {}",
                buf.device_ordinal(),
                self.ordinal
            )));
        }
        Ok(())
    }
}

/// A device buffer of any element type: which GPU holds it.
pub trait OnDevice {
    fn device_ordinal(&self) -> usize;
}

impl OnDevice for CudaBuffer {
    fn device_ordinal(&self) -> usize {
        self.slice.ordinal()
    }
}

impl OnDevice for CudaBf16Buffer {
    fn device_ordinal(&self) -> usize {
        self.slice.ordinal()
    }
}

impl OnDevice for CudaI32Buffer {
    fn device_ordinal(&self) -> usize {
        self.slice.ordinal()
    }
}

/// A contiguous bf16 array in device memory, held as 16-bit patterns (cudarc's own bf16 support
/// needs its `f16` feature, which the project does not enable; the kernels see `unsigned short`).
pub struct CudaBf16Buffer {
    pub(crate) slice: CudaSlice<u16>,
}

impl CudaBf16Buffer {
    /// Number of bf16 elements.
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.slice.is_empty()
    }

    /// Copies the buffer back to the host, waiting for every kernel queued before it.
    pub fn download(&self) -> Result<Vec<half::bf16>> {
        let stream = self.slice.stream();
        let doing = format!("downloading {} bf16 values", self.len());
        let bits = stream
            .memcpy_dtov(&self.slice)
            .map_err(|e| driver_error(&doing, e))?;
        stream.synchronize().map_err(|e| driver_error(&doing, e))?;
        Ok(bits.into_iter().map(half::bf16::from_bits).collect())
    }
}

/// A contiguous i32 array in device memory: token ids, targets (-100 = ignored), positions.
pub struct CudaI32Buffer {
    pub(crate) slice: CudaSlice<i32>,
}

impl CudaI32Buffer {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.slice.is_empty()
    }
}

/// Locks a cache; a poisoned lock (another thread panicked mid-insert) becomes an error.
fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::Cuda("module cache lock poisoned by a panicked thread".into()))
}

/// A contiguous f32 array in device memory. Freed (after pending work on it) when dropped.
pub struct CudaBuffer {
    pub(crate) slice: CudaSlice<f32>,
}

impl CudaBuffer {
    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.slice.is_empty()
    }

    /// Copies the buffer back to the host, waiting for every kernel queued before it.
    pub fn download(&self) -> Result<Vec<f32>> {
        let stream = self.slice.stream();
        let doing = format!("downloading {} floats", self.len());
        let host = stream
            .memcpy_dtov(&self.slice)
            .map_err(|e| driver_error(&doing, e))?;
        // The copy is queued on the stream; wait for it explicitly rather than rely on the
        // driver's pageable-memory behaviour. This is also where a faulting kernel shows up.
        stream.synchronize().map_err(|e| driver_error(&doing, e))?;
        Ok(host)
    }

    /// The underlying cudarc slice, for launch code outside this module.
    pub fn as_slice(&self) -> &CudaSlice<f32> {
        &self.slice
    }

    /// The underlying cudarc slice, mutably.
    pub fn as_slice_mut(&mut self) -> &mut CudaSlice<f32> {
        &mut self.slice
    }
}
