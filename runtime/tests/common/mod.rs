//! What the runtime's integration tests share: a chain state built from a genesis preset, and
//! an input for the demo model.

use polkadot_sdk::{frame_support, sp_io};
use serde_json::Value;
use smartvm_runtime::{genesis, RuntimeGenesisConfig};

/// Overlays `patch` on `base` the way chain-spec presets are applied.
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// The state a chain spec built from `preset` starts with.
pub fn state_of(preset: &str) -> sp_io::TestExternalities {
    let mut config =
        serde_json::to_value(RuntimeGenesisConfig::default()).expect("default config is JSON");
    let patch = genesis::get_preset(&preset.into()).expect("preset exists");
    merge(
        &mut config,
        serde_json::from_slice(&patch).expect("patch is JSON"),
    );
    let json = serde_json::to_vec(&config).unwrap();
    let mut ext = sp_io::TestExternalities::new_empty();
    ext.execute_with(|| {
        frame_support::genesis_builder_helper::build_state::<RuntimeGenesisConfig>(json)
            .expect("preset builds")
    });
    ext
}

/// The first Fashion-MNIST test image as the chain takes it: raw pixels.
pub fn an_image() -> Vec<u8> {
    // A fixed synthetic image keeps the test independent of the dataset package.
    (0..784u32)
        .map(|i| ((i * 37 + i / 28 * 11) % 256) as u8)
        .collect()
}
