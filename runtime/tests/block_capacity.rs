//! How many LeNet-5 `infer`s one parachain block holds, with the proof a collator records.
//!
//! Each `infer` declares the proof of every weight block its model may read, but a block's proof
//! holds each trie node once: the second inference of a model reads nothing new. The runtime's
//! `StorageWeightReclaim` charges the proof each extrinsic really added, as recorded, so after
//! the first inference a block fills by ref_time, not by proof. Here the development genesis
//! (the Fashion-MNIST LeNet-5 is model 0) runs one and then many inferences under a proof
//! recorder, as a collator builds a block, and the block's capacity follows from the runtime's
//! own limits.

mod common;

use codec::Encode;
use polkadot_sdk::frame_support::dispatch::{DispatchClass, GetDispatchInfo};
use polkadot_sdk::frame_support::weights::Weight;
use polkadot_sdk::{frame_system, sp_genesis_builder, sp_keyring::Sr25519Keyring};
use smartvm_runtime::{configs::RuntimeBlockWeights, Runtime, RuntimeCall, RuntimeOrigin};

/// What `count` inferences of the demo model in one block record: the proof's encoded size, the
/// ref_time they were charged (post-dispatch) and the weight one declares before dispatch.
fn record(count: u32) -> (u64, Weight, Weight) {
    let mut ext = common::state_of(sp_genesis_builder::DEV_RUNTIME_PRESET);
    ext.commit_all().expect("genesis commits");
    let alice = Sr25519Keyring::Alice.to_account_id();
    let limit = Weight::from_parts(200_000_000_000, 2_000_000);
    let ((charged, declared), proof) = ext.execute_and_prove(|| {
        frame_system::Pallet::<Runtime>::set_block_number(1);
        let (mut charged, mut declared) = (Weight::zero(), Weight::zero());
        for i in 0..count {
            let mut input = common::an_image();
            input[0] = i as u8;
            let call = RuntimeCall::Smartvm(pallet_smartvm::Call::infer {
                model: 0,
                input: input.try_into().expect("a LeNet-5 input fits"),
                weight_limit: limit,
            });
            declared = call.get_dispatch_info().total_weight();
            let post = polkadot_sdk::sp_runtime::traits::Dispatchable::dispatch(
                call,
                RuntimeOrigin::signed(alice.clone()),
            )
            .expect("the demo model infers");
            charged = charged.saturating_add(post.actual_weight.expect("infer reports its weight"));
        }
        (charged, declared)
    });
    (proof.encoded_size() as u64, charged, declared)
}

#[test]
fn a_parachain_block_holds_hundreds_of_lenet5_inferences() {
    let many = 20;
    let (proof_one, charged_one, declared) = record(1);
    let (proof_many, charged_many, _) = record(many);
    let marginal_proof = (proof_many - proof_one) / u64::from(many - 1);
    let per_infer = charged_many.ref_time() / u64::from(many);
    assert!(charged_one.ref_time() > 0 && per_infer > 0);

    let limits = RuntimeBlockWeights::get();
    let normal = limits.get(DispatchClass::Normal);
    let room = normal.max_total.unwrap_or(limits.max_block);
    let per_tx = per_infer + normal.base_extrinsic.ref_time();
    let by_time = room.ref_time() / per_tx;
    // After the first, each inference adds `marginal_proof`; the last must still fit its
    // declared proof before dispatch.
    let by_proof =
        (room.proof_size() - proof_one - declared.proof_size()) / marginal_proof.max(1) + 1;
    // Without reclaim every inference would keep its charged proof.
    let charged_proof = charged_one.proof_size();
    let without_reclaim = room.proof_size() / charged_proof.max(1);
    println!(
        "LeNet-5 infer: charged {:.3} ms of ref_time and {} B of proof each; the recorded proof \
         is {proof_one} B for one and grows {marginal_proof} B per further inference",
        per_infer as f64 / 1e9,
        charged_proof
    );
    println!(
        "one parachain block holds {} (bound by {}; by ref_time {by_time}, by recorded proof \
         {by_proof}; {without_reclaim} if each kept its charged proof)",
        by_time.min(by_proof),
        if by_time <= by_proof {
            "ref_time"
        } else {
            "proof"
        }
    );
    assert!(
        marginal_proof * 20 < proof_one,
        "a repeated inference should add little proof: the weight blocks are already in it"
    );
    assert!(
        by_time.min(by_proof) >= 300,
        "issue 20's target is 300 LeNet-5 inferences per block"
    );
}
