//! The relay-validator path (DESIGN.md invariant 2).
//!
//! `register_validate_block!` runs blocks through this executor only inside `validate_block`,
//! the entry point relay-chain validators call with the standard host functions alone. While a
//! block executes here, every `kernel_host` call is redirected to the in-wasm kernels (the
//! wasm-tuned scalar conv and FC, the reference for the rest), which give the same bytes as
//! the node's native ones, so the state root the collator claimed
//! is reproduced without our host function. Ordinary block import (`Core::execute_block`) keeps
//! the fast native path.

use core::marker::PhantomData;

use polkadot_sdk::frame_support::traits::ExecuteBlock;
use polkadot_sdk::sp_runtime::traits::Block as BlockT;

/// Wraps a block executor so that the block runs with the in-wasm kernels.
pub struct WasmKernelsDuringValidation<Inner>(PhantomData<Inner>);

impl<Block: BlockT, Inner: ExecuteBlock<Block>> ExecuteBlock<Block>
    for WasmKernelsDuringValidation<Inner>
{
    fn verify_and_remove_seal(block: &mut Block::LazyBlock) {
        Inner::verify_and_remove_seal(block);
    }

    fn execute_verified_block(block: Block::LazyBlock) {
        #[cfg(substrate_runtime)]
        let _wasm_kernels = smartvm_host::use_wasm_kernels();
        Inner::execute_verified_block(block);
    }
}
