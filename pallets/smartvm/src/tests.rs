//! LeNet-5 deployed by extrinsics and inferred on chain, and every bad path rejected with its
//! own error and no state change.

use polkadot_sdk::frame_support::{
    assert_noop, assert_ok,
    traits::{fungible::InspectHold, Hooks},
    weights::Weight,
    BoundedVec,
};
use polkadot_sdk::sp_io;
use polkadot_sdk::sp_runtime::{DispatchError, StateVersion};
use smartvm_isa::{asm::assemble, pack::decode_pack, Program};

use crate::mock::*;
use crate::{Error, Event, ModelStatus, Models, WeightBlocks};

/// The LeNet-5 example, found at run time: cargo may reuse this binary for another checkout.
static DIR: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    format!("{crate_dir}/../../examples/lenet5")
});
pub(crate) const LIMIT: Weight = Weight::from_parts(500_000_000_000, 2_000_000);

pub(crate) struct LeNet {
    pub(crate) program: Vec<u8>,
    pub(crate) blocks: Vec<Vec<u8>>,
    pub(crate) inputs: Vec<Vec<u8>>,
    pub(crate) logits: Vec<Vec<i8>>,
}

pub(crate) fn lenet() -> LeNet {
    let blocks = decode_pack(&std::fs::read(format!("{}/weights.smw", *DIR)).unwrap()).unwrap();
    let mut program: Program =
        assemble(&std::fs::read_to_string(format!("{}/lenet5.sasm", *DIR)).unwrap()).unwrap();
    program.blocks = Program::manifest_of(&blocks);
    let inputs = std::fs::read(format!("{}/inputs.bin", *DIR))
        .unwrap()
        .chunks(1024)
        .map(|c| c.to_vec())
        .collect();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}/expected.json", *DIR)).unwrap())
            .unwrap();
    let logits = doc["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap() as i8)
                .collect()
        })
        .collect();
    LeNet {
        program: program.encode(),
        blocks,
        inputs,
        logits,
    }
}

pub(crate) fn bounded<const N: u32>(
    bytes: &[u8],
) -> BoundedVec<u8, polkadot_sdk::frame_support::traits::ConstU32<N>> {
    bytes.to_vec().try_into().expect("within bound")
}

pub(crate) fn deploy(l: &LeNet) -> u32 {
    let id = crate::NextModelId::<Test>::get();
    assert_ok!(SmartVm::create_model(
        RuntimeOrigin::signed(1),
        bounded(&l.program)
    ));
    for (i, b) in l.blocks.iter().enumerate() {
        assert_ok!(SmartVm::put_weight_block(
            RuntimeOrigin::signed(1),
            id,
            i as u32,
            bounded(b)
        ));
    }
    assert_ok!(SmartVm::seal_model(RuntimeOrigin::signed(1), id));
    assert_ok!(SmartVm::do_try_state());
    id
}

fn inferred_events() -> Vec<(Vec<i8>, u32, u32, Weight)> {
    System::events()
        .into_iter()
        .filter_map(|r| match r.event {
            RuntimeEvent::SmartVm(Event::Inferred {
                output,
                class,
                version,
                weight_used,
                ..
            }) => Some((output.into_inner(), class, version, weight_used)),
            _ => None,
        })
        .collect()
}

pub(crate) fn root() -> Vec<u8> {
    sp_io::storage::root(StateVersion::V1)
}

#[test]
fn lenet5_deployed_by_extrinsics_infers_the_offchain_logits() {
    let l = lenet();
    new_test_ext().execute_with(|| {
        let id = deploy(&l);
        assert_eq!(Models::<Test>::get(id).unwrap().status, ModelStatus::Sealed);
        for input in &l.inputs {
            assert_ok!(SmartVm::infer(
                RuntimeOrigin::signed(2),
                id,
                bounded(input),
                LIMIT
            ));
        }
        let events = inferred_events();
        assert_eq!(events.len(), 4);
        for ((output, class, version, _), want) in events.iter().zip(&l.logits) {
            assert_eq!(output, want);
            let best = want
                .iter()
                .enumerate()
                .fold(0, |b, (i, v)| if *v > want[b] { i } else { b });
            assert_eq!(*class as usize, best);
            assert_eq!(*version, 1);
        }
    });
}

