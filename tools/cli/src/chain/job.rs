//! `smartvm infer` for a run larger than a block: asks the runtime what it costs
//! (`SmartvmApi::cost`), submits it with `smartvm.submit_job` and follows it block by block, with
//! a progress bar, until `JobCompleted` or `JobFailed`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use subxt::dynamic::transaction;
use subxt::events::DecodeAsEvent;
use subxt::ext::codec::{Compact, Decode, Encode};
use subxt::ext::scale_decode::DecodeAsType;
use subxt::ext::scale_value::Value;
use subxt_signer::sr25519::Keypair;

use super::{find, Chain, FeePaid, Inclusion, Weight};

/// `pallet_smartvm::InferCost` as SCALE carries it.
#[derive(Clone, Debug, Decode)]
#[codec(crate = subxt::ext::codec)]
pub struct Cost {
    /// The VM's work: `infer`'s `weight_used`.
    pub weight: (Compact<u64>, Compact<u64>),
    /// What one `infer` transaction would be charged.
    pub infer_weight: (Compact<u64>, Compact<u64>),
    /// Whether that fits one transaction.
    pub fits_one_block: bool,
    /// Blocks a job takes at most.
    pub job_blocks: u32,
    /// A weight limit that covers it as a job.
    pub job_weight_limit: (Compact<u64>, Compact<u64>),
}

fn weight((ref_time, proof_size): (Compact<u64>, Compact<u64>)) -> Weight {
    Weight {
        ref_time: ref_time.0,
        proof_size: proof_size.0,
    }
}

impl Cost {
    /// The weight limit to submit a job with.
    pub fn job_limit(&self) -> Weight {
        weight(self.job_weight_limit)
    }

    /// The VM's work.
    pub fn work(&self) -> Weight {
        weight(self.weight)
    }

    /// What one `infer` transaction of it would be charged.
    pub fn infer(&self) -> Weight {
        weight(self.infer_weight)
    }
}

/// What the runtime says a run of `model` on `input` costs; `None` from a runtime without
/// `SmartvmApi::cost` (version 1).
pub async fn cost(chain: &Chain, model: u32, input: &[u8]) -> Result<Option<Cost>> {
    let at = chain.client.at_current_block().await?;
    let mut args = model.encode();
    input.encode_to(&mut args);
    let bytes = match at
        .runtime_apis()
        .call_raw("SmartvmApi_cost", Some(&args))
        .await
    {
        Ok(bytes) => bytes,
        Err(e) if e.to_string().contains("not found") => return Ok(None),
        Err(e) => return Err(e).context("calling SmartvmApi_cost"),
    };
    match bytes.split_first() {
        Some((0, ok)) => Ok(Some(
            Cost::decode(&mut &ok[..]).map_err(|e| anyhow!("decoding the cost: {e}"))?,
        )),
        Some((1, err)) => {
            let error = subxt::error::DispatchError::decode_from(err, at.metadata())
                .map_err(|e| anyhow!("decoding the cost's error: {e}"))?;
            bail!("the cost query failed: {error}")
        }
        _ => bail!("SmartvmApi_cost returned no result"),
    }
}

/// `pallet_smartvm::JobStatus` (an ended job's output, or its error by name).
#[derive(Debug, DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
enum Status {
    Running,
    Done { output: Vec<i8>, class: u32 },
    Failed(Value),
}

/// The fields of `pallet_smartvm::Job` followed here.
#[derive(Debug, DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct JobRecord {
    version: u32,
    submitted: u32,
    finished: Option<u32>,
    weight_used: Weight,
    slices: u32,
    status: Status,
}

/// `Smartvm::JobSubmitted` (the id).
#[derive(Debug, DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct JobSubmitted {
    job: u64,
}

impl DecodeAsEvent for JobSubmitted {
    fn is_event(pallet: &str, event: &str) -> bool {
        (pallet, event) == ("Smartvm", "JobSubmitted")
    }
}

/// `Smartvm::JobCompleted` / `JobFailed` (the job, its weight and its fee).
#[derive(Debug, DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct JobEnded {
    job: u64,
    weight_used: Weight,
    fee: u128,
}

/// `Smartvm::JobAdvanced` (the weight used so far).
#[derive(Debug, DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct JobAdvanced {
    job: u64,
    weight_used: Weight,
}

impl DecodeAsEvent for JobAdvanced {
    fn is_event(pallet: &str, event: &str) -> bool {
        (pallet, event) == ("Smartvm", "JobAdvanced")
    }
}

impl DecodeAsEvent for JobEnded {
    fn is_event(pallet: &str, event: &str) -> bool {
        pallet == "Smartvm" && (event == "JobCompleted" || event == "JobFailed")
    }
}

