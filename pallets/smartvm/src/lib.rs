//! # SmartVM pallet
//!
//! Stores DNN programs (SmartVM bytecode with a weight-block manifest) and their weights as
//! blocks in chain storage, and runs them on request with metered, deterministic integer
//! arithmetic. The heavy kernels go through [`Config::Kernels`]: the node's native host
//! functions in a runtime, the in-wasm reference kernels in tests and validators.
//!
//! Life of a model: `create_model` (validated program, deposit held) → `put_weight_block` for
//! every manifest entry (checked against its hash) → `seal_model` → `infer` by anyone.
//! Sealed weights change only through `T::UpdateOrigin` (`update_weight_block`, which bumps the
//! version). `remove_model` releases the deposit at once and queues the weight blocks, which
//! `on_idle` deletes as far as each block's spare weight allows (any model size can be removed).
//!
//! A run larger than one block goes through `submit_job` instead of `infer`: it prepays its
//! weight limit and advances a slice per block from `on_initialize` within `JobShare` (see
//! [`jobs`]).
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
pub mod exec;
pub mod jobs;
pub mod limits;
pub mod runtime_api;
mod types;
/// The programs the VM benchmarks time (moved to the VM crate so the CLI can fit prices to them).
pub use smartvm_vm::bench_programs as vm_programs;
pub mod weights;

#[cfg(test)]
mod job_tests;
/// The test runtime, public with `fuzzing` so the pallet fuzzer drives the same one.
#[cfg(any(test, feature = "fuzzing"))]
pub mod mock;
#[cfg(test)]
mod tests;

pub use exec::{InferFailure, InferOutcome};
pub use jobs::{Job, JobError, JobId, JobStatus};
pub use pallet::*;
pub use types::{InferCost, ModelId, ModelInfo, ModelStatus};
pub use weights::{JobWeightInfo, WeightInfo};

#[polkadot_sdk::frame_support::pallet]
pub mod pallet {
    use super::*;
    use alloc::vec::Vec;
    use polkadot_sdk::frame_support::{
        dispatch::{DispatchErrorWithPostInfo, DispatchResultWithPostInfo, PostDispatchInfo},
        pallet_prelude::*,
        traits::{
            fungible::{Inspect, Mutate, MutateHold},
            tokens::Precision,
        },
        weights::WeightToFee,
    };
    use polkadot_sdk::frame_system::{self, pallet_prelude::*};
    use polkadot_sdk::sp_core::H256;
    use polkadot_sdk::sp_runtime::traits::Saturating;
    use smartvm_isa::{block_hash, validate, Program};

    /// Balance type of the deposit currency.
    pub type BalanceOf<T> =
        <<T as Config>::Currency as Inspect<<T as frame_system::Config>::AccountId>>::Balance;

    /// A stored model's bookkeeping.
    pub type ModelInfoOf<T> = ModelInfo<<T as frame_system::Config>::AccountId, BalanceOf<T>>;

    /// The storage layout's version: a change to it comes with a migration that bumps this.
    pub const STORAGE_VERSION: StorageVersion = StorageVersion::new(1);

    #[pallet::pallet]
    #[pallet::storage_version(STORAGE_VERSION)]
    pub struct Pallet<T>(_);

    #[pallet::hooks]
    impl<T: Config> Hooks<BlockNumberFor<T>> for Pallet<T> {
        /// Drops expired job results, then advances the queued jobs within `JobShare`: a hook
        /// that runs in every block, so no load of transactions can starve a job.
        fn on_initialize(n: BlockNumberFor<T>) -> Weight {
            Self::expire_results(n).saturating_add(Self::advance_jobs(T::JobShare::get()))
        }

        /// Deletes queued weight blocks of removed models within the block's spare weight.
        fn on_idle(_n: BlockNumberFor<T>, remaining: Weight) -> Weight {
            Self::drain_deletions(remaining)
        }

        /// The storage invariants, checked by `try-runtime` around upgrades (see `do_try_state`).
        #[cfg(feature = "try-runtime")]
        fn try_state(
            _n: BlockNumberFor<T>,
        ) -> Result<(), polkadot_sdk::sp_runtime::TryRuntimeError> {
            Self::do_try_state()
        }

        /// Checks at build time that the bounds fit the validators' wasm heap: no allocation
        /// past the 32 MiB cap, a peak within the heap, the input within the VM's Memory
        /// (see [`limits`]).
        fn integrity_test() {
            if let Err(e) = limits::check::<T>() {
                panic!("pallet-smartvm bounds do not fit the validators' heap: {e:?}");
            }
            assert!(T::RefTimePerGas::get() > 0, "gas must cost ref_time");
            if let Err(e) = limits::check_jobs::<T>() {
                panic!("pallet-smartvm's job share does not fit: {e:?}");
            }
        }
    }

