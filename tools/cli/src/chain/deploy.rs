//! `smartvm deploy`: put a compiled model on chain — create it, upload its weight blocks with
//! several transactions in flight, seal it — and pick up where an interrupted run stopped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use smartvm_isa::block_hash;
use subxt::dynamic::transaction;
use subxt_signer::sr25519::Keypair;

use super::{find, keypair, model_info, Chain, Inclusion, ModelCreated, ModelInfo, ModelStatus};
use crate::load;

/// Arguments of `smartvm deploy`.
#[derive(Args)]
pub struct DeployArgs {
    /// Output directory of `smartvm compile` (program.smvm and weights.smw).
    dir: PathBuf,
    /// Node RPC endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:9944")]
    url: String,
    /// Secret URI of the owner account, which pays the storage deposit.
    #[arg(long, default_value = "//Alice")]
    suri: String,
    /// Resume this draft model; by default the newest draft of the same program and owner is
    /// resumed, or a new model is created.
    #[arg(long)]
    model: Option<u32>,
    /// Block uploads in flight at once.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Leave the model as a draft (no seal).
    #[arg(long)]
    no_seal: bool,
}

pub async fn run(args: DeployArgs) -> Result<()> {
    let program_path = args.dir.join("program.smvm");
    let program = std::fs::read(&program_path)
        .with_context(|| format!("reading {}", program_path.display()))?;
    let blocks = load::blocks(&args.dir.join("weights.smw"))?;
    load::check_manifest(&load::program(&program_path, None)?, &blocks)?;
    let signer = keypair(&args.suri)?;
    let chain = Chain::connect(&args.url).await?;
    let started = Instant::now();
    chain.settle(&signer).await?;

    let model = match args.model {
        Some(id) => id,
        None => match resumable_draft(&chain, &signer, &program).await? {
            Some(id) => {
                println!("resuming draft model {id}");
                id
            }
            None => create(&chain, &signer, &program).await?,
        },
    };
    let info = model_info(&chain, model)
        .await?
        .with_context(|| format!("model {model} does not exist"))?;
    if info.program_hash != block_hash(&program) || info.block_count as usize != blocks.len() {
        bail!("model {model} holds a different program");
    }
    if info.status == ModelStatus::Sealed {
        println!("model {model} is already sealed");
        return Ok(());
    }
    let present = stored_blocks(&chain, model).await?;
    let missing: Vec<u32> = (0..blocks.len() as u32)
        .filter(|i| !present.contains(i))
        .collect();
    let nonce = upload(&chain, &signer, model, &blocks, &missing, args.batch.max(1)).await?;
    if !args.no_seal {
        seal(&chain, &signer, model, nonce).await?;
    }
    let bytes: usize = program.len() + blocks.iter().map(Vec::len).sum::<usize>();
    println!(
        "model {model}: {} blocks ({} uploaded now), {bytes} bytes, {} in {:.1} s",
        blocks.len(),
        missing.len(),
        if args.no_seal { "draft" } else { "sealed" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Puts a new model on chain in one go (create, upload every block `batch` at a time, seal)
/// and returns its id: for tools that deploy what they just compiled.
pub async fn deploy_new(
    chain: &Chain,
    signer: &Keypair,
    program: &[u8],
    blocks: &[Vec<u8>],
    batch: usize,
) -> Result<u32> {
    chain.settle(signer).await?;
    let model = create(chain, signer, program).await?;
    let all: Vec<u32> = (0..blocks.len() as u32).collect();
    let nonce = upload(chain, signer, model, blocks, &all, batch.max(1)).await?;
    seal(chain, signer, model, nonce).await?;
    Ok(model)
}

/// Seals `model` with the transaction of `nonce`, the one after the uploads' (see `upload`).
async fn seal(chain: &Chain, signer: &Keypair, model: u32, nonce: u64) -> Result<()> {
    let call = transaction("Smartvm", "seal_model", (model,));
    // Finalized, as for `create`: a caller's next read (`infer`'s model check) is at the
    // finalized block.
    chain
        .submit(&call, signer, nonce, Inclusion::Finalized)
        .await
        .context("seal_model")?;
    Ok(())
}

/// The newest draft of `program` owned by `signer`, which an interrupted deploy left behind.
async fn resumable_draft(chain: &Chain, signer: &Keypair, program: &[u8]) -> Result<Option<u32>> {
    let owner = signer.public_key().0;
    let hash = block_hash(program);
    let at = chain.client.at_current_block().await?;
    let address = subxt::dynamic::storage::<(u32,), ModelInfo>("Smartvm", "Models");
    let mut entries = at.storage().iter(address, ()).await?;
    let mut newest = None;
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        let (id,) = entry.key()?.decode()?;
        let info = entry.value().decode()?;
        if info.owner == owner && info.program_hash == hash && info.status == ModelStatus::Draft {
            newest = newest.max(Some(id));
        }
    }
    Ok(newest)
}

async fn create(chain: &Chain, signer: &Keypair, program: &[u8]) -> Result<u32> {
    let nonce = chain.next_nonce(signer).await?;
    let call = transaction("Smartvm", "create_model", (program.to_vec(),));
    // Finalized: the reads that follow are at the finalized block, which on a parachain
    // under a real relay chain lags the best block (zombienet: "model 1 does not exist").
    let events = chain
        .submit(&call, signer, nonce, Inclusion::Finalized)
        .await
        .context("create_model")?;
    let model = find::<ModelCreated>(&events.events)?.model;
    println!("created model {model}");
    Ok(model)
}

/// Indices of the blocks of `model` already in storage (keys only; no block is downloaded).
async fn stored_blocks(chain: &Chain, model: u32) -> Result<BTreeSet<u32>> {
    let at = chain.client.at_current_block().await?;
    let address = subxt::dynamic::storage::<(u32, u32), Vec<u8>>("Smartvm", "WeightBlocks");
    let prefix = at.storage().entry(address)?.iter_key((model,))?;
    let mut present = BTreeSet::new();
    let mut start: Option<Vec<u8>> = None;
    loop {
        let keys = chain
            .rpc
            .state_get_keys_paged(&prefix, 512, start.as_deref(), Some(at.block_hash()))
            .await
            .context("listing stored weight blocks")?;
        for key in &keys {
            // Twox64Concat(index): the index is the key's last four bytes.
            if let Some(tail) = key.len().checked_sub(4).map(|at| &key[at..]) {
                present.insert(u32::from_le_bytes(tail.try_into()?));
            }
        }
        match keys.last() {
            Some(last) if keys.len() == 512 => start = Some(last.clone()),
            _ => return Ok(present),
        }
    }
}

/// Uploads `missing` blocks, `batch` transactions at a time with consecutive nonces; returns
/// the nonce after the last one.
async fn upload(
    chain: &Chain,
    signer: &Keypair,
    model: u32,
    blocks: &[Vec<u8>],
    missing: &[u32],
    batch: usize,
) -> Result<u64> {
    let bar = ProgressBar::new(missing.len() as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} blocks, {elapsed}")?
            .progress_chars("=> "),
    );
    bar.set_message(format!("model {model}"));
    // Counted here, not asked again per chunk: when a parachain's best block is retracted
    // (two collators' forks), its transactions go back to the pool, and until the pool has them
    // again the node's next index is too low: a chunk sent then collided with them (zombienet:
    // "Priority is too low (37 vs 37)").
    let mut next = chain.next_nonce(signer).await?;
    for chunk in missing.chunks(batch) {
        // Sent in nonce order, then awaited together (see `Chain::send`).
        let first = next;
        next += chunk.len() as u64;
        let mut waits = Vec::with_capacity(chunk.len());
        for (&index, nonce) in chunk.iter().zip(first..) {
            let call = transaction(
                "Smartvm",
                "put_weight_block",
                (model, index, blocks[index as usize].clone()),
            );
            let pending = chain
                .send(&call, signer, nonce, Inclusion::BestBlock)
                .await
                .with_context(|| format!("put_weight_block {index}"))?;
            let bar = &bar;
            waits.push(async move {
                pending
                    .await
                    .with_context(|| format!("put_weight_block {index}"))?;
                bar.inc(1);
                Ok::<_, anyhow::Error>(())
            });
        }
        for result in subxt::ext::futures::future::join_all(waits).await {
            result?;
        }
    }
    bar.finish();
    Ok(next)
}
