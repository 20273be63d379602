//! The SmartVM parachain under a real relay chain: two rococo-local validators (stock
//! `polkadot`, without the SmartVM host functions) and two collators (`smartvm-node`).
//!
//! Passing means the validators re-executed our blocks with the in-wasm kernels and agreed with
//! the collators' state roots: the parachain registers, produces blocks that the relay chain
//! finalizes, an `infer` transaction sent with subxt (`smartvm infer --finalized`) is finalized
//! with the same output as the off-chain `smartvm run`, 150 inferences at once fill blocks that
//! the relay chain still finalizes, MobileNetV2 and ResNet-18 run as jobs across finalized
//! blocks with `smartvm run`'s output, and restarting a collator keeps the chain going.
//!
//! Ignored by plain `cargo test`: `make zombienet` runs it (8.5 minutes on 2 cores, half of it
//! spawning the network with a debug-built node).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;
use smartvm_zombienet::{lenet_input, repo_root, Tools};
use zombienet_sdk::{
    GlobalSettingsBuilder, LocalFileSystem, Network, NetworkConfig, NetworkConfigExt,
};

const FINALIZED: &str = "block_height{status=\"finalized\"}";
const BEST: &str = "block_height{status=\"best\"}";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "spawns a relay chain and two collators: run by `make zombienet`"]
async fn relay_validators_finalize_parachain_blocks_with_infer() -> Result<()> {
    let tools = Tools::locate()?;
    let started = Instant::now();
    let base = std::env::temp_dir().join(format!("smartvm-zombienet-{}", std::process::id()));
    let settings = GlobalSettingsBuilder::new()
        .with_base_dir(&base)
        .with_network_spawn_timeout(1000)
        .with_node_spawn_timeout(600)
        .with_tear_down_on_failure(false)
        .build()
        .map_err(|e| anyhow!("zombienet settings: {e:?}"))?;
    let toml = repo_root().join("zombienet/network.toml");
    let config = NetworkConfig::load_from_toml_with_settings(
        toml.to_str().context("network.toml path is UTF-8")?,
        &settings,
    )?;
    // The native provider resolves `polkadot` and `smartvm-node` through PATH and passes it on
    // to the nodes (and polkadot finds its workers next to itself).
    std::env::set_var("PATH", tools.search_path()?);
    println!("spawning the network; node logs in {}", base.display());
    let network = config.spawn_native().await?;
    println!("spawned in {:.0} s", started.elapsed().as_secs_f64());

    let outcome = checks(&network, &tools, &base).await;
    if let Err(e) = network.destroy().await {
        println!("tearing the network down: {e}");
    }
    // The logs stay for a failed run; a passing one leaves ~200 MB of specs and databases.
    if outcome.is_ok() {
        std::fs::remove_dir_all(&base).ok();
    }
    println!(
        "zombienet test wall time {:.0} s",
        started.elapsed().as_secs_f64()
    );
    outcome
}