    #[pallet::config]
    pub trait Config: polkadot_sdk::frame_system::Config {
        /// Holds of this pallet, aggregated by the runtime.
        type RuntimeHoldReason: From<HoldReason>;
        /// Pays the storage deposits.
        type Currency: Mutate<Self::AccountId>
            + MutateHold<Self::AccountId, Reason = Self::RuntimeHoldReason>;
        /// Governance: may update the weights of sealed models and remove any model.
        type UpdateOrigin: EnsureOrigin<Self::RuntimeOrigin>;
        /// Kernel backend: host functions in a runtime, reference kernels in tests.
        type Kernels: smartvm_kernels::Kernels + Default;
        /// Deposit per stored item (model, program, block).
        #[pallet::constant]
        type DepositPerItem: Get<BalanceOf<Self>>;
        /// Deposit per stored byte.
        #[pallet::constant]
        type DepositPerByte: Get<BalanceOf<Self>>;
        /// Largest program container.
        #[pallet::constant]
        type MaxProgramLen: Get<u32>;
        /// Largest weight block.
        #[pallet::constant]
        type MaxBlockLen: Get<u32>;
        /// Most weight blocks per model.
        #[pallet::constant]
        type MaxBlocks: Get<u32>;
        /// Largest inference input.
        #[pallet::constant]
        type MaxInputLen: Get<u32>;
        /// Largest inference output kept in the event.
        #[pallet::constant]
        type MaxOutputLen: Get<u32>;
        /// Most bytes the VM's Buffer may hold during one inference.
        #[pallet::constant]
        type MaxBufferBytes: Get<u32>;
        /// Most bytes the VM's Memory may grow to during one inference.
        #[pallet::constant]
        type MaxMemoryBytes: Get<u32>;
        /// Picoseconds of `ref_time` one unit of VM gas stands for.
        #[pallet::constant]
        type RefTimePerGas: Get<u64>;
        /// Most weight one free dry run (the `SmartvmApi` runtime API) may use: larger limits
        /// are lowered to it, so one RPC call cannot ask a node for unbounded work.
        #[pallet::constant]
        type MaxDryRunWeight: Get<Weight>;
        /// Weights of the calls.
        type WeightInfo: WeightInfo;
        /// Converts a job's weight limit into the fee it prepays (the runtime's transaction fee
        /// for the same weight).
        type WeightToFee: WeightToFee<Balance = BalanceOf<Self>>;
        /// Most weight the jobs may use in one block (`on_initialize`): sized so that ordinary
        /// transactions keep their share and each block's proof stays well under the relay
        /// chain's PoV limit.
        #[pallet::constant]
        type JobShare: Get<Weight>;
        /// Most weight one job may be submitted with.
        #[pallet::constant]
        type MaxJobWeight: Get<Weight>;
        /// Most jobs running at once.
        #[pallet::constant]
        type MaxJobs: Get<u32>;
        /// Largest stored state of a paused job (the VM's SCALE snapshot).
        #[pallet::constant]
        type MaxJobStateLen: Get<u32>;
        /// Blocks a finished job's result stays queryable unless its owner clears it first.
        #[pallet::constant]
        type JobResultTtl: Get<BlockNumberFor<Self>>;
        /// Weights of the job calls and of a job's slice.
        type JobWeightInfo: JobWeightInfo;
    }

    /// Reasons this pallet holds funds.
    #[pallet::composite_enum]
    pub enum HoldReason {
        /// Deposit for a model's stored program and weight blocks.
        #[codec(index = 0)]
        ModelStorage,
        /// The fee of a job's weight limit, held until it ends.
        #[codec(index = 1)]
        JobPrepayment,
        /// Deposit for a job's record, held until its result is cleared or expires.
        #[codec(index = 2)]
        JobResult,
    }

    /// The id the next model gets.
    #[pallet::storage]
    pub type NextModelId<T> = StorageValue<_, ModelId, ValueQuery>;

    /// Models by id.
    #[pallet::storage]
    pub type Models<T: Config> = StorageMap<_, Blake2_128Concat, ModelId, ModelInfoOf<T>>;

    /// Program containers by model.
    #[pallet::storage]
    pub type Programs<T: Config> =
        StorageMap<_, Blake2_128Concat, ModelId, BoundedVec<u8, T::MaxProgramLen>>;

    /// Weight blocks by (model, block index): one storage value per block (paper §3.4).
    #[pallet::storage]
    pub type WeightBlocks<T: Config> = StorageDoubleMap<
        _,
        Blake2_128Concat,
        ModelId,
        Twox64Concat,
        u32,
        BoundedVec<u8, T::MaxBlockLen>,
    >;

    /// Removed models whose weight blocks are still being deleted, with how many blocks each
    /// may still hold. Drained by `on_idle`; one entry per removed model, which paid its deposit.
    #[pallet::storage]
    pub type DeletionQueue<T: Config> = StorageMap<_, Twox64Concat, ModelId, u32>;

    /// The id the next job gets.
    #[pallet::storage]
    pub type NextJobId<T> = StorageValue<_, JobId, ValueQuery>;

    /// Jobs by id: running ones, and finished ones until cleared or expired (their result).
    #[pallet::storage]
    pub type Jobs<T: Config> = StorageMap<_, Twox64Concat, JobId, Job<T>>;

