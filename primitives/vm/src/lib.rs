//! The SmartVM interpreter.
//!
//! A stack machine in the spirit of the EVM (64-bit words, byte-addressed Memory that only
//! grows) extended with the paper's elastic **Buffer**: a stack of int8 feature-map frames that
//! CNN instructions pop and push, so only live tensors occupy memory (paper §3.3). Everything
//! is metered; every fault is a typed [`VmError`]; nothing panics on any input.
//!
//! The interpreter is generic over the [`Kernels`](smartvm_kernels::Kernels) backend (reference
//! in wasm, native through a host function, GPU) and a [`WeightSource`] (an in-memory pack,
//! chain storage in the pallet, or with `std` a read-ahead thread in front of a slow source).
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod bench_programs;
mod buffer;
mod cnn;
mod error;
pub mod gas;
mod interpreter;
mod memory;
mod packed_layers;
#[cfg(feature = "std")]
mod prefetch;
mod weights;

pub use buffer::{Buffer, Frame};
pub use cnn::PartialLayer;
pub use error::{ErrorKind, VmError};
pub use gas::{KernelClass, Schedule, Work, WorkPrice};
pub use interpreter::{
    execute, execute_slice, execute_slice_packed, Executable, Outcome, Progress, Snapshot, Start,
    CNN_GAS_RECORD_LIMIT,
};
pub use packed_layers::PackedLayers;
#[cfg(feature = "std")]
pub use prefetch::{with_read_ahead, ReadAhead};
pub use weights::{BlockList, ByteBudget, WeightPack, WeightSource};

/// Resource limits of one execution, checked as the program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most bytes Memory may grow to.
    pub max_memory: u32,
    /// Most bytes all Buffer frames may hold at once (BUF_INIT may lower it, never raise it).
    pub max_buffer: u32,
    /// Most frames the Buffer may hold at once.
    pub max_frames: u32,
    /// Most weight bytes a fully-connected layer reads at once from a source that cannot lend
    /// the whole layer in place (chain storage): a larger layer (AlexNet's fc6, 37.7 MB) runs a
    /// band of output rows at a time, so the wasm runtime never asks for one allocation near its
    /// 32 MiB ceiling. Output and gas are the same either way.
    pub weight_chunk: u32,
    /// Most weight bytes one band of a banded fully-connected layer reads (at most
    /// `weight_chunk`): a chain job lowers it so that a band fits one block's share of proof,
    /// and a slice can end between bands. Output and gas are the same for every band size.
    pub fc_band: u32,
    /// Prices.
    pub schedule: Schedule,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_memory: 16 << 20,
            max_buffer: 64 << 20,
            max_frames: 64,
            weight_chunk: 8 << 20,
            fc_band: 8 << 20,
            schedule: Schedule::default(),
        }
    }
}
