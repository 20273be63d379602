#!/usr/bin/env bash
# Installs PyTorch (CPU use only) and onnx2torch into a venv of their own for the PyTorch fp32
# anchors of `make evaluation`, and prints that venv's python. PyTorch's PyPI wheel brings ~3 GB
# of CUDA libraries, so it is kept out of the system Python and of `make test`. Idempotent: a
# second run only checks the imports.
set -euo pipefail
VENV="${SMARTVM_TORCH_VENV:-$HOME/.cache/smartvm/torch-venv}"
if ! "$VENV/bin/python" -c 'import torch, onnx2torch, onnxruntime, onnx, numpy' 2>/dev/null; then
  echo "install-torch: installing torch and onnx2torch into $VENV (a few GB, once)" >&2
  # System site packages keep the numpy, onnx and onnxruntime that scripts/setup.sh installed.
  python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q torch onnx2torch >&2
fi
echo "$VENV/bin/python"
