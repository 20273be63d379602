#!/usr/bin/env bash
# Builds the relay-chain binaries zombienet needs (polkadot, polkadot-prepare-worker,
# polkadot-execute-worker) from the cargo registry into a cache outside the clone.
# Resumable: cargo keeps finished crates in its own target dir (separate from the workspace's, so
# the two builds never wait on each other's lock), so rerun after an interruption.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/setup.sh"
CACHE=${SMARTVM_CACHE:-$HOME/.cache/smartvm}
RELAY_VERSION=41.0.0
root="$CACHE/relay"
if [ -x "$root/bin/polkadot" ] && [ -x "$root/bin/polkadot-prepare-worker" ] && [ -x "$root/bin/polkadot-execute-worker" ]; then
  echo "relay binaries present in $root/bin ($("$root/bin/polkadot" --version 2>/dev/null))"
  exit 0
fi
mkdir -p "$root"
echo "building polkadot $RELAY_VERSION into $root (long: tens of minutes on 2 cores)"
start=$(date +%s)
CARGO_INCREMENTAL=0 cargo install polkadot --version "$RELAY_VERSION" --locked \
  --root "$root" --target-dir "$CACHE/target-relay"
echo "relay binaries installed in $root/bin in $(( $(date +%s) - start )) s"
