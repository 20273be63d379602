//! Every bound of the VM and the pallet in one place, with the runtime memory each implies.
//!
//! A relay-chain validator re-executes each parachain block in wasm with a fixed heap
//! ([`VALIDATOR_HEAP`]) whose allocator refuses any single allocation above
//! [`MAX_ALLOCATION`] and hands out power-of-two size classes. A transaction that makes the
//! runtime allocate past either traps: no fee is paid and the collator's work is lost. So the
//! configured bounds are turned here into the allocations they allow, each rounded up to its
//! size class, and [`check`] (run by `integrity_test` when a runtime is built and by the tests)
//! refuses a configuration whose largest allocation or whose peak does not fit.

use alloc::vec::Vec;

use polkadot_sdk::frame_support::traits::Get;
use smartvm_vm::{Config as VmConfig, CNN_GAS_RECORD_LIMIT};

use crate::Config;

/// The runtime's single-allocation cap: the wasm allocator refuses anything larger.
pub const MAX_ALLOCATION: u64 = 32 << 20;

/// The heap a relay-chain validator gives a parachain block's validation: polkadot's PVF
/// executor sets 32 + 2048 wasm pages of 64 KiB (`DEFAULT_HEAP_PAGES_ESTIMATE` +
/// `EXTRA_HEAP_PAGES` in `polkadot-node-core-pvf-common`).
pub const VALIDATOR_HEAP: u64 = (32 + 2048) * 64 * 1024;

/// The most proof (PoV) a validator holds for one block: polkadot's `MAX_POV_SIZE`.
pub const RELAY_MAX_POV: u64 = 10 << 20;

/// Share of [`VALIDATOR_HEAP`] one inference's peak may take: the rest is for the block's
/// extrinsics, the rest of the runtime and the allocator's fragmentation.
pub const HEAP_SHARE_PERCENT: u64 = 75;

/// Most weight bytes one band of a fully-connected layer reads in a job: a quarter of the jobs'
/// proof share (within 4 KiB and 1 MiB), so a band's blocks fit one block with the job's state
/// and a slice can end between bands: AlexNet's fc6 (37.7 MB) runs over several blocks. Output
/// and gas do not depend on it.
pub fn job_fc_band<T: Config>() -> u32 {
    (T::JobShare::get().proof_size() / 4).clamp(4 << 10, 1 << 20) as u32
}

/// The VM configuration an inference runs with: the pallet's bounds, default prices.
pub fn vm_config<T: Config>() -> VmConfig {
    VmConfig {
        max_memory: T::MaxMemoryBytes::get(),
        max_buffer: T::MaxBufferBytes::get(),
        ..VmConfig::default()
    }
}

/// One thing an inference or an upload keeps in the runtime heap at its peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// What it is and which bound sets it.
    pub what: &'static str,
    /// The largest single allocation it makes, before rounding.
    pub largest: u64,
    /// What it may hold at once, counted in the allocator's size classes.
    pub peak: u64,
}

/// The allocator's size class for `bytes`: the next power of two.
fn class(bytes: u64) -> u64 {
    bytes.max(8).next_power_of_two()
}

/// A single buffer of `bytes` that may grow by reallocation: the old and the new copy coexist
/// while it moves, so it can hold two size classes at once.
fn growing(what: &'static str, bytes: u64) -> Allocation {
    Allocation {
        what,
        largest: bytes,
        peak: class(bytes) + class(bytes / 2 + 1),
    }
}

fn fixed(what: &'static str, bytes: u64) -> Allocation {
    Allocation {
        what,
        largest: bytes,
        peak: class(bytes),
    }
}

/// The allocations one `infer` (or dry run) may hold at once under `T`'s bounds.
pub fn inference<T: Config>() -> Vec<Allocation> {
    let vm = vm_config::<T>();
    let program = T::MaxProgramLen::get() as u64;
    let block = T::MaxBlockLen::get() as u64;
    let buffer = vm.max_buffer as u64;
    let proof = T::BlockWeights::get()
        .max_block
        .proof_size()
        .min(RELAY_MAX_POV);
    alloc::vec![
        fixed("input (MaxInputLen)", T::MaxInputLen::get() as u64),
        // The stored bytes, and the decoded container's copy of the code.
        Allocation {
            what: "program: stored bytes and decoded code (MaxProgramLen)",
            largest: program,
            peak: 2 * class(program),
        },
        fixed("jump table, a byte per code byte (MaxProgramLen)", program),
        growing("VM Memory (MaxMemoryBytes)", vm.max_memory as u64),
        // Frames are separate allocations; each may waste up to half its class, so the frames
        // within MaxBufferBytes may take twice that.
        Allocation {
            what: "Buffer frames, output under construction included (MaxBufferBytes)",
            largest: buffer,
            peak: 2 * class(buffer),
        },
        // Dropped frames kept for later layers' outputs: separate allocations, each wasting
        // up to half its class, as the frames.
        Allocation {
            what: "Buffer spares: dropped frames kept for reuse (twice the peak, 4 MiB)",
            largest: smartvm_vm::Buffer::most_spare_bytes(buffer),
            peak: 2 * class(smartvm_vm::Buffer::most_spare_bytes(buffer)),
        },
        fixed(
            "one layer's weights gathered from storage (VM weight_chunk)",
            vm.weight_chunk as u64
        ),
        // A block read from storage arrives as a host-allocated copy, then its bounded vector.
        Allocation {
            what: "a weight block or qblock as read and decoded (MaxBlockLen)",
            largest: block,
            peak: 3 * class(block),
        },
        growing(
            "per-CNN-instruction gas record (CNN_GAS_RECORD_LIMIT entries)",
            CNN_GAS_RECORD_LIMIT as u64 * core::mem::size_of::<(smartvm_isa::Opcode, u64)>() as u64
        ),
        fixed("the block's storage proof (PoV)", proof),
    ]
}