    /// A running job's state: its input, then the VM's SCALE snapshot.
    #[pallet::storage]
    pub type JobStates<T: Config> =
        StorageMap<_, Twox64Concat, JobId, BoundedVec<u8, T::MaxJobStateLen>>;

    /// Running jobs, in submission order.
    #[pallet::storage]
    pub type JobQueue<T: Config> = StorageValue<_, BoundedVec<JobId, T::MaxJobs>, ValueQuery>;

    /// The job the next block serves first (the first queued at or after this id): it moves
    /// past the job served first in each block, so every job in turn gets a whole share.
    #[pallet::storage]
    pub type JobCursor<T> = StorageValue<_, JobId, ValueQuery>;

    /// Jobs whose results expire at a block.
    #[pallet::storage]
    pub type JobExpiries<T: Config> =
        StorageMap<_, Twox64Concat, BlockNumberFor<T>, BoundedVec<JobId, T::MaxJobs>, ValueQuery>;

    #[pallet::event]
    #[pallet::generate_deposit(pub(super) fn deposit_event)]
    pub enum Event<T: Config> {
        /// A model was created in draft.
        ModelCreated {
            model: ModelId,
            owner: T::AccountId,
            blocks: u32,
        },
        /// A weight block was stored.
        WeightBlockStored { model: ModelId, index: u32 },
        /// A model was sealed and can be inferred.
        ModelSealed { model: ModelId },
        /// Governance replaced a weight block of a sealed model.
        WeightsUpdated {
            model: ModelId,
            index: u32,
            version: u32,
        },
        /// A model and its blocks were removed.
        ModelRemoved { model: ModelId },
        /// An inference ran.
        Inferred {
            model: ModelId,
            version: u32,
            who: T::AccountId,
            output: BoundedVec<i8, T::MaxOutputLen>,
            class: u32,
            weight_used: Weight,
        },
        /// A job was queued; its fee (that of `weight_limit`) is held.
        JobSubmitted {
            job: JobId,
            model: ModelId,
            who: T::AccountId,
            weight_limit: Weight,
        },
        /// A job ran a slice in this block.
        JobAdvanced {
            job: JobId,
            slices: u32,
            weight_used: Weight,
        },
        /// A job finished; `fee` was burnt and the rest of its hold released.
        JobCompleted {
            job: JobId,
            model: ModelId,
            version: u32,
            who: T::AccountId,
            output: BoundedVec<i8, T::MaxOutputLen>,
            class: u32,
            weight_used: Weight,
            slices: u32,
            fee: BalanceOf<T>,
        },
        /// A job ended without an output; `fee` was burnt and the rest of its hold released.
        JobFailed {
            job: JobId,
            error: JobError,
            weight_used: Weight,
            fee: BalanceOf<T>,
        },
        /// A finished job's result was removed by its owner.
        JobCleared { job: JobId },
    }

    #[pallet::error]
    pub enum Error<T> {
        /// The program container is malformed.
        MalformedProgram,
        /// The program's code fails validation.
        InvalidCode,
        /// The program lists more blocks than `MaxBlocks`, or a block larger than `MaxBlockLen`.
        ProgramExceedsLimits,
        /// No model with this id.
        UnknownModel,
        /// Only the model's owner may do this.
        NotOwner,
        /// The model is sealed; only governance may change it.
        NotDraft,
        /// The model is not sealed yet.
        NotSealed,
        /// The block index is not in the program's manifest.
        BlockIndexOutOfRange,
        /// The block's bytes do not match the manifest's length and hash.
        BlockMismatch,
        /// The block is already stored.
        BlockAlreadyPresent,
        /// The block's length differs from the one it replaces.
        BlockLengthChanged,
        /// Not every block of the manifest is stored.
        MissingBlocks,
        /// The input length is not the program's input size.
        WrongInputLength,
        /// The weight limit's compute part ran out.
        OutOfGas,
        /// The weight limit's proof-size part ran out.
        ProofSizeExhausted,
        /// A weight block the program reads is missing from storage.
        MissingWeightBlock,
        /// The program hit the Buffer or Memory limit.
        ResourceLimit,
        /// The program faulted while running (bad operand, shape mismatch, revert, ...).
        ExecutionFault,
        /// The output is longer than `MaxOutputLen`.
        OutputTooLarge,
        /// Model ids are exhausted.
        TooManyModels,
        /// `MaxJobs` jobs are running already.
        JobQueueFull,
        /// The weight limit exceeds `MaxJobWeight`.
        JobWeightLimitTooLarge,
        /// No job with this id.
        UnknownJob,
        /// The job is still running (clear it once it has ended, or cancel it).
        JobRunning,
        /// The job has ended already.
        JobEnded,
    }

    /// One genesis model: owner, program container, weight blocks in manifest order.
    pub type GenesisModel<T> = (
        <T as frame_system::Config>::AccountId,
        Vec<u8>,
        Vec<Vec<u8>>,
    );

