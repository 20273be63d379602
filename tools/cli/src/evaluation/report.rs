//! The evaluation written out: `report.md` with the paper's figures beside ours, and the plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::charts::{grouped_bars, Series};
use super::onchain::ChainComparison;
use super::{Anchor, ModelResult};
use crate::bench::BaseSetComparison;

/// The paper's figures per model (LeNet-5, AlexNet, ResNet-18, MobileNet): SmartVM's CPU latency
/// (ms), its Buffer memory saving (%), and the pipeline's latency saving (%).
const PAPER: [(&str, f64, f64, f64); 4] = [
    ("LeNet-5", 10.0, 84.0, 17.8),
    ("AlexNet", 4300.0, 90.8, 13.7),
    ("ResNet-18", 7000.0, 94.3, 6.7),
    ("MobileNetV2", 3000.0, 93.7, 14.2),
];

/// Gas is converted to `ref_time` at the runtime's `SmartvmRefTimePerGas`.
const PS_PER_GAS: u64 = 5_000;

fn paper(name: &str) -> Option<(f64, f64, f64)> {
    PAPER.iter().find(|p| p.0 == name).map(|p| (p.1, p.2, p.3))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    use smartvm_kernels::tile::Tile;
    let tiles: Vec<&str> = Tile::supported_tiles().iter().map(|t| t.name()).collect();
    format!(
        "{cpu}, {cores} cores; SmartVM native tile {} (this CPU runs: {}); kernels on {} rayon threads",
        smartvm_kernels::tile::active().name(),
        tiles.join(", "),
        rayon_threads()
    )
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

/// Everything one run measured.
pub struct Measured<'a> {
    /// Per model.
    pub models: &'a [ModelResult],
    /// LeNet-5 with the CNN instructions against the base set.
    pub base_set: &'a BaseSetComparison,
    /// ONNX Runtime per model name.
    pub anchors: &'a BTreeMap<String, Anchor>,
    /// The storage benchmark's output.
    pub weight_fetch: Option<&'a str>,
    /// On chain against off chain per model, when a node was given.
    pub chain: Option<&'a [ChainComparison]>,
    /// Seconds the measurement took.
    pub elapsed_s: f64,
}

