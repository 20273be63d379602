//! The CUDA backend (feature `cuda`): the kernels of SPEC.md on an NVIDIA GPU through cudarc,
//! compiled from `kernels.cu` with NVRTC when the backend starts.
//!
//! The CUDA libraries are loaded at run time, so this builds on machines without CUDA, and
//! [`Cuda::new`] says why it cannot start instead of panicking. Every call checks its slices
//! exactly as [`Reference`] does before anything reaches the device; a driver failure during a
//! call (out of device memory, a lost device) falls back to [`Native`], which gives the same
//! bytes, and is counted in [`Cuda::fallbacks`] so it is never silent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};

use crate::{
    check_conv, check_conv_transpose, check_fc, check_matmul, check_pool, ChannelQuant, ConvParams,
    ConvTransposeParams, KernelError, Kernels, Native, PairQuant, PoolKind, PoolParams,
};

/// The CUDA C source of every kernel; kept next to this file so it reads as one unit.
const SOURCE: &str = include_str!("kernels.cu");

/// Threads per block for the one-thread-per-output kernels.
const BLOCK: u32 = 256;

/// Why the CUDA backend could not start.
#[derive(Debug)]
pub enum CudaUnavailable {
    /// No CUDA driver library (`libcuda.so`) on this machine.
    NoDriver,
    /// No NVRTC library (`libnvrtc.so`) to compile the kernels.
    NoNvrtc,
    /// The driver answered but there is no usable device, or it refused the module.
    Driver(DriverError),
    /// NVRTC rejected the kernel source (a bug in this crate, reported with the log).
    Compile(String),
}

impl core::fmt::Display for CudaUnavailable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CudaUnavailable::NoDriver => write!(f, "no CUDA driver library (libcuda.so) found"),
            CudaUnavailable::NoNvrtc => write!(f, "no NVRTC library (libnvrtc.so) found"),
            CudaUnavailable::Driver(e) => write!(f, "CUDA driver error: {e:?}"),
            CudaUnavailable::Compile(log) => write!(f, "NVRTC could not compile kernels: {log}"),
        }
    }
}

impl std::error::Error for CudaUnavailable {}

struct Functions {
    conv: CudaFunction,
    conv_transpose: CudaFunction,
    pool: CudaFunction,
    fully_connected: CudaFunction,
    matmul: CudaFunction,
}

/// The CUDA backend: one device, one stream, calls serialised by a lock.
pub struct Cuda {
    stream: Arc<CudaStream>,
    functions: Mutex<Functions>,
    device_name: String,
    fallbacks: AtomicU64,
}

impl core::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cuda")
            .field("device", &self.device_name)
            .field("fallbacks", &self.fallbacks())
            .finish()
    }
}

impl Cuda {
    /// Opens GPU `ordinal` and compiles the kernels for it.
    pub fn new(ordinal: usize) -> Result<Cuda, CudaUnavailable> {
        // SAFETY: these only try to dlopen the libraries by name.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(CudaUnavailable::NoDriver);
        }
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(CudaUnavailable::NoNvrtc);
        }
        let ctx = CudaContext::new(ordinal).map_err(CudaUnavailable::Driver)?;
        let ptx = cudarc::nvrtc::compile_ptx(SOURCE)
            .map_err(|e| CudaUnavailable::Compile(format!("{e:?}")))?;
        let module = ctx.load_module(ptx).map_err(CudaUnavailable::Driver)?;
        let load = |name| module.load_function(name).map_err(CudaUnavailable::Driver);
        let functions = Functions {
            conv: load("conv")?,
            conv_transpose: load("conv_transpose")?,
            pool: load("pool")?,
            fully_connected: load("fully_connected")?,
            matmul: load("matmul")?,
        };
        let device_name = ctx.name().unwrap_or_else(|_| "unknown CUDA device".into());
        Ok(Cuda {
            stream: ctx.default_stream(),
            functions: Mutex::new(functions),
            device_name,
            fallbacks: AtomicU64::new(0),
        })
    }

    /// The device's name, for logs and benchmark reports.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// How many calls fell back to [`Native`] because the device failed them.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Runs `gpu`; on a driver error counts it and runs `cpu` instead (same bytes by SPEC.md).
    fn or_native(
        &self,
        out: &mut [i8],
        gpu: impl FnOnce(&Functions, &mut [i8]) -> Result<(), DriverError>,
        cpu: impl FnOnce(&mut [i8]) -> Result<(), KernelError>,
    ) -> Result<(), KernelError> {
        let result = match self.functions.lock() {
            Ok(functions) => gpu(&functions, out),
            Err(_) => return cpu(out),
        };
        match result {
            Ok(()) => Ok(()),
            Err(_) => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                cpu(out)
            }
        }
    }

    fn upload<T: cudarc::driver::DeviceRepr>(
        &self,
        data: &[T],
    ) -> Result<CudaSlice<T>, DriverError> {
        self.stream.clone_htod(data)
    }

    /// Copies the quantization block's three per-channel arrays to the device.
    fn upload_quant(&self, q: &ChannelQuant) -> Result<[CudaSlice<i32>; 3], DriverError> {
        Ok([
            self.upload(&q.bias)?,
            self.upload(&q.mult)?,
            self.upload(&q.shift)?,
        ])
    }

    /// Launches `f` over `total` threads and copies the device output `y` into `out`.
    fn finish(&self, y: &CudaSlice<i8>, out: &mut [i8]) -> Result<(), DriverError> {
        self.stream.memcpy_dtoh(y, out)?;
        self.stream.synchronize()
    }
}

