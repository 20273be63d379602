//! Stored types: what the chain remembers about a model.

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use polkadot_sdk::frame_support::weights::Weight;
use polkadot_sdk::sp_core::H256;
use scale_info::TypeInfo;

/// Identifies a model.
pub type ModelId = u32;

/// Where a model is in its life.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Encode,
    Decode,
    DecodeWithMemTracking,
    MaxEncodedLen,
    TypeInfo,
)]
pub enum ModelStatus {
    /// Blocks are still being uploaded by the owner; it cannot be inferred yet.
    Draft,
    /// Complete and frozen; only `UpdateOrigin` may change its weights.
    Sealed,
}

/// A model's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, MaxEncodedLen, TypeInfo)]
pub struct ModelInfo<AccountId, Balance> {
    /// Who created it and pays its deposit.
    pub owner: AccountId,
    /// BLAKE2b-256 of the program container.
    pub program_hash: H256,
    /// Bumped by every governance update of its weights.
    pub version: u32,
    /// Draft or sealed.
    pub status: ModelStatus,
    /// Input tensor shape C, D, H, W.
    pub input_shape: [u32; 4],
    /// Output elements.
    pub output_len: u32,
    /// Weight blocks the program's manifest lists.
    pub block_count: u32,
    /// Weight blocks uploaded so far.
    pub blocks_present: u32,
    /// Deposit held on the owner for the stored bytes.
    pub deposit: Balance,
}

/// What a run costs, for a client choosing between `infer` and `submit_job`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, TypeInfo)]
pub struct InferCost {
    /// Weight of the VM's work (compute and weight blocks read): `infer`'s `weight_used`.
    pub weight: Weight,
    /// What an `infer` transaction of it would be charged: its fixed part and `weight`.
    pub infer_weight: Weight,
    /// Whether `infer_weight` fits one normal transaction of a block.
    pub fits_one_block: bool,
    /// Blocks a job of it takes at most, each slice paying its overhead at the largest state.
    pub job_blocks: u32,
    /// A weight limit that covers it as a job: the work, each slice's overhead, 10 % margin.
    pub job_weight_limit: Weight,
}