    /// Models deployed and sealed when the chain starts (e.g. the demo model of a dev chain).
    #[pallet::genesis_config]
    #[derive(polkadot_sdk::frame_support::DefaultNoBound)]
    pub struct GenesisConfig<T: Config> {
        /// Owner (pays the deposit), program container, and its weight blocks in manifest order.
        pub models: Vec<GenesisModel<T>>,
    }

    #[pallet::genesis_build]
    impl<T: Config> BuildGenesisConfig for GenesisConfig<T> {
        fn build(&self) {
            // A chain spec is trusted configuration: a model that does not deploy is a broken
            // spec, so building genesis stops with the reason instead of starting a chain without it.
            for (owner, program, blocks) in &self.models {
                let origin =
                    || -> OriginFor<T> { frame_system::RawOrigin::Signed(owner.clone()).into() };
                let program = BoundedVec::try_from(program.clone())
                    .unwrap_or_else(|_| panic!("genesis program exceeds MaxProgramLen"));
                let id = NextModelId::<T>::get();
                Pallet::<T>::create_model(origin(), program)
                    .unwrap_or_else(|e| panic!("genesis model {id}: {e:?}"));
                for (index, block) in blocks.iter().enumerate() {
                    let data = BoundedVec::try_from(block.clone())
                        .unwrap_or_else(|_| panic!("genesis block {index} exceeds MaxBlockLen"));
                    Pallet::<T>::put_weight_block(origin(), id, index as u32, data)
                        .unwrap_or_else(|e| panic!("genesis model {id} block {index}: {e:?}"));
                }
                Pallet::<T>::seal_model(origin(), id)
                    .unwrap_or_else(|e| panic!("genesis model {id} seal: {e:?}"));
            }
        }
    }

    #[pallet::call]
    impl<T: Config> Pallet<T> {
        /// Stores a validated program as a new draft model, holding a deposit for it.
        #[pallet::call_index(0)]
        #[pallet::weight(T::WeightInfo::create_model(program.len() as u32))]
        pub fn create_model(
            origin: OriginFor<T>,
            program: BoundedVec<u8, T::MaxProgramLen>,
        ) -> DispatchResult {
            let owner = ensure_signed(origin)?;
            let decoded = Program::decode(&program).map_err(|_| Error::<T>::MalformedProgram)?;
            validate(&decoded).map_err(|_| Error::<T>::InvalidCode)?;
            // A program whose input or output the calls cannot carry could be sealed but never run.
            let input_fits = decoded
                .input
                .elements()
                .is_some_and(|n| n <= T::MaxInputLen::get() as u64);
            ensure!(
                decoded.blocks.len() as u32 <= T::MaxBlocks::get()
                    && decoded
                        .blocks
                        .iter()
                        .all(|b| b.len <= T::MaxBlockLen::get())
                    && input_fits
                    && decoded.output_len <= T::MaxOutputLen::get(),
                Error::<T>::ProgramExceedsLimits
            );
            let id = NextModelId::<T>::get();
            let next = id.checked_add(1).ok_or(Error::<T>::TooManyModels)?;
            let deposit =
                Self::deposit_for(program.len() as u32).saturating_add(T::DepositPerItem::get());
            T::Currency::hold(&HoldReason::ModelStorage.into(), &owner, deposit)?;
            let s = decoded.input;
            let info = ModelInfo {
                owner: owner.clone(),
                program_hash: H256(block_hash(&program)),
                version: 1,
                status: ModelStatus::Draft,
                input_shape: [s.c, s.d, s.h, s.w],
                output_len: decoded.output_len,
                block_count: decoded.blocks.len() as u32,
                blocks_present: 0,
                deposit,
            };
            Models::<T>::insert(id, info);
            Programs::<T>::insert(id, program);
            NextModelId::<T>::put(next);
            Self::deposit_event(Event::ModelCreated {
                model: id,
                owner,
                blocks: decoded.blocks.len() as u32,
            });
            Ok(())
        }

        /// Uploads one weight block of a draft model; it must match the manifest entry.
        #[pallet::call_index(1)]
        #[pallet::weight(T::WeightInfo::put_weight_block(data.len() as u32))]
        pub fn put_weight_block(
            origin: OriginFor<T>,
            model: ModelId,
            index: u32,
            data: BoundedVec<u8, T::MaxBlockLen>,
        ) -> DispatchResult {
            let who = ensure_signed(origin)?;
            let mut info = Models::<T>::get(model).ok_or(Error::<T>::UnknownModel)?;
            ensure!(info.owner == who, Error::<T>::NotOwner);
            ensure!(info.status == ModelStatus::Draft, Error::<T>::NotDraft);
            let expected = Self::manifest_entry(model, index)?;
            ensure!(
                expected.len as usize == data.len() && expected.hash == block_hash(&data),
                Error::<T>::BlockMismatch
            );
            ensure!(
                !WeightBlocks::<T>::contains_key(model, index),
                Error::<T>::BlockAlreadyPresent
            );
            let deposit = Self::deposit_for(data.len() as u32);
            T::Currency::hold(&HoldReason::ModelStorage.into(), &who, deposit)?;
            info.deposit = info.deposit.saturating_add(deposit);
            info.blocks_present += 1;
            Models::<T>::insert(model, info);
            WeightBlocks::<T>::insert(model, index, data);
            Self::deposit_event(Event::WeightBlockStored { model, index });
            Ok(())
        }