#[test]
fn host_function_and_in_runtime_kernels_give_identical_events() {
    let l = lenet();
    same_events_and_root_on_both_kernel_paths(|| {
        let id = deploy(&l);
        for input in &l.inputs {
            assert_ok!(SmartVm::infer(
                RuntimeOrigin::signed(2),
                id,
                bounded(input),
                LIMIT
            ));
        }
    });
}

/// Runs `scenario` in a fresh test externality with the in-runtime kernels, and again with the
/// kernels behind the host functions: the events and the storage root must be the same.
pub(crate) fn same_events_and_root_on_both_kernel_paths(scenario: impl Fn()) {
    let run = || {
        new_test_ext().execute_with(|| {
            scenario();
            (System::events(), root())
        })
    };
    let in_runtime = run();
    let host = with_host_kernels(run);
    assert_eq!(in_runtime.0, host.0);
    assert_eq!(in_runtime.1, host.1);
}

#[test]
fn infer_charges_the_limit_and_refunds_the_unused_part() {
    let l = lenet();
    new_test_ext().execute_with(|| {
        let id = deploy(&l);
        let post =
            SmartVm::infer(RuntimeOrigin::signed(2), id, bounded(&l.inputs[0]), LIMIT).unwrap();
        let actual = post.actual_weight.expect("actual weight reported");
        let (_, _, _, used) = inferred_events()[0];
        let base = <() as crate::WeightInfo>::infer_base(l.program.len() as u32, 1024);
        assert_eq!(actual, base + used);
        assert!(used.ref_time() > 0 && used.proof_size() > 0);
        println!(
            "LeNet-5 infer: VM weight {used:?}, charged {actual:?} (declared base + limit {:?})",
            base + LIMIT
        );
        assert!(actual.ref_time() < (base + LIMIT).ref_time());
        // Proof size covers exactly the weight blocks read, plus the per-block overhead.
        let bytes: u64 = l.blocks.iter().map(|b| b.len() as u64).sum();
        assert_eq!(
            used.proof_size(),
            bytes + 13 * crate::exec::PROOF_OVERHEAD_PER_BLOCK
        );
    });
}

/// An `infer` failure: its own error, some weight charged, and no state change.
fn assert_infer_fails(id: u32, input: &[u8], limit: Weight, error: Error<Test>) {
    let before = root();
    let err = SmartVm::infer(RuntimeOrigin::signed(2), id, bounded(input), limit).unwrap_err();
    assert_eq!(err.error, DispatchError::from(error));
    assert!(err.post_info.actual_weight.is_some());
    assert_eq!(root(), before);
}

