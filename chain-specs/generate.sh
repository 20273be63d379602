#!/usr/bin/env bash
# Regenerates the committed chain specs from the runtime's genesis presets:
#   smartvm-dev.json    development: Alice collates and is sudo, the demo model is model 0
#   smartvm-local.json  local_testnet: Alice and Bob collate (for a local relay chain / zombienet)
# Both are raw (storage as the chain starts), so every node that loads them agrees on genesis.
#   chain-specs/generate.sh [path/to/smartvm-node]
set -euo pipefail
cd "$(dirname "$0")"
NODE="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/smartvm/target}/debug/smartvm-node}"
[ -x "$NODE" ] || { echo "no node binary at $NODE (make build-node)"; exit 1; }
"$NODE" build-spec --chain dev --raw --disable-default-bootnode > smartvm-dev.json 2>/dev/null
"$NODE" build-spec --chain local --raw --disable-default-bootnode > smartvm-local.json 2>/dev/null
sha256sum smartvm-dev.json smartvm-local.json
