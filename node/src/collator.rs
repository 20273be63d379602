//! Collator mode: the node follows a relay chain (embedded, or an external one through
//! `--relay-chain-rpc-url`), imports parachain blocks verified by aura, and — as a collator —
//! builds blocks with cumulus' lookahead aura collator and hands them to relay validators.

use std::sync::Arc;
use std::time::Duration;

use codec::Encode;
use polkadot_sdk::cumulus_client_cli::CollatorOptions;
use polkadot_sdk::cumulus_client_collator::service::CollatorService;
use polkadot_sdk::cumulus_client_consensus_aura::{
    collators::lookahead::{self as aura, Params as AuraParams},
    equivocation_import_queue::fully_verifying_import_queue,
};
use polkadot_sdk::cumulus_client_consensus_common::ParachainBlockImport;
use polkadot_sdk::cumulus_client_service::{
    build_network, build_relay_chain_interface, prepare_node_config, start_relay_chain_tasks,
    BuildNetworkParams, DARecoveryProfile, ParachainTracingExecuteBlock,
    StartRelayChainTasksParams,
};
use polkadot_sdk::cumulus_primitives_core::{relay_chain::ValidationCode, ParaId};
use polkadot_sdk::sc_consensus::ImportQueue;
use polkadot_sdk::sc_network::config::FullNetworkConfiguration;
use polkadot_sdk::sc_network::NetworkBlock;
use polkadot_sdk::sc_service::{
    error::Error as ServiceError, Configuration, PartialComponents, TaskManager,
};
use polkadot_sdk::sp_consensus_aura::sr25519::AuthorityPair;
use polkadot_sdk::{
    cumulus_client_bootnodes as bootnodes, sc_basic_authorship, sc_network, sc_service,
    sp_timestamp,
};
use smartvm_runtime::opaque::Block;

use crate::service::{new_base, Backend, Client, Pool};

/// Block import that tells the parachain-system pallet's consensus hook what it imports.
type BlockImport = ParachainBlockImport<Block, Arc<Client>, Backend>;

/// Parts of a collator-mode node; `other` is the block import the collator writes through.
pub type Parts = PartialComponents<
    Client,
    Backend,
    (),
    polkadot_sdk::sc_consensus::DefaultImportQueue<Block>,
    Pool,
    BlockImport,
>;

/// Client, backend, pool and an import queue that verifies aura seals (and refuses equivocations).
pub fn new_partial(config: &Configuration) -> Result<Parts, ServiceError> {
    let base = new_base(config)?;
    let block_import = BlockImport::new(base.client.clone(), base.backend.clone());
    let import_queue = fully_verifying_import_queue::<AuthorityPair, _, _, _, _>(
        base.client.clone(),
        block_import.clone(),
        move |_, ()| async move { Ok(sp_timestamp::InherentDataProvider::from_system_time()) },
        &base.task_manager.spawn_essential_handle(),
        config.prometheus_registry(),
        None,
    );
    Ok(base.into_parts(import_queue, block_import))
}

/// Relay-chain slot length the collator plans against.
const RELAY_CHAIN_SLOT: Duration = Duration::from_secs(6);