#[test]
fn every_bad_path_has_its_own_error_and_changes_nothing() {
    let l = lenet();
    new_test_ext().execute_with(|| {
        // create_model
        assert_noop!(
            SmartVm::create_model(RuntimeOrigin::signed(1), bounded(b"not a program")),
            Error::<Test>::MalformedProgram
        );
        let mut bad_code: Program = Program::decode(&l.program).unwrap();
        bad_code.code = vec![0x01]; // ADD on an empty stack
        assert_noop!(
            SmartVm::create_model(RuntimeOrigin::signed(1), bounded(&bad_code.encode())),
            Error::<Test>::InvalidCode
        );
        let mut too_many = Program::decode(&l.program).unwrap();
        too_many.blocks = vec![too_many.blocks[0]; 1025];
        assert_noop!(
            SmartVm::create_model(RuntimeOrigin::signed(1), bounded(&too_many.encode())),
            Error::<Test>::ProgramExceedsLimits
        );
        assert_noop!(
            SmartVm::create_model(RuntimeOrigin::none(), bounded(&l.program)),
            DispatchError::BadOrigin
        );
        let before = root();
        assert!(
            SmartVm::create_model(RuntimeOrigin::signed(3), bounded(&l.program)).is_err(),
            "deposit cannot be held"
        );
        assert_eq!(root(), before);

        // put_weight_block / seal_model on a draft
        assert_ok!(SmartVm::create_model(
            RuntimeOrigin::signed(1),
            bounded(&l.program)
        ));
        let id = 0;
        assert_noop!(
            SmartVm::put_weight_block(RuntimeOrigin::signed(2), id, 0, bounded(&l.blocks[0])),
            Error::<Test>::NotOwner
        );
        assert_noop!(
            SmartVm::put_weight_block(RuntimeOrigin::signed(1), 7, 0, bounded(&l.blocks[0])),
            Error::<Test>::UnknownModel
        );
        assert_noop!(
            SmartVm::put_weight_block(RuntimeOrigin::signed(1), id, 13, bounded(&l.blocks[0])),
            Error::<Test>::BlockIndexOutOfRange
        );
        assert_noop!(
            SmartVm::put_weight_block(RuntimeOrigin::signed(1), id, 1, bounded(&l.blocks[0])),
            Error::<Test>::BlockMismatch
        );
        let mut flipped = l.blocks[0].clone();
        flipped[0] ^= 1;
        assert_noop!(
            SmartVm::put_weight_block(RuntimeOrigin::signed(1), id, 0, bounded(&flipped)),
            Error::<Test>::BlockMismatch
        );
        assert_ok!(SmartVm::put_weight_block(
            RuntimeOrigin::signed(1),
            id,
            0,
            bounded(&l.blocks[0])
        ));
        assert_noop!(
            SmartVm::put_weight_block(RuntimeOrigin::signed(1), id, 0, bounded(&l.blocks[0])),
            Error::<Test>::BlockAlreadyPresent
        );
        assert_noop!(
            SmartVm::seal_model(RuntimeOrigin::signed(1), id),
            Error::<Test>::MissingBlocks
        );
        assert_infer_fails(id, &l.inputs[0], LIMIT, Error::<Test>::NotSealed);
        assert_infer_fails(9, &l.inputs[0], LIMIT, Error::<Test>::UnknownModel);
        for (i, b) in l.blocks.iter().enumerate().skip(1) {
            assert_ok!(SmartVm::put_weight_block(
                RuntimeOrigin::signed(1),
                id,
                i as u32,
                bounded(b)
            ));
        }
        assert_noop!(
            SmartVm::seal_model(RuntimeOrigin::signed(2), id),
            Error::<Test>::NotOwner
        );
        assert_ok!(SmartVm::seal_model(RuntimeOrigin::signed(1), id));
        assert_noop!(
            SmartVm::put_weight_block(RuntimeOrigin::signed(1), id, 0, bounded(&l.blocks[0])),
            Error::<Test>::NotDraft
        );
        assert_noop!(
            SmartVm::seal_model(RuntimeOrigin::signed(1), id),
            Error::<Test>::NotDraft
        );

        // infer on the sealed model
        assert_infer_fails(
            id,
            &l.inputs[0][..1000],
            LIMIT,
            Error::<Test>::WrongInputLength,
        );
        assert_infer_fails(
            id,
            &l.inputs[0],
            Weight::from_parts(1_000_000, 2_000_000),
            Error::<Test>::OutOfGas,
        );
        assert_infer_fails(
            id,
            &l.inputs[0],
            Weight::from_parts(500_000_000_000, 3_000),
            Error::<Test>::ProofSizeExhausted,
        );

        // governance
        assert_noop!(
            SmartVm::update_weight_block(RuntimeOrigin::signed(1), id, 0, bounded(&l.blocks[0])),
            DispatchError::BadOrigin
        );
        assert_noop!(
            SmartVm::update_weight_block(RuntimeOrigin::root(), id, 0, bounded(&l.blocks[0][..10])),
            Error::<Test>::BlockLengthChanged
        );
        assert_noop!(
            SmartVm::remove_model(RuntimeOrigin::signed(2), id),
            Error::<Test>::NotOwner
        );
        assert_noop!(
            SmartVm::remove_model(RuntimeOrigin::signed(1), 99),
            Error::<Test>::UnknownModel
        );
    });
}

