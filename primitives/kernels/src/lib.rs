//! SmartVM integer kernels: the arithmetic of `SPEC.md` as code.
//!
//! [`Reference`] is the plain, obviously-correct implementation that defines the bits;
//! [`Scalar`] (`no_std`, no SIMD) is the same arithmetic arranged for wasm, and is what runs
//! inside the wasm runtime when relay validators check a block. With `std`, [`Native`] is the fast path
//! (vectorised inner loops and rayon across output channels) that the node's host function uses.
//! Both implement [`Kernels`], the interface the interpreter is generic over, and must agree to
//! the bit on every input: the cross-backend property tests and golden vectors enforce it.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod amx;
mod arith;
#[cfg(feature = "std")]
mod byte_pairs;
pub mod elementwise;
#[cfg(feature = "std")]
mod fc;
#[cfg(feature = "std")]
pub mod gemm;
#[cfg(feature = "std")]
mod grids;
pub mod memory;
pub mod packed_fc;
pub mod params;
#[cfg(feature = "std")]
pub mod quads;
pub mod reference;
#[cfg(feature = "std")]
mod requant;
#[cfg(feature = "std")]
mod rows;
pub mod scalar;
#[cfg(feature = "std")]
pub mod tile;
#[cfg(feature = "std")]
mod unfold;
#[cfg(feature = "std")]
mod warm;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "std")]
pub mod dispatch;
#[cfg(feature = "std")]
pub mod native;

#[cfg(feature = "cuda")]
pub use cuda::Cuda;
#[cfg(feature = "std")]
pub use dispatch::Dispatch;
#[cfg(feature = "std")]
pub use native::Native;
pub use packed_fc::{PackedFc, PackedForm};
pub use params::{
    AddQuant, ChannelQuant, ConvParams, ConvTransposeParams, OutputRange, PairQuant, PoolKind,
    PoolParams, SoftmaxTable, MAX_WINDOW,
};
pub use reference::Reference;
pub use scalar::Scalar;
pub use smartvm_isa::Shape;

/// Why a kernel refused its arguments. Kernels never panic: every bad argument is one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// A window, stride, padding, group count or factor is out of range.
    BadOperand,
    /// Tensor shapes or slice lengths do not fit together.
    ShapeMismatch,
    /// A quantization block is malformed.
    BadQuant,
    /// The call would do more work than one kernel call may.
    TooLarge,
}

/// Views weight bytes as int8 without copying.
pub fn as_i8(bytes: &[u8]) -> &[i8] {
    // SAFETY: u8 and i8 have the same size, alignment and validity; the lifetime is kept.
    unsafe { core::slice::from_raw_parts(bytes.as_ptr() as *const i8, bytes.len()) }
}

/// Views int8 data as bytes without copying.
pub fn as_u8(values: &[i8]) -> &[u8] {
    // SAFETY: as in `as_i8`.
    unsafe { core::slice::from_raw_parts(values.as_ptr() as *const u8, values.len()) }
}

fn check_len(actual: usize, expected: Option<u64>) -> Result<(), KernelError> {
    if expected == Some(actual as u64) {
        Ok(())
    } else {
        Err(KernelError::ShapeMismatch)
    }
}

/// Checks the slices handed to a convolution against its parameters.
pub fn check_conv(
    p: &ConvParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    out: &[i8],
) -> Result<(), KernelError> {
    check_len(input.len(), p.input.elements())?;
    check_len(weights.len(), Some(p.weight_len()))?;
    check_len(q.bias.len(), Some(p.output.c as u64))?;
    check_len(out.len(), p.output.elements())
}

/// Checks the slices handed to a fully-connected layer.
pub fn check_fc(
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    out: &[i8],
) -> Result<(), KernelError> {
    if input.is_empty() || out.is_empty() {
        return Err(KernelError::ShapeMismatch);
    }
    check_len(
        weights.len(),
        (input.len() as u64).checked_mul(out.len() as u64),
    )?;
    check_len(q.bias.len(), Some(out.len() as u64))
}

/// Checks the slices handed to a transposed convolution.
pub fn check_conv_transpose(
    p: &ConvTransposeParams,
    input: &[i8],
    weights: &[i8],
    q: &ChannelQuant,
    out: &[i8],
) -> Result<(), KernelError> {
    check_len(input.len(), p.input.elements())?;
    check_len(weights.len(), Some(p.weight_len()))?;
    check_len(q.bias.len(), Some(p.output.c as u64))?;
    check_len(out.len(), p.output.elements())
}