/// Starts a parachain node under a relay chain; with `--collator` it also authors blocks.
pub async fn start_collator_node(
    parachain_config: Configuration,
    polkadot_config: Configuration,
    collator_options: CollatorOptions,
    para_id: ParaId,
) -> Result<TaskManager, ServiceError> {
    let parachain_config = prepare_node_config(parachain_config);
    let PartialComponents {
        client,
        backend,
        mut task_manager,
        import_queue,
        keystore_container,
        transaction_pool,
        other: block_import,
        ..
    } = new_partial(&parachain_config)?;

    let public_addresses = parachain_config.network.public_addresses.clone();
    let parachain_fork_id = parachain_config
        .chain_spec
        .fork_id()
        .map(ToString::to_string);
    let relay_chain_fork_id = polkadot_config
        .chain_spec
        .fork_id()
        .map(ToString::to_string);
    let advertise_non_global_ips = parachain_config.network.allow_non_globals_in_dht;
    let (relay_chain_interface, collator_key, relay_chain_network, paranode_rx) =
        build_relay_chain_interface(
            polkadot_config,
            &parachain_config,
            None,
            &mut task_manager,
            collator_options.clone(),
            None,
        )
        .await
        .map_err(|e| ServiceError::Application(Box::new(e)))?;

    let validator = parachain_config.role.is_authority();
    let registry = parachain_config.prometheus_registry().cloned();
    let import_queue_service = import_queue.service();
    let net_config = FullNetworkConfiguration::<_, _, sc_network::Litep2pNetworkBackend>::new(
        &parachain_config.network,
        registry.clone(),
    );
    let metrics = sc_network::NotificationMetrics::new(registry.as_ref());
    let (network, system_rpc_tx, tx_handler_controller, sync_service, _bitswap) =
        build_network(BuildNetworkParams {
            parachain_config: &parachain_config,
            net_config,
            client: client.clone(),
            transaction_pool: transaction_pool.clone(),
            para_id,
            spawn_handle: task_manager.spawn_handle(),
            spawn_essential_handle: task_manager.spawn_essential_handle(),
            relay_chain_interface: relay_chain_interface.clone(),
            import_queue,
            metrics,
            gap_sync_body_policy: None,
        })
        .await?;

    let rpc_builder = crate::rpc::builder(client.clone(), transaction_pool.clone());
    sc_service::spawn_tasks(sc_service::SpawnTasksParams {
        rpc_builder,
        client: client.clone(),
        transaction_pool: transaction_pool.clone(),
        task_manager: &mut task_manager,
        config: parachain_config,
        keystore: keystore_container.keystore(),
        backend: backend.clone(),
        network: network.clone(),
        sync_service: sync_service.clone(),
        system_rpc_tx,
        tx_handler_controller,
        telemetry: None,
        tracing_execute_block: Some(Arc::new(ParachainTracingExecuteBlock::new(client.clone()))),
    })?;

    let announce_block = {
        let sync_service = sync_service.clone();
        Arc::new(move |hash, data| sync_service.announce_block(hash, data))
    };
    let overseer_handle = relay_chain_interface
        .overseer_handle()
        .map_err(|e| ServiceError::Application(Box::new(e)))?;
    start_relay_chain_tasks(StartRelayChainTasksParams {
        client: client.clone(),
        announce_block: announce_block.clone(),
        para_id,
        relay_chain_interface: relay_chain_interface.clone(),
        task_manager: &mut task_manager,
        da_recovery_profile: if validator {
            DARecoveryProfile::Collator
        } else {
            DARecoveryProfile::FullNode
        },
        import_queue: import_queue_service,
        relay_chain_slot_duration: RELAY_CHAIN_SLOT,
        recovery_handle: Box::new(overseer_handle.clone()),
        sync_service,
        prometheus_registry: registry.as_ref(),
    })?;
    bootnodes::start_bootnode_tasks(bootnodes::StartBootnodeTasksParams {
        embedded_dht_bootnode: collator_options.embedded_dht_bootnode,
        dht_bootnode_discovery: collator_options.dht_bootnode_discovery,
        para_id,
        task_manager: &mut task_manager,
        relay_chain_interface: relay_chain_interface.clone(),
        relay_chain_fork_id,
        relay_chain_network: relay_chain_network.clone(),
        request_receiver: paranode_rx,
        parachain_network: network,
        advertise_non_global_ips,
        parachain_genesis_hash: client.chain_info().genesis_hash.encode(),
        parachain_fork_id,
        parachain_public_addresses: public_addresses,
    });

    if validator {
        let collator_key = collator_key.ok_or_else(|| {
            ServiceError::Other("a collator needs its relay-chain collator key".into())
        })?;
        let proposer = sc_basic_authorship::ProposerFactory::new(
            task_manager.spawn_handle(),
            client.clone(),
            transaction_pool,
            registry.as_ref(),
            None,
        );
        let collator_service = CollatorService::new(client.clone(), announce_block, client.clone());
        let code_client = client.clone();
        let params = AuraParams {
            create_inherent_data_providers: move |_, ()| async move { Ok(()) },
            block_import,
            para_client: client.clone(),
            para_backend: backend.clone(),
            relay_client: relay_chain_interface,
            code_hash_provider: move |hash| {
                code_client
                    .code_at(hash)
                    .ok()
                    .map(|code| ValidationCode::from(code).hash())
            },
            keystore: keystore_container.keystore(),
            collator_key,
            collator_peer_id: relay_chain_network.local_peer_id(),
            para_id,
            overseer_handle,
            relay_chain_slot_duration: RELAY_CHAIN_SLOT,
            proposer,
            collator_service,
            // Leaves room in the 2 s a parachain block may take for a block full of inferences.
            authoring_duration: Duration::from_millis(2000),
            reinitialize: false,
            max_pov_percentage: None,
        };
        task_manager.spawn_essential_handle().spawn(
            "aura",
            None,
            aura::run::<Block, AuthorityPair, _, _, _, _, _, _, _, _>(params),
        );
    }
    Ok(task_manager)
}