#[test]
fn a_program_that_faults_is_an_execution_fault() {
    new_test_ext().execute_with(|| {
        let program = assemble(".input 1 1 2 2\n.output 1\nPUSH 0\nPUSH 0\nREVERT").unwrap();
        assert_ok!(SmartVm::create_model(
            RuntimeOrigin::signed(1),
            bounded(&program.encode())
        ));
        assert_ok!(SmartVm::seal_model(RuntimeOrigin::signed(1), 0));
        assert_infer_fails(0, &[1, 2, 3, 4], LIMIT, Error::<Test>::ExecutionFault);
        // A fault is charged what it used (four cheap instructions and Memory for the input),
        // not the whole limit.
        let err =
            SmartVm::infer(RuntimeOrigin::signed(2), 0, bounded(&[1, 2, 3, 4]), LIMIT).unwrap_err();
        let charged = err.post_info.actual_weight.unwrap();
        let base = <() as crate::WeightInfo>::infer_base(program.encode().len() as u32, 4);
        assert!(
            charged.ref_time() > base.ref_time()
                && charged.ref_time() < base.ref_time() + 10_000_000,
            "{charged:?}"
        );
        // Out of gas is charged the whole limit.
        let small = Weight::from_parts(2_500, 2_000_000);
        let err =
            SmartVm::infer(RuntimeOrigin::signed(2), 0, bounded(&[1, 2, 3, 4]), small).unwrap_err();
        assert_eq!(err.error, Error::<Test>::OutOfGas.into());
        assert_eq!(
            err.post_info.actual_weight.unwrap().ref_time(),
            base.ref_time() + 2_500
        );
    });
}

/// `infer` runs what `create_model` validated without validating it again. A program stored
/// under an older validator that today's refuses (a merge at two stack heights) still runs:
/// the interpreter's own checks keep it safe, and the call pays no second validation.
#[test]
fn infer_does_not_validate_the_stored_program_again() {
    new_test_ext().execute_with(|| {
        let valid = assemble(".input 1 1 2 2\n.output 1\nPUSH 0\nPUSH 1\nRETURN").unwrap();
        assert_ok!(SmartVm::create_model(
            RuntimeOrigin::signed(1),
            bounded(&valid.encode())
        ));
        assert_ok!(SmartVm::seal_model(RuntimeOrigin::signed(1), 0));
        // 0: PUSH1 0; 2: PUSH1 8; 4: SWAP1; 5: JUMPI (not taken); 6: PUSH1 1; 8: JUMPDEST;
        // then RETURN Memory[0..1], the input's first byte.
        let code = vec![
            0x60, 0, 0x60, 8, 0x90, 0x58, 0x60, 1, 0x5b, 0x60, 0, 0x60, 1, 0xf3,
        ];
        assert!(smartvm_isa::validate::validate_code(&code).is_err());
        let stored = Program { code, ..valid };
        crate::Programs::<Test>::insert(0, bounded(&stored.encode()));
        let outcome = SmartVm::dry_run(0, vec![9, 8, 7, 6], LIMIT).expect("runs");
        assert_eq!(outcome.output, vec![9]);
    });
}

