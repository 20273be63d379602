//! SmartVM host functions.
//!
//! The heavy kernels cross into the node through the `kernel_host` runtime interface: the node
//! registers [`kernel_host::HostFunctions`] and runs them with the native SIMD + rayon kernels,
//! or on a GPU for big layers when [`backend`] is configured so;
//! the runtime calls them through [`HostKernels`]. Relay-chain validators do not have these
//! functions, so during `validate_block` the runtime swaps every `host_*` implementation for the
//! in-wasm kernels with [`use_wasm_kernels`] (DESIGN.md invariant 2). Both paths decode
//! the same wire bytes ([`wire`]) and the kernels agree to the bit, so state roots agree.
//!
//! The interface is a forever commitment of every node: small, versioned, byte-slice arguments,
//! an output buffer written in place, a status code back, and full validation on the host side.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod backend;
pub mod wire;

use alloc::vec::Vec;

use smartvm_kernels::{
    ChannelQuant, ConvParams, ConvTransposeParams, KernelError, Kernels, PairQuant, PoolParams,
};
use sp_runtime_interface::{
    pass_by::{PassFatPointerAndRead, PassFatPointerAndReadWrite},
    runtime_interface,
};

/// Native SmartVM kernels offered by the node (version 1).
#[runtime_interface]
pub trait KernelHost {
    /// Convolution; see [`wire::conv`].
    fn conv(
        geometry: PassFatPointerAndRead<&[u8]>,
        input: PassFatPointerAndRead<&[u8]>,
        weights: PassFatPointerAndRead<&[u8]>,
        quant: PassFatPointerAndRead<&[u8]>,
        out: PassFatPointerAndReadWrite<&mut [u8]>,
    ) -> u32 {
        crate::backend::guarded(
            out,
            |o| wire::conv(crate::backend::active(), geometry, input, weights, quant, o),
            |o| {
                wire::conv(
                    &smartvm_kernels::Reference,
                    geometry,
                    input,
                    weights,
                    quant,
                    o,
                )
            },
        ) as u32
    }

    /// Transposed convolution; see [`wire::conv_transpose`].
    fn conv_transpose(
        geometry: PassFatPointerAndRead<&[u8]>,
        input: PassFatPointerAndRead<&[u8]>,
        weights: PassFatPointerAndRead<&[u8]>,
        quant: PassFatPointerAndRead<&[u8]>,
        out: PassFatPointerAndReadWrite<&mut [u8]>,
    ) -> u32 {
        crate::backend::guarded(
            out,
            |o| wire::conv_transpose(crate::backend::active(), geometry, input, weights, quant, o),
            |o| {
                wire::conv_transpose(
                    &smartvm_kernels::Reference,
                    geometry,
                    input,
                    weights,
                    quant,
                    o,
                )
            },
        ) as u32
    }

    /// Pooling; see [`wire::pool`].
    fn pool(
        geometry: PassFatPointerAndRead<&[u8]>,
        input: PassFatPointerAndRead<&[u8]>,
        out: PassFatPointerAndReadWrite<&mut [u8]>,
    ) -> u32 {
        crate::backend::guarded(
            out,
            |o| wire::pool(crate::backend::active(), geometry, input, o),
            |o| wire::pool(&smartvm_kernels::Reference, geometry, input, o),
        ) as u32
    }

    /// Fully-connected layer; see [`wire::fully_connected`].
    fn fully_connected(
        input: PassFatPointerAndRead<&[u8]>,
        weights: PassFatPointerAndRead<&[u8]>,
        quant: PassFatPointerAndRead<&[u8]>,
        out: PassFatPointerAndReadWrite<&mut [u8]>,
    ) -> u32 {
        crate::backend::guarded(
            out,
            |o| wire::fully_connected(crate::backend::active(), input, weights, quant, o),
            |o| wire::fully_connected(&smartvm_kernels::Reference, input, weights, quant, o),
        ) as u32
    }

    /// Matrix product; see [`wire::matmul`].
    fn matmul(
        dims: PassFatPointerAndRead<&[u8]>,
        a: PassFatPointerAndRead<&[u8]>,
        b: PassFatPointerAndRead<&[u8]>,
        quant: PassFatPointerAndRead<&[u8]>,
        out: PassFatPointerAndReadWrite<&mut [u8]>,
    ) -> u32 {
        crate::backend::guarded(
            out,
            |o| wire::matmul(crate::backend::active(), dims, a, b, quant, o),
            |o| wire::matmul(&smartvm_kernels::Reference, dims, a, b, quant, o),
        ) as u32
    }
}

