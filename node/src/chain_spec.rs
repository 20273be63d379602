//! Chain specifications built from the runtime's genesis presets.

use polkadot_sdk::sc_chain_spec::{ChainSpecExtension, ChainSpecGroup};
use polkadot_sdk::sc_service::ChainType;
use polkadot_sdk::sp_genesis_builder::{DEV_RUNTIME_PRESET, LOCAL_TESTNET_RUNTIME_PRESET};
use serde::{Deserialize, Serialize};
use smartvm_runtime::genesis::PARACHAIN_ID;

/// A chain spec of this node.
pub type ChainSpec = polkadot_sdk::sc_service::GenericChainSpec<Extensions>;

/// What a parachain spec adds: the relay chain it belongs to and its para id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ChainSpecGroup, ChainSpecExtension)]
pub struct Extensions {
    /// Relay chain id.
    #[serde(alias = "relayChain", alias = "RelayChain")]
    pub relay_chain: String,
    /// Parachain id.
    #[serde(alias = "paraId", alias = "ParaId")]
    pub para_id: u32,
}

#[cfg(feature = "collator")]
impl Extensions {
    /// The extensions of `spec`, if it is one of this node's.
    pub fn try_get(spec: &dyn polkadot_sdk::sc_service::ChainSpec) -> Option<&Self> {
        polkadot_sdk::sc_chain_spec::get_extension(spec.extensions())
    }
}

fn properties() -> polkadot_sdk::sc_chain_spec::Properties {
    let mut p = polkadot_sdk::sc_chain_spec::Properties::new();
    p.insert("tokenSymbol".into(), "SVM".into());
    p.insert("tokenDecimals".into(), 12.into());
    p.insert("ss58Format".into(), 42.into());
    p
}

fn wasm() -> Result<&'static [u8], String> {
    smartvm_runtime::WASM_BINARY
        .ok_or_else(|| "the runtime's wasm was not built (SKIP_WASM_BUILD set?)".into())
}

/// Single-node development chain: Alice collates, is sudo, and owns the demo model.
pub fn development() -> Result<ChainSpec, String> {
    Ok(ChainSpec::builder(
        wasm()?,
        Extensions {
            relay_chain: "rococo-local".into(),
            para_id: PARACHAIN_ID,
        },
    )
    .with_name("SmartVM Development")
    .with_id("smartvm_dev")
    .with_chain_type(ChainType::Development)
    .with_genesis_config_preset_name(DEV_RUNTIME_PRESET)
    .with_properties(properties())
    .build())
}

/// Local testnet for a relay chain on this machine (zombienet): Alice and Bob collate.
pub fn local_testnet() -> Result<ChainSpec, String> {
    Ok(ChainSpec::builder(
        wasm()?,
        Extensions {
            relay_chain: "rococo-local".into(),
            para_id: PARACHAIN_ID,
        },
    )
    .with_name("SmartVM Local Testnet")
    .with_id("smartvm_local")
    .with_chain_type(ChainType::Local)
    .with_genesis_config_preset_name(LOCAL_TESTNET_RUNTIME_PRESET)
    .with_protocol_id("smartvm-local")
    .with_properties(properties())
    .build())
}
