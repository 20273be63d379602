//! The dispatcher of paper §3.1: each CNN kernel call goes to the GPU when one is configured and
//! the layer is big enough to repay the copies to and from the device, otherwise to the native
//! CPU path. Every backend gives the same bytes, so the choice changes only the time taken.

use crate::{
    ChannelQuant, ConvParams, ConvTransposeParams, KernelError, Kernels, Native, PackedFc,
    PairQuant, PoolParams, PreparedConv,
};

/// Default smallest layer (in multiply-accumulates) sent to the GPU: below about a million MACs
/// the host-device copies and the launch cost more than the CPU takes (see `benches/layers.rs`).
pub const DEFAULT_MIN_GPU_MACS: u64 = 1 << 20;

/// Routes kernel calls between the native CPU path and, with feature `cuda`, a GPU.
#[derive(Debug, Default)]
pub struct Dispatch {
    #[cfg(feature = "cuda")]
    gpu: Option<crate::Cuda>,
    #[cfg(feature = "cuda")]
    min_gpu_macs: u64,
}

impl Dispatch {
    /// CPU only.
    pub fn native() -> Dispatch {
        Dispatch::default()
    }

    /// Layers of at least `min_gpu_macs` MACs on `gpu`, the rest on the CPU.
    #[cfg(feature = "cuda")]
    pub fn with_gpu(gpu: crate::Cuda, min_gpu_macs: u64) -> Dispatch {
        Dispatch {
            gpu: Some(gpu),
            min_gpu_macs,
        }
    }

    /// One line for logs: which device runs the big layers.
    pub fn describe(&self) -> String {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &self.gpu {
            return format!(
                "cuda ({}) for layers of at least {} MACs, native CPU for the rest",
                gpu.device_name(),
                self.min_gpu_macs
            );
        }
        "native CPU (SIMD + rayon)".into()
    }

    /// The backend for a call of `macs` multiply-accumulates.
    fn pick(&self, macs: u64) -> &dyn Kernels {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &self.gpu {
            if macs >= self.min_gpu_macs {
                return gpu;
            }
        }
        let _ = macs;
        &Native
    }
}

impl Kernels for Dispatch {
    fn conv(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        self.pick(p.macs()).conv(p, input, weights, q, out)
    }

    fn prepare_conv(
        &self,
        p: &ConvParams,
        weights: &[i8],
        q: &ChannelQuant,
    ) -> Option<PreparedConv> {
        self.pick(p.macs()).prepare_conv(p, weights, q)
    }

    fn conv_prepared(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        prepared: &PreparedConv,
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        self.pick(p.macs())
            .conv_prepared(p, input, weights, prepared, q, out)
    }

    fn conv_transpose(
        &self,
        p: &ConvTransposeParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        self.pick(p.macs())
            .conv_transpose(p, input, weights, q, out)
    }

    fn pool(&self, p: &PoolParams, input: &[i8], out: &mut [i8]) -> Result<(), KernelError> {
        let taps = p.output.elements().unwrap_or(0) * (p.k as u64 * p.k as u64);
        self.pick(taps).pool(p, input, out)
    }

    fn fully_connected(
        &self,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        self.pick(weights.len() as u64)
            .fully_connected(input, weights, q, out)
    }

    fn pack_fully_connected(&self, weights: &[i8], inputs: usize) -> Option<PackedFc> {
        self.pick(weights.len() as u64)
            .pack_fully_connected(weights, inputs)
    }

    fn fully_connected_packed(
        &self,
        input: &[i8],
        weights: &[i8],
        packed: &PackedFc,
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        self.pick(weights.len() as u64)
            .fully_connected_packed(input, weights, packed, q, out)
    }

    fn matmul(
        &self,
        dims: [u32; 3],
        a: &[i8],
        b: &[i8],
        q: &PairQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let macs = dims.iter().map(|d| *d as u64).product();
        self.pick(macs).matmul(dims, a, b, q, out)
    }
}
