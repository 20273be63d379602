#!/usr/bin/env bash
# Installs tensorflow-cpu and tf2onnx into a venv of their own for the Keras exports of the
# compiler's suite (tests/fixtures/keras/export.py), and prints that venv's python. About 1.5 GB,
# so kept out of the system Python and of `make test`. Idempotent: a second run only checks.
set -euo pipefail
VENV="${SMARTVM_TF_VENV:-$HOME/.cache/smartvm/tf-venv}"
if ! "$VENV/bin/python" -c 'import tensorflow, tf2onnx, onnx' 2>/dev/null; then
  echo "install-tf: installing tensorflow-cpu and tf2onnx into $VENV (about 1.5 GB, once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q tensorflow-cpu tf2onnx >&2
fi
echo "$VENV/bin/python"
