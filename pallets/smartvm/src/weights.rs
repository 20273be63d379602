//! Weight functions of the pallet's calls.
//!
//! Until the frame-benchmarking results are generated for this pallet, `()` gives conservative
//! hand-set figures: storage reads and writes at RocksDB prices plus a per-byte cost.

use core::marker::PhantomData;

use polkadot_sdk::frame_support::weights::{constants::RocksDbWeight, Weight};

/// Weight functions needed by the pallet.
pub trait WeightInfo {
    /// `create_model` with a program of `n` bytes.
    fn create_model(n: u32) -> Weight;
    /// `put_weight_block` / `update_weight_block` with `n` bytes.
    fn put_weight_block(n: u32) -> Weight;
    /// `seal_model`.
    fn seal_model() -> Weight;
    /// `remove_model` with `b` stored blocks.
    fn remove_model(b: u32) -> Weight;
    /// The fixed part of `infer` for a program of `p` bytes and an input of `n` bytes; the VM's
    /// metered work is added on top.
    fn infer_base(p: u32, n: u32) -> Weight;
}

/// Hand-set weights for tests and until benchmarks are run.
pub struct SubstrateWeight<T>(PhantomData<T>);

const PER_BYTE: u64 = 2_000;

impl WeightInfo for () {
    fn create_model(n: u32) -> Weight {
        Weight::from_parts(50_000_000 + PER_BYTE * n as u64, 4_000 + n as u64)
            .saturating_add(RocksDbWeight::get().reads_writes(2, 3))
    }
    fn put_weight_block(n: u32) -> Weight {
        Weight::from_parts(40_000_000 + 2 * PER_BYTE * n as u64, 300_000 + n as u64)
            .saturating_add(RocksDbWeight::get().reads_writes(4, 3))
    }
    fn seal_model() -> Weight {
        Weight::from_parts(20_000_000, 4_000)
            .saturating_add(RocksDbWeight::get().reads_writes(1, 1))
    }
    fn remove_model(b: u32) -> Weight {
        Weight::from_parts(40_000_000, 4_000)
            .saturating_add(RocksDbWeight::get().reads_writes(3, 3))
            .saturating_add(RocksDbWeight::get().writes(b as u64))
    }
    fn infer_base(p: u32, n: u32) -> Weight {
        Weight::from_parts(
            30_000_000 + PER_BYTE * (p as u64 + n as u64),
            4_000 + p as u64,
        )
        .saturating_add(RocksDbWeight::get().reads(2))
    }
}

impl<T> WeightInfo for SubstrateWeight<T> {
    fn create_model(n: u32) -> Weight {
        <() as WeightInfo>::create_model(n)
    }
    fn put_weight_block(n: u32) -> Weight {
        <() as WeightInfo>::put_weight_block(n)
    }
    fn seal_model() -> Weight {
        <() as WeightInfo>::seal_model()
    }
    fn remove_model(b: u32) -> Weight {
        <() as WeightInfo>::remove_model(b)
    }
    fn infer_base(p: u32, n: u32) -> Weight {
        <() as WeightInfo>::infer_base(p, n)
    }
}
