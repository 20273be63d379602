//! Benchmarks of every call and of the VM's cost parameters (frame-benchmarking v2).
//!
//! The VM benchmarks run the in-runtime reference kernels, i.e. the slow path validators take,
//! so weights derived from them are safe for both paths.

use alloc::{vec, vec::Vec};

use polkadot_sdk::frame_benchmarking::v2::*;
use polkadot_sdk::frame_support::{traits::fungible::Mutate, weights::Weight, BoundedVec};
use polkadot_sdk::frame_system::RawOrigin;
use polkadot_sdk::sp_runtime::traits::{Bounded, Get};
use smartvm_isa::{Opcode, Program, Shape};
use smartvm_kernels::{ChannelQuant, OutputRange, Reference};
use smartvm_vm::{execute, BlockList, Config as VmConfig, Executable};

use crate::*;

fn funded<T: Config>() -> T::AccountId {
    let who: T::AccountId = whitelisted_caller();
    T::Currency::set_balance(&who, BalanceOf::<T>::max_value() / 4u32.into());
    who
}

/// A valid program of about `code_len` bytes: JUMPDESTs, then output one byte of the input.
fn program(code_len: u32, blocks: Vec<smartvm_isa::BlockInfo>) -> Program {
    let mut code = vec![Opcode::JUMPDEST as u8; code_len.saturating_sub(5) as usize];
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
        blocks,
    }
}

fn create<T: Config>(owner: &T::AccountId, p: &Program) -> ModelId {
    let id = NextModelId::<T>::get();
    let bytes: BoundedVec<u8, T::MaxProgramLen> = p.encode().try_into().expect("fits");
    Pallet::<T>::create_model(RawOrigin::Signed(owner.clone()).into(), bytes).expect("creates");
    id
}

/// Code looping `turns` times over six base instructions (JUMPDEST PUSH SUB PUSH DUP2 JUMPI).
fn base_loop(turns: u32) -> Program {
    use Opcode::*;
    let mut code = vec![PUSH4 as u8];
    code.extend_from_slice(&turns.to_le_bytes());
    code.extend_from_slice(&[
        JUMPDEST as u8,
        PUSH1 as u8,
        1,
        SUB as u8,
        PUSH1 as u8,
        5,
        DUP2 as u8,
        JUMPI as u8,
    ]);
    code.extend_from_slice(&[POP as u8, PUSH1 as u8, 0, PUSH1 as u8, 1, RETURN as u8]);
    Program {
        input: Shape::new(1, 1, 1, 1),
        output_len: 1,
        code,
        blocks: vec![],
    }
}

/// A fully-connected layer of `m` inputs and 64 outputs, returning the outputs.
fn fc_program(m: u32, blocks: &[Vec<u8>]) -> Program {
    use Opcode::*;
    let m16 = (m as u16).to_le_bytes();
    let code = vec![
        PUSH1 as u8,
        0,
        PUSH2 as u8,
        m16[0],
        m16[1],
        MTOB as u8,
        PUSH1 as u8,
        64,
        PUSH1 as u8,
        0,
        PUSH1 as u8,
        1,
        FULL_CON as u8,
        PUSH1 as u8,
        0,
        PUSH1 as u8,
        64,
        BTOS1 as u8,
        STOP as u8,
    ];
    Program {
        input: Shape::new(m, 1, 1, 1),
        output_len: 64,
        code,
        blocks: Program::manifest_of(blocks),
    }
}

#[benchmarks]
mod benchmarks {
    use super::*;

    #[benchmark]
    fn create_model(n: Linear<64, { T::MaxProgramLen::get() / 2 }>) {
        let owner = funded::<T>();
        let bytes: BoundedVec<u8, T::MaxProgramLen> =
            program(n, vec![]).encode().try_into().expect("fits");
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
        #[extrinsic_call]
        _(RawOrigin::Signed(owner), id, b);
        assert!(Models::<T>::get(id).is_none());
    }

    /// The fixed part of `infer`: load and decode a program of `p` bytes, run a trivial program.
    #[benchmark]
    fn infer_base(p: Linear<64, { T::MaxProgramLen::get() / 2 }>) {
        let owner = funded::<T>();
        let id = create::<T>(&owner, &program(p, vec![]));
        Pallet::<T>::seal_model(RawOrigin::Signed(owner.clone()).into(), id).expect("seals");
        let input: BoundedVec<u8, T::MaxInputLen> = vec![1u8].try_into().expect("fits");
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
                &Reference,
                &VmConfig::default(),
                u64::MAX,
            )
            .expect("runs");
        }
    }

    /// VM: a fully-connected layer of `m` × 64 multiply-accumulates (price of kernel MACs in wasm).
    #[benchmark]
    fn vm_kernel_macs(m: Linear<1, 1024>) {
        let quant = ChannelQuant {
            input_zero: 0,
            output: OutputRange {
                zero: 0,
                lo: -128,
                hi: 127,
            },
            bias: vec![0; 64],
            mult: vec![1 << 30; 64],
            shift: vec![8; 64],
        };
        let blocks = vec![vec![3u8; (m * 64) as usize], quant.encode()];
        let exe = Executable::new(fc_program(m, &blocks)).expect("valid");
        let input = vec![1i8; m as usize];
        #[block]
        {
            execute(
                &exe,
                &input,
                &BlockList(&blocks),
                &Reference,
                &VmConfig::default(),
                u64::MAX,
            )
            .expect("runs");
        }
    }

    impl_benchmark_test_suite!(Pallet, crate::mock::new_test_ext(), crate::mock::Test);
}
