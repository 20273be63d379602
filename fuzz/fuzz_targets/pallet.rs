//! Random sequences of every `pallet-smartvm` call against the mock runtime.
//!
//! Each input is a fresh chain (accounts 1 and 2 rich, 3 poor) and up to 24 steps: every call
//! with random origins (three accounts, root, none), ids, indices, bytes and weight limits;
//! programs that are valid, mutated, malformed, oversized or crafted to be expensive to
//! validate; blocks that match, are mutated or are random; `on_idle` with random spare weight.
//! After every step: a failed call left the storage root as it was, each account's held
//! deposit equals the sum the pallet records for its models, and every stored weight block
//! belongs to a live model or to one queued for deletion (and a live model holds exactly the
//! blocks it counts). At the end every sealed model is run on the reference kernels and through
//! the host functions: the two agree, and each run either infers or fails with a typed error.
//! Then the deletion queue is drained and no orphan block remains.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pallet_smartvm::mock::*;
use pallet_smartvm::{
    vm_programs::fc_layer, DeletionQueue, HoldReason, ModelStatus, Models, WeightBlocks,
};
use polkadot_sdk::frame_support::{
    dispatch::GetDispatchInfo,
    traits::{fungible::InspectHold, Hooks},
    weights::Weight,
    BoundedVec,
};
use polkadot_sdk::sp_io;
use polkadot_sdk::sp_runtime::{traits::Dispatchable, StateVersion};
use smartvm_isa::{asm, Program};

/// A model the fuzzer can deploy: container bytes and weight blocks in manifest order.
struct Artifact {
    program: Vec<u8>,
    blocks: Vec<Vec<u8>>,
}

/// A small convolutional program with its blocks (conv 2×3×3, ReLU in the qblock, then FC),
/// so the host function's conv path runs too.
static CONV: LazyLock<Artifact> = LazyLock::new(|| {
    use smartvm_kernels::{ChannelQuant, OutputRange};
    let quant = |n: usize| {
        ChannelQuant {
            input_zero: -2,
            output: OutputRange {
                zero: -128,
                lo: -128,
                hi: 127,
            },
            bias: (0..n as i32).map(|i| 300 * i - 500).collect(),
            mult: vec![1 << 29; n],
            shift: vec![6; n],
        }
        .encode()
    };
    let blocks = vec![
        (0..18u8).map(|i| i.wrapping_mul(53)).collect(),
        quant(2),
        (0..32 * 4u8).map(|i| i.wrapping_mul(29)).collect(),
        quant(4),
    ];
    let source = "\
.input 1 1 6 6
.output 4
PUSH 0
PUSH 36
MTOB
PUSH 1
PUSH 1
PUSH 6
PUSH 6
BUF_SHAPE
PUSH 2
PUSH 3
PUSH 1
PUSH 0
PUSH 1
PUSH 1
PUSH 0
PUSH 1
CONV_MUL
PUSH 4
PUSH 2
PUSH 3
FULL_CON
PUSH 0
PUSH 4
BTOS1
STOP
";
    let mut program = asm::assemble(source).expect("the conv program assembles");
    program.blocks = Program::manifest_of(&blocks);
    Artifact {
        program: program.encode(),
        blocks,
    }
});

/// The validator-expensive shape that made the old validator quadratic, small enough for a
/// call: pushes, a long JUMPDEST run, and a jump back into it one word lower.
static CRAFTED: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut code = Vec::new();
    for _ in 0..200 {
        code.extend_from_slice(&[0x60, 1]);
    }
    let run = code.len() as u64;
    code.extend(std::iter::repeat_n(0x5b, 20_000));
    code.push(0x50);
    code.push(0x63);
    code.extend_from_slice(&run.to_le_bytes());
    code.push(0x57);
    let (p, _) = fc_layer(4);
    Program {
        code,
        blocks: vec![],
        ..p
    }
    .encode()
});

fn fc(m: u32) -> Artifact {
    let (program, blocks) = fc_layer(m);
    Artifact {
        program: program.encode(),
        blocks,
    }
}

fn origin(u: &mut Unstructured) -> Result<RuntimeOrigin> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 | 1 => RuntimeOrigin::signed(1),
        2 => RuntimeOrigin::signed(2),
        3 => RuntimeOrigin::signed(3),
        4 => RuntimeOrigin::root(),
        _ => RuntimeOrigin::none(),
    })
}

fn bytes(u: &mut Unstructured, max: usize) -> Result<Vec<u8>> {
    let len = u.int_in_range(0..=max)?;
    Ok(u.bytes(len.min(u.len()))?.to_vec())
}

/// Flips one byte of `v` (when it has any).
fn mutate(u: &mut Unstructured, mut v: Vec<u8>) -> Result<Vec<u8>> {
    if !v.is_empty() {
        let i = u.choose_index(v.len())?;
        v[i] ^= u.int_in_range(1..=255u8)?;
    }
    Ok(v)
}

