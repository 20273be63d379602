#!/usr/bin/env bash
# Runs the decode + validate + execute fuzzer (libFuzzer via cargo fuzz, nightly) for N seconds.
# Seeds come from the example programs; findings land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/execute
cp -n fuzz/seeds/* fuzz/corpus/execute/ 2>/dev/null || true
cd fuzz
CARGO_TARGET_DIR="${SMARTVM_FUZZ_TARGET:-$HOME/.cache/smartvm/fuzz-target}" \
  cargo +nightly fuzz run execute corpus/execute -- -max_total_time="$seconds" -max_len=4096 -timeout=10
