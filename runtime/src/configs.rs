//! How each pallet is configured.

use polkadot_sdk::{staging_parachain_info as parachain_info, *};

use cumulus_pallet_parachain_system::RelayNumberMonotonicallyIncreases;
use frame_support::{
    derive_impl,
    dispatch::DispatchClass,
    parameter_types,
    traits::{ConstBool, ConstU32, ConstU64, ConstU8, EitherOfDiverse, VariantCountOf},
    weights::{
        constants::{BlockExecutionWeight, ExtrinsicBaseWeight, RocksDbWeight},
        ConstantMultiplier, Weight,
    },
    PalletId,
};
use frame_system::{
    limits::{BlockLength, BlockWeights},
    EnsureRoot,
};
use sp_runtime::Perbill;
use sp_version::RuntimeVersion;

use crate::{
    AccountId, Aura, AuraId, Balance, Balances, Block, BlockNumber, CollatorSelection,
    ConsensusHook, Hash, Nonce, PalletInfo, Runtime, RuntimeCall, RuntimeEvent,
    RuntimeFreezeReason, RuntimeHoldReason, RuntimeOrigin, RuntimeTask, Session, SessionKeys,
    System, AVERAGE_ON_INITIALIZE_RATIO, DAYS, EXISTENTIAL_DEPOSIT, HOURS, MAXIMUM_BLOCK_WEIGHT,
    MICRO_UNIT, MILLI_UNIT, NORMAL_DISPATCH_RATIO, SLOT_DURATION, VERSION,
};

parameter_types! {
    pub const Version: RuntimeVersion = VERSION;
    /// Block hashes kept for mortal transactions (about 7 hours at 6 s blocks).
    pub const BlockHashCount: BlockNumber = 4096;
    pub RuntimeBlockLength: BlockLength = BlockLength::builder()
        .max_length(5 * 1024 * 1024)
        .modify_max_length_for_class(DispatchClass::Normal, |max| *max = NORMAL_DISPATCH_RATIO * *max)
        .build();
    pub RuntimeBlockWeights: BlockWeights = BlockWeights::builder()
        .base_block(BlockExecutionWeight::get())
        .for_class(DispatchClass::all(), |weights| {
            weights.base_extrinsic = ExtrinsicBaseWeight::get();
        })
        .for_class(DispatchClass::Normal, |weights| {
            weights.max_total = Some(NORMAL_DISPATCH_RATIO * MAXIMUM_BLOCK_WEIGHT);
        })
        .for_class(DispatchClass::Operational, |weights| {
            weights.max_total = Some(MAXIMUM_BLOCK_WEIGHT);
            weights.reserved = Some(
                MAXIMUM_BLOCK_WEIGHT - NORMAL_DISPATCH_RATIO * MAXIMUM_BLOCK_WEIGHT,
            );
        })
        .avg_block_initialization(AVERAGE_ON_INITIALIZE_RATIO)
        .build_or_panic();
    pub const SS58Prefix: u16 = 42;
}

#[derive_impl(frame_system::config_preludes::ParaChainDefaultConfig)]
impl frame_system::Config for Runtime {
    type AccountId = AccountId;
    type Nonce = Nonce;
    type Hash = Hash;
    type Block = Block;
    type BlockHashCount = BlockHashCount;
    type Version = Version;
    type AccountData = pallet_balances::AccountData<Balance>;
    type DbWeight = RocksDbWeight;
    type BlockWeights = RuntimeBlockWeights;
    type BlockLength = RuntimeBlockLength;
    type SS58Prefix = SS58Prefix;
    type OnSetCode = cumulus_pallet_parachain_system::ParachainSetCode<Self>;
    type MaxConsumers = ConstU32<16>;
    type SingleBlockMigrations = crate::Migrations;
}

impl cumulus_pallet_weight_reclaim::Config for Runtime {
    type WeightInfo = ();
}

impl pallet_timestamp::Config for Runtime {
    type Moment = u64;
    type OnTimestampSet = Aura;
    type MinimumPeriod = ConstU64<0>;
    type WeightInfo = ();
}

impl pallet_authorship::Config for Runtime {
    type FindAuthor = pallet_session::FindAccountFromAuthorIndex<Self, Aura>;
    type EventHandler = (CollatorSelection,);
}

parameter_types! {
    pub const ExistentialDeposit: Balance = EXISTENTIAL_DEPOSIT;
}

impl pallet_balances::Config for Runtime {
    type MaxLocks = ConstU32<50>;
    type Balance = Balance;
    type RuntimeEvent = RuntimeEvent;
    type DustRemoval = ();
    type ExistentialDeposit = ExistentialDeposit;
    type AccountStore = System;
    type WeightInfo = pallet_balances::weights::SubstrateWeight<Runtime>;
    type MaxReserves = ConstU32<50>;
    type ReserveIdentifier = [u8; 8];
    type RuntimeHoldReason = RuntimeHoldReason;
    type RuntimeFreezeReason = RuntimeFreezeReason;
    type FreezeIdentifier = RuntimeFreezeReason;
    type MaxFreezes = VariantCountOf<RuntimeFreezeReason>;
    type DoneSlashHandler = ();
}

