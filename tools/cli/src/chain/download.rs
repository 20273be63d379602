//! The paper's off-chain path: read a model's program and every weight block out of chain storage
//! over RPC, one storage read per block, to compute with them locally.

use anyhow::{Context, Result};

use super::{model_info, Chain};

/// A model as stored on chain: its program container and its weight blocks in index order.
pub struct Downloaded {
    /// The program container's bytes.
    pub program: Vec<u8>,
    /// Every weight block the manifest lists.
    pub blocks: Vec<Vec<u8>>,
}

/// Downloads `model` at the current best block.
pub async fn download(chain: &Chain, model: u32) -> Result<Downloaded> {
    let info = model_info(chain, model)
        .await?
        .with_context(|| format!("model {model} does not exist"))?;
    let at = chain.client.at_current_block().await?;
    let programs = subxt::dynamic::storage::<(u32,), Vec<u8>>("Smartvm", "Programs");
    let program = at
        .storage()
        .try_fetch(programs, (model,))
        .await?
        .with_context(|| format!("model {model} has no program"))?
        .decode()?;
    let mut blocks = Vec::with_capacity(info.block_count as usize);
    for index in 0..info.block_count {
        let address = subxt::dynamic::storage::<(u32, u32), Vec<u8>>("Smartvm", "WeightBlocks");
        let block = at
            .storage()
            .try_fetch(address, (model, index))
            .await?
            .with_context(|| format!("model {model} has no block {index}"))?
            .decode()?;
        blocks.push(block);
    }
    Ok(Downloaded { program, blocks })
}
