//! Talking to a SmartVM chain over RPC with subxt. Calls, events and storage are addressed by name
//! against the metadata the node serves, so the CLI follows the runtime without regenerated code.

pub mod deploy;
pub mod download;
pub mod infer;
pub mod job;

use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use subxt::backend::LegacyBackend;
use subxt::config::{DefaultExtrinsicParamsBuilder, RpcConfigFor};
use subxt::events::DecodeAsEvent;
use subxt::ext::scale_decode::DecodeAsType;
use subxt::ext::scale_encode::EncodeAsType;
use subxt::extrinsics::ExtrinsicEvents;
use subxt::rpcs::{methods::LegacyRpcMethods, RpcClient};
use subxt::tx::{Payload, TransactionStatus};
use subxt::{OnlineClient, SubstrateConfig};
use subxt_signer::{sr25519::Keypair, SecretUri};

/// The chain's configuration as subxt sees it: Substrate defaults (AccountId32, MultiAddress,
/// sr25519, BLAKE2 hashes) match the SmartVM runtime.
pub type Config = SubstrateConfig;

/// A connection to a node: the subxt client plus the legacy RPC methods it does not wrap.
pub struct Chain {
    /// Typed access at blocks: transactions, storage, runtime APIs, events.
    pub client: OnlineClient<Config>,
    /// Raw JSON-RPC calls (account nonce with the pool, storage keys by prefix).
    pub rpc: LegacyRpcMethods<RpcConfigFor<Config>>,
}

impl Chain {
    /// Connects to `url` (`ws://` is allowed: a dev node is local).
    pub async fn connect(url: &str) -> Result<Self> {
        let raw = RpcClient::from_insecure_url(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        // The legacy backend answers each storage read and runtime call in one request. The
        // default (chainHead) backend answered each through its follow subscription, ~44 ms
        // later on a local node: 88 ms for a dry run that the node computes in ~6 ms.
        let backend = LegacyBackend::<Config>::builder().build(raw.clone());
        let client = OnlineClient::<Config>::from_backend(std::sync::Arc::new(backend))
            .await
            .with_context(|| format!("reading the chain's metadata from {url}"))?;
        Ok(Self {
            client,
            rpc: LegacyRpcMethods::new(raw),
        })
    }

    /// The next nonce of `signer`, counting its transactions still in the pool.
    pub async fn next_nonce(&self, signer: &Keypair) -> Result<u64> {
        let account = signer.public_key().to_account_id();
        self.rpc
            .system_account_next_index(&account)
            .await
            .context("reading the account nonce")
    }

    /// Waits until no transaction of `signer` is pending (all that an earlier, interrupted run
    /// sent are in a finalized block or gone), so reading state shows their effects.
    pub async fn settle(&self, signer: &Keypair) -> Result<()> {
        let account = signer.public_key().to_account_id();
        for _ in 0..120 {
            let pending = self.next_nonce(signer).await?;
            let at = self.client.at_current_block().await?;
            let done = at.tx().account_nonce(&account).await?;
            if pending <= done {
                return Ok(());
            }
            println!(
                "waiting for {} pending transaction(s) of this account",
                pending - done
            );
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        bail!("transactions of this account stayed pending for two minutes")
    }

    /// Signs `call` with `nonce`, submits it and waits until it is as far as `until` asks; errors
    /// carry the runtime's error name (e.g. `Smartvm::NotOwner`).
    pub async fn submit(
        &self,
        call: &impl Payload,
        signer: &Keypair,
        nonce: u64,
        until: Inclusion,
    ) -> Result<Included> {
        self.send(call, signer, nonce, until).await?.await
    }

    /// Signs and submits `call` with `nonce`, returning once the node has taken it, with the
    /// wait for `until`. Sending a batch in nonce order and then awaiting the waits together keeps
    /// every transaction ready on arrival: a node that seals on arrival (`--instant-seal`) never
    /// sees a later nonce first and parks it.
    pub async fn send<'a>(
        &'a self,
        call: &impl Payload,
        signer: &Keypair,
        nonce: u64,
        until: Inclusion,
    ) -> Result<Pending<'a>> {
        let at = self.client.at_current_block().await?;
        // Mortal from a block a few behind the newest: a node that seals on arrival may still
        // validate against the parent of the block the client just saw, which cannot check a
        // birth block it does not know yet.
        let birth = at.block_number().saturating_sub(MORTALITY_LAG);
        let birth_hash = self
            .rpc
            .chain_get_block_hash(Some(birth.into()))
            .await?
            .with_context(|| format!("no block {birth}"))?;
        let params = DefaultExtrinsicParamsBuilder::<Config>::new()
            .nonce(nonce)
            .mortal_from_unchecked(MORTALITY, birth, birth_hash)
            .build();
        let mut progress = at
            .tx()
            .create_signable(call, &signer.public_key().to_account_id(), params)
            .await?
            .sign(signer)?
            .submit_and_watch()
            .await
            .context("submitting the transaction")?;
        Ok(Box::pin(async move {
            while let Some(status) = progress.next().await {
                match status? {
                    TransactionStatus::InBestBlock(tx) if until == Inclusion::BestBlock => {
                        let block = tx.block_hash();
                        let events = tx.wait_for_success().await.map_err(|e| anyhow!("{e}"))?;
                        return Ok(Included { block, events });
                    }
                    TransactionStatus::InFinalizedBlock(tx) => {
                        let block = tx.block_hash();
                        let events = tx.wait_for_success().await.map_err(|e| anyhow!("{e}"))?;
                        return Ok(Included { block, events });
                    }
                    TransactionStatus::Invalid { message } => {
                        bail!("transaction invalid: {message}")
                    }
                    TransactionStatus::Dropped { message } => {
                        bail!("transaction dropped: {message}")
                    }
                    TransactionStatus::Error { message } => bail!("transaction failed: {message}"),
                    _ => {}
                }
            }
            bail!("the node stopped reporting on the transaction")
        }))
    }
}