parameter_types! {
    /// Fee per byte of an extrinsic.
    pub const TransactionByteFee: Balance = 10 * MICRO_UNIT;
    /// Fee per picosecond of ref_time: one millisecond of compute costs 1 UNIT / 1000.
    pub const FeePerRefTime: Balance = 1;
    /// The fee multiplier stays at one: a price a user can predict.
    pub FeeMultiplier: pallet_transaction_payment::Multiplier =
        pallet_transaction_payment::Multiplier::from_u32(1);
}

impl pallet_transaction_payment::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type OnChargeTransaction = pallet_transaction_payment::FungibleAdapter<Balances, ()>;
    type WeightToFee = ConstantMultiplier<Balance, FeePerRefTime>;
    type LengthToFee = ConstantMultiplier<Balance, TransactionByteFee>;
    // Fees do not float with congestion on this chain. (`()` would reset the multiplier to zero
    // after the first block and make weight free.)
    type FeeMultiplierUpdate = pallet_transaction_payment::ConstFeeMultiplier<FeeMultiplier>;
    type OperationalFeeMultiplier = ConstU8<5>;
    type WeightInfo = ();
}

impl pallet_sudo::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type RuntimeCall = RuntimeCall;
    type WeightInfo = ();
}

parameter_types! {
    pub const CouncilMotionDuration: BlockNumber = 3 * DAYS;
    pub const CouncilMaxProposals: u32 = 100;
    pub const CouncilMaxMembers: u32 = 100;
    pub MaxProposalWeight: Weight = Perbill::from_percent(50) * RuntimeBlockWeights::get().max_block;
}

/// The council: proposes and votes on governance calls such as weight updates.
pub type CouncilCollective = pallet_collective::Instance1;

impl pallet_collective::Config<CouncilCollective> for Runtime {
    type RuntimeOrigin = RuntimeOrigin;
    type Proposal = RuntimeCall;
    type RuntimeEvent = RuntimeEvent;
    type MotionDuration = CouncilMotionDuration;
    type MaxProposals = CouncilMaxProposals;
    type MaxMembers = CouncilMaxMembers;
    type DefaultVote = pallet_collective::PrimeDefaultVote;
    type WeightInfo = pallet_collective::weights::SubstrateWeight<Runtime>;
    type SetMembersOrigin = EnsureRoot<AccountId>;
    type MaxProposalWeight = MaxProposalWeight;
    type DisapproveOrigin = EnsureRoot<AccountId>;
    type KillOrigin = EnsureRoot<AccountId>;
    type Consideration = ();
}

/// Root (sudo) or at least two thirds of the council.
pub type RootOrTwoThirdsCouncil = EitherOfDiverse<
    EnsureRoot<AccountId>,
    pallet_collective::EnsureProportionAtLeast<AccountId, CouncilCollective, 2, 3>,
>;

parameter_types! {
    pub const ReservedXcmpWeight: Weight = MAXIMUM_BLOCK_WEIGHT.saturating_div(4);
    pub const ReservedDmpWeight: Weight = MAXIMUM_BLOCK_WEIGHT.saturating_div(4);
}

impl cumulus_pallet_parachain_system::Config for Runtime {
    type WeightInfo = ();
    type RuntimeEvent = RuntimeEvent;
    type OnSystemEvent = ();
    type SelfParaId = parachain_info::Pallet<Runtime>;
    // No XCM in this runtime: no outbound queue, inbound messages are dropped.
    type OutboundXcmpMessageSource = ();
    type DmpQueue = ();
    type ReservedDmpWeight = ReservedDmpWeight;
    type XcmpMessageHandler = ();
    type ReservedXcmpWeight = ReservedXcmpWeight;
    type CheckAssociatedRelayNumber = RelayNumberMonotonicallyIncreases;
    type ConsensusHook = ConsensusHook;
    type RelayParentOffset = ConstU32<0>;
    type SchedulingSignatureVerifier = ();
}

impl parachain_info::Config for Runtime {}

impl cumulus_pallet_aura_ext::Config for Runtime {}

parameter_types! {
    pub const Period: u32 = 6 * HOURS;
    pub const Offset: u32 = 0;
}

impl pallet_session::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type ValidatorId = <Self as frame_system::Config>::AccountId;
    type ValidatorIdOf = pallet_collator_selection::IdentityCollator;
    type ShouldEndSession = pallet_session::PeriodicSessions<Period, Offset>;
    type NextSessionRotation = pallet_session::PeriodicSessions<Period, Offset>;
    type SessionManager = CollatorSelection;
    type SessionHandler = <SessionKeys as sp_runtime::traits::OpaqueKeys>::KeyTypeIdProviders;
    type Keys = SessionKeys;
    type DisablingStrategy = ();
    type WeightInfo = ();
    type Currency = Balances;
    type KeyDeposit = ();
}