async fn checks(network: &Network<LocalFileSystem>, tools: &Tools, base: &Path) -> Result<()> {
    let charlie = network.get_node("charlie")?;
    let dave = network.get_node("dave")?;

    // Registered and producing: a parachain block is finalized only after relay validators
    // backed and approved it, i.e. ran our validate_block without the SmartVM host functions.
    let waiting = Instant::now();
    charlie
        .wait_metric_with_timeout(FINALIZED, |h| h >= 2.0, 600u64)
        .await
        .with_context(|| format!("no finalized parachain blocks; see {}", base.display()))?;
    println!(
        "parachain block 2 finalized {:.0} s after the spawn",
        waiting.elapsed().as_secs_f64()
    );

    // An inference transaction, finalized, equal to the off-chain run.
    let input = lenet_input(0)?;
    let file = base.join("lenet-input-0.bin");
    std::fs::write(&file, &input)?;
    let file = file.to_str().context("input path is UTF-8")?;
    let compiled = repo_root().join("models/lenet5-fashion/compiled");
    let program = compiled.join("program.smvm");
    let weights = compiled.join("weights.smw");
    let off_chain = tools.cli_json(&[
        "run",
        program.to_str().context("UTF-8 path")?,
        "--weights",
        weights.to_str().context("UTF-8 path")?,
        "--input",
        file,
        "--json",
    ])?;
    let sent = Instant::now();
    let on_chain = tools.cli_json(&[
        "infer",
        "--url",
        charlie.ws_uri(),
        "--model",
        "0",
        "--input",
        file,
        "--finalized",
        "--json",
    ])?;
    println!(
        "infer finalized {:.1} s after submission in block {}: class {}, weight {}",
        sent.elapsed().as_secs_f64(),
        on_chain["blocks"][0],
        on_chain["class"],
        on_chain["weight_used"]
    );
    ensure!(
        on_chain["output"] == off_chain["output"],
        "on-chain output {} differs from smartvm run {}",
        on_chain["output"],
        off_chain["output"]
    );
    ensure!(
        on_chain["class"] == off_chain["argmax"],
        "on-chain class {} differs from smartvm run's argmax {}",
        on_chain["class"],
        off_chain["argmax"]
    );

    // The validators' kernels, asked directly through the runtime API on the other collator.
    let native = dry_run(tools, dave.ws_uri(), file, false)?;
    let wasm = dry_run(tools, dave.ws_uri(), file, true)?;
    ensure!(
        native["output"] == off_chain["output"],
        "native dry run differs"
    );
    ensure!(
        wasm["output"] == off_chain["output"],
        "wasm-kernel dry run differs"
    );
    ensure!(
        wasm["weight_used"] == native["weight_used"],
        "the two paths meter differently"
    );
    println!(
        "dry run latency: native kernels {} ms, in-wasm kernels {} ms (median of {})",
        native["latency_ms"], wasm["latency_ms"], native["calls"]
    );

    // Blocks full of inferences: the proof-size weight charged per LeNet-5 inference (its
    // weight blocks) caps a block at about a hundred; the validators re-execute every one with
    // the in-wasm kernels within the relay chain's backing timeout, or nothing is finalized.
    let sent = Instant::now();
    let burst = tools.cli_json(&[
        "infer",
        "--url",
        dave.ws_uri(),
        "--suri",
        "//Dave",
        "--model",
        "0",
        "--input",
        file,
        "--count",
        "150",
        "--ref-time",
        "10000000000",
        "--proof-size",
        "100000",
        "--finalized",
        "--json",
    ])?;
    ensure!(
        burst["output"] == off_chain["output"],
        "a burst inference differs"
    );
    let blocks = burst["blocks"].as_array().context("blocks listed")?;
    let mut per_block = std::collections::BTreeMap::<&str, usize>::new();
    for block in blocks.iter().filter_map(Value::as_str) {
        *per_block.entry(block).or_default() += 1;
    }
    println!(
        "{} inferences finalized in {} parachain blocks ({:?} each), {:.1} s after submission",
        blocks.len(),
        per_block.len(),
        per_block.values().collect::<Vec<_>>(),
        sent.elapsed().as_secs_f64()
    );

    // Models bigger than a block, as jobs: every block of each is finalized by the validators.
    for (name, file) in [
        ("MobileNetV2", "mobilenetv2.onnx"),
        ("ResNet-18", "resnet18.onnx"),
    ] {
        zoo_job(tools, charlie.ws_uri(), base, name, file)?;
    }

    // A collator restart: it comes back, syncs, and the chain keeps finalizing.
    let before = dave.reports(FINALIZED).await?;
    charlie.restart(None).await?;
    println!("charlie restarted at finalized height {before}");
    charlie
        .wait_metric_with_timeout(FINALIZED, move |h| h >= before + 2.0, 600u64)
        .await
        .context("the restarted collator did not follow the finalized chain")?;
    let best = charlie.reports(BEST).await?;
    dave.wait_metric_with_timeout(BEST, move |h| h >= best + 2.0, 300u64)
        .await
        .context("the parachain stopped producing blocks after the restart")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "after the restart: finalized {}, best {}",
        charlie.reports(FINALIZED).await?,
        dave.reports(BEST).await?
    );
    Ok(())
}