        /// Freezes a draft model whose blocks are all stored, making it inferable.
        #[pallet::call_index(2)]
        #[pallet::weight(T::WeightInfo::seal_model())]
        pub fn seal_model(origin: OriginFor<T>, model: ModelId) -> DispatchResult {
            let who = ensure_signed(origin)?;
            let mut info = Models::<T>::get(model).ok_or(Error::<T>::UnknownModel)?;
            ensure!(info.owner == who, Error::<T>::NotOwner);
            ensure!(info.status == ModelStatus::Draft, Error::<T>::NotDraft);
            ensure!(
                info.blocks_present == info.block_count,
                Error::<T>::MissingBlocks
            );
            info.status = ModelStatus::Sealed;
            Models::<T>::insert(model, info);
            Self::deposit_event(Event::ModelSealed { model });
            Ok(())
        }

        /// Governance replaces a weight block of a sealed model (same length); bumps the version.
        #[pallet::call_index(3)]
        #[pallet::weight(T::WeightInfo::put_weight_block(data.len() as u32))]
        pub fn update_weight_block(
            origin: OriginFor<T>,
            model: ModelId,
            index: u32,
            data: BoundedVec<u8, T::MaxBlockLen>,
        ) -> DispatchResult {
            T::UpdateOrigin::ensure_origin(origin)?;
            let mut info = Models::<T>::get(model).ok_or(Error::<T>::UnknownModel)?;
            ensure!(info.status == ModelStatus::Sealed, Error::<T>::NotSealed);
            let old =
                WeightBlocks::<T>::get(model, index).ok_or(Error::<T>::BlockIndexOutOfRange)?;
            ensure!(old.len() == data.len(), Error::<T>::BlockLengthChanged);
            info.version = info.version.saturating_add(1);
            let version = info.version;
            Models::<T>::insert(model, info);
            WeightBlocks::<T>::insert(model, index, data);
            Self::deposit_event(Event::WeightsUpdated {
                model,
                index,
                version,
            });
            Ok(())
        }

        /// Removes a model and releases its deposit; its weight blocks go to the deletion
        /// queue, which `on_idle` drains (so a model of any size can be removed in one call of
        /// fixed weight). The owner may remove a draft or a sealed model; `UpdateOrigin` may
        /// remove any. Inferences already included stand; later ones get `UnknownModel`.
        #[pallet::call_index(4)]
        #[pallet::weight(T::WeightInfo::remove_model(0))]
        pub fn remove_model(origin: OriginFor<T>, model: ModelId) -> DispatchResult {
            let info = Models::<T>::get(model).ok_or(Error::<T>::UnknownModel)?;
            if T::UpdateOrigin::try_origin(origin.clone()).is_err() {
                let who = ensure_signed(origin)?;
                ensure!(info.owner == who, Error::<T>::NotOwner);
            }
            T::Currency::release(
                &HoldReason::ModelStorage.into(),
                &info.owner,
                info.deposit,
                Precision::BestEffort,
            )?;
            if info.blocks_present > 0 {
                DeletionQueue::<T>::insert(model, info.blocks_present);
            }
            Programs::<T>::remove(model);
            Models::<T>::remove(model);
            Self::deposit_event(Event::ModelRemoved { model });
            Ok(())
        }

        /// Runs a sealed model on `input`. Charges the base weight plus `weight_limit` up front
        /// and refunds what the VM did not use.
        #[pallet::call_index(5)]
        #[pallet::weight(T::WeightInfo::infer_base(T::MaxProgramLen::get(), input.len() as u32).saturating_add(*weight_limit))]
        pub fn infer(
            origin: OriginFor<T>,
            model: ModelId,
            input: BoundedVec<u8, T::MaxInputLen>,
            weight_limit: Weight,
        ) -> DispatchResultWithPostInfo {
            let who = ensure_signed(origin)?;
            // Charged up front for the largest program; the post-dispatch weight uses the real one.
            let max_base = T::WeightInfo::infer_base(T::MaxProgramLen::get(), input.len() as u32);
            let fail = |error: Error<T>, base: Weight, used: Weight| DispatchErrorWithPostInfo {
                post_info: PostDispatchInfo {
                    actual_weight: Some(base.saturating_add(used)),
                    pays_fee: Pays::Yes,
                },
                error: error.into(),
            };
            let (info, program, program_len) =
                Self::sealed_program(model).map_err(|e| fail(e, max_base, Weight::zero()))?;
            let base = T::WeightInfo::infer_base(program_len, input.len() as u32);
            let outcome = exec::run::<T>(model, program, &input, weight_limit)
                .map_err(|(failure, used)| fail(Self::error_of(failure), base, used))?;
            let output: BoundedVec<i8, T::MaxOutputLen> = outcome
                .output
                .try_into()
                .map_err(|_| fail(Error::<T>::OutputTooLarge, base, outcome.weight_used))?;
            Self::deposit_event(Event::Inferred {
                model,
                version: info.version,
                who,
                output,
                class: outcome.class,
                weight_used: outcome.weight_used,
            });
            Ok(PostDispatchInfo {
                actual_weight: Some(base.saturating_add(outcome.weight_used)),
                pays_fee: Pays::Yes,
            })
        }

