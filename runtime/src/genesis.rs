//! Genesis presets: `development` (one collator, the Fashion-MNIST LeNet-5 deployed as model 0
//! so a new user can infer at once) and `local_testnet` (two collators, for zombienet).

use alloc::{vec, vec::Vec};

use polkadot_sdk::*;

use cumulus_primitives_core::ParaId;
use frame_support::build_struct_json_patch;
use serde_json::Value;
use sp_genesis_builder::PresetId;
use sp_keyring::Sr25519Keyring;

use crate::{
    AccountId, AuraId, BalancesConfig, CollatorSelectionConfig, CouncilConfig, ParachainInfoConfig,
    RuntimeGenesisConfig, SessionConfig, SessionKeys, SmartvmConfig, SudoConfig,
    EXISTENTIAL_DEPOSIT,
};

/// The parachain id both presets use.
pub const PARACHAIN_ID: u32 = 1000;

/// The demo model: LeNet-5 trained on Fashion-MNIST, compiled to int8 by `smartvm compile`
/// (`models/lenet5-fashion`, reproduced by `make demo-model`).
pub const DEMO_PROGRAM: &[u8] = include_bytes!("../../models/lenet5-fashion/compiled/program.smvm");
/// Its weight blocks, packed.
pub const DEMO_WEIGHTS: &[u8] = include_bytes!("../../models/lenet5-fashion/compiled/weights.smw");

fn session_keys(aura: AuraId) -> SessionKeys {
    SessionKeys { aura }
}

fn genesis(
    collators: Vec<(AccountId, AuraId)>,
    endowed: Vec<AccountId>,
    council: Vec<AccountId>,
    root: AccountId,
    models: Vec<(AccountId, Vec<u8>, Vec<Vec<u8>>)>,
) -> Value {
    build_struct_json_patch!(RuntimeGenesisConfig {
        balances: BalancesConfig {
            balances: endowed.iter().cloned().map(|k| (k, 1u128 << 60)).collect(),
        },
        parachain_info: ParachainInfoConfig {
            parachain_id: ParaId::from(PARACHAIN_ID),
        },
        collator_selection: CollatorSelectionConfig {
            invulnerables: collators.iter().cloned().map(|(acc, _)| acc).collect(),
            candidacy_bond: EXISTENTIAL_DEPOSIT * 16,
        },
        session: SessionConfig {
            keys: collators
                .into_iter()
                .map(|(acc, aura)| (acc.clone(), acc, session_keys(aura)))
                .collect(),
        },
        sudo: SudoConfig { key: Some(root) },
        council: CouncilConfig { members: council },
        smartvm: SmartvmConfig { models },
    })
}

fn demo_models(owner: AccountId) -> Vec<(AccountId, Vec<u8>, Vec<Vec<u8>>)> {
    let blocks = smartvm_isa::pack::decode_pack(DEMO_WEIGHTS)
        .unwrap_or_else(|e| panic!("the committed demo weights are a valid pack: {e:?}"));
    vec![(owner, DEMO_PROGRAM.to_vec(), blocks)]
}

fn collator(key: Sr25519Keyring) -> (AccountId, AuraId) {
    (key.to_account_id(), key.public().into())
}

fn council() -> Vec<AccountId> {
    [
        Sr25519Keyring::Alice,
        Sr25519Keyring::Bob,
        Sr25519Keyring::Charlie,
    ]
    .map(|k| k.to_account_id())
    .to_vec()
}

fn endowed() -> Vec<AccountId> {
    Sr25519Keyring::well_known()
        .map(|k| k.to_account_id())
        .collect()
}

fn development() -> Value {
    genesis(
        vec![collator(Sr25519Keyring::Alice)],
        endowed(),
        council(),
        Sr25519Keyring::Alice.to_account_id(),
        demo_models(Sr25519Keyring::Alice.to_account_id()),
    )
}

fn local_testnet() -> Value {
    genesis(
        vec![
            collator(Sr25519Keyring::Alice),
            collator(Sr25519Keyring::Bob),
        ],
        endowed(),
        council(),
        Sr25519Keyring::Alice.to_account_id(),
        demo_models(Sr25519Keyring::Alice.to_account_id()),
    )
}

/// The JSON patch of a named preset.
pub fn get_preset(id: &PresetId) -> Option<Vec<u8>> {
    let patch = match id.as_ref() {
        sp_genesis_builder::DEV_RUNTIME_PRESET => development(),
        sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET => local_testnet(),
        _ => return None,
    };
    Some(
        serde_json::to_string(&patch)
            .expect("a JSON value serialises")
            .into_bytes(),
    )
}

/// The presets this runtime offers.
pub fn preset_names() -> Vec<PresetId> {
    vec![
        PresetId::from(sp_genesis_builder::DEV_RUNTIME_PRESET),
        PresetId::from(sp_genesis_builder::LOCAL_TESTNET_RUNTIME_PRESET),
    ]
}
