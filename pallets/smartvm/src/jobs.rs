//! Inference jobs: a run too large for one block (MobileNetV2, ResNet-18, AlexNet) advances a
//! slice per block from `on_initialize`, within the runtime's share of each block
//! ([`Config::JobShare`](crate::Config::JobShare)), and reads only the weight blocks each slice
//! needs (DESIGN.md invariant 7).
//!
//! Life of a job: `submit_job` holds the fee of its whole weight limit and stores the input →
//! every block, jobs in the queue advance in turn (the first served rotates, so several jobs
//! progress fairly), each slice paused at an instruction boundary or between the bands of a
//! large fully-connected layer and stored as a SCALE snapshot → `JobCompleted` (output, class,
//! weight used) or `JobFailed` (a typed [`JobError`]) → the fee of the weight used is burnt and
//! the rest released → the result stays queryable in [`Jobs`](crate::Jobs) until its owner
//! clears it or [`Config::JobResultTtl`](crate::Config::JobResultTtl) blocks pass.

use alloc::vec::Vec;

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use polkadot_sdk::frame_support::{
    pallet_prelude::*,
    traits::{
        fungible::MutateHold,
        tokens::{Fortitude, Precision},
    },
    weights::{WeightMeter, WeightToFee},
    BoundedVec, CloneNoBound, DebugNoBound, EqNoBound, PartialEqNoBound,
};
use polkadot_sdk::frame_system::pallet_prelude::BlockNumberFor;
use polkadot_sdk::sp_runtime::traits::{Saturating, Zero};
use scale_info::TypeInfo;
use smartvm_isa::Program;
use smartvm_vm::Snapshot;

use crate::exec::{self, SliceEnd};
use crate::weights::JobWeightInfo;
use crate::{
    BalanceOf, Config, Event, HoldReason, JobExpiries, JobQueue, JobStates, Jobs, ModelId, Models,
    Pallet, Programs,
};

/// Identifies a job.
pub type JobId = u64;

/// Why a job ended without an output.
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
pub enum JobError {
    /// The weight limit's compute part ran out.
    OutOfGas,
    /// The weight limit's proof-size part ran out.
    ProofSizeExhausted,
    /// The model was removed while the job ran.
    ModelRemoved,
    /// Governance changed the model's weights while the job ran (the job pins the version it
    /// was submitted against).
    WeightsChanged,
    /// The next step reads more (one layer's weight blocks with the job's state) than a whole
    /// block's share holds, so no block can ever advance it.
    TooLargeForBlock,
    /// The paused state outgrew `MaxJobStateLen`.
    StateTooLarge,
    /// The program hit the Buffer or Memory limit.
    ResourceLimit,
    /// A weight block the program reads is missing from storage.
    MissingWeightBlock,
    /// The program faulted (bad operand, shape mismatch, revert, ...).
    ExecutionFault,
    /// The output is longer than `MaxOutputLen`.
    OutputTooLarge,
    /// The owner cancelled it.
    Cancelled,
}

/// Where a job is.
#[derive(CloneNoBound, PartialEqNoBound, EqNoBound, DebugNoBound, Encode, Decode, TypeInfo)]
#[scale_info(skip_type_params(T))]
#[codec(mel_bound())]
pub enum JobStatus<T: Config> {
    /// In the queue; advances every block.
    Running,
    /// Finished with an output.
    Done {
        /// Output elements.
        output: BoundedVec<i8, T::MaxOutputLen>,
        /// Index of the first largest output element.
        class: u32,
    },
    /// Ended without an output.
    Failed(JobError),
}

impl<T: Config> MaxEncodedLen for JobStatus<T> {
    fn max_encoded_len() -> usize {
        1 + BoundedVec::<i8, T::MaxOutputLen>::max_encoded_len()
            + u32::max_encoded_len().max(JobError::max_encoded_len())
    }
}