        /// Queues a run of a sealed model that may span blocks (see [`jobs`]): holds the fee of
        /// `weight_limit`, stores the input and emits `JobSubmitted` with the job's id. From the
        /// next block on the job advances a slice per block; it ends with `JobCompleted` or
        /// `JobFailed`, and its result stays in [`Jobs`] until cleared or expired.
        #[pallet::call_index(6)]
        #[pallet::weight(T::JobWeightInfo::submit_job(input.len() as u32))]
        pub fn submit_job(
            origin: OriginFor<T>,
            model: ModelId,
            input: BoundedVec<u8, T::MaxInputLen>,
            weight_limit: Weight,
        ) -> DispatchResult {
            let who = ensure_signed(origin)?;
            let (info, program, program_len) = Self::sealed_program(model)?;
            ensure!(
                program.input.elements() == Some(input.len() as u64),
                Error::<T>::WrongInputLength
            );
            ensure!(
                weight_limit.all_lte(T::MaxJobWeight::get()),
                Error::<T>::JobWeightLimitTooLarge
            );
            let state = jobs::JobState::Input(input.into_inner()).encode();
            // `limits::check_jobs` makes every input of `MaxInputLen` fit.
            let state: BoundedVec<u8, T::MaxJobStateLen> =
                state.try_into().map_err(|_| Error::<T>::WrongInputLength)?;
            let id = NextJobId::<T>::get();
            let mut queue = JobQueue::<T>::get();
            queue.try_push(id).map_err(|_| Error::<T>::JobQueueFull)?;
            let prepaid = Self::prepay(&who, weight_limit)?;
            let deposit = Self::hold_deposit(&who)?;
            let job = Job::<T> {
                owner: who.clone(),
                model,
                version: info.version,
                submitted: frame_system::Pallet::<T>::block_number(),
                finished: None,
                weight_limit,
                weight_used: Weight::zero(),
                prepaid,
                deposit,
                program_len,
                state_len: state.len() as u32,
                slices: 0,
                status: JobStatus::Running,
            };
            Jobs::<T>::insert(id, job);
            JobStates::<T>::insert(id, state);
            JobQueue::<T>::put(queue);
            NextJobId::<T>::put(id.saturating_add(1));
            Self::deposit_event(Event::JobSubmitted {
                job: id,
                model,
                who,
                weight_limit,
            });
            Ok(())
        }

        /// Stops a running job of the caller's: the fee of the weight it used is burnt, the
        /// rest released, and it ends with `JobFailed { error: Cancelled }`.
        #[pallet::call_index(7)]
        #[pallet::weight(T::JobWeightInfo::cancel_job())]
        pub fn cancel_job(origin: OriginFor<T>, job: JobId) -> DispatchResult {
            let who = ensure_signed(origin)?;
            let record = Jobs::<T>::get(job).ok_or(Error::<T>::UnknownJob)?;
            ensure!(record.owner == who, Error::<T>::NotOwner);
            ensure!(record.status == JobStatus::Running, Error::<T>::JobEnded);
            JobQueue::<T>::mutate(|queue| queue.retain(|id| *id != job));
            Self::end_job(job, record, JobStatus::Failed(JobError::Cancelled));
            Ok(())
        }

        /// Removes the result of an ended job of the caller's and releases its deposit.
        #[pallet::call_index(8)]
        #[pallet::weight(T::JobWeightInfo::clear_job())]
        pub fn clear_job(origin: OriginFor<T>, job: JobId) -> DispatchResult {
            let who = ensure_signed(origin)?;
            let record = Jobs::<T>::get(job).ok_or(Error::<T>::UnknownJob)?;
            ensure!(record.owner == who, Error::<T>::NotOwner);
            ensure!(record.status != JobStatus::Running, Error::<T>::JobRunning);
            Self::drop_result(job, &record);
            Self::deposit_event(Event::JobCleared { job });
            Ok(())
        }
    }

    impl<T: Config> Pallet<T> {
        /// Deposit for `bytes` stored bytes.
        fn deposit_for(bytes: u32) -> BalanceOf<T> {
            T::DepositPerByte::get()
                .saturating_mul(bytes.into())
                .saturating_add(T::DepositPerItem::get())
        }

