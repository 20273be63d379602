#!/usr/bin/env bash
# The dev chain deploys models/lenet5-fashion/compiled at genesis: recompiling the committed ONNX
# model with the same calibration must give the same bytes (the compiler is deterministic).
set -euo pipefail
cd "$(dirname "$0")/../.."
SMARTVM="${CARGO_TARGET_DIR:-$HOME/.cache/smartvm/target}/release/smartvm"
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  echo "SKIPPED: demo model reproduction (Fashion-MNIST missing: apt-get install dataset-fashion-mnist)"
  exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$SMARTVM" compile models/lenet5-fashion/lenet5_fashion.onnx --input-shape 1,1,28,28 \
  --calibration "$FMNIST/train-images-idx3-ubyte.gz" --calibration-count 512 -o "$out" >/dev/null
for f in program.smvm weights.smw quant.json; do
  cmp "$out/$f" "models/lenet5-fashion/compiled/$f" || { echo "demo model $f differs: run make demo-model"; exit 1; }
done
echo "demo model reproduced byte for byte"