/// Most ref_time a step may ask for: a block's weight check bounds it on a chain, and a
/// random program that loops runs until its limit (50 ms of charged time is 2·10⁷ gas).
const MAX_REF_TIME: u64 = 50_000_000_000;

fn weight(u: &mut Unstructured) -> Result<Weight> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Weight::from_parts(MAX_REF_TIME, u64::MAX),
        1 => Weight::zero(),
        2 => Weight::from_parts(MAX_REF_TIME, 2_000_000),
        _ => Weight::from_parts(u.int_in_range(0..=MAX_REF_TIME)?, u.arbitrary()?),
    })
}

/// A model id near the ones in use, or any.
fn model_id(u: &mut Unstructured) -> Result<u32> {
    let next = pallet_smartvm::NextModelId::<Test>::get();
    Ok(if u.ratio(1, 10)? {
        u.arbitrary()?
    } else {
        u.int_in_range(0..=next)?
    })
}

/// What this input deployed, by model id.
type Deployed = Vec<(u32, Artifact)>;

fn artifact_of(deployed: &Deployed, model: u32) -> Option<&Artifact> {
    deployed.iter().find(|(id, _)| *id == model).map(|(_, a)| a)
}

/// One random call with its origin, and for `create_model` what it deploys.
fn call(
    u: &mut Unstructured,
    deployed: &Deployed,
) -> Result<(RuntimeCall, RuntimeOrigin, Option<Artifact>)> {
    use pallet_smartvm::Call;
    let who = origin(u)?;
    let call = match u.int_in_range(0..=10u8)? {
        0 | 1 => {
            let artifact = match u.int_in_range(0..=6u8)? {
                0 | 1 => fc(u.int_in_range(1..=64)?),
                2 => Artifact {
                    program: CONV.program.clone(),
                    blocks: CONV.blocks.clone(),
                },
                3 => Artifact {
                    program: CRAFTED.clone(),
                    blocks: vec![],
                },
                4 => {
                    let a = fc(u.int_in_range(1..=8)?);
                    Artifact {
                        program: mutate(u, a.program)?,
                        blocks: a.blocks,
                    }
                }
                5 => {
                    // A well-formed container around fuzzer code, or one that asks too much.
                    let (mut p, _) = fc_layer(4);
                    if u.ratio(1, 3)? {
                        p.input = smartvm_isa::Shape::new(u.arbitrary()?, u.arbitrary()?, 1, 1);
                        p.output_len = u.arbitrary()?;
                    } else {
                        p.code = bytes(u, 64)?;
                    }
                    Artifact {
                        program: p.encode(),
                        blocks: vec![],
                    }
                }
                _ => Artifact {
                    program: bytes(u, 256)?,
                    blocks: vec![],
                },
            };
            let program = BoundedVec::truncate_from(artifact.program.clone());
            let call = Call::create_model { program };
            return Ok((RuntimeCall::SmartVm(call), who, Some(artifact)));
        }
        2 | 3 => {
            let model = model_id(u)?;
            let index = if u.ratio(1, 8)? {
                u.arbitrary()?
            } else {
                u.int_in_range(0..=3)?
            };
            let good = artifact_of(deployed, model).and_then(|a| a.blocks.get(index as usize));
            let data = match (good, u.int_in_range(0..=3u8)?) {
                (Some(b), 0..=1) => b.clone(),
                (Some(b), 2) => mutate(u, b.clone())?,
                _ => bytes(u, 512)?,
            };
            let data = BoundedVec::truncate_from(data);
            if u.ratio(1, 4)? {
                Call::update_weight_block { model, index, data }
            } else {
                Call::put_weight_block { model, index, data }
            }
        }
        4 => Call::seal_model {
            model: model_id(u)?,
        },
        5 => Call::remove_model {
            model: model_id(u)?,
        },
        8 => {
            let model = model_id(u)?;
            let input = input_for(u, model)?;
            Call::submit_job {
                model,
                input: BoundedVec::truncate_from(input),
                weight_limit: weight(u)?,
            }
        }
        9 => Call::cancel_job {
            job: u.int_in_range(0..=4)?,
        },
        10 => Call::clear_job {
            job: u.int_in_range(0..=4)?,
        },
        _ => {
            let model = model_id(u)?;
            let input = input_for(u, model)?;
            Call::infer {
                model,
                input: BoundedVec::truncate_from(input),
                weight_limit: weight(u)?,
            }
        }
    };
    Ok((RuntimeCall::SmartVm(call), who, None))
}

/// An input of `model`'s length, mostly, else of a random one.
fn input_for(u: &mut Unstructured, model: u32) -> Result<Vec<u8>> {
    let len = Models::<Test>::get(model)
        .map(|m| m.input_shape.iter().map(|d| *d as usize).product::<usize>())
        .unwrap_or(4);
    let len = if u.ratio(1, 6)? {
        u.int_in_range(0..=4096)?
    } else {
        len.min(4096)
    };
    let mut input = vec![0u8; len];
    u.fill_buffer(&mut input)?;
    Ok(input)
}

