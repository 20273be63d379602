//! The `SmartvmApi` runtime API: free, read-only access for clients.

use alloc::vec::Vec;

use polkadot_sdk::frame_support::weights::Weight;
use polkadot_sdk::sp_runtime::DispatchError;

use crate::{InferCost, InferOutcome, ModelId, ModelInfo};

polkadot_sdk::sp_api::decl_runtime_apis! {
    /// Dry-run inference and model metadata, without a transaction or a fee.
    /// Version 2 adds `cost`.
    #[api_version(2)]
    pub trait SmartvmApi<AccountId, Balance> where
        AccountId: codec::Codec,
        Balance: codec::Codec,
    {
        /// Runs a sealed model on `input` within `weight_limit`; nothing is stored, no event.
        fn infer(model: ModelId, input: Vec<u8>, weight_limit: Weight) -> Result<InferOutcome, DispatchError>;
        /// As `infer`, but with the in-wasm kernels that relay-chain validators run instead of
        /// the node's native ones: checks that both paths agree and times the validators' path.
        fn infer_with_wasm_kernels(model: ModelId, input: Vec<u8>, weight_limit: Weight) -> Result<InferOutcome, DispatchError>;
        /// A model's bookkeeping, if it exists.
        fn model(model: ModelId) -> Option<ModelInfo<AccountId, Balance>>;
        /// What a run of `model` on `input` costs, and whether it fits one `infer` or must be
        /// submitted as a job (with an estimate of its blocks and a weight limit that covers it).
        #[api_version(2)]
        fn cost(model: ModelId, input: Vec<u8>) -> Result<InferCost, DispatchError>;
    }
}
