//! Stored types: what the chain remembers about a model.

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
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