/// What a job returned and cost.
pub struct JobReport {
    /// The job's id.
    pub job: u64,
    /// The program's output.
    pub output: Vec<i8>,
    /// Index of the first largest output.
    pub class: u32,
    /// Weight its slices used.
    pub weight: Weight,
    /// The model version it ran.
    pub version: u32,
    /// Slices it ran (blocks it advanced in).
    pub slices: u32,
    /// Block numbers of its submission and of its end.
    pub submitted: u32,
    /// The block it ended in.
    pub finished: u32,
    /// Fee of the submission transaction plus the job's fee.
    pub fee: u128,
    /// Seconds from sending the submission to seeing the result.
    pub seconds: f64,
    /// Weight each slice used (its block's share of the job), in block order.
    pub per_slice: Vec<Weight>,
}

/// The weight of each slice of `job`, from its events in blocks `from..=to`: the differences
/// of the running totals `JobAdvanced` and the end event carry.
async fn slices_of(chain: &Chain, job: u64, from: u32, to: u32) -> Result<Vec<Weight>> {
    let mut totals = Vec::new();
    for number in from..=to {
        let events = chain
            .client
            .at_block(number)
            .await?
            .events()
            .fetch()
            .await?;
        let advanced = events.find::<JobAdvanced>().filter_map(|e| e.ok());
        let ended = events.find::<JobEnded>().filter_map(|e| e.ok());
        let mine = advanced
            .filter(|e| e.job == job)
            .map(|e| e.weight_used)
            .chain(ended.filter(|e| e.job == job).map(|e| e.weight_used));
        totals.extend(mine);
    }
    let mut last = Weight {
        ref_time: 0,
        proof_size: 0,
    };
    Ok(totals
        .into_iter()
        .map(|total| {
            let slice = Weight {
                ref_time: total.ref_time - last.ref_time,
                proof_size: total.proof_size - last.proof_size,
            };
            last = total;
            slice
        })
        .collect())
}

/// Submits a job and follows it to its end; `estimate` sizes the progress bar (blocks).
pub async fn submit_and_follow(
    chain: &Chain,
    signer: &Keypair,
    model: u32,
    input: Vec<u8>,
    limit: Weight,
    estimate: u32,
    show_progress: bool,
) -> Result<JobReport> {
    let started = Instant::now();
    let nonce = chain.next_nonce(signer).await?;
    let call = transaction("Smartvm", "submit_job", (model, input, limit));
    // Finalized: the job is followed at the finalized block, which under a real relay chain
    // lags the best one (zombienet saw the job "disappear" before its block was finalized).
    let included = chain
        .submit(&call, signer, nonce, Inclusion::Finalized)
        .await
        .context("submit_job")?;
    let job = find::<JobSubmitted>(&included.events)?.job;
    let submit_fee = find::<FeePaid>(&included.events)?;
    let bar = if show_progress {
        ProgressBar::new(estimate.max(1) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("job {prefix} [{bar:30}] {pos}/{len} slices {msg}")?
            .progress_chars("=> "),
    );
    bar.set_prefix(job.to_string());
    let address = subxt::dynamic::storage::<(u64,), JobRecord>("Smartvm", "Jobs");
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        if Instant::now() > deadline {
            bail!("job {job} did not end within 30 minutes");
        }
        let at = chain.client.at_current_block().await?;
        if at.block_number() == seen {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        seen = at.block_number();
        let Some(record) = at.storage().try_fetch(address.clone(), (job,)).await? else {
            bail!("job {job} disappeared (cleared by its owner?)");
        };
        let record = record.decode()?;
        if bar
            .length()
            .is_some_and(|len| u64::from(record.slices) > len)
        {
            bar.set_length(record.slices.into());
        }
        bar.set_position(record.slices.into());
        bar.set_message(format!(
            "block {seen}, {:.0} ms of ref_time, {} KiB of proof",
            record.weight_used.ref_time as f64 / 1e9,
            record.weight_used.proof_size >> 10
        ));
        let finished = match record.finished {
            Some(finished) => finished,
            None => continue,
        };
        bar.finish();
        let seconds = started.elapsed().as_secs_f64();
        let events = chain
            .client
            .at_block(finished)
            .await?
            .events()
            .fetch()
            .await?;
        let fee = events
            .find::<JobEnded>()
            .filter_map(|e| e.ok())
            .find(|e| e.job == job)
            .map(|e| e.fee)
            .context("the job's end event is missing")?;
        let per_slice = slices_of(chain, job, record.submitted, finished).await?;
        let (output, class) = match record.status {
            Status::Done { output, class } => (output, class),
            Status::Failed(error) => bail!("job {job} failed: {error}"),
            Status::Running => bail!("job {job} ended but says it is running"),
        };
        return Ok(JobReport {
            job,
            output,
            class,
            weight: record.weight_used,
            version: record.version,
            slices: record.slices,
            submitted: record.submitted,
            finished,
            fee: submit_fee.actual_fee + submit_fee.tip + fee,
            seconds,
            per_slice,
        });
    }
}