/// The jobs' share of a block (`SmartvmJobShare` in `runtime/src/configs.rs`).
const JOB_SHARE: (u64, u64) = (500_000_000_000, 4 << 20);

/// Compiles a zoo model from the fixture cache, deploys it, runs it as a job (`smartvm infer
/// --job`, which follows it to a finalized end) and checks its output against `smartvm run` and
/// each block's weight against the jobs' share.
fn zoo_job(tools: &Tools, url: &str, base: &Path, name: &str, file: &str) -> Result<()> {
    let fixtures = std::env::var_os("SMARTVM_FIXTURES")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/smartvm/fixtures")))
        .context("no fixture cache")?
        .join("zoo");
    let onnx = fixtures.join(file);
    let inputs = fixtures.join("imagenet_inputs.npy");
    if !onnx.exists() || !inputs.exists() {
        println!(
            "SKIPPED: {name} as a job under zombienet (no {}; make zoo)",
            onnx.display()
        );
        return Ok(());
    }
    let dir = base.join(file.trim_end_matches(".onnx"));
    let path = |p: &Path| p.to_str().map(str::to_owned).context("UTF-8 path");
    let compiled = std::process::Command::new(&tools.cli)
        .args(["compile", &path(&onnx)?, "--calibration", &path(&inputs)?])
        .args([
            "--calibration-count",
            "8",
            "--input-shape",
            "1,3,224,224",
            "-o",
            &path(&dir)?,
        ])
        .status()?;
    ensure!(compiled.success(), "compiling {name}");
    let deployed = std::process::Command::new(&tools.cli)
        .args(["deploy", &path(&dir)?, "--url", url, "--suri", "//Alice"])
        .output()?;
    ensure!(
        deployed.status.success(),
        "deploying {name}: {}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    let text = String::from_utf8_lossy(&deployed.stdout);
    let model = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("model ")?
                .split(':')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .with_context(|| format!("no model id in: {text}"))?;
    let quant = path(&dir.join("quant.json"))?;
    let input = path(&inputs)?;
    let off_chain = tools.cli_json(&[
        "run",
        &path(&dir.join("program.smvm"))?,
        "--weights",
        &path(&dir.join("weights.smw"))?,
        "--input",
        &input,
        "--index",
        "8",
        "--quant",
        &quant,
        "--json",
    ])?;
    let model = model.to_string();
    let job = tools.cli_json(&[
        "infer", "--url", url, "--model", &model, "--input", &input, "--index", "8", "--quant",
        &quant, "--suri", "//Bob", "--job", "--json",
    ])?;
    ensure!(
        job["output"] == off_chain["output"],
        "{name}: the job's output differs from smartvm run"
    );
    let slices = job["per_slice"].as_array().context("per_slice listed")?;
    for slice in slices {
        let (ref_time, proof) = (slice["ref_time"].as_u64(), slice["proof_size"].as_u64());
        ensure!(
            ref_time.is_some_and(|r| r <= JOB_SHARE.0) && proof.is_some_and(|p| p <= JOB_SHARE.1),
            "{name}: a block gave the job {slice}, more than the share"
        );
    }
    let largest = |key: &str| slices.iter().filter_map(|s| s[key].as_u64()).max().unwrap_or(0);
    println!(
        "{name} as a job: {} slices over {} parachain blocks, {:.1} s from submission to a finalized result, \
         at most {:.0} ms of ref_time and {:.2} MB of proof a block, fee {}",
        job["slices"],
        job["blocks_spanned"],
        job["seconds"].as_f64().unwrap_or(0.0),
        largest("ref_time") as f64 / 1e9,
        largest("proof_size") as f64 / 1e6,
        job["fee"]
    );
    Ok(())
}

/// `smartvm infer --dry-run` ten times, with the native or the in-wasm kernels.
fn dry_run(tools: &Tools, url: &str, input: &str, wasm_kernels: bool) -> Result<Value> {
    let mut args = vec![
        "infer",
        "--url",
        url,
        "--model",
        "0",
        "--input",
        input,
        "--dry-run",
        "--repeat",
        "10",
        "--json",
    ];
    if wasm_kernels {
        args.push("--wasm-kernels");
    }
    tools.cli_json(&args)
}
