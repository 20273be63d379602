//! `smartvm bench --report DIR`: the paper's evaluation (§4) measured on this machine in one run
//! and written as `report.md`, `results.json` and SVG plots: compute latency of LeNet-5, AlexNet,
//! ResNet-18, MobileNetV2 and the LSTM next to tract and ONNX Runtime, weight fetching with and
//! without the prefetch pipeline, the Buffer against a never-free baseline, code length, gas per
//! LeNet-5 layer, and accuracy.

mod charts;
mod disk;
mod jobs;
mod models;
mod onchain;
mod pipeline;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use crate::bench::compare_base_set;
use crate::compile::read_quant;
use crate::fidelity::{compare, prepare, Comparison, Prepared};
use crate::run::execute_with;
use crate::Backend;
use models::ModelSpec;
use onchain::{ChainComparison, OnChain};
use pipeline::Pipeline;

/// Options of the full evaluation (`smartvm bench --report DIR`).
#[derive(Args)]
pub struct ReportArgs {
    /// Measure everything and write report.md, results.json and the SVG plots into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The fixture cache (zoo/, lstm.onnx, lstm_inputs.npy) that `make fixtures zoo` fills;
    /// `$SMARTVM_FIXTURES` when not given.
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// The Fashion-MNIST IDX files (LeNet-5's calibration, test images and labels).
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    fashion: PathBuf,
    /// The trained Fashion-MNIST LeNet-5.
    #[arg(long, default_value = "models/lenet5-fashion/lenet5_fashion.onnx")]
    lenet: PathBuf,
    /// ONNX Runtime anchors measured in the same run (`scripts/ort_anchors.py`).
    #[arg(long)]
    anchors: Option<PathBuf>,
    /// Markdown of the block versus per-weight storage benchmark (`--bench weight_fetch`).
    #[arg(long)]
    weight_fetch: Option<PathBuf>,
    /// Test inputs per zoo model (latency medians, agreement and SQNR).
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Runs of each way of fetching and computing, for the pipeline medians.
    #[arg(long, default_value_t = 9)]
    pipeline_runs: usize,
    /// Without `--report`: a node serving the dev chain, to measure inference on chain
    /// (runtime-API dry run) against off chain (download every block over RPC, then compute)
    /// for its model `--chain-model` and for the zoo models, which are deployed to it first,
    /// writing the results to `--chain-results`. Kept apart so that no node runs while the
    /// rest is measured.
    #[arg(long, requires = "chain_results", conflicts_with = "report")]
    pub url: Option<String>,
    /// Where the on-chain/off-chain measurement is written (with `--url`) or read (with `--report`).
    #[arg(long)]
    chain_results: Option<PathBuf>,
    /// The model on that chain (the dev chain's genesis LeNet-5 is 0).
    #[arg(long, default_value_t = 0)]
    chain_model: u32,
    /// Quantization of that model's input (its quant.json).
    #[arg(long, default_value = "models/lenet5-fashion/compiled/quant.json")]
    chain_quant: PathBuf,
    /// Timed runs of each chain path for the genesis LeNet-5.
    #[arg(long, default_value_t = 20)]
    chain_runs: usize,
    /// Timed runs of each chain path for each deployed zoo model (AlexNet downloads 61 MB a run).
    #[arg(long, default_value_t = 5)]
    chain_zoo_runs: usize,
}

