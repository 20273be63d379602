#!/usr/bin/env bash
# Starts the dev chain (`make run`) with a database that survives restarts: one folder per
# genesis under $SMARTVM_DEV_DATA (default ~/.cache/smartvm/dev-chain), named by the hash of
# the raw dev chain spec, so a new runtime starts a new chain beside the old one instead of
# failing on a genesis mismatch. SMARTVM_FRESH=1 deletes this genesis' folder first.
#   scripts/dev-chain.sh path/to/smartvm-node [node flags ...]
set -euo pipefail
node="$1"
shift
data="${SMARTVM_DEV_DATA:-$HOME/.cache/smartvm/dev-chain}"
genesis=$("$node" build-spec --dev --raw --disable-default-bootnode 2>/dev/null | sha256sum | cut -c1-16)
base="$data/$genesis"
if [ "${SMARTVM_FRESH:-0}" = 1 ] && [ -d "$base" ]; then
  rm -rf "$base"
  echo "dev chain: deleted $base, starting afresh"
fi
if [ -d "$base/chains" ]; then
  echo "dev chain: resuming the database in $base"
else
  echo "dev chain: new database in $base"
fi
exec "$node" --dev --base-path "$base" "$@"
