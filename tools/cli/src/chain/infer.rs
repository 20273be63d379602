//! `smartvm infer`: run a deployed model on one input — as a transaction (`smartvm.infer`, paid,
//! with an event) or as a free dry run through the `SmartvmApi` runtime API.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use smartvm_isa::Shape;
use subxt::dynamic::transaction;
use subxt::error::DispatchError;
use subxt::ext::codec::{Compact, Decode, Encode};

use super::{find, keypair, model_info, Chain, FeePaid, Inclusion, Inferred, ModelStatus, Weight};
use crate::load;

/// Arguments of `smartvm infer`.
#[derive(Args)]
pub struct InferArgs {
    /// Node RPC endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:9944")]
    url: String,
    /// Model id on chain.
    #[arg(long, default_value_t = 0)]
    model: u32,
    /// Input: raw int8 bytes as the program takes them, or a PNG / float32 .npy quantized with
    /// --quant.
    #[arg(long)]
    input: PathBuf,
    /// Quantization parameters (quant.json of `smartvm compile`) for PNG and .npy inputs.
    #[arg(long)]
    quant: Option<PathBuf>,
    /// Which input of a file holding several.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// Secret URI of the account that signs and pays.
    #[arg(long, default_value = "//Alice")]
    suri: String,
    /// Compute budget in picoseconds of ref_time; charged up front, the unused part refunded.
    /// Default: the VM's work as `SmartvmApi::cost` reports it plus 10 % (50 ms on a runtime
    /// without it).
    #[arg(long)]
    ref_time: Option<u64>,
    /// Proof-size budget in bytes. Default: as `--ref-time` (1 MB without `cost`).
    #[arg(long)]
    proof_size: Option<u64>,
    /// Run through the read-only runtime API: no transaction, no fee, no event.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: run the in-wasm kernels that relay-chain validators use instead of the
    /// node's native ones (same output by design; slower).
    #[arg(long, requires = "dry_run")]
    wasm_kernels: bool,
    /// With --dry-run: call it this many times and report the median and fastest latency.
    #[arg(long, default_value_t = 1, requires = "dry_run")]
    repeat: u32,
    /// Send this many identical transactions at once (consecutive nonces), e.g. to fill blocks;
    /// all must succeed with the same output.
    #[arg(long, default_value_t = 1, conflicts_with = "dry_run")]
    count: u32,
    /// Wait until the block holding the transaction is finalized (on a parachain: approved by
    /// the relay chain's validators), not just in the best block.
    #[arg(long, conflicts_with = "dry_run")]
    finalized: bool,
    /// Run as a job across blocks (`smartvm.submit_job`) even when one `infer` would do; a
    /// run that does not fit one block (as `SmartvmApi::cost` says) becomes a job by itself,
    /// with the weight limit the runtime suggests.
    #[arg(long, conflicts_with_all = ["dry_run", "count"])]
    job: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// The `SmartvmApi::infer` result as SCALE carries it.
#[derive(Decode)]
#[codec(crate = subxt::ext::codec)]
struct Outcome {
    output: Vec<i8>,
    class: u32,
    ref_time: Compact<u64>,
    proof_size: Compact<u64>,
}

/// What one inference returned and cost.
pub(crate) struct Report {
    pub(crate) output: Vec<i8>,
    class: u32,
    pub(crate) weight: Weight,
    version: Option<u32>,
    fee: Option<u128>,
    /// The blocks that hold the transactions, in nonce order (none for a dry run).
    blocks: Vec<String>,
}

pub async fn run(args: InferArgs) -> Result<()> {
    let chain = Chain::connect(&args.url).await?;
    let info = model_info(&chain, args.model)
        .await?
        .with_context(|| format!("model {} does not exist", args.model))?;
    if info.status != ModelStatus::Sealed {
        bail!("model {} is still a draft", args.model);
    }
    let [c, d, h, w] = info.input_shape;
    let is_float = args
        .input
        .extension()
        .is_some_and(|e| e == "png" || e == "npy");
    if is_float && args.quant.is_none() {
        bail!("--quant (the model's quant.json) is needed to quantize a PNG or .npy input");
    }
    let quant_path = args.quant.clone().unwrap_or_default();
    let (input, quant) = load::model_input(
        &args.input,
        Some(&quant_path),
        &quant_path,
        Shape { c, d, h, w },
        args.index,
    )?;
    let input: Vec<u8> = input.iter().map(|v| *v as u8).collect();
    let cost = super::job::cost(&chain, args.model, &input).await?;
    // What the run needs, 10 % over, unless the user set the limit.
    let needed = cost.as_ref().map(|c| {
        let w = c.work();
        (
            w.ref_time + w.ref_time / 10,
            w.proof_size + w.proof_size / 10,
        )
    });
    let weight_limit = Weight {
        ref_time: args
            .ref_time
            .unwrap_or(needed.map_or(50_000_000_000, |n| n.0)),
        proof_size: args.proof_size.unwrap_or(needed.map_or(1_000_000, |n| n.1)),
    };
    let mut latencies_ms = Vec::new();
    let report = if args.dry_run {
        let method = if args.wasm_kernels {
            "SmartvmApi_infer_with_wasm_kernels"
        } else {
            "SmartvmApi_infer"
        };
        let mut report = None;
        for _ in 0..args.repeat.max(1) {
            let started = Instant::now();
            report = Some(dry_run(&chain, method, args.model, &input, weight_limit).await?);
            latencies_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let mut report = report.context("no dry run made")?;
        report.version = Some(info.version);
        report
    } else {
        if args.job || cost.as_ref().is_some_and(|c| !c.fits_one_block) {
            let cost = cost.context("jobs need a runtime with SmartvmApi::cost (version 2)")?;
            if args.count > 1 {
                bail!("the run does not fit one block: it runs as a job, once (no --count)");
            }
            return run_job(&chain, &args, input, &cost, quant.as_ref()).await;
        }
        let started = Instant::now();
        let report = send(&chain, &args, input, weight_limit).await?;
        latencies_ms.push(started.elapsed().as_secs_f64() * 1e3);
        report
    };
    latencies_ms.sort_by(f64::total_cmp);
    let latency_ms = latencies_ms[latencies_ms.len() / 2];
    let fastest_ms = latencies_ms[0];
    let dequantized: Option<Vec<f32>> = quant.map(|q| {
        report
            .output
            .iter()
            .map(|v| q.output.dequantize(*v))
            .collect()
    });
    if args.json {
        let json = serde_json::json!({
            "model": args.model, "version": report.version, "output": report.output,
            "dequantized": dequantized, "class": report.class,
            "weight_used": { "ref_time": report.weight.ref_time, "proof_size": report.weight.proof_size },
            "fee": report.fee.map(|f| f.to_string()), "dry_run": args.dry_run,
            "wasm_kernels": args.wasm_kernels, "latency_ms": latency_ms, "latency_min_ms": fastest_ms,
            "calls": latencies_ms.len(),
            "transactions": report.blocks.len(), "blocks": report.blocks, "finalized": args.finalized,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        if let Some(version) = report.version {
            println!("model    {} version {version}", args.model);
        }
        println!("class    {}", report.class);
        println!("output   {:?}", report.output);
        println!(
            "weight   ref_time {} ps, proof_size {} bytes",
            report.weight.ref_time, report.weight.proof_size
        );
        match report.fee {
            Some(fee) => println!("fee      {fee} (after the refund of unused weight)"),
            None => println!("fee      none (dry run)"),
        }
        let state = if args.finalized { "finalized" } else { "best" };
        match report.blocks.as_slice() {
            [] => {}
            [block] => println!("block    {block} ({state})"),
            blocks => {
                let mut distinct = blocks.to_vec();
                distinct.sort();
                distinct.dedup();
                println!(
                    "blocks   {} transactions in {} {state} blocks",
                    blocks.len(),
                    distinct.len()
                );
            }
        }
        if latencies_ms.len() > 1 {
            println!(
                "latency  median {latency_ms:.1} ms, fastest {fastest_ms:.1} ms over {} calls (client side)",
                latencies_ms.len()
            );
        } else {
            println!("latency  {latency_ms:.1} ms (client side)");
        }
    }
    Ok(())
}

/// Runs the inference as a job and prints what it came to.
async fn run_job(
    chain: &Chain,
    args: &InferArgs,
    input: Vec<u8>,
    cost: &super::job::Cost,
    quant: Option<&crate::load::Quant>,
) -> Result<()> {
    let signer = keypair(&args.suri)?;
    let limit = cost.job_limit();
    if !args.json {
        let (work, whole) = (cost.work(), cost.infer());
        println!(
            "the VM's work is {:.0} ms of ref_time and {} KiB of proof ({:.0} ms, {} KiB as one \
             infer{}); submitting it as a job (limit {:.0} ms, {} KiB; at most {} blocks)",
            work.ref_time as f64 / 1e9,
            work.proof_size >> 10,
            whole.ref_time as f64 / 1e9,
            whole.proof_size >> 10,
            if cost.fits_one_block {
                ""
            } else {
                ", more than a block holds"
            },
            limit.ref_time as f64 / 1e9,
            limit.proof_size >> 10,
            cost.job_blocks
        );
    }
    let r = super::job::submit_and_follow(
        chain,
        &signer,
        args.model,
        input,
        limit,
        cost.job_blocks,
        !args.json,
    )
    .await?;
    let dequantized: Option<Vec<f32>> =
        quant.map(|q| r.output.iter().map(|v| q.output.dequantize(*v)).collect());
    let blocks = r.finished - r.submitted;
    if args.json {
        let json = serde_json::json!({
            "model": args.model, "version": r.version, "output": r.output,
            "dequantized": dequantized, "class": r.class, "job": r.job,
            "weight_used": { "ref_time": r.weight.ref_time, "proof_size": r.weight.proof_size },
            "fee": r.fee.to_string(), "slices": r.slices, "submitted_block": r.submitted,
            "finished_block": r.finished, "blocks_spanned": blocks, "seconds": r.seconds,
            "per_slice": r.per_slice.iter().map(|w| serde_json::json!({
                "ref_time": w.ref_time, "proof_size": w.proof_size })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("model    {} version {}", args.model, r.version);
    println!("class    {}", r.class);
    println!("output   {:?}", r.output);
    println!(
        "weight   ref_time {} ps, proof_size {} bytes (all slices)",
        r.weight.ref_time, r.weight.proof_size
    );
    println!("fee      {} (submission and the job's weight used)", r.fee);
    println!(
        "job      {}: {} slices, blocks {}..{} ({blocks} blocks), {:.1} s from submission to result",
        r.job, r.slices, r.submitted, r.finished, r.seconds
    );
    for (i, w) in r.per_slice.iter().enumerate() {
        println!(
            "slice    {}: {:.0} ms of ref_time, {} KiB of proof",
            i + 1,
            w.ref_time as f64 / 1e9,
            w.proof_size >> 10
        );
    }
    Ok(())
}

/// Sends `args.count` `smartvm.infer` transactions at once and waits for all of them.
async fn send(chain: &Chain, args: &InferArgs, input: Vec<u8>, limit: Weight) -> Result<Report> {
    let signer = keypair(&args.suri)?;
    let until = if args.finalized {
        Inclusion::Finalized
    } else {
        Inclusion::BestBlock
    };
    let first = chain.next_nonce(&signer).await?;
    let call = transaction("Smartvm", "infer", (args.model, input, limit));
    let sends = (first..first + u64::from(args.count.max(1))).map(|nonce| {
        let (call, signer) = (&call, &signer);
        async move {
            let included = chain.submit(call, signer, nonce, until).await?;
            let inferred = find::<Inferred>(&included.events)?;
            let fee = find::<FeePaid>(&included.events)?;
            Ok::<_, anyhow::Error>((included.block, inferred, fee))
        }
    });
    let mut report: Option<Report> = None;
    for result in subxt::ext::futures::future::join_all(sends).await {
        let (block, inferred, fee) = result.context("infer")?;
        let block = format!("{block:?}");
        match &mut report {
            Some(first) if first.output != inferred.output => {
                bail!("two identical transactions gave different outputs")
            }
            Some(first) => first.blocks.push(block),
            None => {
                report = Some(Report {
                    output: inferred.output,
                    class: inferred.class,
                    weight: inferred.weight_used,
                    version: Some(inferred.version),
                    fee: Some(fee.actual_fee + fee.tip),
                    blocks: vec![block],
                })
            }
        }
    }
    report.context("no transaction sent")
}

/// A `SmartvmApi` inference `method` at the best known block.
/// One `SmartvmApi` runtime-API call (`method`): the inference without a transaction.
pub(crate) async fn dry_run(
    chain: &Chain,
    method: &str,
    model: u32,
    input: &[u8],
    limit: Weight,
) -> Result<Report> {
    let at = chain.client.at_current_block().await?;
    let mut args = model.encode();
    input.encode_to(&mut args);
    Compact(limit.ref_time).encode_to(&mut args);
    Compact(limit.proof_size).encode_to(&mut args);
    let bytes = at
        .runtime_apis()
        .call_raw(method, Some(&args))
        .await
        .with_context(|| format!("calling {method}"))?;
    match bytes.split_first() {
        Some((0, ok)) => {
            let outcome = Outcome::decode(&mut &ok[..])
                .map_err(|e| anyhow!("decoding the dry run's outcome: {e}"))?;
            Ok(Report {
                output: outcome.output,
                class: outcome.class,
                weight: Weight {
                    ref_time: outcome.ref_time.0,
                    proof_size: outcome.proof_size.0,
                },
                version: None,
                fee: None,
                blocks: Vec::new(),
            })
        }
        Some((1, err)) => {
            let error = DispatchError::decode_from(err, at.metadata())
                .map_err(|e| anyhow!("decoding the dry run's error: {e}"))?;
            bail!("the dry run failed: {error}")
        }
        _ => bail!("SmartvmApi_infer returned no result"),
    }
}