/// The kernels a runtime uses: every call goes through the `kernel_host` interface, i.e. to
/// the node's native kernels, or to the in-wasm kernels while [`use_wasm_kernels`] is active.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostKernels;

impl Kernels for HostKernels {
    fn conv(
        &self,
        p: &ConvParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let quant: Vec<u8> = q.encode();
        let code = kernel_host::conv(
            &wire::encode_conv(p),
            smartvm_kernels::as_u8(input),
            smartvm_kernels::as_u8(weights),
            &quant,
            wire::as_u8_mut(out),
        );
        wire::Status::into_result(code)
    }

    fn conv_transpose(
        &self,
        p: &ConvTransposeParams,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let code = kernel_host::conv_transpose(
            &wire::encode_conv_transpose(p),
            smartvm_kernels::as_u8(input),
            smartvm_kernels::as_u8(weights),
            &q.encode(),
            wire::as_u8_mut(out),
        );
        wire::Status::into_result(code)
    }

    fn pool(&self, p: &PoolParams, input: &[i8], out: &mut [i8]) -> Result<(), KernelError> {
        let code = kernel_host::pool(
            &wire::encode_pool(p),
            smartvm_kernels::as_u8(input),
            wire::as_u8_mut(out),
        );
        wire::Status::into_result(code)
    }

    fn fully_connected(
        &self,
        input: &[i8],
        weights: &[i8],
        q: &ChannelQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let code = kernel_host::fully_connected(
            smartvm_kernels::as_u8(input),
            smartvm_kernels::as_u8(weights),
            &q.encode(),
            wire::as_u8_mut(out),
        );
        wire::Status::into_result(code)
    }

    fn matmul(
        &self,
        dims: [u32; 3],
        a: &[i8],
        b: &[i8],
        q: &PairQuant,
        out: &mut [i8],
    ) -> Result<(), KernelError> {
        let mut dim_bytes = [0u8; 12];
        for (i, d) in dims.iter().enumerate() {
            dim_bytes[4 * i..4 * i + 4].copy_from_slice(&d.to_le_bytes());
        }
        let code = kernel_host::matmul(
            &dim_bytes,
            smartvm_kernels::as_u8(a),
            smartvm_kernels::as_u8(b),
            &q.encode(),
            wire::as_u8_mut(out),
        );
        wire::Status::into_result(code)
    }
}

/// Inside the wasm runtime: swaps every SmartVM host call for the in-wasm kernels until the
/// returned guard is dropped. `validate_block` holds it, so relay validators never call a host
/// function they do not have. Convolutions and fully connected layers run
/// [`smartvm_kernels::Scalar`] (the reference's arithmetic arranged for wasm without SIMD, equal
/// to it bit for bit), the rest the reference. Outside wasm it does nothing (the native build
/// calls the kernels directly).
#[cfg(substrate_runtime)]
pub fn use_wasm_kernels() -> WasmKernels {
    use smartvm_kernels::{Reference, Scalar};
    fn conv(g: &[u8], i: &[u8], w: &[u8], q: &[u8], o: &mut [u8]) -> u32 {
        wire::conv(&Scalar, g, i, w, q, o) as u32
    }
    fn conv_transpose(g: &[u8], i: &[u8], w: &[u8], q: &[u8], o: &mut [u8]) -> u32 {
        wire::conv_transpose(&Reference, g, i, w, q, o) as u32
    }
    fn pool(g: &[u8], i: &[u8], o: &mut [u8]) -> u32 {
        wire::pool(&Reference, g, i, o) as u32
    }
    fn fully_connected(i: &[u8], w: &[u8], q: &[u8], o: &mut [u8]) -> u32 {
        wire::fully_connected(&Scalar, i, w, q, o) as u32
    }
    fn matmul(d: &[u8], a: &[u8], b: &[u8], q: &[u8], o: &mut [u8]) -> u32 {
        wire::matmul(&Reference, d, a, b, q, o) as u32
    }
    WasmKernels(alloc::boxed::Box::new((
        kernel_host::host_conv.replace_implementation(conv),
        kernel_host::host_conv_transpose.replace_implementation(conv_transpose),
        kernel_host::host_pool.replace_implementation(pool),
        kernel_host::host_fully_connected.replace_implementation(fully_connected),
        kernel_host::host_matmul.replace_implementation(matmul),
    )))
}

/// While alive, SmartVM host calls run the in-wasm kernels; dropping it restores them.
#[cfg(substrate_runtime)]
pub struct WasmKernels(#[allow(dead_code)] alloc::boxed::Box<dyn core::any::Any>);
