//! The byte-level contract between the runtime and the node's kernels.
//!
//! Host functions outlive runtimes, so their arguments are plain little-endian u32 geometry
//! words and the qblock bytes; every call is fully re-validated on the receiving side (any
//! runtime may send anything) and answers with a [`Status`] code instead of panicking. The same
//! decoding runs natively in the node and, for validators, inside wasm with the reference
//! kernels, so both paths see identical inputs.

use smartvm_isa::Shape;
use smartvm_kernels::{
    ChannelQuant, ConvParams, ConvTransposeParams, KernelError, Kernels, PairQuant, PoolKind,
    PoolParams,
};

/// Result of a kernel call across the host boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// The output buffer holds the result.
    Ok = 0,
    /// A window, stride, padding or group count is out of range.
    BadOperand = 1,
    /// Shapes or buffer lengths do not fit together.
    ShapeMismatch = 2,
    /// The quantization block is malformed.
    BadQuant = 3,
    /// The call would do more work than one kernel call may.
    TooLarge = 4,
    /// The geometry words are malformed.
    BadEncoding = 5,
    /// The node's kernels failed (panicked) on this call, the reference kernels too: a bug.
    Fault = 6,
}

impl Status {
    /// The status a kernel outcome maps to.
    pub fn of(result: Result<(), KernelError>) -> Status {
        match result {
            Ok(()) => Status::Ok,
            Err(KernelError::BadOperand) => Status::BadOperand,
            Err(KernelError::ShapeMismatch) => Status::ShapeMismatch,
            Err(KernelError::BadQuant) => Status::BadQuant,
            Err(KernelError::TooLarge) => Status::TooLarge,
        }
    }

    /// Back to a kernel result on the calling side; unknown codes become `ShapeMismatch`.
    pub fn into_result(code: u32) -> Result<(), KernelError> {
        match code {
            0 => Ok(()),
            1 => Err(KernelError::BadOperand),
            3 => Err(KernelError::BadQuant),
            4 => Err(KernelError::TooLarge),
            _ => Err(KernelError::ShapeMismatch),
        }
    }
}

fn words<const N: usize>(bytes: &[u8]) -> Option<[u32; N]> {
    if bytes.len() != 4 * N {
        return None;
    }
    Some(core::array::from_fn(|i| {
        u32::from_le_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    }))
}

