#!/usr/bin/env bash
# Regenerates runtime/src/weights/pallet_smartvm.rs from the pallet's frame-benchmarking
# benchmarks, run inside the runtime's own wasm (`make weights`).
#
# 1. The runtime's wasm with `runtime-benchmarks`, built in a target dir of its own: in the
#    shared one it would overwrite the wasm the node embeds.
# 2. The collator-feature node: it carries `benchmark pallet` (frame-benchmarking-cli comes with
#    polkadot-cli). It is a debug build: the VM benchmarks run entirely in wasm and are exact;
#    storage-bound ones pay debug-built host trie code, so they come out high (safe side).
# 3. `smartvm-node benchmark pallet` over every benchmark of pallet_smartvm, written through
#    scripts/weights-template.hbs.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${SMARTVM_CACHE:-$HOME/.cache/smartvm}
TARGET=${CARGO_TARGET_DIR:-$CACHE/target}
STEPS=${STEPS:-20}
REPEAT=${REPEAT:-10}

echo "== the runtime's wasm with runtime-benchmarks (in $CACHE/target-bench)"
CARGO_TARGET_DIR="$CACHE/target-bench" cargo check -p smartvm-runtime --features runtime-benchmarks
# A dev-profile outer build leaves the plain (uncompacted) blob; it runs the same code.
wasm="$CACHE/target-bench/debug/wbuild/smartvm-runtime/smartvm_runtime.wasm"
test -f "$wasm" || { echo "no benchmark wasm at $wasm"; exit 1; }

echo "== the node with benchmark pallet (collator feature)"
CARGO_TARGET_DIR="$TARGET" cargo build -p smartvm-node --features collator

echo "== benchmarks: $STEPS steps x $REPEAT repeats"
mkdir -p runtime/src/weights
"$TARGET/debug/smartvm-node" benchmark pallet \
  --runtime "$wasm" \
  --genesis-builder runtime \
  --pallet pallet_smartvm \
  --extrinsic '*' \
  --steps "$STEPS" \
  --repeat "$REPEAT" \
  --template scripts/weights-template.hbs \
  --output runtime/src/weights/pallet_smartvm.rs
echo "written runtime/src/weights/pallet_smartvm.rs"
