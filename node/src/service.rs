//! Assembles the node: client with the SmartVM host functions, transaction pool, network, RPC,
//! and block authoring.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codec::Encode;
use futures::StreamExt;
use polkadot_sdk::cumulus_client_parachain_inherent::MockValidationDataInherentDataProvider;
use polkadot_sdk::cumulus_primitives_core::{relay_chain::HeadData, GetParachainInfo};
use polkadot_sdk::sc_client_api::HeaderBackend;
use polkadot_sdk::sc_consensus_manual_seal::{
    self as manual_seal, consensus::aura::AuraConsensusDataProvider,
};
use polkadot_sdk::sc_network::config::FullNetworkConfiguration;
use polkadot_sdk::sc_network::NotificationMetrics;
use polkadot_sdk::sc_service::{
    error::Error as ServiceError, Configuration, PartialComponents, TFullBackend, TFullClient,
    TaskManager,
};
use polkadot_sdk::sc_transaction_pool_api::TransactionPool;
use polkadot_sdk::sp_api::ProvideRuntimeApi;
use polkadot_sdk::sp_consensus_aura::SlotDuration;
use polkadot_sdk::sp_runtime::traits::{Block as BlockT, Header as HeaderT};
use polkadot_sdk::{
    cumulus_primitives_proof_size_hostfunction, sc_basic_authorship, sc_consensus,
    sc_consensus_aura, sc_executor, sc_network, sc_service, sc_transaction_pool, sp_io,
    sp_timestamp,
};
use smartvm_runtime::{opaque::Block, RuntimeApi};

/// Host functions of this node: Substrate's, cumulus' storage-proof size (for weight reclaim),
/// and the SmartVM kernels.
pub type HostFunctions = (sp_io::SubstrateHostFunctions, ExtraHostFunctions);

/// The host functions this node adds to Substrate's (also what `benchmark pallet` adds).
pub type ExtraHostFunctions = (
    cumulus_primitives_proof_size_hostfunction::storage_proof_size::HostFunctions,
    smartvm_host::kernel_host::HostFunctions,
);

/// Executes the runtime's wasm with those host functions.
pub type Executor = sc_executor::WasmExecutor<HostFunctions>;
/// The full client.
pub type Client = TFullClient<Block, RuntimeApi, Executor>;
/// The database backend.
pub type Backend = TFullBackend<Block>;
/// The transaction pool.
pub type Pool = sc_transaction_pool::TransactionPoolHandle<Block, Client>;

/// How a dev chain makes blocks.
#[derive(Clone, Copy, Debug)]
pub enum SealMode {
    /// A block as soon as a transaction is in the pool.
    Instant,
    /// A block every this many milliseconds, empty or not.
    Interval(u64),
}

/// Parts shared by every subcommand.
pub type Parts =
    PartialComponents<Client, Backend, (), sc_consensus::DefaultImportQueue<Block>, Pool, ()>;

/// What every mode starts from: client (recording import proofs, so the storage-proof-size
/// host function returns real sizes), backend, keystore, tasks and transaction pool.
pub struct Base {
    /// The full client.
    pub client: Arc<Client>,
    /// The database backend.
    pub backend: Arc<Backend>,
    /// Keys of this node.
    pub keystore_container: sc_service::KeystoreContainer,
    /// Owns the node's tasks.
    pub task_manager: TaskManager,
    /// The transaction pool.
    pub transaction_pool: Arc<Pool>,
}

/// Builds the [`Base`] of a node.
pub fn new_base(config: &Configuration) -> Result<Base, ServiceError> {
    let executor = sc_service::new_wasm_executor::<HostFunctions>(&config.executor);
    let (client, backend, keystore_container, task_manager) =
        sc_service::new_full_parts_record_import::<Block, RuntimeApi, _>(
            config,
            None,
            executor,
            true,
            Default::default(),
        )?;
    let client = Arc::new(client);
    let transaction_pool = Arc::from(
        sc_transaction_pool::Builder::new(
            task_manager.spawn_essential_handle(),
            client.clone(),
            config.role.is_authority().into(),
        )
        .with_options(config.transaction_pool.clone())
        .with_prometheus(config.prometheus_registry())
        .build(),
    );
    Ok(Base {
        client,
        backend,
        keystore_container,
        task_manager,
        transaction_pool,
    })
}

impl Base {
    /// The parts `sc_service` subcommands and the node builders take, with `import_queue` and
    /// the mode's extra part `other`.
    pub fn into_parts<ImportQueue, Other>(
        self,
        import_queue: ImportQueue,
        other: Other,
    ) -> PartialComponents<Client, Backend, (), ImportQueue, Pool, Other> {
        PartialComponents {
            client: self.client,
            backend: self.backend,
            task_manager: self.task_manager,
            import_queue,
            keystore_container: self.keystore_container,
            select_chain: (),
            transaction_pool: self.transaction_pool,
            other,
        }
    }
}

/// Client, backend, pool and the dev chain's import queue.
pub fn new_partial(config: &Configuration) -> Result<Parts, ServiceError> {
    let base = new_base(config)?;
    let import_queue = manual_seal::import_queue(
        Box::new(base.client.clone()),
        &base.task_manager.spawn_essential_handle(),
        config.prometheus_registry(),
    );
    Ok(base.into_parts(import_queue, ()))
}

/// Relay-chain slot the mock relay data pretends to be at.
const RELAY_SLOT_MILLIS: u64 = 6000;

