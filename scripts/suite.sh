#!/usr/bin/env bash
# make suite: the public suite of real exports (issue 19), each compiled and compared with its
# float model, into a Markdown table.
#
#   bash scripts/suite.sh              # SMARTVM=path/to/smartvm; SUITE_COUNT inputs compared (20)
#
# Models: the `onnx` package's light test models with seeded weights (tests/fixtures/
# make_suite.py: onnx, onnxruntime, numpy) and torchvision architectures exported by PyTorch
# (tests/fixtures/pytorch/export.py, in the torch venv of scripts/install-torch.sh: a few GB,
# installed once; SUITE_TORCH=0 leaves them out). Each row compiles, or says which node and
# operator stopped it. Offline and heavy (VGG-19 alone is 20 GMAC an input): not in make test.
set -euo pipefail
cd "$(dirname "$0")/.."
FIXTURES="${FIXTURES:-$HOME/.cache/smartvm/fixtures}"
SUITE="$FIXTURES/suite"
COUNT="${SUITE_COUNT:-20}"
REPORT="${SUITE_REPORT:-docs/suite.md}"
SMARTVM="${SMARTVM:?set SMARTVM to the smartvm binary}"
mkdir -p "$SUITE"
test -f "$SUITE/stamp-light-3" || { python3 tests/fixtures/make_suite.py "$SUITE" && touch "$SUITE/stamp-light-3"; }
if [ "${SUITE_TORCH:-1}" != 0 ] && [ ! -f "$SUITE/stamp-torch-1" ]; then
  "$(bash scripts/install-torch.sh)" tests/fixtures/pytorch/export.py zoo "$SUITE"
  touch "$SUITE/stamp-torch-1"
fi
RESULTS="$SUITE/results.jsonl"
: > "$RESULTS"
for model in "$SUITE"/light_*.onnx "$SUITE"/torch_*.onnx; do
  [ -f "$model" ] || continue
  output=$(python3 -c "import onnx,sys; print(onnx.load(sys.argv[1], load_external_data=False).graph.output[0].name)" "$model")
  echo "suite: $(basename "$model")" >&2
  if line=$(RUST_BACKTRACE=0 "$SMARTVM" fidelity "$model" --inputs "$SUITE/imagenet_inputs.npy" \
      --input-shape 1,3,224,224 --output "$output" --count "$COUNT" --json 2>&1 | tail -1) \
      && [[ "$line" == "{"* ]]; then
    echo "$line" >> "$RESULTS"
  else
    python3 -c "import json,sys; print(json.dumps({'model': sys.argv[1], 'error': sys.argv[2]}))" \
      "$(basename "$model")" "$line" >> "$RESULTS"
  fi
done
python3 - "$RESULTS" "$REPORT" "$COUNT" <<'PY'
import json, os, platform, subprocess, sys
results, report, count = sys.argv[1], sys.argv[2], sys.argv[3]
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if l.startswith("Model name")), platform.processor())
rows = [json.loads(l) for l in open(results)]
out = [f"Measured by `make suite` on {cpu} ({subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores): "
       f"each model calibrated on 8 seeded inputs, compared with tract's float run on the next {count}. "
       "Top-1 is the share of inputs whose argmax agrees; SQNR is of the whole output.", "",
       "| model | source | result | top-1 | SQNR (dB) | instructions | weights (MB) | int8 ms | float ms |",
       "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for r in rows:
    name = os.path.basename(r["model"]).removesuffix(".onnx")
    source = "onnx light (Caffe2, opset 9)" if name.startswith("light_") else "PyTorch 2 dynamo export"
    name = name.removeprefix("light_").removeprefix("torch_")
    if "error" in r:
        out.append(f"| {name} | {source} | not compiled: {r['error'].removeprefix('Error: ')} | | | | | | |")
    else:
        out.append(f"| {name} | {source} | compiles | {100 * r['top1_agreement']:.0f} % | {r['sqnr_db']:.1f} | "
                   f"{r['instructions']} | {r['weight_bytes'] / 1e6:.1f} | {r['int_ms']:.0f} | {r['float_ms']:.0f} |")
open(report, "w").write("# The public model suite\n\n" + "\n".join(out) + "\n")
print("\n".join(out))
PY