fn to_bytes<const N: usize, const B: usize>(w: [u32; N]) -> [u8; B] {
    let mut out = [0u8; B];
    for (i, v) in w.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// Convolution geometry: C D H W, out_c, kernel[3], stride[3], pad[3], dilation[3], groups.
pub fn encode_conv(p: &ConvParams) -> [u8; 72] {
    let i = p.input;
    let [k, s, d, l] = [p.kernel, p.stride, p.pad, p.dilation];
    to_bytes([
        i.c, i.d, i.h, i.w, p.output.c, k[0], k[1], k[2], s[0], s[1], s[2], d[0], d[1], d[2], l[0],
        l[1], l[2], p.groups,
    ])
}

/// Transposed-convolution geometry: C D H W, out_c, k, stride, pad, out_pad, groups.
pub fn encode_conv_transpose(p: &ConvTransposeParams) -> [u8; 40] {
    let i = p.input;
    to_bytes([
        i.c, i.d, i.h, i.w, p.output.c, p.k, p.stride, p.pad, p.out_pad, p.groups,
    ])
}

/// Pooling geometry: C D H W, k, stride, pad, kind (0 max, 1 max-ceil, 2 average).
pub fn encode_pool(p: &PoolParams) -> [u8; 32] {
    let i = p.input;
    let kind = match p.kind {
        PoolKind::Max => 0,
        PoolKind::MaxCeil => 1,
        PoolKind::Average => 2,
    };
    to_bytes([i.c, i.d, i.h, i.w, p.k, p.stride, p.pad, kind])
}

/// Runs a convolution described by wire bytes on `kernels`.
pub fn conv<K: Kernels>(
    kernels: &K,
    geometry: &[u8],
    input: &[u8],
    weights: &[u8],
    quant: &[u8],
    out: &mut [u8],
) -> Status {
    let Some(w) = words::<18>(geometry) else {
        return Status::BadEncoding;
    };
    let mut run = || {
        let shape = Shape::new(w[0], w[1], w[2], w[3]);
        let p = ConvParams::new(
            shape,
            w[4],
            [w[5], w[6], w[7]],
            [w[8], w[9], w[10]],
            [w[11], w[12], w[13]],
            [w[14], w[15], w[16]],
            w[17],
        )?;
        let q = ChannelQuant::decode(quant, p.output.c)?;
        kernels.conv(&p, as_i8(input), as_i8(weights), &q, as_i8_mut(out))
    };
    Status::of(run())
}

/// Runs a transposed convolution described by wire bytes on `kernels`.
pub fn conv_transpose<K: Kernels>(
    kernels: &K,
    geometry: &[u8],
    input: &[u8],
    weights: &[u8],
    quant: &[u8],
    out: &mut [u8],
) -> Status {
    let Some(w) = words::<10>(geometry) else {
        return Status::BadEncoding;
    };
    let mut run = || {
        let shape = Shape::new(w[0], w[1], w[2], w[3]);
        let p = ConvTransposeParams::new(shape, w[4], w[5], w[6], w[7], w[8], w[9])?;
        let q = ChannelQuant::decode(quant, p.output.c)?;
        kernels.conv_transpose(&p, as_i8(input), as_i8(weights), &q, as_i8_mut(out))
    };
    Status::of(run())
}

/// Runs a pooling described by wire bytes on `kernels`.
pub fn pool<K: Kernels>(kernels: &K, geometry: &[u8], input: &[u8], out: &mut [u8]) -> Status {
    let Some(w) = words::<8>(geometry) else {
        return Status::BadEncoding;
    };
    let kind = match w[7] {
        0 => PoolKind::Max,
        1 => PoolKind::MaxCeil,
        2 => PoolKind::Average,
        _ => return Status::BadEncoding,
    };
    let mut run = || {
        let p = PoolParams::new(Shape::new(w[0], w[1], w[2], w[3]), w[4], w[5], w[6], kind)?;
        kernels.pool(&p, as_i8(input), as_i8_mut(out))
    };
    Status::of(run())
}

/// Runs a fully-connected layer (sizes come from the buffer lengths) on `kernels`.
pub fn fully_connected<K: Kernels>(
    kernels: &K,
    input: &[u8],
    weights: &[u8],
    quant: &[u8],
    out: &mut [u8],
) -> Status {
    let mut run = || {
        let q = ChannelQuant::decode(
            quant,
            u32::try_from(out.len()).map_err(|_| KernelError::TooLarge)?,
        )?;
        kernels.fully_connected(as_i8(input), as_i8(weights), &q, as_i8_mut(out))
    };
    Status::of(run())
}

/// Runs a matrix product (dims: M K N as three u32 words) on `kernels`.
pub fn matmul<K: Kernels>(
    kernels: &K,
    dims: &[u8],
    a: &[u8],
    b: &[u8],
    quant: &[u8],
    out: &mut [u8],
) -> Status {
    let Some(dims) = words::<3>(dims) else {
        return Status::BadEncoding;
    };
    let mut run = || {
        let q = PairQuant::decode(quant)?;
        kernels.matmul(dims, as_i8(a), as_i8(b), &q, as_i8_mut(out))
    };
    Status::of(run())
}

fn as_i8(bytes: &[u8]) -> &[i8] {
    smartvm_kernels::as_i8(bytes)
}

fn as_i8_mut(bytes: &mut [u8]) -> &mut [i8] {
    // SAFETY: u8 and i8 have the same size, alignment and validity; the borrow is carried over.
    unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut i8, bytes.len()) }
}

/// Views int8 data as mutable bytes (for handing an output buffer across the boundary).
pub fn as_u8_mut(values: &mut [i8]) -> &mut [u8] {
    // SAFETY: as in `as_i8_mut`.
    unsafe { core::slice::from_raw_parts_mut(values.as_mut_ptr() as *mut u8, values.len()) }
}
