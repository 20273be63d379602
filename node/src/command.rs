//! Parses the command line and runs the chosen subcommand or the node.

use polkadot_sdk::sc_cli::{ChainSpec, SubstrateCli};
use polkadot_sdk::{sc_cli, sc_service};

use crate::chain_spec;
use crate::cli::{Cli, Kernels, Subcommand};
use crate::service::{self, SealMode};

impl SubstrateCli for Cli {
    fn impl_name() -> String {
        "SmartVM Node".into()
    }

    fn impl_version() -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    fn description() -> String {
        "SmartVM: on-chain DNN inference as a Substrate parachain.\n\nRun `smartvm-node --dev` for a \
         single-node development chain with the demo model deployed."
            .into()
    }

    fn author() -> String {
        "SmartVM developers".into()
    }

    fn support_url() -> String {
        "https://github.com/smartvm/smartvm/issues".into()
    }

    fn copyright_start_year() -> i32 {
        2026
    }

    fn load_spec(&self, id: &str) -> Result<Box<dyn ChainSpec>, String> {
        Ok(match id {
            "" | "dev" => Box::new(chain_spec::development()?),
            "local" => Box::new(chain_spec::local_testnet()?),
            path => Box::new(chain_spec::ChainSpec::from_json_file(path.into())?),
        })
    }
}

/// How the dev chain seals, or `None` for collator mode.
fn seal_mode(cli: &Cli) -> sc_cli::Result<Option<SealMode>> {
    if cli.instant_seal {
        return Ok(Some(SealMode::Instant));
    }
    if let Some(ms) = cli.dev_block_time {
        return Ok(Some(SealMode::Interval(ms)));
    }
    Ok(cli
        .run
        .base
        .shared_params
        .is_dev()
        .then_some(SealMode::Interval(3000)))
}

fn configure_kernels(kernels: Kernels) -> sc_cli::Result<()> {
    let choice = match kernels {
        Kernels::Native => smartvm_host::backend::Choice::Native,
        Kernels::Cuda => smartvm_host::backend::Choice::Cuda {
            device: 0,
            min_gpu_macs: smartvm_kernels::dispatch::DEFAULT_MIN_GPU_MACS,
        },
    };
    let active = smartvm_host::backend::configure(choice).map_err(sc_cli::Error::Input)?;
    log::info!("SmartVM kernels: {active}");
    Ok(())
}

/// Entry point.
pub fn run() -> sc_cli::Result<()> {
    let cli = Cli::from_args();
    match &cli.subcommand {
        Some(Subcommand::BuildSpec(cmd)) => {
            let runner = cli.create_runner(cmd)?;
            runner.sync_run(|config| cmd.run(config.chain_spec, config.network))
        }
        Some(Subcommand::CheckBlock(cmd)) => {
            let runner = cli.create_runner(cmd)?;
            runner.async_run(|config| {
                let parts = service::new_partial(&config)?;
                Ok((
                    cmd.run(parts.client, parts.import_queue),
                    parts.task_manager,
                ))
            })
        }
        Some(Subcommand::ExportBlocks(cmd)) => {
            let runner = cli.create_runner(cmd)?;
            runner.async_run(|config| {
                let parts = service::new_partial(&config)?;
                Ok((cmd.run(parts.client, config.database), parts.task_manager))
            })
        }
        Some(Subcommand::ExportState(cmd)) => {
            let runner = cli.create_runner(cmd)?;
            runner.async_run(|config| {
                let parts = service::new_partial(&config)?;
                Ok((cmd.run(parts.client, config.chain_spec), parts.task_manager))
            })
        }
        Some(Subcommand::ImportBlocks(cmd)) => {
            let runner = cli.create_runner(cmd)?;
            runner.async_run(|config| {
                let parts = service::new_partial(&config)?;
                Ok((
                    cmd.run(parts.client, parts.import_queue),
                    parts.task_manager,
                ))
            })
        }
        Some(Subcommand::Revert(cmd)) => {
            let runner = cli.create_runner(cmd)?;
            runner.async_run(|config| {
                let parts = service::new_partial(&config)?;
                Ok((
                    cmd.run(parts.client, parts.backend, None),
                    parts.task_manager,
                ))
            })
        }
        Some(Subcommand::PurgeChain(cmd)) => {
            let runner = cli.create_runner(cmd)?;
            runner.sync_run(|config| cmd.run(config.database))
        }
        Some(Subcommand::ExportGenesisHead(cmd)) => {
            let runner = cli.create_runner(cmd)?;
            runner.sync_run(|config| {
                let parts = service::new_partial(&config)?;
                cmd.run(parts.client)
            })
        }
        Some(Subcommand::ExportGenesisWasm(cmd)) => {
            let runner = cli.create_runner(cmd)?;
            runner.sync_run(|_config| {
                let spec = cli.load_spec(&cmd.shared_params.chain_id(cmd.shared_params.dev))?;
                cmd.run(&*spec)
            })
        }
        Some(Subcommand::BenchInfer(cmd)) => cmd.run(cli.load_spec(&cmd.chain)?),
        #[cfg(feature = "collator")]
        Some(Subcommand::Benchmark(crate::cli::BenchmarkCmd::Pallet(cmd))) => {
            // The runtime blob comes from `--runtime`; the node's host functions let it run
            // whichever kernels the benchmarks choose.
            cmd.run_with_spec::<polkadot_sdk::sp_runtime::traits::BlakeTwo256, service::ExtraHostFunctions>(
                None,
            )
        }
        None => {
            configure_kernels(cli.smartvm_kernels)?;
            let mode = seal_mode(&cli)?;
            let runner = cli.create_runner(&cli.run.normalize())?;
            #[cfg(feature = "collator")]
            let collator_options = cli.run.collator_options();
            runner.run_node_until_exit(|config| async move {
                match mode {
                    Some(mode) => service::start_dev_node(config, mode).map_err(Into::into),
                    #[cfg(feature = "collator")]
                    None => start_collator(&cli, config, collator_options).await,
                    #[cfg(not(feature = "collator"))]
                    None => Err(sc_service::Error::Other(
                        "this node was built without collator mode (cargo build -p smartvm-node \
                         --features collator); run it with --dev"
                            .into(),
                    )
                    .into()),
                }
            })
        }
    }
}

/// Collator mode: the relay-chain configuration from the arguments after `--`, the para id from
/// the chain spec, then the node.
#[cfg(feature = "collator")]
async fn start_collator(
    cli: &Cli,
    config: sc_service::Configuration,
    collator_options: polkadot_sdk::cumulus_client_cli::CollatorOptions,
) -> sc_cli::Result<sc_service::TaskManager> {
    let para_id = chain_spec::Extensions::try_get(&*config.chain_spec)
        .map(|e| e.para_id)
        .ok_or("the chain spec names no para_id")?;
    let relay = crate::relay_cli::RelayChainCli::new(&config, cli.relay_chain_args.iter());
    let polkadot_config =
        SubstrateCli::create_configuration(&relay, &relay, config.tokio_handle.clone())
            .map_err(|e| format!("relay chain arguments: {e}"))?;
    log::info!(
        "parachain {para_id}, collator: {}",
        config.role.is_authority()
    );
    crate::collator::start_collator_node(config, polkadot_config, collator_options, para_id.into())
        .await
        .map_err(Into::into)
}