        fn manifest_entry(model: ModelId, index: u32) -> Result<smartvm_isa::BlockInfo, Error<T>> {
            let bytes = Programs::<T>::get(model).ok_or(Error::<T>::UnknownModel)?;
            let program = Program::decode(&bytes).map_err(|_| Error::<T>::MalformedProgram)?;
            program
                .blocks
                .get(index as usize)
                .copied()
                .ok_or(Error::<T>::BlockIndexOutOfRange)
        }

        /// A sealed model's info, decoded program and its stored length.
        pub fn sealed_program(model: ModelId) -> Result<(ModelInfoOf<T>, Program, u32), Error<T>> {
            let info = Models::<T>::get(model).ok_or(Error::<T>::UnknownModel)?;
            ensure!(info.status == ModelStatus::Sealed, Error::<T>::NotSealed);
            let bytes = Programs::<T>::get(model).ok_or(Error::<T>::UnknownModel)?;
            let program = Program::decode(&bytes).map_err(|_| Error::<T>::MalformedProgram)?;
            Ok((info, program, bytes.len() as u32))
        }

        /// Deletes queued weight blocks while `limit` allows, a model at a time; returns the
        /// weight used. The per-block cost is the benchmarked slope of `remove_model`.
        pub fn drain_deletions(limit: Weight) -> Weight {
            let db = T::DbWeight::get();
            let per_block =
                T::WeightInfo::remove_model(1).saturating_sub(T::WeightInfo::remove_model(0));
            // Reading the queue head; then, per model, updating or removing its entry.
            let step = db.reads_writes(1, 1);
            let mut used = db.reads(1);
            if !limit.all_gte(used.saturating_add(step)) {
                return Weight::zero();
            }
            while let Some((model, left)) = DeletionQueue::<T>::iter().next() {
                let room = limit.saturating_sub(used).saturating_sub(step);
                let by_time = room
                    .ref_time()
                    .checked_div(per_block.ref_time())
                    .unwrap_or(u64::MAX);
                let by_proof = room
                    .proof_size()
                    .checked_div(per_block.proof_size())
                    .unwrap_or(u64::MAX);
                let count = by_time.min(by_proof).min(left as u64) as u32;
                if count == 0 {
                    break;
                }
                let result = WeightBlocks::<T>::clear_prefix(model, count, None);
                used = used
                    .saturating_add(per_block.saturating_mul(count as u64))
                    .saturating_add(step);
                if result.maybe_cursor.is_some() {
                    // Limited by the weight left: the rest waits for the next block (a second
                    // pass in this block would walk the keys just deleted again).
                    DeletionQueue::<T>::insert(model, left.saturating_sub(count).max(1));
                    break;
                }
                DeletionQueue::<T>::remove(model);
                if !limit.all_gte(used.saturating_add(step)) {
                    break;
                }
            }
            used
        }

        /// Read-only inference, for the runtime API: no event, no fee. `weight_limit` is lowered
        /// to `MaxDryRunWeight` on each axis.
        pub fn dry_run(
            model: ModelId,
            input: Vec<u8>,
            weight_limit: Weight,
        ) -> Result<InferOutcome, DispatchError> {
            let (_, program, _) = Self::sealed_program(model)?;
            let weight_limit = weight_limit.min(T::MaxDryRunWeight::get());
            exec::run::<T>(model, program, &input, weight_limit)
                .map_err(|(f, _)| Self::error_of(f).into())
        }

        /// What a run of `model` on `input` costs (a free dry run at `MaxDryRunWeight`), whether
        /// it fits one `infer`, and as a job how many blocks it takes at most and what weight
        /// limit covers it (see [`InferCost`]).
        pub fn cost(model: ModelId, input: Vec<u8>) -> Result<InferCost, DispatchError> {
            use polkadot_sdk::frame_support::dispatch::DispatchClass;
            let (_, _, program_len) = Self::sealed_program(model)?;
            let outcome = Self::dry_run(model, input.clone(), T::MaxDryRunWeight::get())?;
            let weight = outcome.weight_used;
            let infer_weight =
                T::WeightInfo::infer_base(program_len, input.len() as u32).saturating_add(weight);
            let limits = T::BlockWeights::get();
            let max_extrinsic = limits
                .get(DispatchClass::Normal)
                .max_extrinsic
                .unwrap_or(limits.max_block);
            let overhead = jobs::step_overhead::<T>(program_len, T::MaxJobStateLen::get());
            let room = T::JobShare::get().saturating_sub(overhead);
            let slices = |work: u64, room: u64| work.div_ceil(room.max(1)).max(1);
            let blocks = slices(weight.ref_time(), room.ref_time())
                .max(slices(weight.proof_size(), room.proof_size()))
                // A slice ends at a layer's boundary: allow half a slice lost per block.
                .saturating_mul(2)
                .min(u32::MAX as u64);
            let total = weight.saturating_add(overhead.saturating_mul(blocks));
            let job_weight_limit = total
                .saturating_add(total.saturating_div(10))
                .min(T::MaxJobWeight::get());
            Ok(InferCost {
                weight,
                infer_weight,
                fits_one_block: infer_weight.all_lte(max_extrinsic),
                job_blocks: blocks as u32,
                job_weight_limit,
            })
        }