/// The allocations `create_model`'s validation may hold at once: the decoded instructions and
/// the per-instruction tables of [`smartvm_isa::validate`].
pub fn upload<T: Config>() -> Vec<Allocation> {
    let program = T::MaxProgramLen::get() as u64;
    let per_instruction = core::mem::size_of::<smartvm_isa::code::Instruction>() as u64;
    alloc::vec![
        fixed("program container (MaxProgramLen)", program),
        growing("decoded instructions", program * per_instruction),
        fixed("pc to instruction index", 4 * program),
        fixed(
            "static jump targets",
            program * core::mem::size_of::<Option<usize>>() as u64
        ),
        fixed(
            "jump destinations",
            program * core::mem::size_of::<Option<i64>>() as u64
        ),
        fixed("stack heights", 4 * program),
    ]
}

/// Sum of the peaks.
pub fn total(allocations: &[Allocation]) -> u64 {
    allocations.iter().map(|a| a.peak).sum()
}

/// Why a configuration does not fit the validators' heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitError {
    /// One allocation exceeds [`MAX_ALLOCATION`].
    AllocationTooLarge(Allocation),
    /// The peak exceeds [`HEAP_SHARE_PERCENT`] of [`VALIDATOR_HEAP`].
    PeakTooLarge { peak: u64, budget: u64 },
    /// An input of `MaxInputLen` does not fit the VM's Memory (it is placed there first).
    InputExceedsMemory,
}

/// The allocations a job's slice may hold at once: an inference's, and the state read, decoded
/// and encoded again.
pub fn job<T: Config>() -> Vec<Allocation> {
    let state = T::MaxJobStateLen::get() as u64;
    let mut all = inference::<T>();
    all.push(fixed("job state as read (MaxJobStateLen)", state));
    all.push(growing(
        "job state encoded after the slice (MaxJobStateLen)",
        state,
    ));
    all
}

/// Why a job share does not fit the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobShareError {
    /// The share's proof exceeds [`JOB_PROOF_SHARE_PERCENT`] of the relay's PoV limit.
    ProofTooLarge { share: u64, most: u64 },
    /// The share exceeds the block's own limit.
    ExceedsBlock,
    /// A slice of the largest state and program leaves no room for work.
    NoRoomForWork,
    /// An input of `MaxInputLen` does not fit a job's state (`MaxJobStateLen`).
    InputExceedsState,
}

/// Most of the relay chain's PoV limit the jobs' share may take: the rest is for the block's
/// transactions and inherents.
pub const JOB_PROOF_SHARE_PERCENT: u64 = 50;

/// Checks the job share: within the block, at most half the relay's PoV, and large enough for
/// a slice of the largest program and state to do work.
pub fn check_jobs<T: Config>() -> Result<(), JobShareError> {
    let share = T::JobShare::get();
    // A job's first state is its input, SCALE-encoded with a tag and a length prefix.
    if T::MaxInputLen::get().saturating_add(16) > T::MaxJobStateLen::get() {
        return Err(JobShareError::InputExceedsState);
    }
    let most = RELAY_MAX_POV * JOB_PROOF_SHARE_PERCENT / 100;
    if share.proof_size() > most {
        return Err(JobShareError::ProofTooLarge {
            share: share.proof_size(),
            most,
        });
    }
    if share.any_gt(T::BlockWeights::get().max_block) {
        return Err(JobShareError::ExceedsBlock);
    }
    let overhead =
        crate::jobs::step_overhead::<T>(T::MaxProgramLen::get(), T::MaxJobStateLen::get());
    let least = share.saturating_div(8);
    if overhead.saturating_add(least).any_gt(share) {
        return Err(JobShareError::NoRoomForWork);
    }
    let budget = VALIDATOR_HEAP * HEAP_SHARE_PERCENT / 100;
    let allocations = job::<T>();
    if allocations.iter().any(|a| a.largest > MAX_ALLOCATION) || total(&allocations) > budget {
        return Err(JobShareError::NoRoomForWork);
    }
    Ok(())
}

/// Checks `T`'s bounds against the validators' heap.
pub fn check<T: Config>() -> Result<(), LimitError> {
    if T::MaxInputLen::get() > T::MaxMemoryBytes::get() {
        return Err(LimitError::InputExceedsMemory);
    }
    let budget = VALIDATOR_HEAP * HEAP_SHARE_PERCENT / 100;
    for allocations in [inference::<T>(), upload::<T>()] {
        if let Some(a) = allocations.iter().find(|a| a.largest > MAX_ALLOCATION) {
            return Err(LimitError::AllocationTooLarge(*a));
        }
        let peak = total(&allocations);
        if peak > budget {
            return Err(LimitError::PeakTooLarge { peak, budget });
        }
    }
    Ok(())
}
