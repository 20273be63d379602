//! The genesis presets build a working chain state: the development preset's demo model is
//! sealed and its on-chain dry run equals the off-chain interpreter's output; governance origins
//! are what DESIGN.md invariant 6 says.

use polkadot_sdk::frame_support::traits::EnsureOrigin;
use polkadot_sdk::frame_support::weights::Weight;
use polkadot_sdk::{frame_support, pallet_collective, sp_genesis_builder};
use smartvm_isa::{pack::decode_pack, Program};
use smartvm_runtime::{
    configs::RootOrTwoThirdsCouncil, genesis, AccountId, Runtime, RuntimeOrigin,
};
use smartvm_vm::{execute, BlockList, Config, Executable};

mod common;
use common::{an_image, state_of};

#[test]
fn presets_are_listed() {
    let names = genesis::preset_names();
    assert!(names.contains(&sp_genesis_builder::DEV_RUNTIME_PRESET.into()));
    assert!(names.contains(&sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET.into()));
    assert!(genesis::get_preset(&"no-such-preset".into()).is_none());
}

#[test]
fn development_preset_deploys_the_demo_model_and_it_infers_like_the_off_chain_vm() {
    let image = an_image();
    let program = Program::decode(genesis::DEMO_PROGRAM).unwrap();
    let blocks = decode_pack(genesis::DEMO_WEIGHTS).unwrap();
    let off_chain = execute(
        &Executable::new(program).unwrap(),
        &image.iter().map(|b| *b as i8).collect::<Vec<_>>(),
        &BlockList(&blocks),
        &smartvm_kernels::Reference,
        &Config::default(),
        u64::MAX,
    );
    for preset in ["development", "local_testnet"] {
        state_of(preset).execute_with(|| {
            let info = pallet_smartvm::Models::<Runtime>::get(0).expect("demo model");
            assert_eq!(info.status, pallet_smartvm::ModelStatus::Sealed);
            assert_eq!(info.input_shape, [1, 1, 28, 28]);
            let limit = Weight::from_parts(200_000_000_000, 1 << 20);
            let on_chain = pallet_smartvm::Pallet::<Runtime>::dry_run(0, image.clone(), limit)
                .expect("dry run succeeds");
            let off_chain = off_chain.as_ref().expect("off-chain run succeeds");
            assert_eq!(on_chain.output, off_chain.output, "{preset}");
        });
    }
}

#[test]
fn weight_updates_need_root_or_two_thirds_of_the_council() {
    let alice: AccountId = polkadot_sdk::sp_keyring::Sr25519Keyring::Alice.to_account_id();
    let council = |yes, all| -> RuntimeOrigin {
        pallet_collective::RawOrigin::<AccountId, pallet_collective::Instance1>::Members(yes, all)
            .into()
    };
    assert!(RootOrTwoThirdsCouncil::try_origin(RuntimeOrigin::root()).is_ok());
    assert!(RootOrTwoThirdsCouncil::try_origin(council(2, 3)).is_ok());
    assert!(RootOrTwoThirdsCouncil::try_origin(council(3, 3)).is_ok());
    assert!(RootOrTwoThirdsCouncil::try_origin(council(1, 3)).is_err());
    assert!(RootOrTwoThirdsCouncil::try_origin(RuntimeOrigin::signed(alice)).is_err());
}

/// Weight keeps its price from block to block: the fee multiplier must not decay (a `()` update
/// resets it to zero after the first block, which made every later `infer` nearly free).
#[test]
fn weight_fees_do_not_decay_after_blocks() {
    use frame_support::{dispatch::DispatchInfo, traits::Hooks};
    use polkadot_sdk::pallet_transaction_payment::Pallet as Payment;
    let mut ext = state_of(sp_genesis_builder::DEV_RUNTIME_PRESET);
    ext.execute_with(|| {
        let heavy = Weight::from_parts(3_000_000_000, 0);
        let fee_of = |weight: Weight| {
            let info = DispatchInfo {
                call_weight: weight,
                ..Default::default()
            };
            Payment::<Runtime>::compute_fee(100, &info, 0)
        };
        let before = fee_of(heavy) - fee_of(Weight::zero());
        assert_eq!(before, 3_000_000_000, "one unit of fee per picosecond");
        for n in 1..=3 {
            Payment::<Runtime>::on_finalize(n);
        }
        let after = fee_of(heavy) - fee_of(Weight::zero());
        assert_eq!(after, before, "weight fee after three blocks");
    });
}

/// With the runtime's benchmarked weights, removing a model is one call that fits a normal
/// extrinsic whatever its size: the per-block work (68 KB of proof each, as benchmarked) is done
/// by `on_idle` instead. The old call was charged per block and could not be dispatched for a
/// model of more than about 107 blocks (MobileNetV2's 156, AlexNet's 955).
#[test]
fn removing_any_model_fits_one_extrinsic() {
    use polkadot_sdk::frame_support::dispatch::{DispatchClass, GetDispatchInfo};
    use polkadot_sdk::frame_system::limits::BlockWeights;
    let call =
        smartvm_runtime::RuntimeCall::Smartvm(pallet_smartvm::Call::remove_model { model: 0 });
    let weights: BlockWeights =
        <Runtime as polkadot_sdk::frame_system::Config>::BlockWeights::get();
    let max = weights
        .get(DispatchClass::Normal)
        .max_extrinsic
        .expect("normal extrinsics are bounded");
    let info = call.get_dispatch_info();
    assert!(
        info.total_weight().all_lte(max),
        "{:?} within {max:?}",
        info.total_weight()
    );
    // What one queued block costs on_idle, and that a block's idle time still clears many.
    use pallet_smartvm::WeightInfo;
    type W = smartvm_runtime::weights::pallet_smartvm::WeightInfo<Runtime>;
    let per_block = W::remove_model(1).saturating_sub(W::remove_model(0));
    let per_idle_block = max.proof_size() / per_block.proof_size();
    assert!(per_idle_block >= 50, "{per_idle_block} blocks per block");
}
