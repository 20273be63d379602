//! `smartvm bench`: LeNet-5 with the CNN instructions against the same network in the plain
//! base set (the paper's EVM baseline), measured in one run, with ratios; with `--report DIR`,
//! the paper's whole evaluation (`evaluation`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Args;
use smartvm_vm::Executable;

use crate::run::execute_with;
use crate::{load, Backend};

/// Arguments of `smartvm bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Directory holding lenet5.sasm, lenet5_base.sasm, weights.smw and inputs.bin.
    #[arg(long, default_value = "examples/lenet5")]
    dir: PathBuf,
    /// Timed runs of the CNN-instruction program (the base-set program gets a tenth, at least 3).
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
    /// Kernel backend.
    #[arg(long, value_enum, default_value_t = Backend::Native)]
    backend: Backend,
    /// The full evaluation instead (`--report DIR`).
    #[command(flatten)]
    evaluation: crate::evaluation::ReportArgs,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// LeNet-5 with the CNN instructions against the base-set version, measured in one run.
#[derive(serde::Serialize)]
pub struct BaseSetComparison {
    /// Median latency, ms: CNN instructions, base set.
    pub latency_ms: (f64, f64),
    /// Source lines (neither blank nor comment only) of the two assembly files.
    pub source_lines: (usize, usize),
    /// Instructions in the bytecode.
    pub bytecode_instructions: (usize, usize),
    /// Instructions executed on one input.
    pub executed_instructions: (u64, u64),
    /// Gas of one run.
    pub gas: (u64, u64),
    /// Weight-block reads of one run.
    pub weight_block_reads: (u64, u64),
    /// Peak feature-map bytes: the Buffer's, and the base set's Memory.
    pub feature_map_bytes: (u64, u64),
    /// Output of the CNN program (the base set's is checked equal).
    pub output: Vec<i8>,
}

fn source_lines(path: &std::path::Path) -> Result<usize> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(|l| l.split(';').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .count())
}

/// Runs both LeNet-5 programs of `dir` (`iterations` timed runs of the CNN one, a tenth of that
/// of the base-set one) and checks they agree.
pub fn compare_base_set(
    dir: &std::path::Path,
    backend: Backend,
    iterations: usize,
) -> Result<BaseSetComparison> {
    let blocks = load::blocks(&dir.join("weights.smw"))?;
    let pack = crate::memory::weight_pack(&blocks);
    let prepare = |name: &str| -> Result<Executable> {
        let program = load::program(&dir.join(name), Some(&dir.join("weights.smw")))?;
        Executable::new(program).map_err(|e| anyhow!("{name}: {e:?}"))
    };
    let cnn = prepare("lenet5.sasm")?;
    let base = prepare("lenet5_base.sasm")?;
    let input = load::input(&dir.join("inputs.bin"), 1024, 0)?;
    let time = |exe: &Executable, runs: usize| -> Result<(Duration, smartvm_vm::Outcome)> {
        let mut samples = Vec::with_capacity(runs);
        let mut last = None;
        for _ in 0..runs {
            let t = Instant::now();
            let out = execute_with(backend, exe, &input, &pack, u64::MAX)?;
            samples.push(t.elapsed());
            last = Some(out);
        }
        Ok((median(samples), last.ok_or_else(|| anyhow!("no runs"))?))
    };
    time(&cnn, 50)?; // warm caches and the thread pool
    let (t_cnn, o_cnn) = time(&cnn, iterations.max(1))?;
    let (t_base, o_base) = time(&base, (iterations / 10).max(3))?;
    if o_cnn.output != o_base.output {
        return Err(anyhow!(
            "the two programs disagree: {:?} vs {:?}",
            o_cnn.output,
            o_base.output
        ));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(BaseSetComparison {
        latency_ms: (ms(t_cnn), ms(t_base)),
        source_lines: (
            source_lines(&dir.join("lenet5.sasm"))?,
            source_lines(&dir.join("lenet5_base.sasm"))?,
        ),
        bytecode_instructions: (cnn.instruction_count(), base.instruction_count()),
        executed_instructions: (o_cnn.instructions, o_base.instructions),
        gas: (o_cnn.gas_used, o_base.gas_used),
        weight_block_reads: (o_cnn.weight_blocks_read, o_base.weight_blocks_read),
        feature_map_bytes: (o_cnn.peak_buffer_bytes, o_base.peak_memory_bytes),
        output: o_cnn.output,
    })
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if let Some(dir) = args.evaluation.report.clone() {
        return crate::evaluation::evaluate(&args.evaluation, dir, &args.dir);
    }
    if let Some(url) = args.evaluation.url.clone() {
        return crate::evaluation::evaluate_chain(&args.evaluation, &url);
    }
    let c = compare_base_set(&args.dir, args.backend, args.iterations)?;
    println!(
        "LeNet-5, 1x32x32 input, {:?} kernels, median of timed runs",
        args.backend
    );
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "", "CNN instr.", "base set", "ratio"
    );
    let (t_cnn, t_base) = c.latency_ms;
    println!(
        "{:<28} {:>14.4} {:>14.3} {:>9.0}x",
        "latency (ms)",
        t_cnn,
        t_base,
        t_base / t_cnn
    );
    let rows: [(&str, (u64, u64)); 5] = [
        (
            "source lines",
            (c.source_lines.0 as u64, c.source_lines.1 as u64),
        ),
        (
            "bytecode instructions",
            (
                c.bytecode_instructions.0 as u64,
                c.bytecode_instructions.1 as u64,
            ),
        ),
        ("executed instructions", c.executed_instructions),
        ("gas", c.gas),
        ("weight block reads", c.weight_block_reads),
    ];
    for (name, (a, b)) in rows {
        println!("{name:<28} {a:>14} {b:>14} {:>9.0}x", b as f64 / a as f64);
    }
    let (buf, mem) = c.feature_map_bytes;
    println!(
        "{:<28} {:>14} {:>14} {:>9.1}%",
        "peak feature-map bytes",
        buf,
        mem,
        100.0 * (1.0 - buf as f64 / mem as f64)
    );
    println!("(last column: how many times more the base set needs; for memory, how much less the Buffer holds)");
    println!("output {:?}", c.output);
    Ok(())
}
