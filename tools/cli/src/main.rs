//! `smartvm`: the command-line front door to SmartVM programs.

mod bench;
mod chain;
mod compile;
mod eval;
mod evaluation;
mod fidelity;
mod idx;
mod image;
mod load;
mod memory;
mod profile;
mod run;
mod schedule_fit;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use smartvm_isa::{asm, TABLE};

#[derive(Parser)]
#[command(
    name = "smartvm",
    version,
    about = "Assemble, inspect, run and benchmark SmartVM programs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which kernel implementation executes the CNN instructions.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Backend {
    /// SIMD + rayon, what the node's host function runs.
    Native,
    /// The plain reference kernels: the readable definition.
    Reference,
    /// The wasm-tuned scalar kernels relay validators run, compiled natively here: the
    /// yardstick for their in-wasm time.
    Scalar,
    /// Every kernel call on the first NVIDIA GPU (built with `--features cuda`).
    #[cfg(feature = "cuda")]
    Cuda,
}

#[derive(Subcommand)]
enum Command {
    /// Print the opcode table.
    Opcodes {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Assemble source text into a program container; invalid programs are refused (the
    /// checks `run` and the chain apply).
    Asm {
        /// Assembly source (.sasm).
        source: PathBuf,
        /// Output program (.smvm).
        #[arg(short, long)]
        output: PathBuf,
        /// Weight pack whose blocks fill the manifest (lengths and hashes).
        #[arg(long)]
        weights: Option<PathBuf>,
    },
    /// Print a program container as assembly source.
    Disasm {
        /// Program (.smvm).
        program: PathBuf,
    },
    /// Compile a float ONNX model into a program, weight blocks and quantization parameters.
    Compile(compile::CompileArgs),
    /// Run a program on one input.
    Run(run::RunArgs),
    /// Top-1 accuracy of a compiled program on an IDX data set, next to the float model's.
    Eval(eval::EvalArgs),
    /// Measure LeNet-5 with CNN instructions against the base-set version.
    Bench(bench::BenchArgs),
    /// Top-1 agreement and SQNR of the integer program against the float model, with latencies.
    Fidelity(fidelity::FidelityArgs),
    /// Put a compiled model on chain over RPC: create, upload blocks, seal (resumable).
    Deploy(chain::deploy::DeployArgs),
    /// Run a deployed model over RPC: a paid `smartvm.infer` transaction, or `--dry-run`.
    Infer(chain::infer::InferArgs),
    /// Fit the gas schedule to the runtime's wasm benchmarks of every kernel class (`make weights`).
    FitSchedule(schedule_fit::FitArgs),
}

fn main() -> Result<()> {
    // The VM runs on this thread: make it a rayon worker, so kernels split their loops here.
    smartvm_kernels::native::adopt_calling_thread();
    match Cli::parse().command {
        Command::Opcodes { json } => print_opcodes(json),
        Command::Asm {
            source,
            output,
            weights,
        } => {
            let program = load::program(&source, weights.as_deref())?;
            // Refuse here what `run` and the chain would refuse, with the same reason.
            smartvm_isa::validate(&program).map_err(|e| {
                anyhow::anyhow!(
                    "{}: the assembled program is invalid: {e:?}",
                    source.display()
                )
            })?;
            std::fs::write(&output, program.encode())
                .with_context(|| format!("writing {}", output.display()))?;
            println!(
                "{}: {} code bytes, {} weight blocks",
                output.display(),
                program.code.len(),
                program.blocks.len()
            );
            Ok(())
        }
        Command::Disasm { program } => {
            let program = load::program(&program, None)?;
            print!("{}", asm::disassemble(&program));
            Ok(())
        }
        Command::Compile(args) => compile::compile(args),
        Command::Run(args) => run::run(args),
        Command::Eval(args) => eval::eval(args),
        Command::Bench(args) => bench::bench(args),
        Command::Fidelity(args) => fidelity::fidelity(args),
        Command::Deploy(args) => on_runtime(chain::deploy::run(args)),
        Command::Infer(args) => on_runtime(chain::infer::run(args)),
        Command::FitSchedule(args) => schedule_fit::fit(args),
    }
}

fn print_opcodes(json: bool) -> Result<()> {
    if json {
        let rows: Vec<_> = TABLE
            .iter()
            .map(|r| {
                serde_json::json!({
                    "mnemonic": r.mnemonic, "byte": r.byte, "inputs": r.inputs, "outputs": r.outputs,
                    "immediate": r.immediate, "gas": format!("{:?}", r.gas), "summary": r.summary,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<5} {:<10} {:>3} {:>4} {:>4} {:<10} summary",
        "byte", "mnemonic", "in", "out", "imm", "gas"
    );
    for r in TABLE {
        println!(
            "{:#04x}  {:<10} {:>3} {:>4} {:>4} {:<10} {}",
            r.byte,
            r.mnemonic,
            r.inputs,
            r.outputs,
            r.immediate,
            format!("{:?}", r.gas),
            r.summary
        );
    }
    Ok(())
}

/// Runs an RPC command on a tokio runtime (the other commands need none).
fn on_runtime(task: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(task)
}