/// A job's bookkeeping, kept after it ends as its result.
#[derive(
    CloneNoBound, PartialEqNoBound, EqNoBound, DebugNoBound, Encode, Decode, MaxEncodedLen, TypeInfo,
)]
#[scale_info(skip_type_params(T))]
#[codec(mel_bound())]
pub struct Job<T: Config> {
    /// Who submitted it and pays for it.
    pub owner: T::AccountId,
    /// The model it runs.
    pub model: ModelId,
    /// The model's version at submission: a change of weights ends the job.
    pub version: u32,
    /// The block it was submitted in.
    pub submitted: BlockNumberFor<T>,
    /// The block it ended in, once it has.
    pub finished: Option<BlockNumberFor<T>>,
    /// Most weight its slices may use in all.
    pub weight_limit: Weight,
    /// Weight its slices used so far: the VM's work and each slice's reading and writing of
    /// the program and the state.
    pub weight_used: Weight,
    /// The fee held at submission: that of `weight_limit`.
    pub prepaid: BalanceOf<T>,
    /// The storage deposit held for this record (and its state while it runs) until the
    /// result is cleared or expires: results cost their submitter, not the chain.
    pub deposit: BalanceOf<T>,
    /// Bytes of the model's stored program (read every slice).
    pub program_len: u32,
    /// Bytes of its stored state (read every slice).
    pub state_len: u32,
    /// Slices it ran (blocks in which it advanced).
    pub slices: u32,
    /// Running, done or failed.
    pub status: JobStatus<T>,
}

/// A job's state between blocks: its input before the first slice, then the VM's snapshot.
#[derive(Encode, Decode)]
pub(crate) enum JobState {
    Input(Vec<u8>),
    Paused(alloc::boxed::Box<Snapshot>),
}

/// Proof bytes of a slice beyond its job record (read first, see [`record_read`]), program,
/// state and weight blocks: the queue, the model record, the holds settled at the end, each
/// with its key and trie nodes.
pub(crate) fn step_proof_overhead<T: Config>() -> u64 {
    let records = crate::ModelInfoOf::<T>::max_encoded_len()
        + BoundedVec::<JobId, T::MaxJobs>::max_encoded_len();
    records as u64 + 8 * exec::PROOF_OVERHEAD_PER_BLOCK + 4096
}

/// Reading a job's record, which a turn does before it knows the rest of its cost.
pub(crate) fn record_read<T: Config>() -> Weight {
    let proof = Job::<T>::max_encoded_len() as u64 + exec::PROOF_OVERHEAD_PER_BLOCK;
    T::DbWeight::get().reads(1).set_proof_size(proof)
}

/// The weight a slice costs besides the VM's work, reserved before it runs: the benchmarked
/// step at the largest state it may write, and proof for the program and state it reads.
pub(crate) fn step_overhead<T: Config>(program_len: u32, state_len: u32) -> Weight {
    let ref_time = T::JobWeightInfo::job_step(program_len, T::MaxJobStateLen::get())
        .ref_time()
        .saturating_add(T::DbWeight::get().reads_writes(3, 6).ref_time());
    let proof = (program_len as u64)
        .saturating_add(state_len as u64)
        .saturating_add(step_proof_overhead::<T>());
    Weight::from_parts(ref_time, proof).saturating_add(record_read::<T>())
}

/// What one job's turn in a block came to.
pub(crate) enum Turn {
    /// Not enough of the block's share left to start its slice.
    NoRoom,
    /// It advanced, or waits for a block with more room.
    Continues,
    /// It ended (done or failed) and leaves the queue.
    Ended,
}

impl<T: Config> Pallet<T> {
    /// Advances queued jobs within `share`, the first one served rotating every block;
    /// returns the weight used, never more than `share`.
    pub fn advance_jobs(share: Weight) -> Weight {
        let db = T::DbWeight::get();
        let mut meter = WeightMeter::with_limit(share);
        // The queue and the cursor, read; both written back.
        if meter.try_consume(db.reads_writes(2, 2)).is_err() {
            return Weight::zero();
        }
        let mut queue = JobQueue::<T>::get();
        if queue.is_empty() {
            return db.reads(2);
        }
        // Ids grow with submission, so the queue is sorted: serving starts at the first job
        // at or after the cursor, and the cursor moves past it, whatever jobs end meanwhile.
        let len = queue.len();
        let cursor = crate::JobCursor::<T>::get();
        let start = queue.iter().position(|id| *id >= cursor).unwrap_or(0);
        let mut ended = Vec::new();
        for k in 0..len {
            let id = queue[(start + k) % len];
            match Self::take_turn(id, &mut meter, k == 0) {
                Turn::NoRoom => break,
                Turn::Continues => {}
                Turn::Ended => ended.push(id),
            }
        }
        crate::JobCursor::<T>::put(queue[start].saturating_add(1));
        if !ended.is_empty() {
            queue.retain(|id| !ended.contains(id));
            JobQueue::<T>::put(queue);
        }
        meter.consumed()
    }

