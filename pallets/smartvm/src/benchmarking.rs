//! Benchmarks of every call and of the VM's cost parameters (frame-benchmarking v2).
//!
//! The VM benchmarks run the wasm-tuned `Scalar` kernels, the path relay validators take in
//! `validate_block`, so prices fitted to them cover both paths.

use alloc::{vec, vec::Vec};

use codec::Encode;

use polkadot_sdk::frame_benchmarking::v2::*;
use polkadot_sdk::frame_support::{traits::fungible::Mutate, weights::Weight, BoundedVec};
use polkadot_sdk::frame_system::RawOrigin;
use polkadot_sdk::sp_runtime::traits::{Bounded, Get};
use smartvm_isa::{Opcode, Program, Shape};
use smartvm_kernels::Scalar;
use smartvm_vm::{
    execute, execute_slice, BlockList, Config as VmConfig, Executable, Progress, Start,
};

use crate::vm_programs::{base_loop, layer_program, layers, LAYER_COUNT};
use crate::*;

fn funded<T: Config>() -> T::AccountId {
    let who: T::AccountId = whitelisted_caller();
    T::Currency::set_balance(&who, BalanceOf::<T>::max_value() / 4u32.into());
    who
}

/// A valid program of about `code_len` bytes: JUMPDESTs, then output one byte of the input.
fn program(code_len: u32, blocks: Vec<smartvm_isa::BlockInfo>) -> Program {
    program_with_input(code_len, 1, blocks)
}

/// [`program`] taking an input of `input_len` bytes.
fn program_with_input(
    code_len: u32,
    input_len: u32,
    blocks: Vec<smartvm_isa::BlockInfo>,
) -> Program {
    let mut code = vec![Opcode::JUMPDEST as u8; code_len.saturating_sub(5) as usize];
    code.extend_from_slice(&[
        Opcode::PUSH1 as u8,
        0,
        Opcode::PUSH1 as u8,
        1,
        Opcode::RETURN as u8,
    ]);
    Program {
        input: Shape::new(input_len, 1, 1, 1),
        output_len: 1,
        code,
        blocks,
    }
}

/// The program that costs the validator most per byte, measured natively over shapes of
/// 256 KiB (CPU: Intel Xeon, 2 cores): 17 PUSHes, then `JUMPDEST; SWAP16` pairs (7.7 ms), each
/// JUMPDEST a merge point that makes the SWAP rebuild its symbolic stack. A run of JUMPDESTs
/// took 7.4 ms, `DUP16; POP` 4.8 ms, `PUSH; POP` 4.0 ms, `PUSH4 @next; JUMP; JUMPDEST` 2.9 ms.
fn costliest_to_validate(code_len: u32) -> Program {
    let mut code = Vec::new();
    for _ in 0..17 {
        code.extend_from_slice(&[Opcode::PUSH1 as u8, 1]);
    }
    while code.len() + 2 + 5 <= code_len as usize {
        code.extend_from_slice(&[Opcode::JUMPDEST as u8, Opcode::SWAP16 as u8]);
    }
    code.extend_from_slice(&[
        Opcode::PUSH1 as u8,
        0,
        Opcode::PUSH1 as u8,
        1,
        Opcode::RETURN as u8,
    ]);
    Program {
        input: Shape::new(1, 1, 1, 1),
        output_len: 1,
        code,
        blocks: vec![],
    }
}

