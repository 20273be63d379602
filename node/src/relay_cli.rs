//! The relay-chain half of the command line in collator mode: the arguments after `--` configure
//! the relay node that runs inside the collator (or are ignored when `--relay-chain-rpc-url`
//! points at an external one).

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches};
use polkadot_sdk::sc_cli::{
    self, ChainSpec, CliConfiguration, DefaultConfigurationValues, ImportParams, KeystoreParams,
    NetworkParams, RpcEndpoint, SharedParams, SubstrateCli,
};
use polkadot_sdk::sc_service::{config::PrometheusConfig, BasePath, Configuration};
use polkadot_sdk::{polkadot_cli, sc_service};

use crate::chain_spec::Extensions;
use crate::cli::Cli;

/// Relay-chain node arguments, parsed from what follows `--`.
#[derive(Debug)]
pub struct RelayChainCli {
    /// The polkadot node's own run flags.
    pub base: polkadot_cli::RunCmd,
    /// Relay chain named by the parachain's chain spec (`relay_chain` extension).
    pub chain_id: Option<String>,
    /// `<parachain base path>/polkadot`, unless `--base-path` is given after `--`.
    pub base_path: Option<PathBuf>,
}

impl RelayChainCli {
    /// Parses `args` (without a binary name) for the parachain `config`.
    pub fn new<'a>(config: &Configuration, args: impl Iterator<Item = &'a String>) -> Self {
        let matches = polkadot_cli::RunCmd::command()
            .no_binary_name(true)
            .get_matches_from(args);
        let base = polkadot_cli::RunCmd::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        Self {
            base,
            chain_id: Extensions::try_get(&*config.chain_spec).map(|e| e.relay_chain.clone()),
            base_path: Some(config.base_path.path().join("polkadot")),
        }
    }
}

/// Names and versions are the parachain node's; chain specs are polkadot's.
impl SubstrateCli for RelayChainCli {
    fn impl_name() -> String {
        Cli::impl_name()
    }

    fn impl_version() -> String {
        Cli::impl_version()
    }

    fn description() -> String {
        Cli::description()
    }

    fn author() -> String {
        Cli::author()
    }

    fn support_url() -> String {
        Cli::support_url()
    }

    fn copyright_start_year() -> i32 {
        Cli::copyright_start_year()
    }

    fn load_spec(&self, id: &str) -> Result<Box<dyn ChainSpec>, String> {
        polkadot_cli::Cli::from_iter([Self::executable_name()].iter()).load_spec(id)
    }
}

impl DefaultConfigurationValues for RelayChainCli {
    fn p2p_listen_port() -> u16 {
        30334
    }

    fn rpc_listen_port() -> u16 {
        9945
    }

    fn prometheus_listen_port() -> u16 {
        9616
    }
}

impl CliConfiguration<Self> for RelayChainCli {
    fn shared_params(&self) -> &SharedParams {
        self.base.base.shared_params()
    }

    fn import_params(&self) -> Option<&ImportParams> {
        self.base.base.import_params()
    }

    fn network_params(&self) -> Option<&NetworkParams> {
        self.base.base.network_params()
    }

    fn keystore_params(&self) -> Option<&KeystoreParams> {
        self.base.base.keystore_params()
    }

    fn base_path(&self) -> sc_cli::Result<Option<BasePath>> {
        Ok(self
            .shared_params()
            .base_path()?
            .or_else(|| self.base_path.clone().map(Into::into)))
    }

    fn rpc_addr(&self, default_listen_port: u16) -> sc_cli::Result<Option<Vec<RpcEndpoint>>> {
        self.base.base.rpc_addr(default_listen_port)
    }

    fn prometheus_config(
        &self,
        default_listen_port: u16,
        chain_spec: &Box<dyn ChainSpec>,
    ) -> sc_cli::Result<Option<PrometheusConfig>> {
        self.base
            .base
            .prometheus_config(default_listen_port, chain_spec)
    }

    // The parachain's command line already set up logging for the whole process.
    fn init<F>(&self, _: &String, _: &String, _: F) -> sc_cli::Result<()>
    where
        F: FnOnce(&mut sc_cli::LoggerBuilder),
    {
        Ok(())
    }

    fn chain_id(&self, is_dev: bool) -> sc_cli::Result<String> {
        let given = self.base.base.chain_id(is_dev)?;
        Ok(if given.is_empty() {
            self.chain_id.clone().unwrap_or_default()
        } else {
            given
        })
    }

    fn role(&self, is_dev: bool) -> sc_cli::Result<sc_service::Role> {
        self.base.base.role(is_dev)
    }

    fn node_name(&self) -> sc_cli::Result<String> {
        self.base.base.node_name()
    }
}