#[test]
fn governance_update_bumps_the_version_and_changes_the_output() {
    let l = lenet();
    new_test_ext().execute_with(|| {
        let id = deploy(&l);
        assert_ok!(SmartVm::infer(
            RuntimeOrigin::signed(2),
            id,
            bounded(&l.inputs[0]),
            LIMIT
        ));
        // Negate fc2's weights (block 11): the logits change.
        let negated: Vec<u8> = l.blocks[11]
            .iter()
            .map(|b| (*b as i8).saturating_neg() as u8)
            .collect();
        assert_ok!(SmartVm::update_weight_block(
            RuntimeOrigin::root(),
            id,
            11,
            bounded(&negated)
        ));
        assert_eq!(Models::<Test>::get(id).unwrap().version, 2);
        assert_ok!(SmartVm::infer(
            RuntimeOrigin::signed(2),
            id,
            bounded(&l.inputs[0]),
            LIMIT
        ));
        let events = inferred_events();
        assert_eq!(events[0].2, 1);
        assert_eq!(events[1].2, 2);
        assert_ne!(events[0].0, events[1].0);
    });
}

#[test]
fn removing_a_model_releases_its_deposit_and_storage() {
    let l = lenet();
    new_test_ext().execute_with(|| {
        let id = deploy(&l);
        let reason = RuntimeHoldReason::SmartVm(crate::HoldReason::ModelStorage);
        let held = Balances::balance_on_hold(&reason, &1);
        let stored: u64 =
            l.program.len() as u64 + l.blocks.iter().map(|b| b.len() as u64).sum::<u64>();
        assert_eq!(held, stored + 10 * (1 + 1 + 13));
        assert_ok!(SmartVm::remove_model(RuntimeOrigin::signed(1), id));
        assert_eq!(Balances::balance_on_hold(&reason, &1), 0);
        assert!(Models::<Test>::get(id).is_none());
        assert_eq!(
            SmartVm::dry_run(id, l.inputs[0].clone(), LIMIT),
            Err(Error::<Test>::UnknownModel.into())
        );
        // The blocks go with the next idle time.
        assert_eq!(crate::DeletionQueue::<Test>::get(id), Some(13));
        <SmartVm as Hooks<u64>>::on_idle(2, Weight::MAX);
        assert_eq!(WeightBlocks::<Test>::iter_prefix(id).count(), 0);
        assert_eq!(crate::DeletionQueue::<Test>::get(id), None);
    });
}