    /// One job's slice. `first` is the job served first in this block, which gets the whole
    /// share: if that does not move it, no block ever will. A job served later that does not
    /// move waits for its turn to be first.
    fn take_turn(id: JobId, meter: &mut WeightMeter, first: bool) -> Turn {
        let read = record_read::<T>();
        if meter.try_consume(read).is_err() {
            return Turn::NoRoom;
        }
        let Some(mut job) = Jobs::<T>::get(id) else {
            return Turn::Ended;
        };
        // The record's read is part of the overhead, consumed already.
        let overhead = step_overhead::<T>(job.program_len, job.state_len).saturating_sub(read);
        // A turn starts only with room for a useful slice: an eighth of the share at least.
        let least = meter.limit().saturating_div(8);
        if !meter.can_consume(overhead.saturating_add(least)) {
            if first {
                // Its state and program alone fill a whole share: no block can ever move it.
                return Self::end_job(id, job, JobStatus::Failed(JobError::TooLargeForBlock));
            }
            return Turn::NoRoom;
        }
        meter.consume(overhead);
        let overhead = overhead.saturating_add(read);
        job.weight_used = job.weight_used.saturating_add(overhead);
        if !job.weight_limit.all_gte(job.weight_used) {
            let error = if job.weight_limit.ref_time() < job.weight_used.ref_time() {
                JobError::OutOfGas
            } else {
                JobError::ProofSizeExhausted
            };
            return Self::end_job(id, job, JobStatus::Failed(error));
        }
        let model = Models::<T>::get(job.model);
        let program = Programs::<T>::get(job.model).and_then(|bytes| Program::decode(&bytes).ok());
        let (model, program) = match (model, program) {
            (Some(model), Some(program)) => (model, program),
            _ => return Self::end_job(id, job, JobStatus::Failed(JobError::ModelRemoved)),
        };
        if model.version != job.version {
            return Self::end_job(id, job, JobStatus::Failed(JobError::WeightsChanged));
        }
        let stored = JobStates::<T>::get(id).unwrap_or_default();
        let Ok(state) = JobState::decode(&mut &stored[..]) else {
            return Self::end_job(id, job, JobStatus::Failed(JobError::ExecutionFault));
        };
        // The slice may use what is left of the block's share and of the job's own limit.
        let job_left = job.weight_limit.saturating_sub(job.weight_used);
        let share_left = meter.remaining();
        let room = share_left.min(job_left);
        let slice = exec::run_slice::<T>(job.model, program, state, job.weight_limit, room);
        meter.consume(slice.weight);
        job.weight_used = job.weight_used.saturating_add(slice.weight);
        match slice.end {
            Ok(SliceEnd::Done(outcome)) => match outcome.output.try_into() {
                Ok(output) => {
                    job.slices += 1;
                    let status = JobStatus::Done {
                        output,
                        class: outcome.class,
                    };
                    Self::end_job(id, job, status)
                }
                Err(_) => Self::end_job(id, job, JobStatus::Failed(JobError::OutputTooLarge)),
            },
            Ok(SliceEnd::Paused(snapshot)) => {
                let bytes = JobState::Paused(snapshot).encode();
                if bytes == stored.as_slice() {
                    // No progress: the next step does not fit the room it had. With a whole
                    // share that is final: the job's own limit was short, or no block fits it.
                    if !first {
                        Jobs::<T>::insert(id, job);
                        return Turn::Continues;
                    }
                    let error = if job_left.ref_time() < share_left.ref_time() {
                        JobError::OutOfGas
                    } else if job_left.proof_size() < share_left.proof_size() {
                        JobError::ProofSizeExhausted
                    } else {
                        JobError::TooLargeForBlock
                    };
                    return Self::end_job(id, job, JobStatus::Failed(error));
                }
                let Ok(state) = BoundedVec::<u8, T::MaxJobStateLen>::try_from(bytes) else {
                    return Self::end_job(id, job, JobStatus::Failed(JobError::StateTooLarge));
                };
                job.state_len = state.len() as u32;
                job.slices += 1;
                JobStates::<T>::insert(id, state);
                Self::deposit_event(Event::JobAdvanced {
                    job: id,
                    slices: job.slices,
                    weight_used: job.weight_used,
                });
                Jobs::<T>::insert(id, job);
                Turn::Continues
            }
            Err(failure) => {
                let error = match failure {
                    exec::InferFailure::OutOfGas => JobError::OutOfGas,
                    exec::InferFailure::ProofSizeExhausted => JobError::ProofSizeExhausted,
                    exec::InferFailure::MissingWeightBlock => JobError::MissingWeightBlock,
                    exec::InferFailure::ResourceLimit => JobError::ResourceLimit,
                    exec::InferFailure::InputLength | exec::InferFailure::Fault(_) => {
                        JobError::ExecutionFault
                    }
                };
                Self::end_job(id, job, JobStatus::Failed(error))
            }
        }
    }

