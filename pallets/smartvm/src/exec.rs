//! Running a sealed model: weight blocks come from storage under a proof-size budget, the VM
//! meters the compute, and the outcome is converted to chain weight.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::cell::Cell;

use polkadot_sdk::frame_support::weights::Weight;
use polkadot_sdk::sp_runtime::traits::Get;
use smartvm_isa::{BlockInfo, Program};
use smartvm_vm::{execute, ErrorKind, Executable, WeightSource};

use crate::{Config, ModelId, WeightBlocks};

/// Proof bytes charged per weight block on top of its length: the storage key
/// (twox128 prefixes + hashed model and index) and trie nodes on the way to the value.
pub const PROOF_OVERHEAD_PER_BLOCK: u64 = 512;

/// Weight blocks of one model, read from storage while the proof budget lasts.
pub struct StorageWeights<'a, T: Config> {
    model: ModelId,
    manifest: &'a [BlockInfo],
    proof_left: Cell<u64>,
    proof_exhausted: Cell<bool>,
    _marker: core::marker::PhantomData<T>,
}

impl<T: Config> WeightSource for StorageWeights<'_, T> {
    fn block(&self, index: u32) -> Option<Cow<'_, [u8]>> {
        // The manifest gives the length before reading, so the budget is checked up front.
        let cost = self.manifest.get(index as usize)?.len as u64 + PROOF_OVERHEAD_PER_BLOCK;
        match self.proof_left.get().checked_sub(cost) {
            Some(left) => self.proof_left.set(left),
            None => {
                self.proof_exhausted.set(true);
                return None;
            }
        }
        WeightBlocks::<T>::get(self.model, index).map(|b| Cow::Owned(b.into_inner()))
    }
}

/// Why an inference did not produce an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InferFailure {
    /// The input length is not the program's input size.
    InputLength,
    /// The weight limit's compute part ran out.
    OutOfGas,
    /// The weight limit's proof-size part ran out before a weight block could be read.
    ProofSizeExhausted,
    /// A weight block the program needs is not in storage.
    MissingWeightBlock,
    /// A Buffer or Memory limit was hit.
    ResourceLimit,
    /// The program faulted (bad operand, shape mismatch, revert, ...).
    Fault(ErrorKind),
}

/// A successful inference.
#[derive(Clone, Debug, PartialEq, Eq, codec::Encode, codec::Decode, scale_info::TypeInfo)]
pub struct InferOutcome {
    /// Output elements.
    pub output: Vec<i8>,
    /// Index of the first largest output element.
    pub class: u32,
    /// Compute and proof size consumed by the VM.
    pub weight_used: Weight,
}

/// The failure and the weight consumed before it.
pub type InferError = (InferFailure, Weight);

/// Runs `program` of `model` on `input` within `weight_limit`.
pub fn run<T: Config>(
    model: ModelId,
    program: Program,
    input: &[u8],
    weight_limit: Weight,
) -> Result<InferOutcome, InferError> {
    if program.input.elements() != Some(input.len() as u64) {
        return Err((InferFailure::InputLength, Weight::zero()));
    }
    let manifest = program.blocks.clone();
    // Validated once by `create_model`; stored programs are immutable (see `Executable::validated`).
    let exe = Executable::validated(program);
    let per_gas = T::RefTimePerGas::get().max(1);
    let gas_limit = weight_limit.ref_time() / per_gas;
    let source = StorageWeights::<T> {
        model,
        manifest: &manifest,
        proof_left: Cell::new(weight_limit.proof_size()),
        proof_exhausted: Cell::new(false),
        _marker: Default::default(),
    };
    let mut vm_config = crate::limits::vm_config::<T>();
    // Every weight block read is a database read: price it as one, in gas.
    let db_read = T::DbWeight::get().reads(1).ref_time() / per_gas;
    vm_config.schedule.per_block = vm_config.schedule.per_block.max(db_read);
    let kernels = T::Kernels::default();
    let result = execute(
        &exe,
        smartvm_kernels::as_i8(input),
        &source,
        &kernels,
        &vm_config,
        gas_limit,
    );
    let proof_used = weight_limit.proof_size() - source.proof_left.get();
    match result {
        Ok(out) => {
            let class = smartvm_vm_argmax(&out.output);
            let weight_used = Weight::from_parts(out.gas_used.saturating_mul(per_gas), proof_used);
            Ok(InferOutcome {
                output: out.output,
                class,
                weight_used,
            })
        }
        Err(e) => {
            let failure = match e.kind {
                ErrorKind::OutOfGas => InferFailure::OutOfGas,
                ErrorKind::MissingWeightBlock { .. } if source.proof_exhausted.get() => {
                    InferFailure::ProofSizeExhausted
                }
                ErrorKind::MissingWeightBlock { .. } => InferFailure::MissingWeightBlock,
                ErrorKind::BufferLimit
                | ErrorKind::MemoryLimit
                | ErrorKind::LayerWeightsTooLarge => InferFailure::ResourceLimit,
                kind => InferFailure::Fault(kind),
            };
            // Charged what it consumed up to the fault (the whole limit when out of gas).
            let ref_time = e
                .gas_used
                .saturating_mul(per_gas)
                .min(weight_limit.ref_time());
            Err((failure, Weight::from_parts(ref_time, proof_used)))
        }
    }
}

fn smartvm_vm_argmax(values: &[i8]) -> u32 {
    values.iter().enumerate().fold(
        0usize,
        |best, (i, v)| if *v > values[best] { i } else { best },
    ) as u32
}