/// AlexNet's 955 weight blocks: the call that removes the model has one fixed weight (the old
/// call's weight grew 68 KB of proof per block, so models over ~107 blocks could never be
/// removed), its deposit comes back at once, and idle time in later blocks deletes the blocks
/// a bounded number at a time until all storage is free.
#[test]
fn a_model_of_955_blocks_is_removed_over_several_blocks() {
    use polkadot_sdk::frame_support::dispatch::GetDispatchInfo;
    let blocks: Vec<Vec<u8>> = (0..955u32).map(|i| i.to_le_bytes().repeat(16)).collect();
    let mut ext = new_test_ext();
    let id = ext.execute_with(|| {
        let mut program = Program::decode(&lenet().program).unwrap();
        program.blocks = Program::manifest_of(&blocks);
        assert_ok!(SmartVm::create_model(
            RuntimeOrigin::signed(1),
            bounded(&program.encode())
        ));
        let id = crate::NextModelId::<Test>::get() - 1;
        for (i, b) in blocks.iter().enumerate() {
            assert_ok!(SmartVm::put_weight_block(
                RuntimeOrigin::signed(1),
                id,
                i as u32,
                bounded(b)
            ));
        }
        id
    });
    // The blocks were stored in earlier blocks: in the backend, where deletion limits apply
    // (keys still in the overlay are dropped whatever the limit).
    ext.commit_all().unwrap();
    ext.execute_with(|| {
        let reason = RuntimeHoldReason::SmartVm(crate::HoldReason::ModelStorage);
        assert!(Balances::balance_on_hold(&reason, &1) > 955 * 64);
        let call = RuntimeCall::SmartVm(crate::Call::remove_model { model: id });
        assert_eq!(
            call.get_dispatch_info().call_weight,
            <() as crate::WeightInfo>::remove_model(0)
        );
        assert_ok!(SmartVm::remove_model(RuntimeOrigin::signed(1), id));
        assert_eq!(Balances::balance_on_hold(&reason, &1), 0);
        assert_eq!(WeightBlocks::<Test>::iter_prefix(id).count(), 955);
    });
    ext.commit_all().unwrap();

    // Room for about 100 blocks per block of idle time; each round is a block, its changes
    // committed before the next.
    let per_block = <() as crate::WeightInfo>::remove_model(1)
        .saturating_sub(<() as crate::WeightInfo>::remove_model(0));
    let idle = per_block.saturating_mul(100);
    let mut rounds = 0;
    while ext.execute_with(|| crate::DeletionQueue::<Test>::get(id).is_some()) {
        let (before, after, used) = ext.execute_with(|| {
            let before = WeightBlocks::<Test>::iter_prefix(id).count();
            let used = <SmartVm as Hooks<u64>>::on_idle(2 + rounds, idle);
            (before, WeightBlocks::<Test>::iter_prefix(id).count(), used)
        });
        ext.commit_all().unwrap();
        assert!(used.all_lte(idle), "stays within the idle weight");
        ext.execute_with(|| {
            assert_ok!(SmartVm::do_try_state());
        });
        assert!(
            before - after > 0 && before - after <= 100,
            "{before} -> {after}"
        );
        rounds += 1;
        assert!(rounds < 20, "deletion makes progress");
    }
    assert!(rounds >= 10, "at most 100 blocks a round: {rounds} rounds");
    ext.execute_with(|| {
        assert_eq!(WeightBlocks::<Test>::iter_prefix(id).count(), 0);
        assert!(crate::Programs::<Test>::get(id).is_none());
    });
}

/// The try-runtime invariants hold through a model's life and catch a broken record.
#[test]
fn try_state_checks_the_books() {
    let l = lenet();
    new_test_ext().execute_with(|| {
        assert_ok!(SmartVm::do_try_state());
        let id = deploy(&l);
        // A draft half uploaded by another account.
        assert_ok!(SmartVm::create_model(
            RuntimeOrigin::signed(2),
            bounded(&l.program)
        ));
        assert_ok!(SmartVm::put_weight_block(
            RuntimeOrigin::signed(2),
            id + 1,
            0,
            bounded(&l.blocks[0])
        ));
        assert_ok!(SmartVm::do_try_state());
        assert_ok!(SmartVm::remove_model(RuntimeOrigin::signed(1), id));
        assert_ok!(SmartVm::do_try_state());
        // Records that disagree with storage are caught.
        crate::Models::<Test>::mutate(id + 1, |m| m.as_mut().unwrap().blocks_present = 2);
        assert!(SmartVm::do_try_state().is_err());
        crate::Models::<Test>::mutate(id + 1, |m| {
            let m = m.as_mut().unwrap();
            m.blocks_present = 1;
            m.deposit += 1;
        });
        assert!(SmartVm::do_try_state().is_err());
        crate::Models::<Test>::mutate(id + 1, |m| m.as_mut().unwrap().deposit -= 1);
        assert_ok!(SmartVm::do_try_state());
        crate::DeletionQueue::<Test>::remove(id);
        assert!(
            SmartVm::do_try_state().is_err(),
            "orphan blocks of the removed model"
        );
    });
}