        /// The storage invariants every call keeps: each model's id is below `NextModelId`, it
        /// has its program, holds exactly `blocks_present` weight blocks (all of them once
        /// sealed) and is not queued for deletion; every stored block belongs to a live model or
        /// to one in the deletion queue; each owner's held deposit is the sum recorded on their
        /// models. Reads every key: for `try-runtime` and tests, never for a block.
        #[cfg(any(feature = "try-runtime", feature = "fuzzing", test))]
        pub fn do_try_state() -> Result<(), DispatchError> {
            use alloc::collections::BTreeMap;
            use polkadot_sdk::frame_support::traits::fungible::InspectHold;
            let mut blocks = BTreeMap::<ModelId, u32>::new();
            for (model, _) in WeightBlocks::<T>::iter_keys() {
                *blocks.entry(model).or_default() += 1;
            }
            let next = NextModelId::<T>::get();
            let mut deposits = BTreeMap::<T::AccountId, BalanceOf<T>>::new();
            for (model, info) in Models::<T>::iter() {
                ensure!(model < next, "a model id at or past NextModelId");
                ensure!(
                    Programs::<T>::contains_key(model),
                    "a model without its program"
                );
                let stored = blocks.get(&model).copied().unwrap_or(0);
                ensure!(
                    stored == info.blocks_present,
                    "blocks_present differs from the blocks stored"
                );
                ensure!(
                    info.blocks_present <= info.block_count,
                    "more blocks than the manifest lists"
                );
                ensure!(
                    info.status == ModelStatus::Draft || info.blocks_present == info.block_count,
                    "a sealed model missing blocks"
                );
                ensure!(
                    !DeletionQueue::<T>::contains_key(model),
                    "a live model queued for deletion"
                );
                let owed = deposits.entry(info.owner.clone()).or_default();
                *owed = owed.saturating_add(info.deposit);
            }
            for model in blocks.keys() {
                ensure!(
                    Models::<T>::contains_key(model) || DeletionQueue::<T>::contains_key(model),
                    "weight blocks of a removed model outside the deletion queue"
                );
            }
            let reason = HoldReason::ModelStorage.into();
            for (owner, owed) in deposits {
                ensure!(
                    T::Currency::balance_on_hold(&reason, &owner) == owed,
                    "a held deposit differs from the models' records"
                );
            }
            Self::jobs_try_state()
        }

        /// The jobs' invariants: the queue holds exactly the running jobs, each with its state;
        /// ended jobs hold no state; each owner's prepayment hold is what their running jobs
        /// prepaid.
        #[cfg(any(feature = "try-runtime", feature = "fuzzing", test))]
        fn jobs_try_state() -> Result<(), DispatchError> {
            use alloc::collections::BTreeMap;
            use polkadot_sdk::frame_support::traits::fungible::InspectHold;
            let queue = JobQueue::<T>::get();
            let mut prepaid = BTreeMap::<T::AccountId, BalanceOf<T>>::new();
            let mut deposits = BTreeMap::<T::AccountId, BalanceOf<T>>::new();
            for (id, job) in Jobs::<T>::iter() {
                let running = job.status == JobStatus::Running;
                ensure!(
                    running == queue.contains(&id),
                    "a running job outside the queue, or an ended one in it"
                );
                ensure!(
                    running == JobStates::<T>::contains_key(id),
                    "a job's state kept past its end, or missing while it runs"
                );
                ensure!(id < NextJobId::<T>::get(), "a job id at or past NextJobId");
                let held = deposits.entry(job.owner.clone()).or_default();
                *held = held.saturating_add(job.deposit);
                let owed = prepaid.entry(job.owner.clone()).or_default();
                if running {
                    *owed = owed.saturating_add(job.prepaid);
                }
            }
            ensure!(
                queue.iter().all(Jobs::<T>::contains_key),
                "a queued job without its record"
            );
            let reason = HoldReason::JobPrepayment.into();
            for (owner, owed) in prepaid {
                ensure!(
                    T::Currency::balance_on_hold(&reason, &owner) == owed,
                    "a prepayment hold differs from the running jobs' records"
                );
            }
            let reason = HoldReason::JobResult.into();
            for (owner, held) in deposits {
                ensure!(
                    T::Currency::balance_on_hold(&reason, &owner) == held,
                    "a job deposit differs from the jobs' records"
                );
            }
            Ok(())
        }

        fn error_of(failure: InferFailure) -> Error<T> {
            match failure {
                InferFailure::InputLength => Error::<T>::WrongInputLength,
                InferFailure::OutOfGas => Error::<T>::OutOfGas,
                InferFailure::ProofSizeExhausted => Error::<T>::ProofSizeExhausted,
                InferFailure::MissingWeightBlock => Error::<T>::MissingWeightBlock,
                InferFailure::ResourceLimit => Error::<T>::ResourceLimit,
                InferFailure::Fault(_) => Error::<T>::ExecutionFault,
            }
        }
    }
}
