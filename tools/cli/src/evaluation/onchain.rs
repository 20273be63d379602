//! Paper §4.3: inference on chain (the `SmartvmApi` runtime-API dry run on a running node, which
//! reads the weights from its own state) against off chain (download every weight block over RPC,
//! then compute natively), for models deployed on that node: the dev chain's genesis LeNet-5 and
//! the zoo models, which this deploys first.

use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use smartvm_isa::Program;
use smartvm_vm::Executable;

use crate::chain::deploy::deploy_new;
use crate::chain::download::download;
use crate::chain::infer::dry_run;
use crate::chain::{keypair, Chain, Weight};
use crate::fidelity::median;
use crate::run::execute_with;
use crate::Backend;

/// Medians over the runs, ms, with what was moved.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ChainComparison {
    /// The model's name in the report.
    pub name: String,
    /// The model id on chain.
    pub model: u32,
    /// Seconds the deployment took (create, upload every block, seal) when this run deployed the
    /// model (the zoo); none when it was there at genesis (LeNet-5).
    pub deploy_s: Option<f64>,
    /// Timed runs of each path.
    pub runs: usize,
    /// Weight blocks downloaded per off-chain run.
    pub blocks: usize,
    /// Weight bytes downloaded per off-chain run.
    pub weight_bytes: usize,
    /// The runtime-API dry run, as the client sees it; none when it fails (see `onchain_error`).
    pub onchain_ms: Option<f64>,
    /// Why the dry run failed, when it did (the off-chain path is measured all the same).
    pub onchain_error: Option<String>,
    /// Download plus native compute.
    pub offchain_ms: f64,
    /// The download part of `offchain_ms`.
    pub download_ms: f64,
    /// The compute part of `offchain_ms`.
    pub compute_ms: f64,
    /// The same dry run with the in-wasm kernels relay-chain validators run
    /// (`SmartvmApi_infer_with_wasm_kernels`): what the charged ref_time has to cover.
    #[serde(default)]
    pub validators_ms: Option<f64>,
    /// The ref_time the run is charged (its gas at the runtime's price), ms.
    #[serde(default)]
    pub charged_ms: Option<f64>,
    /// The run as a job across blocks (`submit_job`), when it could be sent.
    #[serde(default)]
    pub job: Option<super::jobs::JobFigures>,
    /// Why the job could not be run, when it could not.
    #[serde(default)]
    pub job_error: Option<String>,
}

/// A model to measure: already on chain, or to deploy first.
pub enum OnChain<'a> {
    /// Model `id`, deployed before (the genesis LeNet-5).
    Existing(u32),
    /// A compiled program (container bytes) and its weight blocks, deployed by `//Alice`.
    Deploy {
        /// The program container.
        program: &'a [u8],
        /// The weight blocks in manifest order.
        blocks: &'a [Vec<u8>],
    },
}

/// A dry-run limit no model of the evaluation reaches: the point is the latency, not the limit.
const DRY_RUN_LIMIT: Weight = Weight {
    ref_time: u64::MAX / 4,
    proof_size: u64::MAX / 4,
};

/// Runs both paths on `input` `runs` times (after one untimed warm-up each) against the node at
/// `url` for each model, checking that they give the same output.
pub fn measure_all(
    url: &str,
    models: &[(&str, OnChain<'_>, Vec<i8>, usize)],
) -> Result<Vec<ChainComparison>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let chain = Chain::connect(url).await?;
        let mut results = Vec::new();
        for (name, model, input, runs) in models {
            let (id, deploy_s) = match model {
                OnChain::Existing(id) => (*id, None),
                OnChain::Deploy { program, blocks } => {
                    eprintln!("== deploying {name}: {} blocks", blocks.len());
                    let started = Instant::now();
                    let id = deploy_new(&chain, &keypair("//Alice")?, program, blocks, 16).await?;
                    (id, Some(started.elapsed().as_secs_f64()))
                }
            };
            eprintln!("== {name} (model {id}): on chain against off chain, {runs} runs");
            let mut result = measure(&chain, name, id, input, *runs).await?;
            result.deploy_s = deploy_s;
            results.push(result);
        }
        Ok(results)
    })
}

async fn measure(
    chain: &Chain,
    name: &str,
    model: u32,
    input: &[i8],
    runs: usize,
) -> Result<ChainComparison> {
    let bytes: Vec<u8> = input.iter().map(|v| *v as u8).collect();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let (mut on, mut off, mut dl, mut compute) = (vec![], vec![], vec![], vec![]);
    let (mut validators, mut charged_ms) = (vec![], None);
    let (mut blocks, mut weight_bytes) = (0, 0);
    let mut onchain_error = None;
    let mut expected = Vec::new();
    for run in 0..=runs {
        let mut onchain = None;
        if onchain_error.is_none() {
            let t = Instant::now();
            match dry_run(chain, "SmartvmApi_infer", model, &bytes, DRY_RUN_LIMIT).await {
                Ok(outcome) => {
                    if run > 0 {
                        on.push(ms(t));
                    }
                    charged_ms = Some(outcome.weight.ref_time as f64 / 1e9);
                    onchain = Some(outcome.output);
                }
                Err(e) => {
                    eprintln!("{name}: the dry run failed: {e:#}");
                    onchain_error = Some(format!("{e:#}"));
                }
            }
        }
        if let Some(output) = &onchain {
            let method = "SmartvmApi_infer_with_wasm_kernels";
            let t = Instant::now();
            let outcome = dry_run(chain, method, model, &bytes, DRY_RUN_LIMIT).await?;
            if run > 0 {
                validators.push(ms(t));
            }
            if outcome.output != *output {
                bail!(
                    "{name}: the in-wasm kernels give {:?}, the host kernels {output:?}",
                    outcome.output
                );
            }
        }
        let t = Instant::now();
        let model_bytes = download(chain, model).await?;
        let dl_ms = ms(t);
        let program = Program::decode(&model_bytes.program)
            .map_err(|e| anyhow!("the downloaded program does not decode: {e:?}"))?;
        let exe = Executable::new(program)
            .map_err(|e| anyhow!("the downloaded program is invalid: {e:?}"))?;
        let pack = crate::memory::weight_pack(&model_bytes.blocks);
        let offchain = execute_with(Backend::Native, &exe, input, &pack, u64::MAX)?;
        let off_ms = ms(t);
        if let Some(output) = onchain.filter(|o| *o != offchain.output) {
            bail!(
                "{name}: on chain {output:?} but off chain {:?}",
                offchain.output
            );
        }
        expected = offchain.output.clone();
        blocks = model_bytes.blocks.len();
        weight_bytes = model_bytes.blocks.iter().map(Vec::len).sum();
        if run > 0 {
            off.push(off_ms);
            dl.push(dl_ms);
            compute.push(off_ms - dl_ms);
        }
    }
    eprintln!("== {name}: as a job across blocks");
    let (job, job_error) = match super::jobs::measure(chain, model, &bytes, &expected).await {
        Ok(figures) => (Some(figures), None),
        Err(e) => {
            eprintln!("{name}: the job failed: {e:#}");
            (None, Some(format!("{e:#}")))
        }
    };
    Ok(ChainComparison {
        job,
        job_error,
        name: name.to_string(),
        model,
        deploy_s: None,
        runs,
        blocks,
        weight_bytes,
        onchain_ms: (!on.is_empty()).then(|| median(on)),
        onchain_error,
        offchain_ms: median(off),
        download_ms: median(dl),
        compute_ms: median(compute),
        validators_ms: (!validators.is_empty()).then(|| median(validators)),
        charged_ms,
    })
}