#[test]
fn dry_run_matches_infer_without_touching_state() {
    let l = lenet();
    new_test_ext().execute_with(|| {
        let id = deploy(&l);
        let before = root();
        let events = System::events().len();
        let dry = SmartVm::dry_run(id, l.inputs[1].clone(), LIMIT).unwrap();
        assert_eq!(root(), before);
        assert_eq!(System::events().len(), events);
        assert_eq!(dry.output, l.logits[1]);
        assert_ok!(SmartVm::infer(
            RuntimeOrigin::signed(2),
            id,
            bounded(&l.inputs[1]),
            LIMIT
        ));
        let (output, class, _, used) = inferred_events().remove(0);
        assert_eq!(
            (dry.output, dry.class, dry.weight_used),
            (output, class, used)
        );
        assert_eq!(
            SmartVm::dry_run(id, vec![0; 3], LIMIT),
            Err(Error::<Test>::WrongInputLength.into())
        );
        assert_eq!(
            SmartVm::dry_run(99, l.inputs[1].clone(), LIMIT),
            Err(Error::<Test>::UnknownModel.into())
        );
    });
}

#[test]
fn genesis_deploys_and_seals_models() {
    let l = lenet();
    let mut storage = polkadot_sdk::frame_system::GenesisConfig::<Test>::default()
        .build_storage()
        .unwrap();
    use polkadot_sdk::sp_runtime::BuildStorage;
    polkadot_sdk::pallet_balances::GenesisConfig::<Test> {
        balances: vec![(1, 10_000_000)],
        ..Default::default()
    }
    .assimilate_storage(&mut storage)
    .unwrap();
    crate::GenesisConfig::<Test> {
        models: vec![(1, l.program.clone(), l.blocks.clone())],
    }
    .assimilate_storage(&mut storage)
    .unwrap();
    sp_io::TestExternalities::from(storage).execute_with(|| {
        System::set_block_number(1);
        let info = Models::<Test>::get(0).expect("model 0 exists");
        assert_eq!(info.status, ModelStatus::Sealed);
        assert_eq!(info.owner, 1);
        assert!(Balances::total_balance_on_hold(&1) > 0, "deposit held");
        assert_ok!(SmartVm::infer(
            RuntimeOrigin::signed(1),
            0,
            bounded(&l.inputs[0]),
            LIMIT
        ));
        let output = System::events()
            .iter()
            .find_map(|r| match &r.event {
                RuntimeEvent::SmartVm(Event::Inferred { output, .. }) => Some(output.to_vec()),
                _ => None,
            })
            .expect("Inferred event");
        assert_eq!(output, l.logits[0]);
    });
}

#[test]
#[should_panic(expected = "genesis model 0 block 0")]
fn genesis_rejects_a_model_whose_blocks_do_not_match() {
    let l = lenet();
    let mut blocks = l.blocks.clone();
    blocks[0][0] ^= 1;
    let mut storage = polkadot_sdk::frame_system::GenesisConfig::<Test>::default()
        .build_storage()
        .unwrap();
    use polkadot_sdk::sp_runtime::BuildStorage;
    polkadot_sdk::pallet_balances::GenesisConfig::<Test> {
        balances: vec![(1, 10_000_000)],
        ..Default::default()
    }
    .assimilate_storage(&mut storage)
    .unwrap();
    let _ = crate::GenesisConfig::<Test> {
        models: vec![(1, l.program, blocks)],
    }
    .assimilate_storage(&mut storage);
}

/// A program whose input or output the calls cannot carry would seal and never run: refused.
#[test]
fn programs_whose_input_or_output_exceeds_the_bounds_are_refused() {
    let l = lenet();
    new_test_ext().execute_with(|| {
        let base = Program::decode(&l.program).unwrap();
        let mut wide_input = base.clone();
        // MaxInputLen is 4096 in the mock.
        wide_input.input = smartvm_isa::Shape::new(1, 1, 1, 4097);
        assert_noop!(
            SmartVm::create_model(RuntimeOrigin::signed(1), bounded(&wide_input.encode())),
            Error::<Test>::ProgramExceedsLimits
        );
        let mut long_output = base.clone();
        // MaxOutputLen is 1024 in the mock.
        long_output.output_len = 1025;
        assert_noop!(
            SmartVm::create_model(RuntimeOrigin::signed(1), bounded(&long_output.encode())),
            Error::<Test>::ProgramExceedsLimits
        );
        let mut at_the_bounds = base;
        at_the_bounds.input = smartvm_isa::Shape::new(1, 1, 1, 4096);
        at_the_bounds.output_len = 1024;
        assert_ok!(SmartVm::create_model(
            RuntimeOrigin::signed(1),
            bounded(&at_the_bounds.encode())
        ));
    });
}