fn grid(threads: u64) -> Result<LaunchConfig, KernelError> {
    let blocks = threads.div_ceil(BLOCK as u64);
    if blocks > i32::MAX as u64 {
        return Err(KernelError::TooLarge);
    }
    Ok(LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

fn count(len: usize) -> Result<u32, KernelError> {
    u32::try_from(len).map_err(|_| KernelError::TooLarge)
}

fn shape_words(s: &crate::Shape) -> [i32; 4] {
    [s.c, s.d, s.h, s.w].map(|v| v as i32)
}

impl Kernels for Cuda {
    fn conv(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        check_conv(p, input, weights, q, out)?;
        let total = count(out.len())?;
        let cfg = grid(total as u64)?;
        let mut g = Vec::with_capacity(25);
        g.extend(shape_words(&p.input));
        g.extend(shape_words(&p.output));
        for axis in [p.kernel, p.stride, p.pad, p.dilation] {
            g.extend(axis.map(|v| v as i32));
        }
        g.extend([p.groups as i32, q.input_zero]);
        g.extend([q.output.zero, q.output.lo, q.output.hi]);
        self.or_native(
            out,
            |f, out| {
                let (g, x, w) = (self.upload(&g)?, self.upload(input)?, self.upload(weights)?);
                let [bias, mult, shift] = self.upload_quant(q)?;
                let mut y = self.stream.alloc_zeros::<i8>(out.len())?;
                let mut launch = self.stream.launch_builder(&f.conv);
                launch
                    .arg(&g)
                    .arg(&x)
                    .arg(&w)
                    .arg(&bias)
                    .arg(&mult)
                    .arg(&shift);
                launch.arg(&mut y).arg(&total);
                // SAFETY: argument types and order match `conv` in kernels.cu, and the checks
                // above keep every index the kernel computes inside these buffers.
                unsafe { launch.launch(cfg) }?;
                self.finish(&y, out)
            },
            |out| Native.conv(p, input, weights, q, out),
        )
    }

    fn conv_transpose(
        &self,
        p: &ConvTransposeParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        check_conv_transpose(p, input, weights, q, out)?;
        let total = count(out.len())?;
        let cfg = grid(total as u64)?;
        let (i, o) = (p.input, p.output);
        let g: Vec<i32> = [i.c, i.h, i.w, o.c, o.h, o.w, p.k, p.stride, p.pad, p.groups]
            .map(|v| v as i32)
            .into_iter()
            .chain([q.input_zero, q.output.zero, q.output.lo, q.output.hi])
            .collect();
        self.or_native(
            out,
            |f, out| {
                let (g, x, w) = (self.upload(&g)?, self.upload(input)?, self.upload(weights)?);
                let [bias, mult, shift] = self.upload_quant(q)?;
                let mut y = self.stream.alloc_zeros::<i8>(out.len())?;
                let mut launch = self.stream.launch_builder(&f.conv_transpose);
                launch
                    .arg(&g)
                    .arg(&x)
                    .arg(&w)
                    .arg(&bias)
                    .arg(&mult)
                    .arg(&shift);
                launch.arg(&mut y).arg(&total);
                // SAFETY: as in `conv`, for `conv_transpose` in kernels.cu.
                unsafe { launch.launch(cfg) }?;
                self.finish(&y, out)
            },
            |out| Native.conv_transpose(p, input, weights, q, out),
        )
    }

    fn pool(&self, p: &PoolParams, input: &[i8], out: &mut [i8]) -> Result<(), KernelError> {
        check_pool(p, input, out)?;
        let total = count(out.len())?;
        let cfg = grid(total as u64)?;
        let (i, o) = (p.input, p.output);
        let average = matches!(p.kind, PoolKind::Average) as u32;
        let g: Vec<i32> = [i.c, i.h, i.w, o.c, o.h, o.w, p.k, p.stride, p.pad, average]
            .map(|v| v as i32)
            .to_vec();
        self.or_native(
            out,
            |f, out| {
                let (g, x) = (self.upload(&g)?, self.upload(input)?);
                let mut y = self.stream.alloc_zeros::<i8>(out.len())?;
                let mut launch = self.stream.launch_builder(&f.pool);
                launch.arg(&g).arg(&x).arg(&mut y).arg(&total);
                // SAFETY: as in `conv`, for `pool` in kernels.cu.
                unsafe { launch.launch(cfg) }?;
                self.finish(&y, out)
            },
            |out| Native.pool(p, input, out),
        )
    }

    fn fully_connected(
        &self,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        check_fc(input, weights, q, out)?;
        let rows = count(out.len())?;
        let n = i32::try_from(input.len()).map_err(|_| KernelError::TooLarge)?;
        let cfg = grid(rows as u64 * 32)?;
        let g = [n, q.input_zero, q.output.zero, q.output.lo, q.output.hi];
        self.or_native(
            out,
            |f, out| {
                let (g, x, w) = (self.upload(&g)?, self.upload(input)?, self.upload(weights)?);
                let [bias, mult, shift] = self.upload_quant(q)?;
                let mut y = self.stream.alloc_zeros::<i8>(out.len())?;
                let mut launch = self.stream.launch_builder(&f.fully_connected);
                launch
                    .arg(&g)
                    .arg(&x)
                    .arg(&w)
                    .arg(&bias)
                    .arg(&mult)
                    .arg(&shift);
                launch.arg(&mut y).arg(&rows);
                // SAFETY: as in `conv`, for `fully_connected` in kernels.cu (one warp a row).
                unsafe { launch.launch(cfg) }?;
                self.finish(&y, out)
            },
            |out| Native.fully_connected(input, weights, q, out),
        )
    }

    fn matmul(
        &self,
        dims: [u32; 3],
        a: &[i8],
        b: &[i8],
        q: &PairQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        check_matmul(dims, a, b, out)?;
        let [m, k, n] = dims.map(|d| d as usize);
        let total = count(out.len())?;
        let cfg = grid(total as u64)?;
        let dim = |v: usize| i32::try_from(v).map_err(|_| KernelError::TooLarge);
        let g = [
            dim(m)?,
            dim(k)?,
            dim(n)?,
            q.a_zero,
            q.b_zero,
            q.output.zero,
            q.output.lo,
            q.output.hi,
            q.mult,
            q.shift,
        ];
        self.or_native(
            out,
            |f, out| {
                let (g, xa, xb) = (self.upload(&g)?, self.upload(a)?, self.upload(b)?);
                let mut y = self.stream.alloc_zeros::<i8>(out.len())?;
                let mut launch = self.stream.launch_builder(&f.matmul);
                launch.arg(&g).arg(&xa).arg(&xb).arg(&mut y).arg(&total);
                // SAFETY: as in `conv`, for `matmul` in kernels.cu.
                unsafe { launch.launch(cfg) }?;
                self.finish(&y, out)
            },
            |out| Native.matmul(dims, a, b, q, out),
        )
    }
}