/// Measures on chain against off chain on the node at `url` and writes the results as JSON: the
/// genesis LeNet-5 (model `--chain-model`), then each zoo model and the LSTM, compiled and
/// deployed first (`--chain-zoo-runs` runs each; the node should seal instantly).
pub fn evaluate_chain(args: &ReportArgs, url: &str) -> Result<()> {
    let quant = read_quant(&args.chain_quant)?;
    let fashion = args.fashion.join("t10k-images-idx3-ubyte.gz");
    let image = crate::idx::Idx::read(&fashion)?;
    if image.len() == 0 {
        return Err(anyhow!("{} holds no image", fashion.display()));
    }
    let pixels: Vec<f32> = image.item(0).iter().map(|p| *p as f32).collect();
    let lenet_input = quant.encode_pixels(&pixels);
    let specs = models::specs(&fixtures_dir(args)?, &args.fashion, &args.lenet, 1)?;
    let mut compiled = Vec::new();
    for spec in specs.iter().filter(|s| s.name != "LeNet-5") {
        eprintln!("== compiling {}", spec.name);
        let model = smartvm_compiler::compile(&spec.onnx, &spec.shape, &spec.calibration)?;
        let first = spec
            .tests
            .first()
            .ok_or_else(|| anyhow!("{}: no test input", spec.name))?;
        let input = model.quantize_input(first);
        compiled.push((spec.name, model.program.encode(), model.blocks, input));
    }
    let mut models = vec![(
        "LeNet-5",
        OnChain::Existing(args.chain_model),
        lenet_input,
        args.chain_runs,
    )];
    for (name, program, blocks, input) in &compiled {
        let deploy = OnChain::Deploy { program, blocks };
        models.push((name, deploy, input.clone(), args.chain_zoo_runs));
    }
    let results = onchain::measure_all(url, &models)?;
    let path = args
        .chain_results
        .as_ref()
        .ok_or_else(|| anyhow!("--chain-results is needed with --url"))?;
    std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The fixture cache: `--fixtures`, else `$SMARTVM_FIXTURES`.
fn fixtures_dir(args: &ReportArgs) -> Result<PathBuf> {
    args.fixtures
        .clone()
        .or_else(|| std::env::var_os("SMARTVM_FIXTURES").map(PathBuf::from))
        .ok_or_else(|| anyhow!("no fixture cache: pass --fixtures or set SMARTVM_FIXTURES"))
}

/// Everything measured about one model.
#[derive(serde::Serialize)]
pub struct ModelResult {
    name: String,
    weight_bytes: usize,
    weight_blocks: usize,
    bytecode_instructions: usize,
    executed_instructions: u64,
    gas: u64,
    peak_buffer_bytes: u64,
    never_free_buffer_bytes: u64,
    compile_s: f64,
    tests: usize,
    top1_agreement: f64,
    sqnr_db: f64,
    float_tract_ms: f64,
    int8_native_ms: f64,
    /// The native kernels' tile the timing ran on (`smartvm_kernels::tile`).
    native_tile: &'static str,
    accuracy_int8: Option<f64>,
    accuracy_float: Option<f64>,
    pipeline: Pipeline,
    pipeline_runs: usize,
    /// Gas of each CNN instruction (opcode, gas), in program order.
    cnn_gas: Vec<(String, u64)>,
}

/// The native engines' figures for one model (`scripts/ort_anchors.py`).
#[derive(serde::Deserialize, serde::Serialize, Clone)]
pub struct Anchor {
    ort_fp32_ms: f64,
    ort_int8_ms: f64,
    ort_version: String,
    threads: u32,
    /// PyTorch fp32 on the same graph; absent where torch was not installed.
    #[serde(default)]
    torch_fp32_ms: Option<f64>,
    #[serde(default)]
    torch_version: Option<String>,
    /// Why PyTorch could not run this model (conversion or output check).
    #[serde(default)]
    torch_error: Option<String>,
}

/// Runs the whole evaluation and writes the report.
pub fn evaluate(args: &ReportArgs, dir: PathBuf, lenet_dir: &std::path::Path) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let fixtures = fixtures_dir(args)?;
    let specs = models::specs(&fixtures, &args.fashion, &args.lenet, args.count)?;
    let mut results = Vec::new();
    for spec in &specs {
        eprintln!("== {}", spec.name);
        results.push(measure_model(spec, args, &fixtures)?);
    }
    let base_set = compare_base_set(lenet_dir, Backend::Native, 500)?;
    let anchors: BTreeMap<String, Anchor> = match &args.anchors {
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?,
        None => BTreeMap::new(),
    };
    let weight_fetch = match &args.weight_fetch {
        Some(path) => Some(std::fs::read_to_string(path)?),
        None => None,
    };
    let chain: Option<Vec<ChainComparison>> = match &args.chain_results {
        Some(path) => Some(serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?),
        None => None,
    };
    let elapsed_s = started.elapsed().as_secs_f64();
    let measured = report::Measured {
        models: &results,
        base_set: &base_set,
        anchors: &anchors,
        weight_fetch: weight_fetch.as_deref(),
        chain: chain.as_deref(),
        elapsed_s,
    };
    report::write(&dir, &measured)?;
    let json = serde_json::json!({
        "models": results, "anchors": anchors, "lenet5_base_set": base_set, "chain": chain,
    });
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    eprintln!("wrote {}", dir.join("report.md").display());
    Ok(())
}

fn measure_model(
    spec: &ModelSpec,
    args: &ReportArgs,
    scratch: &std::path::Path,
) -> Result<ModelResult> {
    let Prepared {
        compiled,
        exe,
        float,
        pack,
        compile_s,
    } = prepare(
        &spec.onnx,
        &spec.shape,
        &spec.calibration,
        &spec.output,
        None,
    )?;
    let Comparison {
        agreement,
        sqnr,
        float_ms,
        int_ms,
        accuracy,
    } = compare(
        &float,
        &compiled,
        &exe,
        &pack,
        &spec.tests,
        spec.labels.as_deref(),
        Backend::Native,
    )?;
    let first = spec
        .tests
        .first()
        .ok_or_else(|| anyhow!("{}: no test inputs (--count 0?)", spec.name))?;
    let input = compiled.quantize_input(first);
    let outcome = execute_with(Backend::Native, &exe, &input, &pack, u64::MAX)?;
    let pipeline = pipeline::measure(&exe, &input, &compiled.blocks, scratch, args.pipeline_runs)?;
    Ok(ModelResult {
        name: spec.name.to_string(),
        weight_bytes: compiled.blocks.iter().map(Vec::len).sum(),
        weight_blocks: compiled.blocks.len(),
        bytecode_instructions: exe.instruction_count(),
        executed_instructions: outcome.instructions,
        gas: outcome.gas_used,
        peak_buffer_bytes: outcome.peak_buffer_bytes,
        never_free_buffer_bytes: outcome.buffer_bytes_pushed,
        compile_s,
        tests: spec.tests.len(),
        top1_agreement: agreement,
        sqnr_db: sqnr,
        float_tract_ms: float_ms,
        int8_native_ms: int_ms,
        native_tile: smartvm_kernels::tile::active().name(),
        accuracy_int8: accuracy.map(|a| a.0),
        accuracy_float: accuracy.map(|a| a.1),
        pipeline,
        pipeline_runs: args.pipeline_runs,
        cnn_gas: outcome
            .cnn_gas
            .iter()
            .map(|(op, gas)| (format!("{op:?}"), *gas))
            .collect(),
    })
}
