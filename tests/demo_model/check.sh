#!/usr/bin/env bash
# The dev chain deploys models/lenet5-fashion/compiled at genesis: recompiling the committed ONNX
# model with the same calibration must give the same bytes on any machine (the compiler is a pure
# function of its inputs), so this runs the calibration on one thread and on several.
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
for threads in 1 4; do
  RAYON_NUM_THREADS=$threads "$SMARTVM" compile models/lenet5-fashion/lenet5_fashion.onnx --input-shape 1,1,28,28 \
    --calibration "$FMNIST/train-images-idx3-ubyte.gz" --calibration-count 512 -o "$out/$threads" >/dev/null
  for f in program.smvm weights.smw quant.json; do
    cmp "$out/$threads/$f" "models/lenet5-fashion/compiled/$f" || {
      echo "demo model $f compiled on $threads thread(s) differs: run make demo-model"
      exit 1
    }
  done
done
echo "demo model reproduced byte for byte on 1 and 4 threads"