/// Checks the slices handed to a pooling layer.
pub fn check_pool(p: &PoolParams, input: &[i8], out: &[i8]) -> Result<(), KernelError> {
    check_len(input.len(), p.input.elements())?;
    check_len(out.len(), p.output.elements())
}

/// Checks an M × K by K × N matrix product's slices (none may be empty).
pub fn check_matmul(dims: [u32; 3], a: &[i8], b: &[i8], out: &[i8]) -> Result<(), KernelError> {
    let [m, k, n] = dims.map(|d| d as usize);
    let fits = |len: usize, x: usize, y: usize| x.checked_mul(y) == Some(len) && len > 0;
    if fits(a.len(), m, k) && fits(b.len(), k, n) && fits(out.len(), m, n) {
        Ok(())
    } else {
        Err(KernelError::ShapeMismatch)
    }
}

/// A convolution's weights laid out by a backend once, for executions that run the layer again
/// ([`Kernels::prepare_conv`]), as ONNX Runtime prepacks a session's weights. Only the backend
/// that made it reads it; it changes no output.
pub struct PreparedConv {
    layout: alloc::boxed::Box<dyn core::any::Any>,
    bytes: usize,
}

impl PreparedConv {
    /// Wraps a backend's `layout`, which holds `bytes` of heap.
    pub fn new<T: core::any::Any>(layout: T, bytes: usize) -> Self {
        PreparedConv {
            layout: alloc::boxed::Box::new(layout),
            bytes,
        }
    }

    /// The layout, if it is a `T`.
    pub fn layout<T: core::any::Any>(&self) -> Option<&T> {
        self.layout.downcast_ref()
    }

    /// Heap bytes the layout holds, for the caller's bound on what it keeps.
    pub fn heap_bytes(&self) -> usize {
        self.bytes
    }
}

/// The kernels a SmartVM backend provides. Each method checks its slices against its parameters
/// and returns an error rather than panicking; results must equal [`Reference`] bit for bit.
pub trait Kernels {
    /// Convolution (2-D, grouped, depthwise or 3-D): SPEC.md "Convolution".
    fn conv(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError>;

    /// Transposed 2-D convolution: SPEC.md "Transposed convolution".
    fn conv_transpose(
        &self,
        p: &ConvTransposeParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError>;

    /// The weights of convolution `p` laid out for [`Kernels::conv_prepared`], for a layer that
    /// later executions run again; `None`, the default, where the backend gains nothing.
    fn prepare_conv(
        &self,
        p: &ConvParams,
        weights: &[i8],
        q: &ChannelQuant,
    ) -> Option<PreparedConv> {
        let _ = (p, weights, q);
        None
    }

    /// [`Kernels::conv`] given also `prepared`, what [`Kernels::prepare_conv`] made of `weights`
    /// (the backend falls back to [`Kernels::conv`] where it no longer fits, e.g. another tile):
    /// the same output bit for bit.
    fn conv_prepared(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        prepared: &PreparedConv,
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let _ = prepared;
        self.conv(p, input, weights, q, out)
    }

    /// Max / overlapping / average pooling: SPEC.md "Pooling".
    fn pool(&self, p: &PoolParams, input: &[i8], out: &mut [i8]) -> Result<(), KernelError>;

    /// Fully-connected layer over a flat input: SPEC.md "Fully connected".
    fn fully_connected(
        &self,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError>;

    /// The weights of a fully-connected layer with `inputs` inputs that this execution will
    /// multiply again (an LSTM's gates, once a step), rearranged for
    /// [`Kernels::fully_connected_packed`]; `None`, the default, where the backend gains
    /// nothing from it.
    fn pack_fully_connected(&self, weights: &[i8], inputs: usize) -> Option<PackedFc> {
        let _ = (weights, inputs);
        None
    }

    /// [`Kernels::fully_connected`] given also `packed`, what [`Kernels::pack_fully_connected`]
    /// made of `weights`: the same output bit for bit.
    fn fully_connected_packed(
        &self,
        input: &[i8],
        weights: &[i8],
        packed: &PackedFc,
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let _ = packed;
        self.fully_connected(input, weights, q, out)
    }

    /// Matrix product of an M × K and a K × N matrix: SPEC.md "Matrix product".
    fn matmul(
        &self,
        dims: [u32; 3],
        a: &[i8],
        b: &[i8],
        q: &PairQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError>;
}
