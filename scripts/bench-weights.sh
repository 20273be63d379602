#!/usr/bin/env bash
# Regenerates runtime/src/weights/pallet_smartvm.rs from the pallet's frame-benchmarking
# benchmarks, run inside the runtime's own wasm (`make weights`).
#
# 1. The runtime's wasm with `runtime-benchmarks`, built in a target dir of its own: in the
#    shared one it would overwrite the wasm the node embeds.
# 2. The collator-feature node: it carries `benchmark pallet` (frame-benchmarking-cli comes with
#    polkadot-cli). It is a debug build: the VM benchmarks run entirely in wasm and are exact;
#    storage-bound ones pay debug-built host trie code, so they come out high (safe side).
# 3. `smartvm-node benchmark pallet` over every benchmark of pallet_smartvm but `vm_layer` and the
#    jobs', written through scripts/weights-template.hbs; the jobs' (`submit_job`, `cancel_job`,
#    `clear_job`, `job_step`) into runtime/src/weights/pallet_smartvm_jobs.rs, which implements
#    the pallet's `JobWeightInfo` (JOBS_ONLY=1 runs these alone, a few minutes).
# 4. `vm_layer` once per entry of the VM's layer table (every kernel class at the zoo models'
#    shapes and at sweeps), its raw times fitted by `smartvm fit-schedule` into the gas schedule
#    (primitives/vm/src/gas/benchmarked.rs) and the per-entry table runtime/tests/gas_price.rs
#    checks (runtime/src/weights/vm_layers.csv).
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

mkdir -p runtime/src/weights
JOBS="submit_job,cancel_job,clear_job,job_step"
if [ "${LAYERS_ONLY:-0}" != 1 ]; then
echo "== job benchmarks: $STEPS steps x $REPEAT repeats"
template=$(mktemp --suffix .hbs)
sed 's/::WeightInfo for WeightInfo/::JobWeightInfo for WeightInfo/' scripts/weights-template.hbs > "$template"
"$TARGET/debug/smartvm-node" benchmark pallet \
  --runtime "$wasm" \
  --genesis-builder runtime \
  --pallet pallet_smartvm \
  --extrinsic "$JOBS" \
  --steps "$STEPS" \
  --repeat "$REPEAT" \
  --template "$template" \
  --output runtime/src/weights/pallet_smartvm_jobs.rs
rm -f "$template"
echo "written runtime/src/weights/pallet_smartvm_jobs.rs"
fi
[ "${JOBS_ONLY:-0}" = 1 ] && exit 0
# LAYERS_ONLY=1 refits the gas schedule alone (the pallet's call weights take 24 min more).
if [ "${LAYERS_ONLY:-0}" != 1 ]; then
echo "== benchmarks: $STEPS steps x $REPEAT repeats"
"$TARGET/debug/smartvm-node" benchmark pallet \
  --runtime "$wasm" \
  --genesis-builder runtime \
  --pallet pallet_smartvm \
  --extrinsic '*' \
  --exclude-extrinsics "pallet_smartvm::vm_layer,pallet_smartvm::${JOBS//,/,pallet_smartvm::}" \
  --steps "$STEPS" \
  --repeat "$REPEAT" \
  --template scripts/weights-template.hbs \
  --output runtime/src/weights/pallet_smartvm.rs
echo "written runtime/src/weights/pallet_smartvm.rs"
fi

LAYERS=$(grep -oP 'pub const LAYER_COUNT: u32 = \K[0-9]+' primitives/vm/src/bench_programs.rs)
LAYER_REPEAT=${LAYER_REPEAT:-5}
raw="$CACHE/vm_layer_raw.json"
echo "== vm_layer: $LAYERS entries x $LAYER_REPEAT repeats"
"$TARGET/debug/smartvm-node" benchmark pallet \
  --runtime "$wasm" \
  --genesis-builder runtime \
  --pallet pallet_smartvm \
  --extrinsic vm_layer \
  --steps "$LAYERS" \
  --repeat "$LAYER_REPEAT" \
  --json-file "$raw" > /dev/null

echo "== the gas schedule fitted to them"
CARGO_TARGET_DIR="$TARGET" cargo build --release -p smartvm-cli
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
"$TARGET/release/smartvm" fit-schedule --raw "$raw" --machine "$cpu, $(nproc) cores"
echo "rebuild the node (cargo build -p smartvm-node) and regenerate chain-specs/ (bash chain-specs/generate.sh): the runtime's prices changed"
