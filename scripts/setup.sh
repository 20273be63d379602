#!/usr/bin/env bash
# Installs what building and testing SmartVM needs, skipping whatever is already present.
# Idempotent and quick when nothing is missing; safe to call from every make target.
set -euo pipefail

need_apt=()
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
[ -e /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
  installed_targets=$(rustup target list --installed)
  grep -qx wasm32-unknown-unknown <<<"$installed_targets" || rustup target add wasm32-unknown-unknown
  rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
fi

# numpy regenerates the golden vectors (tests/golden/check.sh) and, with onnx, builds the ONNX
# test fixtures; both are small, unlike torch (never installed here).
python3 -c "import numpy, onnx" 2>/dev/null || python3 -m pip install -q numpy onnx
# onnxruntime's quantize_static writes the QDQ (already-quantized) fixture; about 20 MB, no CUDA.
python3 -c "import onnxruntime" 2>/dev/null || python3 -m pip install -q onnxruntime

# polkadot.js for the end-to-end tests (tests/e2e), pinned by its package-lock.json.
if command -v npm >/dev/null 2>&1; then
  lock=tests/e2e/package-lock.json
  stamp=tests/e2e/node_modules/.installed-lock
  if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
    echo "setup: installing the e2e test packages (npm ci)"
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error) && cp "$lock" "$stamp"
  fi
fi