/// The inherent data providers of a dev block, or why they could not be made.
type DevInherents = Result<
    (
        sp_timestamp::InherentDataProvider,
        MockValidationDataInherentDataProvider<()>,
    ),
    Box<dyn std::error::Error + Send + Sync>,
>;

/// Inherents of a dev block: a timestamp on the block's own relay slot (so aura's slot and
/// the parachain system's relay slot agree) and mocked relay-chain validation data.
fn dev_inherents(
    client: Arc<Client>,
    para_id: polkadot_sdk::cumulus_primitives_core::ParaId,
    slot: SlotDuration,
) -> impl Fn(<Block as BlockT>::Hash, ()) -> futures::future::Ready<DevInherents> + Send + Sync {
    // Start two hours back so block timestamps never run ahead of the wall clock.
    let first_relay_slot = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(Duration::from_secs(2 * 3600))
        .as_millis() as u64
        / RELAY_SLOT_MILLIS;
    let relay_per_para = (slot.as_millis() / RELAY_SLOT_MILLIS).max(1) as u32;
    move |parent, ()| {
        let result = (|| {
            let head = client
                .header(parent)?
                .ok_or("the parent block's header is missing")?;
            let number: u32 = *head.number();
            let block = number + 1;
            let relay_slot = first_relay_slot + block as u64 * relay_per_para as u64;
            let validation = MockValidationDataInherentDataProvider::<()> {
                current_para_block: block,
                para_id,
                current_para_block_head: Some(HeadData(head.encode())),
                relay_blocks_per_para_block: relay_per_para,
                relay_offset: (relay_slot as u32).saturating_sub(relay_per_para * block),
                para_blocks_per_relay_epoch: 10,
                ..Default::default()
            };
            let timestamp =
                sp_timestamp::InherentDataProvider::new((relay_slot * RELAY_SLOT_MILLIS).into());
            Ok((timestamp, validation))
        })();
        futures::future::ready(result)
    }
}

/// A single dev node with no relay chain: blocks sealed by this node (instantly or on a timer),
/// no peers, state in a temporary database when run with `--dev`.
pub fn start_dev_node(
    mut config: Configuration,
    mode: SealMode,
) -> Result<TaskManager, ServiceError> {
    let PartialComponents {
        client,
        backend,
        mut task_manager,
        import_queue,
        keystore_container,
        transaction_pool,
        ..
    } = new_partial(&config)?;

    config.network.default_peers_set.in_peers = 0;
    config.network.default_peers_set.out_peers = 0;
    let net_config = FullNetworkConfiguration::<_, _, sc_network::Litep2pNetworkBackend>::new(
        &config.network,
        None,
    );
    let (network, system_rpc_tx, tx_handler_controller, sync_service, _bitswap) =
        sc_service::build_network(sc_service::BuildNetworkParams {
            config: &config,
            client: client.clone(),
            transaction_pool: transaction_pool.clone(),
            spawn_handle: task_manager.spawn_handle(),
            spawn_essential_handle: task_manager.spawn_essential_handle(),
            import_queue,
            net_config,
            block_announce_validator_builder: None,
            warp_sync_config: None,
            block_relay: None,
            metrics: NotificationMetrics::new(None),
            gap_sync_body_policy: None,
        })?;

    let proposer = sc_basic_authorship::ProposerFactory::new(
        task_manager.spawn_handle(),
        client.clone(),
        transaction_pool.clone(),
        config.prometheus_registry(),
        None,
    );
    let slot = sc_consensus_aura::slot_duration(&*client)?;
    let best = client.info().best_hash;
    let para_id = client
        .runtime_api()
        .parachain_id(best)
        .map_err(|e| ServiceError::Application(Box::new(e)))?;
    let inherents = dev_inherents(client.clone(), para_id, slot);
    let aura_digest = Box::new(AuraConsensusDataProvider::<Block>::new_with_slot_duration(
        slot,
    ));
    let select_chain = sc_consensus::LongestChain::new(backend.clone());

    // Both modes drive manual seal with a stream of commands: a timer, or the pool's import
    // notifications (one block per arriving transaction). Blocks are finalized at once.
    let seal = || manual_seal::EngineCommand::SealNewBlock {
        create_empty: true,
        finalize: true,
        parent_hash: None,
        sender: None,
    };
    let commands: std::pin::Pin<Box<dyn futures::Stream<Item = _> + Send>> = match mode {
        SealMode::Instant => Box::pin(
            transaction_pool
                .import_notification_stream()
                .map(move |_| seal()),
        ),
        SealMode::Interval(ms) => Box::pin(futures::stream::unfold((), move |()| async move {
            futures_timer::Delay::new(Duration::from_millis(ms)).await;
            Some((seal(), ()))
        })),
    };
    let authoring = manual_seal::run_manual_seal(manual_seal::ManualSealParams {
        block_import: client.clone(),
        env: proposer,
        client: client.clone(),
        pool: transaction_pool.clone(),
        commands_stream: commands,
        select_chain,
        consensus_data_provider: Some(aura_digest),
        create_inherent_data_providers: inherents,
    });
    task_manager
        .spawn_essential_handle()
        .spawn_blocking("dev-seal", None, authoring);

    let rpc_builder = crate::rpc::builder(client.clone(), transaction_pool.clone());
    sc_service::spawn_tasks(sc_service::SpawnTasksParams {
        network,
        client,
        keystore: keystore_container.keystore(),
        task_manager: &mut task_manager,
        transaction_pool,
        rpc_builder,
        backend,
        system_rpc_tx,
        tx_handler_controller,
        sync_service,
        config,
        telemetry: None,
        tracing_execute_block: None,
    })?;
    Ok(task_manager)
}
