//! `smartvm-node`: runs the SmartVM parachain runtime with the SmartVM kernel host functions
//! registered next to the standard ones (the polkadot omni-node has a fixed host-function set,
//! so it cannot load this runtime).

// The node returns Substrate's own error types (sc_cli / sc_service), which are large by design.
#![allow(clippy::result_large_err)]

mod bench_infer;
mod chain_spec;
mod cli;
#[cfg(feature = "collator")]
mod collator;
mod command;
#[cfg(feature = "collator")]
mod relay_cli;
mod rpc;
mod service;

fn main() -> polkadot_sdk::sc_cli::Result<()> {
    command::run()
}
