//! The runtime's SmartVM bounds fit a relay-chain validator's wasm heap: the memory each bound
//! implies, printed as a table (`cargo test -p smartvm-runtime --test limits -- --nocapture`).

use pallet_smartvm::limits::{self, Allocation};
use smartvm_runtime::Runtime;

fn table(title: &str, allocations: &[Allocation]) {
    println!("{title}");
    println!(
        "  {:<72} {:>12} {:>12}",
        "allocation", "largest", "peak (class)"
    );
    for a in allocations {
        println!(
            "  {:<72} {:>9} KiB {:>9} KiB",
            a.what,
            a.largest >> 10,
            a.peak >> 10
        );
    }
    println!(
        "  {:<72} {:>12} {:>9} KiB",
        "total",
        "",
        limits::total(allocations) >> 10
    );
}

#[test]
fn the_runtime_bounds_fit_the_validators_heap() {
    let inference = limits::inference::<Runtime>();
    let upload = limits::upload::<Runtime>();
    table("one inference at its peak", &inference);
    table("one create_model's validation at its peak", &upload);
    table("one job's slice at its peak", &limits::job::<Runtime>());
    println!(
        "validators' heap {} KiB, of which an inference may take {} %; single allocations up to {} KiB",
        limits::VALIDATOR_HEAP >> 10,
        limits::HEAP_SHARE_PERCENT,
        limits::MAX_ALLOCATION >> 10
    );
    assert_eq!(limits::check::<Runtime>(), Ok(()));
    assert_eq!(limits::check_jobs::<Runtime>(), Ok(()));
    // The proof a validator holds is the relay chain's bound, as the runtime's block weights say.
    assert_eq!(
        limits::RELAY_MAX_POV,
        polkadot_sdk::cumulus_primitives_core::relay_chain::MAX_POV_SIZE as u64
    );
    // The runtime's build-time checks (every pallet's integrity_test) pass.
    use polkadot_sdk::frame_support::traits::IntegrityTest;
    polkadot_sdk::sp_io::TestExternalities::default()
        .execute_with(<smartvm_runtime::AllPalletsWithSystem as IntegrityTest>::integrity_test);
}
