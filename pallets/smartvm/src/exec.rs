//! Running a sealed model: weight blocks come from storage under a proof-size budget, the VM
//! meters the compute, and the outcome is converted to chain weight.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::cell::Cell;

use polkadot_sdk::frame_support::weights::Weight;
use polkadot_sdk::sp_runtime::traits::Get;
use smartvm_isa::{BlockInfo, Program};
use smartvm_vm::{
    execute, execute_slice, ErrorKind, Executable, Progress, Snapshot, Start, WeightSource,
};

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
    /// A job's slice: a read past the budget ends the slice instead of failing the run.
    pausable: bool,
    _marker: core::marker::PhantomData<T>,
}

impl<'a, T: Config> StorageWeights<'a, T> {
    fn new(model: ModelId, manifest: &'a [BlockInfo], proof: u64, pausable: bool) -> Self {
        StorageWeights {
            model,
            manifest,
            proof_left: Cell::new(proof),
            proof_exhausted: Cell::new(false),
            pausable,
            _marker: Default::default(),
        }
    }
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
        self.proof_exhausted.set(false);
        WeightBlocks::<T>::get(self.model, index).map(|b| Cow::Owned(b.into_inner()))
    }

    fn slice_spent(&self) -> bool {
        self.pausable && self.proof_exhausted.get()
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
    let source = StorageWeights::<T>::new(model, &manifest, weight_limit.proof_size(), false);
    let vm_config = chain_vm_config::<T>();
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
            let failure = failure_of(e.kind, source.proof_exhausted.get());
            // Charged what it consumed up to the fault (the whole limit when out of gas).
            let ref_time = e
                .gas_used
                .saturating_mul(per_gas)
                .min(weight_limit.ref_time());
            Err((failure, Weight::from_parts(ref_time, proof_used)))
        }
    }
}

/// The VM configuration of a run on chain: the pallet's bounds, and every weight block read
/// priced at least as one database read.
fn chain_vm_config<T: Config>() -> smartvm_vm::Config {
    let mut vm_config = crate::limits::vm_config::<T>();
    let db_read = T::DbWeight::get().reads(1).ref_time() / T::RefTimePerGas::get().max(1);
    vm_config.schedule.per_block = vm_config.schedule.per_block.max(db_read);
    vm_config
}

/// How a job's slice ended, when the run did not fail.
pub enum SliceEnd {
    /// The run finished.
    Done(InferOutcome),
    /// The slice's room is spent; the run goes on from this snapshot.
    Paused(alloc::boxed::Box<Snapshot>),
}

/// One slice of a job and the weight it used (the VM's work and the weight blocks it read).
pub struct Slice {
    /// Finished, paused, or failed.
    pub end: Result<SliceEnd, InferFailure>,
    /// Weight used by this slice.
    pub weight: Weight,
}

/// Runs one slice of a job of `model` from `state`, within `room` (gas from its ref_time,
/// weight bytes from its proof size) and the job's whole `weight_limit`.
pub(crate) fn run_slice<T: Config>(
    model: ModelId,
    program: Program,
    state: crate::jobs::JobState,
    weight_limit: Weight,
    room: Weight,
) -> Slice {
    let per_gas = T::RefTimePerGas::get().max(1);
    let manifest = program.blocks.clone();
    let exe = Executable::validated(program);
    let source = StorageWeights::<T>::new(model, &manifest, room.proof_size(), true);
    let mut vm_config = chain_vm_config::<T>();
    vm_config.fc_band = crate::limits::job_fc_band::<T>();
    let kernels = T::Kernels::default();
    let input;
    let (start, gas_before) = match state {
        crate::jobs::JobState::Input(bytes) => {
            if exe.program().input.elements() != Some(bytes.len() as u64) {
                let end = Err(InferFailure::InputLength);
                return Slice {
                    end,
                    weight: Weight::zero(),
                };
            }
            input = bytes;
            (Start::Input(smartvm_kernels::as_i8(&input)), 0)
        }
        crate::jobs::JobState::Paused(snapshot) => {
            let gas = snapshot.gas_used;
            (Start::Resume(snapshot), gas)
        }
    };
    let result = execute_slice(
        &exe,
        start,
        &source,
        &kernels,
        &vm_config,
        weight_limit.ref_time() / per_gas,
        room.ref_time() / per_gas,
    );
    let proof = room.proof_size() - source.proof_left.get();
    let weight = |gas_after: u64| {
        let ref_time = gas_after.saturating_sub(gas_before).saturating_mul(per_gas);
        Weight::from_parts(ref_time.min(room.ref_time()), proof)
    };
    match result {
        Ok(Progress::Done(out)) => Slice {
            weight: weight(out.gas_used),
            end: Ok(SliceEnd::Done(InferOutcome {
                class: smartvm_vm_argmax(&out.output),
                weight_used: Weight::from_parts(out.gas_used.saturating_mul(per_gas), 0),
                output: out.output,
            })),
        },
        Ok(Progress::Paused(snapshot)) => Slice {
            weight: weight(snapshot.gas_used),
            end: Ok(SliceEnd::Paused(alloc::boxed::Box::new(snapshot))),
        },
        Err(e) => Slice {
            weight: weight(e.gas_used),
            end: Err(failure_of(e.kind, source.proof_exhausted.get())),
        },
    }
}

/// The failure a VM error stands for on chain.
fn failure_of(kind: ErrorKind, proof_exhausted: bool) -> InferFailure {
    match kind {
        ErrorKind::OutOfGas => InferFailure::OutOfGas,
        ErrorKind::MissingWeightBlock { .. } if proof_exhausted => InferFailure::ProofSizeExhausted,
        ErrorKind::MissingWeightBlock { .. } => InferFailure::MissingWeightBlock,
        ErrorKind::BufferLimit | ErrorKind::MemoryLimit | ErrorKind::LayerWeightsTooLarge => {
            InferFailure::ResourceLimit
        }
        kind => InferFailure::Fault(kind),
    }
}

fn smartvm_vm_argmax(values: &[i8]) -> u32 {
    values.iter().enumerate().fold(
        0usize,
        |best, (i, v)| if *v > values[best] { i } else { best },
    ) as u32
}