/// The jobs' hook of a new block: within the share, books balanced.
fn next_block(u: &mut Unstructured) {
    let n = System::block_number() + 1;
    System::set_block_number(n);
    let share = if u.ratio(1, 2).unwrap_or(true) {
        Weight::from_parts(400_000_000_000, 2 << 20)
    } else {
        weight(u).unwrap_or_default()
    };
    JobShare::set(share);
    let used = SmartVm::on_initialize(n);
    assert!(
        used.all_lte(share),
        "the jobs used {used:?} of a {share:?} share"
    );
}

fn root() -> Vec<u8> {
    sp_io::storage::root(StateVersion::V1)
}

/// Held deposits, stored blocks and the deletion queue agree with the models' records (here and
/// as the pallet's own try-runtime check says).
fn check_books() {
    if let Err(e) = SmartVm::do_try_state() {
        panic!("try_state: {e:?}");
    }
    let reason = RuntimeHoldReason::SmartVm(HoldReason::ModelStorage);
    for account in [1u64, 2, 3] {
        let recorded: u64 = Models::<Test>::iter_values()
            .filter(|m| m.owner == account)
            .map(|m| m.deposit)
            .sum();
        assert_eq!(
            Balances::balance_on_hold(&reason, &account),
            recorded,
            "deposit of {account}"
        );
    }
    let mut counted = std::collections::BTreeMap::<u32, u32>::new();
    for (model, _, _) in WeightBlocks::<Test>::iter() {
        *counted.entry(model).or_default() += 1;
    }
    for (model, stored) in counted {
        match Models::<Test>::get(model) {
            Some(info) => assert_eq!(info.blocks_present, stored, "blocks of model {model}"),
            None => assert!(
                DeletionQueue::<Test>::contains_key(model),
                "orphan blocks of {model}"
            ),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    new_test_ext().execute_with(|| {
        let mut deployed = Deployed::new();
        for _ in 0..24 {
            if u.is_empty() {
                break;
            }
            if u.ratio(1, 8).unwrap_or(false) {
                next_block(&mut u);
                let n = System::block_number();
                let spare = match u.ratio(1, 4) {
                    Ok(true) => Weight::MAX,
                    _ => weight(&mut u).unwrap_or_default(),
                };
                SmartVm::on_idle(n, spare);
                check_books();
                continue;
            }
            let Ok((call, who, artifact)) = call(&mut u, &deployed) else {
                break;
            };
            let _ = call.get_dispatch_info();
            let before = root();
            let id = pallet_smartvm::NextModelId::<Test>::get();
            match call.dispatch(who) {
                Err(_) => assert_eq!(root(), before, "a failed call changed storage"),
                Ok(_) => {
                    if let Some(artifact) = artifact {
                        deployed.push((id, artifact));
                    }
                }
            }
            check_books();
        }
        // Every sealed model infers or fails with a typed error, the same on both kernel paths.
        let limit = Weight::from_parts(MAX_REF_TIME, 4_000_000);
        for (model, info) in Models::<Test>::iter().collect::<Vec<_>>() {
            if info.status != ModelStatus::Sealed {
                continue;
            }
            let len: usize = info.input_shape.iter().map(|d| *d as usize).product();
            let input: Vec<u8> = (0..len).map(|i| (i * 73 + model as usize) as u8).collect();
            let reference = SmartVm::dry_run(model, input.clone(), limit);
            let host = with_host_kernels(|| SmartVm::dry_run(model, input, limit));
            assert_eq!(reference, host, "kernel paths disagree on model {model}");
        }
        // Jobs advance every block, each charged for it (none runs for free or stalls), and
        // those still running after 100 blocks are cancelled by their owners; books balanced.
        JobShare::set(Weight::from_parts(400_000_000_000, 2 << 20));
        let used = |job| pallet_smartvm::Jobs::<Test>::get(job).map(|j| j.weight_used);
        let before: Vec<_> = pallet_smartvm::JobQueue::<Test>::get()
            .iter()
            .map(|job| (*job, used(*job)))
            .collect();
        for _ in 0..100 {
            if pallet_smartvm::JobQueue::<Test>::get().is_empty() {
                break;
            }
            let n = System::block_number() + 1;
            System::set_block_number(n);
            SmartVm::on_initialize(n);
            check_books();
        }
        for (job, was) in before {
            if let Some(j) = pallet_smartvm::Jobs::<Test>::get(job) {
                if j.status == pallet_smartvm::JobStatus::Running {
                    assert!(
                        Some(j.weight_used) != was,
                        "job {job} ran 100 blocks for free"
                    );
                    let origin = RuntimeOrigin::signed(j.owner);
                    assert!(SmartVm::cancel_job(origin, job).is_ok());
                }
            }
        }
        check_books();
        SmartVm::on_idle(System::block_number(), Weight::MAX);
        check_books();
        for (model, _, _) in WeightBlocks::<Test>::iter() {
            assert!(
                Models::<Test>::contains_key(model),
                "model {model}'s blocks outlived the drain"
            );
        }
        assert_eq!(DeletionQueue::<Test>::iter().count(), 0, "the queue drains");
    });
});