/// A queued job of a sealed program of `p` bytes whose state is a snapshot paused before the
/// program's last three instructions, with `s` bytes of Memory.
fn queued_job<T: Config>(p: u32, s: u32) -> (T::AccountId, JobId) {
    let owner = funded::<T>();
    let program = program_with_input(p, 1, vec![]);
    let tail = (program.code.len() - 5) as u32;
    let exe = Executable::new(program.clone()).expect("valid");
    let id = create::<T>(&owner, &program);
    Pallet::<T>::seal_model(RawOrigin::Signed(owner.clone()).into(), id).expect("seals");
    let input: BoundedVec<u8, T::MaxInputLen> = vec![1u8].try_into().expect("fits");
    let job = NextJobId::<T>::get();
    Pallet::<T>::submit_job(
        RawOrigin::Signed(owner.clone()).into(),
        id,
        input,
        T::MaxJobWeight::get(),
    )
    .expect("submits");
    // A genuine snapshot (a slice of no gas pauses at once), moved to the tail of the code.
    let config = crate::limits::vm_config::<T>();
    let start = Start::Input(&[1]);
    let Ok(Progress::Paused(mut snapshot)) = execute_slice(
        &exe,
        start,
        &BlockList(&[]),
        &Scalar,
        &config,
        u64::MAX / 2,
        0,
    ) else {
        panic!("a slice of no gas pauses");
    };
    snapshot.pc = tail;
    snapshot.memory = vec![0u8; (s as usize).next_multiple_of(32)];
    let state: BoundedVec<u8, T::MaxJobStateLen> =
        crate::jobs::JobState::Paused(alloc::boxed::Box::new(snapshot))
            .encode()
            .try_into()
            .expect("fits");
    Jobs::<T>::mutate(job, |j| {
        if let Some(j) = j {
            j.state_len = state.len() as u32;
        }
    });
    JobStates::<T>::insert(job, state);
    (owner, job)
}

fn create<T: Config>(owner: &T::AccountId, p: &Program) -> ModelId {
    let id = NextModelId::<T>::get();
    let bytes: BoundedVec<u8, T::MaxProgramLen> = p.encode().try_into().expect("fits");
    Pallet::<T>::create_model(RawOrigin::Signed(owner.clone()).into(), bytes).expect("creates");
    id
}

#[benchmarks]
mod benchmarks {
    use super::*;

    #[benchmark]
    fn create_model(n: Linear<64, { T::MaxProgramLen::get() / 2 }>) {
        let owner = funded::<T>();
        let bytes: BoundedVec<u8, T::MaxProgramLen> =
            costliest_to_validate(n).encode().try_into().expect("fits");
        let id = NextModelId::<T>::get();
        #[extrinsic_call]
        _(RawOrigin::Signed(owner), bytes);
        assert!(Models::<T>::contains_key(id));
    }

    #[benchmark]
    fn put_weight_block(n: Linear<1, { T::MaxBlockLen::get() }>) {
        let owner = funded::<T>();
        let block = vec![7u8; n as usize];
        let id = create::<T>(
            &owner,
            &program(64, Program::manifest_of(core::slice::from_ref(&block))),
        );
        let data: BoundedVec<u8, T::MaxBlockLen> = block.try_into().expect("fits");
        #[extrinsic_call]
        _(RawOrigin::Signed(owner), id, 0, data);
        assert!(WeightBlocks::<T>::contains_key(id, 0));
    }

    #[benchmark]
    fn seal_model() {
        let owner = funded::<T>();
        let id = create::<T>(&owner, &program(64, vec![]));
        #[extrinsic_call]
        _(RawOrigin::Signed(owner), id);
        assert_eq!(
            Models::<T>::get(id).map(|m| m.status),
            Some(ModelStatus::Sealed)
        );
    }

    #[benchmark]
    fn remove_model(b: Linear<0, { T::MaxBlocks::get() }>) {
        let owner = funded::<T>();
        let blocks: Vec<Vec<u8>> = (0..b).map(|i| vec![i as u8; 64]).collect();
        let id = create::<T>(&owner, &program(64, Program::manifest_of(&blocks)));
        for (i, block) in blocks.into_iter().enumerate() {
            let data: BoundedVec<u8, T::MaxBlockLen> = block.try_into().expect("fits");
            Pallet::<T>::put_weight_block(
                RawOrigin::Signed(owner.clone()).into(),
                id,
                i as u32,
                data,
            )
            .expect("stores");
        }
        // The whole work of removing a model of `b` blocks: the call, then the deletion of its
        // blocks, which `on_idle` does later; the slope in `b` prices each queued block.
        #[block]
        {
            Pallet::<T>::remove_model(RawOrigin::Signed(owner).into(), id).expect("removes");
            Pallet::<T>::drain_deletions(Weight::MAX);
        }
        assert!(Models::<T>::get(id).is_none());
        assert_eq!(WeightBlocks::<T>::iter_prefix(id).count(), 0);
    }