/// The free dry run lowers any weight limit to `MaxDryRunWeight`: asking for unbounded work
/// gets at most that much. Extrinsics are bounded by their fee instead and are not capped.
#[test]
fn a_dry_run_never_uses_more_than_the_configured_maximum() {
    let l = lenet();
    new_test_ext().execute_with(|| {
        let id = deploy(&l);
        let used = SmartVm::dry_run(id, l.inputs[0].clone(), LIMIT)
            .unwrap()
            .weight_used;
        // Below what LeNet-5 needs, an unbounded request runs out of gas.
        MaxDryRunWeight::set(Weight::from_parts(used.ref_time() / 2, u64::MAX));
        assert_eq!(
            SmartVm::dry_run(id, l.inputs[0].clone(), Weight::MAX),
            Err(Error::<Test>::OutOfGas.into())
        );
        MaxDryRunWeight::set(Weight::from_parts(u64::MAX, used.proof_size() / 2));
        assert_eq!(
            SmartVm::dry_run(id, l.inputs[0].clone(), Weight::MAX),
            Err(Error::<Test>::ProofSizeExhausted.into())
        );
        // The same limit is fine for a transaction, which pays for it.
        assert_ok!(SmartVm::infer(
            RuntimeOrigin::signed(2),
            id,
            bounded(&l.inputs[0]),
            LIMIT
        ));
        // Under a maximum it does not reach, it runs as before.
        MaxDryRunWeight::set(LIMIT);
        let outcome = SmartVm::dry_run(id, l.inputs[0].clone(), Weight::MAX).unwrap();
        assert_eq!(
            (outcome.output, outcome.weight_used),
            (l.logits[0].clone(), used)
        );
    });
}

/// The bounds of the mock runtime pass the pallet's build-time checks.
#[test]
fn the_mock_bounds_pass_the_integrity_test() {
    <SmartVm as Hooks<u64>>::integrity_test();
}

/// Bounds that let one inference allocate past the 32 MiB cap, or hold more than the
/// validators' heap allows at once, or an input larger than Memory, are refused by `check`
/// (and so by `integrity_test`, when the runtime is built).
#[test]
fn bounds_past_the_validators_heap_are_refused() {
    use crate::limits::{check, LimitError};
    let reset = || {
        MaxBufferBytes::set(16 << 20);
        MaxMemoryBytes::set(1 << 20);
    };
    MaxBufferBytes::set(64 << 20);
    assert!(matches!(
        check::<Test>(),
        Err(LimitError::AllocationTooLarge(a)) if a.largest == 64 << 20
    ));
    // Each within the cap, together past the heap share (Buffer frames count twice, Memory
    // grows by reallocation).
    MaxBufferBytes::set(32 << 20);
    MaxMemoryBytes::set(32 << 20);
    assert!(matches!(
        check::<Test>(),
        Err(LimitError::PeakTooLarge { .. })
    ));
    reset();
    MaxMemoryBytes::set(1024);
    assert_eq!(check::<Test>(), Err(LimitError::InputExceedsMemory));
    let panicked = std::panic::catch_unwind(<SmartVm as Hooks<u64>>::integrity_test);
    reset();
    assert!(
        panicked.is_err(),
        "integrity_test refuses what check refuses"
    );
    assert_eq!(check::<Test>(), Ok(()));
}