    /// Ends a job: settles its fee, drops its state, keeps its result until its expiry and
    /// emits the terminal event.
    pub(crate) fn end_job(id: JobId, mut job: Job<T>, status: JobStatus<T>) -> Turn {
        let now = polkadot_sdk::frame_system::Pallet::<T>::block_number();
        let fee = Self::settle(&job);
        job.finished = Some(now);
        job.status = status.clone();
        JobStates::<T>::remove(id);
        let expiry = now.saturating_add(T::JobResultTtl::get());
        // At most `MaxJobs` jobs end in a block, so the list has room.
        let _ = JobExpiries::<T>::try_mutate(expiry, |ids| ids.try_push(id));
        let event = match status {
            JobStatus::Done { output, class } => Event::JobCompleted {
                job: id,
                model: job.model,
                version: job.version,
                who: job.owner.clone(),
                output,
                class,
                weight_used: job.weight_used,
                slices: job.slices,
                fee,
            },
            JobStatus::Failed(error) => Event::JobFailed {
                job: id,
                error,
                weight_used: job.weight_used,
                fee,
            },
            JobStatus::Running => Event::JobAdvanced {
                job: id,
                slices: job.slices,
                weight_used: job.weight_used,
            },
        };
        Jobs::<T>::insert(id, job);
        Self::deposit_event(event);
        Turn::Ended
    }

    /// Burns the fee of the weight a job used (at most what it prepaid) and releases the rest
    /// of its hold; returns the fee.
    fn settle(job: &Job<T>) -> BalanceOf<T> {
        let reason = HoldReason::JobPrepayment.into();
        let fee = T::WeightToFee::weight_to_fee(&job.weight_used).min(job.prepaid);
        let burnt = T::Currency::burn_held(
            &reason,
            &job.owner,
            fee,
            Precision::BestEffort,
            Fortitude::Force,
        )
        .unwrap_or_default();
        let _ = T::Currency::release(
            &reason,
            &job.owner,
            job.prepaid.saturating_sub(burnt),
            Precision::BestEffort,
        );
        burnt
    }

    /// Drops the results that expire at `now`, releasing their deposits; returns the weight
    /// used.
    pub fn expire_results(now: BlockNumberFor<T>) -> Weight {
        let ids = JobExpiries::<T>::take(now);
        for id in ids.iter() {
            if let Some(job) = Jobs::<T>::get(id).filter(|job| job.status != JobStatus::Running) {
                Self::drop_result(*id, &job);
            }
        }
        // Per result: its record read and removed, the owner's hold read and written.
        let n = ids.len() as u64;
        T::DbWeight::get().reads_writes(1 + 2 * n, 1 + 2 * n)
    }

    /// Removes an ended job's record and releases its deposit.
    pub(crate) fn drop_result(id: JobId, job: &Job<T>) {
        let _ = T::Currency::release(
            &HoldReason::JobResult.into(),
            &job.owner,
            job.deposit,
            Precision::BestEffort,
        );
        Jobs::<T>::remove(id);
    }

    /// Holds the deposit for a job's record: two items (the record, its expiry entry) and the
    /// record's largest encoding.
    pub(crate) fn hold_deposit(who: &T::AccountId) -> Result<BalanceOf<T>, DispatchError> {
        let bytes = Job::<T>::max_encoded_len() as u32;
        let deposit = T::DepositPerItem::get()
            .saturating_mul(2u32.into())
            .saturating_add(T::DepositPerByte::get().saturating_mul(bytes.into()));
        T::Currency::hold(&HoldReason::JobResult.into(), who, deposit)?;
        Ok(deposit)
    }

    /// Whether a job's fee can be held: used by `submit_job`.
    pub(crate) fn prepay(who: &T::AccountId, limit: Weight) -> Result<BalanceOf<T>, DispatchError> {
        let fee = T::WeightToFee::weight_to_fee(&limit);
        if !fee.is_zero() {
            T::Currency::hold(&HoldReason::JobPrepayment.into(), who, fee)?;
        }
        Ok(fee)
    }
}
