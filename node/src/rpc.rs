//! The node's RPC methods beyond the standard ones: account nonces and fee queries, which
//! polkadot.js uses to build and price transactions.

use std::sync::Arc;

use jsonrpsee::RpcModule;
use polkadot_sdk::pallet_transaction_payment_rpc::{
    TransactionPayment, TransactionPaymentApiServer,
};
use polkadot_sdk::sc_transaction_pool_api::TransactionPool;
use polkadot_sdk::substrate_frame_rpc_system::{System, SystemApiServer};
use smartvm_runtime::opaque::Block;

use crate::service::Client;

/// Builds the extra RPC module.
pub fn extensions<P>(
    client: Arc<Client>,
    pool: Arc<P>,
) -> Result<RpcModule<()>, Box<dyn std::error::Error + Send + Sync>>
where
    P: TransactionPool<Block = Block> + 'static,
{
    let mut module = RpcModule::new(());
    module.merge(System::new(client.clone(), pool).into_rpc())?;
    module.merge(TransactionPayment::new(client).into_rpc())?;
    Ok(module)
}

/// The `rpc_builder` every node mode hands to `sc_service::spawn_tasks`.
pub fn builder<Executor, P>(
    client: Arc<Client>,
    pool: Arc<P>,
) -> Box<dyn Fn(Executor) -> Result<RpcModule<()>, polkadot_sdk::sc_service::Error>>
where
    P: TransactionPool<Block = Block> + 'static,
{
    Box::new(move |_| {
        extensions(client.clone(), pool.clone())
            .map_err(polkadot_sdk::sc_service::Error::Application)
    })
}
