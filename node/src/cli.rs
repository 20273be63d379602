//! Command line: the standard Substrate subcommands and run flags, plus how a dev chain seals
//! blocks and where the SmartVM kernels run.

use polkadot_sdk::{cumulus_client_cli, sc_cli};

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Build a chain specification.
    #[allow(deprecated)]
    BuildSpec(sc_cli::BuildSpecCmd),
    /// Validate blocks.
    CheckBlock(sc_cli::CheckBlockCmd),
    /// Export blocks.
    ExportBlocks(sc_cli::ExportBlocksCmd),
    /// Export the state of a given block into a chain spec.
    ExportState(sc_cli::ExportStateCmd),
    /// Import blocks.
    ImportBlocks(sc_cli::ImportBlocksCmd),
    /// Revert the chain to a previous state.
    Revert(sc_cli::RevertCmd),
    /// Remove the whole chain.
    PurgeChain(sc_cli::PurgeChainCmd),
    /// Export the genesis head data of the parachain (for relay-chain registration).
    #[command(alias = "export-genesis-state")]
    ExportGenesisHead(cumulus_client_cli::ExportGenesisHeadCommand),
    /// Export the genesis wasm of the parachain (for relay-chain registration).
    ExportGenesisWasm(cumulus_client_cli::ExportGenesisWasmCommand),
    /// Time a model's inference on the collator path (native kernels) and on the relay
    /// validators' path (in-wasm kernels, without the SmartVM host functions), and check that
    /// both give the same bytes.
    BenchInfer(crate::bench_infer::BenchInferCmd),
    /// Run the runtime's benchmarks (`benchmark pallet --runtime WASM`, the wasm built with
    /// `runtime-benchmarks`) and write its weights; `make weights` drives it. Collator builds only:
    /// they already carry frame-benchmarking-cli through polkadot-cli.
    #[cfg(feature = "collator")]
    #[command(subcommand)]
    Benchmark(BenchmarkCmd),
}

/// The benchmark kinds this node runs.
#[cfg(feature = "collator")]
#[derive(Debug, clap::Subcommand)]
pub enum BenchmarkCmd {
    /// Benchmark pallets' calls in a runtime and generate their weight functions.
    Pallet(Box<polkadot_sdk::frame_benchmarking_cli::PalletCmd>),
}

/// Where the SmartVM kernels of this node run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kernels {
    /// Native CPU kernels (SIMD + rayon).
    Native,
    /// NVIDIA GPU 0 for big layers (node built with `--features cuda`), CPU for the rest.
    Cuda,
}

/// `smartvm-node` arguments.
#[derive(Debug, clap::Parser)]
#[command(
    propagate_version = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// Subcommand.
    #[command(subcommand)]
    pub subcommand: Option<Subcommand>,

    /// Node flags.
    #[command(flatten)]
    pub run: cumulus_client_cli::RunCmd,

    /// Dev mode: seal a block every this many milliseconds (default with --dev: 3000).
    #[arg(long, conflicts_with = "instant_seal")]
    pub dev_block_time: Option<u64>,

    /// Dev mode: seal a block as soon as a transaction arrives.
    #[arg(long)]
    pub instant_seal: bool,

    /// Where the SmartVM kernels run (results are identical; only speed differs).
    #[arg(long, value_enum, default_value_t = Kernels::Native)]
    pub smartvm_kernels: Kernels,

    /// Relay-chain arguments (after `--`), for collator mode.
    #[arg(raw = true)]
    pub relay_chain_args: Vec<String>,
}
