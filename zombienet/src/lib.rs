//! What the zombienet tests need besides zombienet-sdk: the binaries they spawn or call, located
//! the way the Makefile builds them, and the `smartvm` CLI as a subprocess (its `infer` is the
//! subxt client a user runs; its `run` is the off-chain reference).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// How to get the relay-chain binaries when they are missing.
pub const INSTALL_HINT: &str = "make relay (scripts/install-relay.sh builds polkadot into ~/.cache/smartvm/relay/bin, about an hour on 2 cores)";

/// The programs a network test uses, by absolute path.
pub struct Tools {
    /// Folder holding `polkadot`, `polkadot-prepare-worker` and `polkadot-execute-worker`.
    pub relay_bin: PathBuf,
    /// `smartvm-node` built with `--features collator`.
    pub node: PathBuf,
    /// The `smartvm` CLI.
    pub cli: PathBuf,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("SMARTVM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/smartvm")
        })
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("target"))
}

impl Tools {
    /// Finds the binaries (`SMARTVM_RELAY_BIN`, `SMARTVM_NODE`, `SMARTVM_CLI` override the
    /// defaults) and says what is missing and how to get it.
    pub fn locate() -> Result<Self> {
        let relay_bin = std::env::var_os("SMARTVM_RELAY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache_dir().join("relay/bin"));
        let node = std::env::var_os("SMARTVM_NODE")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("debug/smartvm-node"));
        let cli = std::env::var_os("SMARTVM_CLI")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("release/smartvm"));
        for worker in [
            "polkadot",
            "polkadot-prepare-worker",
            "polkadot-execute-worker",
        ] {
            if !relay_bin.join(worker).is_file() {
                bail!("{worker} is not in {}: {INSTALL_HINT}", relay_bin.display());
            }
        }
        if !node.is_file() {
            bail!(
                "{} is missing: cargo build -p smartvm-node --features collator",
                node.display()
            );
        }
        if !cli.is_file() {
            bail!(
                "{} is missing: cargo build --release -p smartvm-cli",
                cli.display()
            );
        }
        Ok(Self {
            relay_bin,
            node,
            cli,
        })
    }

    /// The `PATH` under which network.toml's `polkadot` and `smartvm-node` are these binaries.
    pub fn search_path(&self) -> Result<std::ffi::OsString> {
        let node_dir = self.node.parent().context("the node binary has a folder")?;
        let mut dirs = vec![self.relay_bin.clone(), node_dir.to_path_buf()];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        Ok(std::env::join_paths(dirs)?)
    }

    /// Runs the CLI with `args` (which end in `--json`) and parses what it prints.
    pub fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let out = Command::new(&self.cli)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .with_context(|| format!("starting {}", self.cli.display()))?;
        if !out.status.success() {
            bail!(
                "smartvm {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("smartvm {} printed no JSON", args.join(" ")))
    }
}

/// The repository's root (this crate lives in `zombienet/`), found at run time: cargo may
/// reuse a test binary built in another checkout.
pub fn repo_root() -> PathBuf {
    std::env::var("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok()
        .and_then(|dir| dir.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// Fashion-MNIST test image `index` as the LeNet-5 program takes it (pixel - 128, as int8
/// bytes), or a seeded synthetic image where the dataset is not installed.
pub fn lenet_input(index: usize) -> Result<Vec<u8>> {
    const FMNIST: &str = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    let pixels: Vec<u8> = if Path::new(FMNIST).is_file() {
        let gz = std::fs::read(FMNIST)?;
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw)?;
        raw.get(16 + 784 * index..16 + 784 * (index + 1))
            .context("image index beyond the test set")?
            .to_vec()
    } else {
        (0..784)
            .map(|j| ((j * 31 + index * 97) % 256) as u8)
            .collect()
    };
    Ok(pixels.into_iter().map(|p| p ^ 0x80).collect())
}