/// Writes `report.md` and the SVG plots into `dir`.
pub fn write(dir: &Path, m: &Measured<'_>) -> Result<()> {
    let (results, base, anchors, weight_fetch, elapsed_s) =
        (m.models, m.base_set, m.anchors, m.weight_fetch, m.elapsed_s);
    let mut md = String::new();
    let names: Vec<String> = results.iter().map(|r| r.name.clone()).collect();
    let anchor = |name: &str| anchors.get(name);
    let ort_version = anchors.values().next().map_or("not run".into(), |a| {
        format!("ONNX Runtime {}, {} threads", a.ort_version, a.threads)
    });
    writeln!(md, "# SmartVM evaluation (paper §4) on this machine\n")?;
    writeln!(
        md,
        "Regenerate everything here with `make evaluation`; its `smartvm bench --report` step took {elapsed_s:.0} s.\n"
    )?;
    writeln!(md, "- Machine: {}.", machine())?;
    writeln!(
        md,
        "- Anchors: {ort_version}; tract (the compiler's float reference), same process."
    )?;
    let torch_version = anchors.values().find_map(|a| a.torch_version.clone());
    match &torch_version {
        Some(v) => writeln!(
            md,
            "- PyTorch {v} fp32, same threads: the same ONNX graphs converted by onnx2torch, eager mode, output checked against ONNX Runtime before timing."
        )?,
        None => writeln!(
            md,
            "- PyTorch fp32 not measured: torch was not installed (`bash scripts/install-torch.sh`)."
        )?,
    }
    writeln!(
        md,
        "- GPU figures: see `gpu-and-zoo.md` (measured on a lent H100).\n"
    )?;

    writeln!(
        md,
        "## 1. Compute latency (batch 1, weights in memory, median)\n"
    )?;
    writeln!(md, "| model | SmartVM int8 (native) ms | tile | tract fp32 ms | ORT fp32 ms | ORT int8 ms | PyTorch fp32 ms | target: ≤ faster ORT | paper's SmartVM (CPU) ms |")?;
    writeln!(
        md,
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |"
    )?;
    for r in results {
        let a = anchor(&r.name);
        let best = a.map(|a| a.ort_fp32_ms.min(a.ort_int8_ms));
        let verdict = match best {
            Some(b) if r.int8_native_ms <= b => format!("met ({:.2}×)", r.int8_native_ms / b),
            Some(b) => format!("**not met: {:.1}× slower**", r.int8_native_ms / b),
            None => "—".into(),
        };
        writeln!(
            md,
            "| {} | {:.3} | {} | {:.3} | {} | {} | {} | {verdict} | {} |",
            r.name,
            r.int8_native_ms,
            r.native_tile,
            r.float_tract_ms,
            opt(a.map(|a| a.ort_fp32_ms), 3),
            opt(a.map(|a| a.ort_int8_ms), 3),
            opt(a.and_then(|a| a.torch_fp32_ms), 3),
            opt(paper(&r.name).map(|p| p.0), 0),
        )?;
    }
    for (name, error) in anchors
        .iter()
        .filter_map(|(name, a)| Some((name, a.torch_error.as_ref()?)))
    {
        writeln!(md, "\nPyTorch fp32 not measured for {name}: {error}")?;
    }
    writeln!(md, "\n![compute latency](latency.svg)\n")?;
    grouped_bars(
        &dir.join("latency.svg"),
        "Compute latency, batch 1 (ms, log scale)",
        "ms",
        &names,
        &[
            Series {
                name: "SmartVM int8".into(),
                values: results.iter().map(|r| Some(r.int8_native_ms)).collect(),
            },
            Series {
                name: "tract fp32".into(),
                values: results.iter().map(|r| Some(r.float_tract_ms)).collect(),
            },
            Series {
                name: "ORT fp32".into(),
                values: results
                    .iter()
                    .map(|r| anchor(&r.name).map(|a| a.ort_fp32_ms))
                    .collect(),
            },
            Series {
                name: "ORT int8".into(),
                values: results
                    .iter()
                    .map(|r| anchor(&r.name).map(|a| a.ort_int8_ms))
                    .collect(),
            },
            Series {
                name: "PyTorch fp32".into(),
                values: results
                    .iter()
                    .map(|r| anchor(&r.name).and_then(|a| a.torch_fp32_ms))
                    .collect(),
            },
        ],
        true,
    )?;

    writeln!(md, "## 2. Weight prefetch pipeline (paper §3.4, Table 2)\n")?;
    writeln!(md, "Weights read from disk with `O_DIRECT` (no page cache), block by block, medians of {} runs. *Serial*: each block is read when the program asks for it. *Pipelined*: the VM's read-ahead thread reads blocks in order while the program computes, handing each over once. The saving is taken run by run (serial and pipelined back to back) and its range shown: the disk of this shared machine varies a lot (AlexNet's fetch-only median ranged 55–97 ms over seven runs while this report was being built, and its median saving from −33 % to +47 %). A pipeline can hide at most the compute time, so it gains little where fetching dominates (AlexNet's 61 MB) or the model is tiny (LeNet-5: a thread start costs what it saves). The LSTM reads its weights again at every step; each re-read goes back to disk.\n", results.first().map_or(0, |r| r.pipeline_runs))?;
    writeln!(md, "| model | fetch only ms | compute only ms | serial ms | pipelined ms | saving (median of runs) | saving range | paper's saving |")?;
    writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for r in results {
        let p = &r.pipeline;
        writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} % | {:.0} … {:.0} % | {} |",
            r.name,
            p.fetch_ms,
            p.compute_ms,
            p.serial_ms,
            p.pipelined_ms,
            100.0 * p.saving.0,
            100.0 * p.saving.1,
            100.0 * p.saving.2,
            paper(&r.name).map_or("—".into(), |p| format!("{:.1} %", p.2)),
        )?;
    }
    writeln!(md, "\n![pipeline](pipeline.svg)\n")?;
    grouped_bars(
        &dir.join("pipeline.svg"),
        "Fetch from disk and compute (ms, log scale)",
        "ms",
        &names,
        &[
            Series {
                name: "serial".into(),
                values: results.iter().map(|r| Some(r.pipeline.serial_ms)).collect(),
            },
            Series {
                name: "pipelined".into(),
                values: results
                    .iter()
                    .map(|r| Some(r.pipeline.pipelined_ms))
                    .collect(),
            },
            Series {
                name: "fetch only".into(),
                values: results.iter().map(|r| Some(r.pipeline.fetch_ms)).collect(),
            },
            Series {
                name: "compute only".into(),
                values: results
                    .iter()
                    .map(|r| Some(r.pipeline.compute_ms))
                    .collect(),
            },
        ],
        true,
    )?;

    writeln!(
        md,
        "## 3. Buffer peak versus a never-free baseline (paper §3.3)\n"
    )?;
    writeln!(
        md,
        "| model | Buffer peak bytes | never-free bytes | saving | paper's saving |"
    )?;
    writeln!(md, "| --- | ---: | ---: | ---: | ---: |")?;
    for r in results {
        writeln!(
            md,
            "| {} | {} | {} | {:.1} % | {} |",
            r.name,
            r.peak_buffer_bytes,
            r.never_free_buffer_bytes,
            100.0 * (1.0 - r.peak_buffer_bytes as f64 / r.never_free_buffer_bytes.max(1) as f64),
            paper(&r.name).map_or("—".into(), |p| format!("{:.1} %", p.1)),
        )?;
    }
    writeln!(md, "\n![buffer](buffer.svg)\n")?;
    grouped_bars(
        &dir.join("buffer.svg"),
        "Feature-map bytes (log scale)",
        "bytes",
        &names,
        &[
            Series {
                name: "Buffer peak".into(),
                values: results
                    .iter()
                    .map(|r| Some(r.peak_buffer_bytes as f64))
                    .collect(),
            },
            Series {
                name: "never free".into(),
                values: results
                    .iter()
                    .map(|r| Some(r.never_free_buffer_bytes as f64))
                    .collect(),
            },
        ],
        true,
    )?;

    writeln!(md, "## 4. Code length\n")?;
    writeln!(md, "LeNet-5 (`examples/lenet5`, 1×32×32) written with the CNN instructions and with the plain base set, run on the same input with the same weights ({} timed runs of the first):\n", 500)?;
    writeln!(md, "| | CNN instructions | base set | ratio |")?;
    writeln!(md, "| --- | ---: | ---: | ---: |")?;
    let rows: [(&str, f64, f64); 6] = [
        (
            "source lines",
            base.source_lines.0 as f64,
            base.source_lines.1 as f64,
        ),
        (
            "bytecode instructions",
            base.bytecode_instructions.0 as f64,
            base.bytecode_instructions.1 as f64,
        ),
        (
            "executed instructions",
            base.executed_instructions.0 as f64,
            base.executed_instructions.1 as f64,
        ),
        ("gas", base.gas.0 as f64, base.gas.1 as f64),
        ("latency ms", base.latency_ms.0, base.latency_ms.1),
        (
            "peak feature-map bytes",
            base.feature_map_bytes.0 as f64,
            base.feature_map_bytes.1 as f64,
        ),
    ];
    let number = |v: f64| {
        if v.fract() == 0.0 {
            format!("{v}")
        } else {
            format!("{v:.3}")
        }
    };
    for (name, a, b) in rows {
        writeln!(
            md,
            "| {name} | {} | {} | {:.1}× |",
            number(a),
            number(b),
            b / a
        )?;
    }
    writeln!(md, "\nCompiled programs (`smartvm compile`):\n")?;
    writeln!(
        md,
        "| model | bytecode instructions | executed | weight bytes | blocks | compile s |"
    )?;
    writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
    for r in results {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.1} |",
            r.name,
            r.bytecode_instructions,
            r.executed_instructions,
            r.weight_bytes,
            r.weight_blocks,
            r.compile_s
        )?;
    }

    if let Some(lenet) = results.iter().find(|r| r.name == "LeNet-5") {
        writeln!(
            md,
            "\n## 5. Weight (gas) per LeNet-5 layer (paper Table 3)\n"
        )?;
        writeln!(md, "Gas of each CNN-set instruction of the Fashion-MNIST LeNet-5, and the `ref_time` it buys at the runtime's {PS_PER_GAS} ps per gas.\n")?;
        writeln!(md, "| # | instruction | gas | ref_time µs |")?;
        writeln!(md, "| ---: | --- | ---: | ---: |")?;
        for (i, (op, gas)) in lenet.cnn_gas.iter().enumerate() {
            writeln!(
                md,
                "| {i} | {op} | {gas} | {:.2} |",
                (*gas * PS_PER_GAS) as f64 / 1e6
            )?;
        }
        writeln!(
            md,
            "| | total (whole program) | {} | {:.2} |",
            lenet.gas,
            (lenet.gas * PS_PER_GAS) as f64 / 1e6
        )?;
        let layers: Vec<String> = (0..lenet.cnn_gas.len()).map(|i| i.to_string()).collect();
        grouped_bars(
            &dir.join("lenet5_gas.svg"),
            "LeNet-5: gas per CNN instruction (log scale)",
            "gas",
            &layers,
            &[Series {
                name: "gas".into(),
                values: lenet.cnn_gas.iter().map(|(_, g)| Some(*g as f64)).collect(),
            }],
            true,
        )?;
        writeln!(md, "\n![LeNet-5 gas](lenet5_gas.svg)\n")?;
    }

    writeln!(md, "## 6. Accuracy\n")?;
    writeln!(
        md,
        "| model | test inputs | int8 top-1 | float top-1 | int8 vs float agreement | SQNR dB |"
    )?;
    writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
    for r in results {
        writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} % | {:.1} |",
            r.name,
            r.tests,
            opt(r.accuracy_int8.map(|a| 100.0 * a), 2),
            opt(r.accuracy_float.map(|a| 100.0 * a), 2),
            100.0 * r.top1_agreement,
            r.sqnr_db
        )?;
    }
    writeln!(md, "\nLeNet-5 is the trained Fashion-MNIST model on all test images; the zoo models have seeded weights (torchvision layer shapes), so only agreement with their float model means anything.\n")?;

    writeln!(
        md,
        "## 7. Weight fetching: blocks versus one storage entry per weight\n"
    )?;
    match weight_fetch {
        Some(text) => writeln!(
            md,
            "`cargo bench -p pallet-smartvm --bench weight_fetch`, same run:\n\n```\n{}\n```\n",
            text.trim()
        )?,
        None => writeln!(md, "Not run (`--weight-fetch` not given).\n")?,
    }

    writeln!(md, "## 8. On chain versus off chain (paper §4.3)\n")?;
    match m.chain {
        Some(results) if !results.is_empty() => chain_section(&mut md, results)?,
        _ => writeln!(
            md,
            "Not run: no node given (`--url`); `make evaluation` starts one.\n"
        )?,
    }
    if torch_version.is_none() {
        writeln!(md, "## Not measured here\n")?;
        writeln!(md, "- PyTorch fp32 anchors (see above).")?;
    }
    std::fs::write(dir.join("report.md"), md)?;
    Ok(())
}

