//! `smartvm bench`: LeNet-5 with the CNN instructions against the same network in the plain
//! base set (the paper's EVM baseline), measured in one run, with ratios.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Args;
use smartvm_vm::{Executable, WeightPack};

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
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let blocks = load::blocks(&args.dir.join("weights.smw"))?;
    let pack = WeightPack::new(&blocks);
    let prepare = |name: &str| -> Result<Executable> {
        let program = load::program(&args.dir.join(name), Some(&args.dir.join("weights.smw")))?;
        Executable::new(program).map_err(|e| anyhow!("{name}: {e:?}"))
    };
    let cnn = prepare("lenet5.sasm")?;
    let base = prepare("lenet5_base.sasm")?;
    let input = load::input(&args.dir.join("inputs.bin"), 1024, 0)?;
    let time = |exe: &Executable, runs: usize| -> Result<(Duration, smartvm_vm::Outcome)> {
        let mut samples = Vec::with_capacity(runs);
        let mut last = None;
        for _ in 0..runs {
            let t = Instant::now();
            let out = execute_with(args.backend, exe, &input, &pack, u64::MAX)?;
            samples.push(t.elapsed());
            last = Some(out);
        }
        Ok((median(samples), last.ok_or_else(|| anyhow!("no runs"))?))
    };
    time(&cnn, 50)?; // warm caches and the thread pool
    let (t_cnn, o_cnn) = time(&cnn, args.iterations.max(1))?;
    let (t_base, o_base) = time(&base, (args.iterations / 10).max(3))?;
    if o_cnn.output != o_base.output {
        return Err(anyhow!(
            "the two programs disagree: {:?} vs {:?}",
            o_cnn.output,
            o_base.output
        ));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "LeNet-5, 1x32x32 input, {:?} kernels, median of timed runs",
        args.backend
    );
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "", "CNN instr.", "base set", "ratio"
    );
    println!(
        "{:<28} {:>14.4} {:>14.3} {:>9.0}x",
        "latency (ms)",
        ms(t_cnn),
        ms(t_base),
        ms(t_base) / ms(t_cnn)
    );
    println!(
        "{:<28} {:>14} {:>14} {:>9.0}x",
        "bytecode instructions",
        cnn.instruction_count(),
        base.instruction_count(),
        base.instruction_count() as f64 / cnn.instruction_count() as f64
    );
    println!(
        "{:<28} {:>14} {:>14} {:>9.0}x",
        "executed instructions",
        o_cnn.instructions,
        o_base.instructions,
        o_base.instructions as f64 / o_cnn.instructions as f64
    );
    println!(
        "{:<28} {:>14} {:>14} {:>9.0}x",
        "gas",
        o_cnn.gas_used,
        o_base.gas_used,
        o_base.gas_used as f64 / o_cnn.gas_used as f64
    );
    println!(
        "{:<28} {:>14} {:>14} {:>9.0}x",
        "weight block reads",
        o_cnn.weight_blocks_read,
        o_base.weight_blocks_read,
        o_base.weight_blocks_read as f64 / o_cnn.weight_blocks_read as f64
    );
    let (buf, mem) = (o_cnn.peak_buffer_bytes, o_base.peak_memory_bytes);
    println!(
        "{:<28} {:>14} {:>14} {:>9.1}%",
        "peak feature-map bytes",
        buf,
        mem,
        100.0 * (1.0 - buf as f64 / mem as f64)
    );
    println!("(last column: how many times more the base set needs; for memory, how much less the Buffer holds)");
    println!("output {:?}", o_cnn.output);
    Ok(())
}