    /// The fixed part of `infer`: load and decode a program of `p` bytes, take an input of `n`
    /// bytes, run a trivial program.
    #[benchmark]
    fn infer_base(
        p: Linear<64, { T::MaxProgramLen::get() / 2 }>,
        n: Linear<1, { T::MaxInputLen::get() }>,
    ) {
        let owner = funded::<T>();
        let id = create::<T>(&owner, &program_with_input(p, n, vec![]));
        Pallet::<T>::seal_model(RawOrigin::Signed(owner.clone()).into(), id).expect("seals");
        let input: BoundedVec<u8, T::MaxInputLen> = vec![1u8; n as usize].try_into().expect("fits");
        #[extrinsic_call]
        infer(
            RawOrigin::Signed(owner),
            id,
            input,
            Weight::from_parts(u64::MAX / 4, u64::MAX / 4),
        );
    }

    /// VM: `r` turns of an 8-instruction base-set loop (price of plain instructions).
    #[benchmark]
    fn vm_base_loop(r: Linear<1, 10_000>) {
        let exe = Executable::new(base_loop(r)).expect("valid");
        #[block]
        {
            execute(
                &exe,
                &[0],
                &BlockList(&[]),
                &Scalar,
                &VmConfig::default(),
                u64::MAX,
            )
            .expect("runs");
        }
    }

    /// VM: entry `l` of the layer table (`smartvm_vm::bench_programs::layers`), one kernel
    /// instruction at a zoo model's or a sweep's shape. Not a weight the pallet charges: `make
    /// weights` runs it once per entry (`--steps` = the entry count) and fits the gas schedule's
    /// per-class prices to the times (`smartvm fit-schedule`).
    #[benchmark]
    fn vm_layer(l: Linear<0, { LAYER_COUNT - 1 }>) {
        let layer = &layers()[l as usize];
        let bench = layer_program(&layer.op);
        let exe = Executable::new(bench.program).expect("valid");
        #[block]
        {
            execute(
                &exe,
                &bench.input,
                &BlockList(&bench.blocks),
                &Scalar,
                &VmConfig::default(),
                u64::MAX,
            )
            .expect("runs");
        }
    }

    #[benchmark]
    fn submit_job(n: Linear<1, { T::MaxInputLen::get() }>) {
        let owner = funded::<T>();
        let id = create::<T>(&owner, &program_with_input(64, n, vec![]));
        Pallet::<T>::seal_model(RawOrigin::Signed(owner.clone()).into(), id).expect("seals");
        let input: BoundedVec<u8, T::MaxInputLen> = vec![1u8; n as usize].try_into().expect("fits");
        let job = NextJobId::<T>::get();
        #[extrinsic_call]
        _(RawOrigin::Signed(owner), id, input, T::MaxJobWeight::get());
        assert!(Jobs::<T>::contains_key(job));
    }

    #[benchmark]
    fn cancel_job() {
        let (owner, job) = queued_job::<T>(64, 1);
        #[extrinsic_call]
        _(RawOrigin::Signed(owner), job);
        assert!(JobQueue::<T>::get().is_empty());
    }

    #[benchmark]
    fn clear_job() {
        let (owner, job) = queued_job::<T>(64, 1);
        Pallet::<T>::cancel_job(RawOrigin::Signed(owner.clone()).into(), job).expect("cancels");
        #[extrinsic_call]
        _(RawOrigin::Signed(owner), job);
        assert!(!Jobs::<T>::contains_key(job));
    }

    /// The fixed part of a job's slice: a program of `p` bytes and a paused state of about `s`
    /// bytes (Memory), read, decoded, restored into the VM, run to the end (a few instructions)
    /// and settled: fee burnt, hold released, result stored, event emitted.
    #[benchmark]
    fn job_step(
        p: Linear<64, { T::MaxProgramLen::get() / 2 }>,
        s: Linear<1024, { T::MaxJobStateLen::get() - 4096 }>,
    ) {
        let (_, job) = queued_job::<T>(p, s);
        #[block]
        {
            Pallet::<T>::advance_jobs(T::JobShare::get());
        }
        let ended = Jobs::<T>::get(job).map(|j| j.status);
        assert!(matches!(ended, Some(JobStatus::Done { .. })), "{ended:?}");
    }

    impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