/// The paper's end-to-end speed-up of on-chain over off-chain inference (abstract, §4.3).
fn paper_chain_speedup(model: &str) -> &'static str {
    match model {
        "LeNet-5" => "70×",
        "AlexNet" => "16×",
        "ResNet-18" => "11×",
        "MobileNetV2" => "12× (MobileNet)",
        _ => "—",
    }
}

/// Most ref_time one normal extrinsic may use on this runtime: 75 % of a 2 s block, less the
/// 5 % reserved for block initialisation (`runtime/src/lib.rs`), about 1.4 s.
const MAX_EXTRINSIC_MS: f64 = 1400.0;

/// The relay validators' path per model: the in-wasm kernels' dry run against what it is charged.
fn validators_section(md: &mut String, results: &[ChainComparison]) -> Result<()> {
    writeln!(md, "**The validators' path.** Relay-chain validators re-execute every parachain block in wasm without SIMD and without SmartVM's host functions, so the runtime swaps in its wasm-tuned `Scalar` kernels there; the gas schedule is fitted to those (`make weights`). The same dry run through `SmartvmApi_infer_with_wasm_kernels` gives the validators' time; *charged* is the ref_time the run's gas buys; *blocks* is how many 1.4 s extrinsic shares that is (one means it fits one `infer`).\n")?;
    writeln!(md, "| model | host kernels ms | validators' path ms | charged ms | charged / validators | blocks |")?;
    writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
    for c in results {
        let (Some(wasm), Some(charged)) = (c.validators_ms, c.charged_ms) else {
            continue;
        };
        writeln!(
            md,
            "| {} | {} | {wasm:.1} | {charged:.1} | {:.2}× | {:.0} |",
            c.name,
            c.onchain_ms.map_or("—".into(), |ms| format!("{ms:.1}")),
            charged / wasm,
            (charged / MAX_EXTRINSIC_MS).ceil()
        )?;
    }
    writeln!(md)?;
    Ok(())
}

