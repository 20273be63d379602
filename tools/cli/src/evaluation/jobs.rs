//! Issue 21's figures: each model run as a job (`smartvm.submit_job`) on the evaluation's dev
//! node: blocks spanned, seconds from submission to result, weight and proof per block, fee,
//! and whether the output equals the off-chain run. Beside them in the report: the paper's
//! on-chain latencies (Table 2) and the Internet Computer's ceiling for one message.

use std::fmt::Write as _;

use anyhow::Result;

use crate::chain::job::{cost, submit_and_follow};
use crate::chain::{keypair, Chain};

/// One model run as a job.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct JobFigures {
    /// Slices it ran (blocks it advanced in).
    pub slices: u32,
    /// Blocks from the one holding `submit_job` to the one it ended in.
    pub blocks: u32,
    /// Seconds from sending `submit_job` to seeing the result (a block a second).
    pub seconds: f64,
    /// Most ref_time one block gave it, ms.
    pub max_ref_ms: f64,
    /// Most proof one block gave it, bytes.
    pub max_proof: u64,
    /// All its blocks' proof, bytes.
    pub total_proof: u64,
    /// The runtime's share of a block for jobs: ref_time ms and proof bytes.
    pub share: (f64, u64),
    /// Fee of the submission and of the weight used.
    pub fee: String,
    /// Whether one `infer` would have held it (`SmartvmApi::cost`).
    pub fits_one_block: bool,
    /// Its output equals the off-chain run's.
    pub output_matches: bool,
}

/// The jobs' share of a block on the SmartVM runtime (`runtime/src/configs.rs`).
const SHARE: (f64, u64) = (500.0, 4 << 20);

/// Runs `model` on `input` as a job, signed by //Bob, and compares its output to `expected`.
pub async fn measure(
    chain: &Chain,
    model: u32,
    input: &[u8],
    expected: &[i8],
) -> Result<JobFigures> {
    let cost = cost(chain, model, input)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the runtime has no SmartvmApi::cost"))?;
    let report = submit_and_follow(
        chain,
        &keypair("//Bob")?,
        model,
        input.to_vec(),
        cost.job_limit(),
        cost.job_blocks,
        false,
    )
    .await?;
    Ok(JobFigures {
        slices: report.slices,
        blocks: report.finished - report.submitted,
        seconds: report.seconds,
        max_ref_ms: report
            .per_slice
            .iter()
            .map(|w| w.ref_time as f64 / 1e9)
            .fold(0.0, f64::max),
        max_proof: report
            .per_slice
            .iter()
            .map(|w| w.proof_size)
            .max()
            .unwrap_or(0),
        total_proof: report.weight.proof_size,
        share: SHARE,
        fee: report.fee.to_string(),
        fits_one_block: cost.fits_one_block,
        output_matches: report.output == expected,
    })
}

/// The paper's pipelined on-chain latency (Table 2), ms.
fn paper_ms(model: &str) -> &'static str {
    match model {
        "LeNet-5" => "9.87",
        "AlexNet" => "4,832.68",
        "ResNet-18" => "6,871",
        "MobileNetV2" => "3,504.17 (MobileNet)",
        _ => "—",
    }
}

/// The report's section on jobs.
pub fn section(md: &mut String, rows: &[(&str, &JobFigures)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(md, "**Models as jobs that span blocks.** Each model submitted as a transaction with `smartvm.submit_job` (`smartvm infer` does this by itself when `SmartvmApi::cost` says one `infer` cannot hold the run): the job prepays its weight limit and advances a slice per block from `on_initialize`, within the runtime's share of each block ({:.0} ms of ref_time, {} MiB of proof), pausing at an instruction boundary or between the bands of a large fully-connected layer. *Blocks* counts from the block holding `submit_job` to the one it ends in; *seconds* is from sending it to seeing the result (a block a second on this node); the per-block figures are the weight each block charged the job (its VM work, and its reads of weight blocks, program and state), which the gas schedule prices at or above the validators' time (`runtime/tests/gas_price.rs`). The paper's on-chain latency is one inference in a private Ethereum testbed with no block limit (Table 2, pipelined); the Internet Computer runs one message over at most 10 rounds (deterministic time slicing); no Substrate chain ran a CNN of this size in transactions before.\n", SHARE.0, SHARE.1 >> 20)?;
    writeln!(md, "| model | fits one infer | slices | blocks | seconds | max ref_time / block ms | max proof / block MB | proof, all blocks MB | fee | output = off chain | paper's on-chain ms |")?;
    writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    )?;
    for (name, j) in rows {
        writeln!(
            md,
            "| {name} | {} | {} | {} | {:.1} | {:.0} | {:.2} | {:.1} | {} | {} | {} |",
            if j.fits_one_block { "yes" } else { "no" },
            j.slices,
            j.blocks,
            j.seconds,
            j.max_ref_ms,
            j.max_proof as f64 / 1e6,
            j.total_proof as f64 / 1e6,
            j.fee,
            if j.output_matches { "yes" } else { "**no**" },
            paper_ms(name)
        )?;
    }
    writeln!(md)?;
    Ok(())
}
