#!/usr/bin/env bash
# Runs the fuzzers (libFuzzer via cargo fuzz, nightly), one after another, and prints a summary
# line for each: executions, edges covered, corpus size and findings.
#   kernels  structured: valid programs of every kernel instruction with random shapes and
#            geometry over the admitted ranges, reference against native backend
#   pallet   random sequences of every pallet call against the mock runtime, with invariants
#   execute  arbitrary bytes: decode, validate, execute on both backends
#   scripts/fuzz.sh SECONDS [TARGET...]     (default 300 seconds each, all three targets)
# FUZZ_RUNS=N stops each target after N executions instead (SECONDS still bounds it).
# Corpora persist in fuzz/corpus/<target>; findings land in fuzz/artifacts/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(kernels pallet execute)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
target_dir="${SMARTVM_FUZZ_TARGET:-$HOME/.cache/smartvm/fuzz-target}"
cd fuzz
summary=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  [ "$target" = execute ] && cp -n seeds/* corpus/execute/ 2>/dev/null || true
  before=$(ls "artifacts/$target" | wc -l)
  log="artifacts/$target.log"
  runs=()
  [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
  echo "== fuzz $target for up to $seconds s ${FUZZ_RUNS:+or $FUZZ_RUNS executions}"
  # The kernels and bytecode targets run under AddressSanitizer (the native kernels hold unsafe
  # SIMD code); the pallet target is safe Rust over the mock runtime and runs about twice as
  # fast without it, in a target folder of its own so the two builds do not undo each other.
  sanitizer=address
  [ "$target" = pallet ] && sanitizer=none
  export CARGO_TARGET_DIR="$target_dir-$sanitizer"
  status=0
  cargo +nightly fuzz run -s "$sanitizer" "$target" "corpus/$target" -- -max_total_time="$seconds" "${runs[@]}" \
    -max_len=4096 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tee "$log" \
    | grep -E '^#[0-9]+.*(pulse|DONE)|^(==|ERROR|SUMMARY|thread)|panicked' || true
  status=${PIPESTATUS[0]}
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -oE '^#[0-9]+.*cov: [0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+' || echo '?')
  corpus=$(grep -oE '^#[0-9]+.*corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | grep -oE 'corp: [^ ]+' | cut -d' ' -f2 || echo '?')
  found=$(( $(ls "artifacts/$target" | wc -l) - before ))
  summary+=("$target: $execs executions, $cov edges, corpus $corpus (inputs/size), $found new findings (exit $status)")
done
echo "== fuzz summary (CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
printf '   %s\n' "${summary[@]}"
for line in "${summary[@]}"; do
  case "$line" in *", 0 new findings (exit 0)") ;; *) echo "FINDINGS: see fuzz/artifacts/"; exit 1 ;; esac
done
