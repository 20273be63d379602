//! `smartvm-node`: runs the SmartVM parachain runtime with the SmartVM kernel host functions
//! registered next to the standard ones (the polkadot omni-node has a fixed host-function set,
//! so it cannot load this runtime).

mod chain_spec;
mod cli;
mod command;
mod rpc;
mod service;

fn main() -> polkadot_sdk::sc_cli::Result<()> {
    command::run()
}