/// Blocks a transaction stays valid for after its birth block.
const MORTALITY: u64 = 256;
/// How far behind the newest block a transaction's birth block is taken.
const MORTALITY_LAG: u64 = 4;

/// A submitted transaction's wait for inclusion ([`Chain::send`]).
pub type Pending<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Included>> + Send + 'a>>;

/// How far a submitted transaction must get before [`Chain::submit`] returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Inclusion {
    /// In the node's best block: quick, enough on a single-node dev chain.
    BestBlock,
    /// In a finalized block: on a parachain, after relay-chain validators approved it.
    Finalized,
}

/// A successful transaction: the block it is in and its events.
pub struct Included {
    /// Hash of the block holding the transaction.
    pub block: subxt::config::HashFor<Config>,
    /// The transaction's events (`find` picks one by type).
    pub events: ExtrinsicEvents<Config>,
}

/// Reads a secret URI such as `//Alice` or a mnemonic.
pub fn keypair(suri: &str) -> Result<Keypair> {
    let uri = SecretUri::from_str(suri).map_err(|e| anyhow!("--suri: {e}"))?;
    Keypair::from_uri(&uri).map_err(|e| anyhow!("--suri: {e}"))
}

/// `sp_weights::Weight` as the runtime encodes it (compact fields).
#[derive(Clone, Copy, Debug, DecodeAsType, EncodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
#[encode_as_type(crate_path = "subxt::ext::scale_encode")]
pub struct Weight {
    /// Picoseconds of reference compute.
    pub ref_time: u64,
    /// Bytes of storage proof.
    pub proof_size: u64,
}

/// `pallet_smartvm::ModelStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
pub enum ModelStatus {
    /// Blocks still being uploaded.
    Draft,
    /// Complete and inferable.
    Sealed,
}

/// The fields of `pallet_smartvm::ModelInfo` the CLI uses.
#[derive(Clone, Debug, DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
pub struct ModelInfo {
    /// Creator, who pays the deposit.
    pub owner: [u8; 32],
    /// BLAKE2b-256 of the program container.
    pub program_hash: [u8; 32],
    /// Bumped by governance updates.
    pub version: u32,
    /// Draft or sealed.
    pub status: ModelStatus,
    /// C, D, H, W.
    pub input_shape: [u32; 4],
    /// Blocks the manifest lists.
    pub block_count: u32,
}

/// `Smartvm::ModelCreated` (the fields read here).
#[derive(Debug, DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
pub struct ModelCreated {
    /// The new model's id.
    pub model: u32,
}

impl DecodeAsEvent for ModelCreated {
    fn is_event(pallet: &str, event: &str) -> bool {
        (pallet, event) == ("Smartvm", "ModelCreated")
    }
}

/// `Smartvm::Inferred` (the fields read here).
#[derive(Debug, DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
pub struct Inferred {
    /// The model's version that ran.
    pub version: u32,
    /// The program's int8 output.
    pub output: Vec<i8>,
    /// Index of the first largest output.
    pub class: u32,
    /// Compute and proof the VM consumed.
    pub weight_used: Weight,
}

impl DecodeAsEvent for Inferred {
    fn is_event(pallet: &str, event: &str) -> bool {
        (pallet, event) == ("Smartvm", "Inferred")
    }
}

/// `TransactionPayment::TransactionFeePaid` (the fields read here).
#[derive(Debug, DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
pub struct FeePaid {
    /// Fee after the refund of unused weight.
    pub actual_fee: u128,
    /// Tip on top.
    pub tip: u128,
}

impl DecodeAsEvent for FeePaid {
    fn is_event(pallet: &str, event: &str) -> bool {
        (pallet, event) == ("TransactionPayment", "TransactionFeePaid")
    }
}

/// The first event of type `E` among `events`.
pub fn find<E: DecodeAsEvent>(events: &ExtrinsicEvents<Config>) -> Result<E> {
    events
        .find_first::<E>()
        .ok_or_else(|| anyhow!("the transaction emitted no {}", std::any::type_name::<E>()))?
        .map_err(|e| anyhow!("decoding an event: {e}"))
}

/// A model's bookkeeping at the current block, if it exists.
pub async fn model_info(chain: &Chain, model: u32) -> Result<Option<ModelInfo>> {
    let at = chain.client.at_current_block().await?;
    let address = subxt::dynamic::storage::<(u32,), ModelInfo>("Smartvm", "Models");
    match at.storage().try_fetch(address, (model,)).await? {
        Some(value) => Ok(Some(value.decode()?)),
        None => Ok(None),
    }
}
