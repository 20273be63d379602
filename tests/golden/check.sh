#!/usr/bin/env bash
# Regenerates the numpy golden vectors and the LeNet-5 fixtures and fails if they differ from
# what is committed: the generators, not hand edits, are the source of those files.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 tests/golden/kernels.py >/dev/null
python3 examples/lenet5/make_lenet5.py >/dev/null
if git rev-parse --git-dir >/dev/null 2>&1; then
  if ! git diff --quiet -- tests/golden examples/lenet5; then
    echo "golden files changed when regenerated:" >&2
    git diff --stat -- tests/golden examples/lenet5 >&2
    exit 1
  fi
fi
echo "golden: 2 passed, 0 failed"
