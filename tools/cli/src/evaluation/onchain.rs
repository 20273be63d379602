//! Paper §4.3: inference on chain (the `SmartvmApi` runtime-API dry run on a running node, which
//! reads the weights from its own state) against off chain (download every weight block over RPC,
//! then compute natively), for a model deployed on that node.

use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use smartvm_isa::Program;
use smartvm_vm::{Executable, WeightPack};

use crate::chain::download::download;
use crate::chain::infer::dry_run;
use crate::chain::{Chain, Weight};
use crate::fidelity::median;
use crate::run::execute_with;
use crate::Backend;

/// Medians over the runs, ms, with what was moved.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct ChainComparison {
    /// The model id on chain.
    pub model: u32,
    /// Timed runs of each path.
    pub runs: usize,
    /// Weight blocks downloaded per off-chain run.
    pub blocks: usize,
    /// Weight bytes downloaded per off-chain run.
    pub weight_bytes: usize,
    /// The runtime-API dry run, as the client sees it.
    pub onchain_ms: f64,
    /// Download plus native compute.
    pub offchain_ms: f64,
    /// The download part of `offchain_ms`.
    pub download_ms: f64,
    /// The compute part of `offchain_ms`.
    pub compute_ms: f64,
}

/// Runs both paths `runs` times (after one untimed warm-up each) on one input and checks that they
/// give the same output.
pub fn measure(url: &str, model: u32, input: &[i8], runs: usize) -> Result<ChainComparison> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let chain = Chain::connect(url).await?;
        let limit = Weight {
            ref_time: 50_000_000_000,
            proof_size: 1_000_000,
        };
        let bytes: Vec<u8> = input.iter().map(|v| *v as u8).collect();
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let (mut on, mut off, mut dl, mut compute) = (vec![], vec![], vec![], vec![]);
        let (mut blocks, mut weight_bytes) = (0, 0);
        for run in 0..=runs {
            let t = Instant::now();
            let onchain = dry_run(&chain, "SmartvmApi_infer", model, &bytes, limit).await?;
            let on_ms = ms(t);
            let t = Instant::now();
            let model_bytes = download(&chain, model).await?;
            let dl_ms = ms(t);
            let program = Program::decode(&model_bytes.program)
                .map_err(|e| anyhow!("the downloaded program does not decode: {e:?}"))?;
            let exe = Executable::new(program)
                .map_err(|e| anyhow!("the downloaded program is invalid: {e:?}"))?;
            let pack = WeightPack::new(&model_bytes.blocks);
            let offchain = execute_with(Backend::Native, &exe, input, &pack, u64::MAX)?;
            let off_ms = ms(t);
            if offchain.output != onchain.output {
                bail!(
                    "on chain {:?} but off chain {:?}",
                    onchain.output,
                    offchain.output
                );
            }
            blocks = model_bytes.blocks.len();
            weight_bytes = model_bytes.blocks.iter().map(Vec::len).sum();
            if run > 0 {
                on.push(on_ms);
                off.push(off_ms);
                dl.push(dl_ms);
                compute.push(off_ms - dl_ms);
            }
        }
        Ok(ChainComparison {
            model,
            runs,
            blocks,
            weight_bytes,
            onchain_ms: median(on),
            offchain_ms: median(off),
            download_ms: median(dl),
            compute_ms: median(compute),
        })
    })
}
