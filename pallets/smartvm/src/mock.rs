//! A test runtime: System, Balances and SmartVM, with a switch between the host-function and
//! the in-runtime kernel paths.

use core::cell::Cell;

use polkadot_sdk::frame_support::{
    derive_impl, parameter_types,
    traits::{ConstU32, ConstU64},
    weights::Weight,
};
use polkadot_sdk::frame_system::{self, EnsureRoot};
use polkadot_sdk::sp_io;
use polkadot_sdk::sp_runtime::BuildStorage;
use polkadot_sdk::{frame_support, pallet_balances};
use smartvm_kernels::{
    ChannelQuant, ConvParams, ConvTransposeParams, KernelError, Kernels, PairQuant, PoolParams,
    Reference,
};

use crate as pallet_smartvm;

type Block = frame_system::mocking::MockBlock<Test>;

frame_support::construct_runtime!(
    pub enum Test {
        System: frame_system,
        Balances: pallet_balances,
        SmartVm: pallet_smartvm,
    }
);

#[derive_impl(frame_system::config_preludes::TestDefaultConfig)]
impl frame_system::Config for Test {
    type Block = Block;
    type AccountData = pallet_balances::AccountData<u64>;
}

#[derive_impl(pallet_balances::config_preludes::TestDefaultConfig)]
impl pallet_balances::Config for Test {
    type AccountStore = System;
}

thread_local! {
    static USE_HOST: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the kernels going through the host functions instead of the reference.
pub fn with_host_kernels<R>(f: impl FnOnce() -> R) -> R {
    USE_HOST.with(|h| h.set(true));
    let r = f();
    USE_HOST.with(|h| h.set(false));
    r
}

/// Kernels chosen per test: the in-runtime reference (default) or the host-function path.
#[derive(Default)]
pub struct SwitchKernels;

fn pick() -> &'static dyn Kernels {
    if USE_HOST.with(|h| h.get()) {
        &smartvm_host::HostKernels
    } else {
        &Reference
    }
}

impl Kernels for SwitchKernels {
    fn conv(
        &self,
        p: &ConvParams,
        i: &[i8],
        w: &[i8],
        q: &ChannelQuant,
        o: &mut [i8],
    ) -> Result<(), KernelError> {
        pick().conv(p, i, w, q, o)
    }
    fn conv_transpose(
        &self,
        p: &ConvTransposeParams,
        i: &[i8],
        w: &[i8],
        q: &ChannelQuant,
        o: &mut [i8],
    ) -> Result<(), KernelError> {
        pick().conv_transpose(p, i, w, q, o)
    }
    fn pool(&self, p: &PoolParams, i: &[i8], o: &mut [i8]) -> Result<(), KernelError> {
        pick().pool(p, i, o)
    }
    fn fully_connected(
        &self,
        i: &[i8],
        w: &[i8],
        q: &ChannelQuant,
        o: &mut [i8],
    ) -> Result<(), KernelError> {
        pick().fully_connected(i, w, q, o)
    }
    fn matmul(
        &self,
        d: [u32; 3],
        a: &[i8],
        b: &[i8],
        q: &PairQuant,
        o: &mut [i8],
    ) -> Result<(), KernelError> {
        pick().matmul(d, a, b, q, o)
    }
}

parameter_types! {
    /// Settable per test (thread-local).
    pub static MaxDryRunWeight: Weight = Weight::from_parts(1_000_000_000_000, 4_000_000);
    /// Settable per test (thread-local), for the limits checks.
    pub static MaxBufferBytes: u32 = 16 << 20;
    /// Settable per test (thread-local), for the limits checks.
    pub static MaxMemoryBytes: u32 = 1 << 20;
    /// Settable per test (thread-local): the jobs' share of each block.
    pub static JobShare: Weight = Weight::from_parts(400_000_000_000, 2 << 20);
}

parameter_types! {
    pub const DepositPerItem: u64 = 10;
    pub const DepositPerByte: u64 = 1;
    pub const RefTimePerGas: u64 = 2_500;
}

impl pallet_smartvm::Config for Test {
    type RuntimeHoldReason = RuntimeHoldReason;
    type Currency = Balances;
    type UpdateOrigin = EnsureRoot<u64>;
    type Kernels = SwitchKernels;
    type DepositPerItem = DepositPerItem;
    type DepositPerByte = DepositPerByte;
    type MaxProgramLen = ConstU32<{ 256 * 1024 }>;
    type MaxBlockLen = ConstU32<{ 64 * 1024 }>;
    type MaxBlocks = ConstU32<1024>;
    type MaxInputLen = ConstU32<4096>;
    type MaxOutputLen = ConstU32<1024>;
    type MaxBufferBytes = MaxBufferBytes;
    type MaxMemoryBytes = MaxMemoryBytes;
    type RefTimePerGas = RefTimePerGas;
    type MaxDryRunWeight = MaxDryRunWeight;
    type WeightInfo = ();
    type WeightToFee = JobFee;
    type JobShare = JobShare;
    type MaxJobWeight = MaxJobWeight;
    type MaxJobs = ConstU32<4>;
    type MaxJobStateLen = ConstU32<{ 64 << 10 }>;
    type JobResultTtl = ConstU64<20>;
    type JobWeightInfo = ();
}

parameter_types! {
    pub const MaxJobWeight: Weight = Weight::from_parts(20_000_000_000_000, 64 << 20);
}

/// A job's fee: one unit per 10^7 ps of ref_time and per KiB of proof.
pub struct JobFee;

impl polkadot_sdk::frame_support::weights::WeightToFee for JobFee {
    type Balance = u64;
    fn weight_to_fee(weight: &Weight) -> u64 {
        weight.ref_time() / 10_000_000 + weight.proof_size() / 1024
    }
}

/// Accounts: 1 is rich, 2 is rich, 3 is poor.
pub fn new_test_ext() -> sp_io::TestExternalities {
    let mut t = frame_system::GenesisConfig::<Test>::default()
        .build_storage()
        .expect("genesis");
    pallet_balances::GenesisConfig::<Test> {
        balances: vec![(1, 10_000_000), (2, 10_000_000), (3, 50)],
        ..Default::default()
    }
    .assimilate_storage(&mut t)
    .expect("balances genesis");
    let mut ext: sp_io::TestExternalities = t.into();
    ext.execute_with(|| System::set_block_number(1));
    ext
}