fn chain_section(md: &mut String, results: &[ChainComparison]) -> Result<()> {
    let runs = |name: &str| {
        results
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.runs)
    };
    writeln!(md, "A dev node (`make run`'s build: debug client, release-built runtime, optimised kernels; a block a second, single-state transaction pool) started for this measurement and stopped before the others. LeNet-5 is the dev chain's genesis model; the zoo models and the LSTM are compiled and deployed by `//Alice` first (create, every weight block, seal). *On chain*: the `SmartvmApi_infer` runtime-API dry run over RPC; the node reads the weights from its own state and runs the CNN instructions through its host kernels. *Off chain*: download the program and every weight block over RPC, one `state_getStorage` per block, then compute natively in the client. Both give the same output (checked every run). Medians after a warm-up, as the client sees them: {} runs for LeNet-5, {} for each deployed model.\n", runs("LeNet-5"), results.iter().find(|c| c.deploy_s.is_some()).map_or(0, |c| c.runs))?;
    writeln!(md, "| model | blocks | weight MB | deploy s | on chain ms | download ms | compute ms | off chain ms | off / on | paper's off / on |")?;
    writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for c in results {
        writeln!(
            md,
            "| {} | {} | {:.2} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} |",
            c.name,
            c.blocks,
            c.weight_bytes as f64 / 1e6,
            c.deploy_s.map_or("genesis".into(), |s| format!("{s:.1}")),
            c.onchain_ms
                .map_or("**fails**".into(), |ms| format!("{ms:.1}")),
            c.download_ms,
            c.compute_ms,
            c.offchain_ms,
            c.onchain_ms
                .map_or("—".into(), |on| format!("{:.1}×", c.offchain_ms / on)),
            paper_chain_speedup(&c.name)
        )?;
    }
    writeln!(md)?;
    for c in results {
        if let Some(error) = &c.onchain_error {
            writeln!(
                md,
                "{} fails on chain: `{}`\n",
                c.name,
                error.lines().next().unwrap_or("")
            )?;
        }
    }
    writeln!(md, "On chain, the node's storage is read through a debug-built client and every weight block crosses into the runtime's memory, so the dry run costs more than native compute alone; off chain, every block is one RPC round trip. AlexNet's `fc6` (37.7 MB, more than the runtime's 32 MiB allocation limit) runs in bands of output rows of at most 8 MiB of weights each (README, \"The pallet\"). The LSTM reads its weight blocks again at every step.\n")?;
    validators_section(md, results)?;
    let jobs: Vec<_> = results
        .iter()
        .filter_map(|c| c.job.as_ref().map(|j| (c.name.as_str(), j)))
        .collect();
    super::jobs::section(md, &jobs)?;
    for c in results {
        if let Some(error) = &c.job_error {
            writeln!(
                md,
                "{} as a job fails: `{}`\n",
                c.name,
                error.lines().next().unwrap_or("")
            )?;
        }
    }
    Ok(())
}