impl pallet_aura::Config for Runtime {
    type AuthorityId = AuraId;
    type DisabledValidators = ();
    type MaxAuthorities = ConstU32<100_000>;
    type AllowMultipleBlocksPerSlot = ConstBool<true>;
    type SlotDuration = ConstU64<SLOT_DURATION>;
}

parameter_types! {
    pub const PotId: PalletId = PalletId(*b"PotStake");
}

impl pallet_collator_selection::Config for Runtime {
    type RuntimeEvent = RuntimeEvent;
    type Currency = Balances;
    type UpdateOrigin = EnsureRoot<AccountId>;
    type PotId = PotId;
    type MaxCandidates = ConstU32<100>;
    type MinEligibleCollators = ConstU32<1>;
    type MaxInvulnerables = ConstU32<20>;
    type KickThreshold = Period;
    type ValidatorId = <Self as frame_system::Config>::AccountId;
    type ValidatorIdOf = pallet_collator_selection::IdentityCollator;
    type ValidatorRegistration = Session;
    type WeightInfo = ();
}

parameter_types! {
    /// Deposit per stored item (model, program, weight block).
    pub const SmartvmDepositPerItem: Balance = 10 * MILLI_UNIT;
    /// Deposit per stored byte: 1 UNIT per MiB, roughly.
    pub const SmartvmDepositPerByte: Balance = MICRO_UNIT;
    /// One unit of VM gas stands for 5 ns of `ref_time`. What each instruction costs in gas is
    /// benchmarked on the slow path, the in-wasm `Scalar` kernels relay validators run, and
    /// fitted per kernel class by `make weights` (`smartvm_vm::gas::benchmarked`); the fit and
    /// `runtime/tests/gas_price.rs` assume this price, so change it only with a refit.
    pub const SmartvmRefTimePerGas: u64 = 5_000;
    /// A free dry run may use 60 s of charged ref_time and 128 MiB of proof: the paper's
    /// largest models (ResNet-18 about 2.1 s charged, AlexNet 62 MB of weights) run as dry runs
    /// with room to spare, and no RPC call asks for more.
    pub const SmartvmMaxDryRunWeight: Weight =
        Weight::from_parts(60 * frame_support::weights::constants::WEIGHT_REF_TIME_PER_SECOND, 128 << 20);
    /// The jobs' share of every block: a quarter of its ref_time (normal transactions keep
    /// their 75 %) and 4 MiB of proof (of the relay chain's 10 MiB PoV; transactions keep 6 MiB
    /// in a block where jobs use all of theirs). A slice of ResNet-18 reads its largest layer
    /// (2.4 MB) with its state (up to 0.6 MB) in one block.
    pub SmartvmJobShare: Weight = Weight::from_parts(
        MAXIMUM_BLOCK_WEIGHT.ref_time() / 4,
        4 << 20,
    );
    /// One job may use up to 120 s of charged ref_time and 256 MiB of proof over its blocks:
    /// AlexNet (62 MB of weights, read once, with its state each block) fits.
    pub const SmartvmMaxJobWeight: Weight =
        Weight::from_parts(120 * frame_support::weights::constants::WEIGHT_REF_TIME_PER_SECOND, 256 << 20);
}

impl pallet_smartvm::Config for Runtime {
    type RuntimeHoldReason = RuntimeHoldReason;
    type Currency = Balances;
    type UpdateOrigin = RootOrTwoThirdsCouncil;
    type Kernels = smartvm_host::HostKernels;
    type DepositPerItem = SmartvmDepositPerItem;
    type DepositPerByte = SmartvmDepositPerByte;
    type MaxProgramLen = ConstU32<{ 256 * 1024 }>;
    type MaxBlockLen = ConstU32<{ 64 * 1024 }>;
    type MaxBlocks = ConstU32<4096>;
    // A 3 x 224 x 224 image fits.
    type MaxInputLen = ConstU32<{ 160 * 1024 }>;
    type MaxOutputLen = ConstU32<4096>;
    type MaxBufferBytes = ConstU32<{ 16 << 20 }>;
    type MaxMemoryBytes = ConstU32<{ 4 << 20 }>;
    type RefTimePerGas = SmartvmRefTimePerGas;
    type MaxDryRunWeight = SmartvmMaxDryRunWeight;
    type WeightInfo = crate::weights::pallet_smartvm::WeightInfo<Runtime>;
    // A job pays for its weight what a transaction pays for the same weight.
    type WeightToFee = ConstantMultiplier<Balance, FeePerRefTime>;
    type JobShare = SmartvmJobShare;
    type MaxJobWeight = SmartvmMaxJobWeight;
    type MaxJobs = ConstU32<16>;
    // ResNet-18's largest snapshot is 0.55 MB; a banded layer adds at most one band (1 MiB).
    type MaxJobStateLen = ConstU32<{ 2 << 20 }>;
    type JobResultTtl = ConstU32<DAYS>;
    type JobWeightInfo = crate::weights::pallet_smartvm_jobs::WeightInfo<Runtime>;
}
