#!/usr/bin/env bash
# make suite: the public suite of real exports (issue 19), each compiled and compared with its
# float model, into a Markdown table.
#
#   bash scripts/suite.sh              # SMARTVM=path/to/smartvm; SUITE_COUNT inputs compared (20)
#
# Models: the `onnx` package's light test models with seeded weights (tests/fixtures/
# make_suite.py: onnx + numpy), torchvision architectures exported by PyTorch
# (tests/fixtures/pytorch/export.py, in the torch venv of scripts/install-torch.sh: about 5 GB,
# installed once; SUITE_TORCH=0 leaves them out) and keras.applications models converted by
# tf2onnx (tests/fixtures/keras/export.py, venv of scripts/install-tf.sh: about 1.6 GB;
# SUITE_TF=0 leaves them out). Keras' EfficientNet takes raw pixels and rescales them itself:
# it is compared on whole pixels 0-255 and compiled with --input-scale 1, so the program takes
# the bytes. Each row compiles, or says which node and
# operator stopped it. Offline and heavy (VGG-19 alone is 20 GMAC an input): not in make test.
set -euo pipefail
cd "$(dirname "$0")/.."
FIXTURES="${FIXTURES:-$HOME/.cache/smartvm/fixtures}"
SUITE="$FIXTURES/suite"
COUNT="${SUITE_COUNT:-20}"
REPORT="${SUITE_REPORT:-docs/suite.md}"
SMARTVM="${SMARTVM:?set SMARTVM to the smartvm binary}"
mkdir -p "$SUITE"
test -f "$SUITE/stamp-light-4" || { python3 tests/fixtures/make_suite.py "$SUITE" && touch "$SUITE/stamp-light-4"; }
if [ "${SUITE_TORCH:-1}" != 0 ] && [ ! -f "$SUITE/stamp-torch-1" ]; then
  "$(bash scripts/install-torch.sh)" tests/fixtures/pytorch/export.py zoo "$SUITE"
  touch "$SUITE/stamp-torch-1"
fi
if [ "${SUITE_TF:-1}" != 0 ] && [ ! -f "$SUITE/stamp-keras-1" ]; then
  "$(bash scripts/install-tf.sh)" tests/fixtures/keras/export.py zoo "$SUITE"
  touch "$SUITE/stamp-keras-1"
fi
RESULTS="$SUITE/results.jsonl"
: > "$RESULTS"
for model in "$SUITE"/light_*.onnx "$SUITE"/torch_*.onnx "$SUITE"/keras_*.onnx; do
  [ -f "$model" ] || continue
  output=$(python3 -c "import onnx,sys; print(onnx.load(sys.argv[1], load_external_data=False).graph.output[0].name)" "$model")
  echo "suite: $(basename "$model")" >&2
  inputs=(--inputs "$SUITE/imagenet_inputs.npy")
  case "$(basename "$model")" in
    keras_efficientnet*) inputs=(--inputs "$SUITE/pixels.npy" --input-scale 1) ;;
  esac
  if line=$(RUST_BACKTRACE=0 "$SMARTVM" fidelity "$model" "${inputs[@]}" \
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
       "Top-1 is the share of inputs whose argmax agrees; SQNR is of the whole output (logits). "
       "Weights are seeded, not trained, so logits lie close together and top-1 is a harsh "
       "measure; SQNR is the one to read.", "",
       "| model | source | result | top-1 | SQNR (dB) | instructions | weights (MB) | int8 ms | float ms |",
       "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for r in rows:
    name = os.path.basename(r["model"]).removesuffix(".onnx")
    source = {"light": "onnx light (Caffe2, opset 9)", "torch": "PyTorch 2 (dynamo)",
              "keras": "Keras 3 via tf2onnx (opset 13)"}[name.split("_")[0]]
    name = name.removeprefix("light_").removeprefix("torch_").removeprefix("keras_")
    if "error" in r:
        out.append(f"| {name} | {source} | not compiled: {r['error'].removeprefix('Error: ')} | | | | | | |")
    else:
        out.append(f"| {name} | {source} | compiles | {100 * r['top1_agreement']:.0f} % | {r['sqnr_db']:.1f} | "
                   f"{r['instructions']} | {r['weight_bytes'] / 1e6:.1f} | {r['int_ms']:.0f} | {r['float_ms']:.0f} |")
open(report, "w").write("# The public model suite\n\n" + "\n".join(out) + "\n")
print("\n".join(out))
PY
