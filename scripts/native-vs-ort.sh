#!/usr/bin/env bash
# SmartVM's native kernels against ONNX Runtime, interleaved on this machine: ROUNDS rounds of
# `smartvm run --repeat` on each model, then `scripts/ort_anchors.py` on the same ONNX graphs;
# prints a markdown table of medians with SmartVM / faster ORT, and the CPU and tile.
#
#   scripts/native-vs-ort.sh [SMARTVM_BINARY]      (TILE=avx2 forces a tile, ROUNDS=3, THREADS=2)
#
# Both engines get THREADS threads (rayon's pool, ORT's intra-op pool). The table gives medians
# and, per model, the ratio of the fastest rounds too: two-thread times on a 2-vCPU machine can
# flip between two regimes from one process to the next (MobileNetV2 about 5.8 or 7.7 ms, ORT's
# fp32 4.8 or 7.9, independently), and a median of few rounds can mix them.
#
# Needs `make zoo` (the zoo ONNX models and inputs) and onnxruntime (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/smartvm/target}/release/smartvm}
FIX=${SMARTVM_FIXTURES:-$HOME/.cache/smartvm/fixtures}
Z=$FIX/zoo
OUT=${NATIVE_VS_ORT:-$HOME/.cache/smartvm/native-vs-ort}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
export RAYON_NUM_THREADS=$THREADS ORT_THREADS=$THREADS
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
mkdir -p "$OUT"
tile=()
[ -n "${TILE:-}" ] && tile=(--tile "$TILE")

# Compiled once per binary version: the zoo models against 8 calibration images, the LSTM.
for m in alexnet resnet18 mobilenetv2; do
  [ -f "$OUT/$m/program.smvm" ] || "$S" compile "$Z/$m.onnx" --calibration "$Z/imagenet_inputs.npy" \
    --calibration-count 8 --input-shape 1,3,224,224 -o "$OUT/$m" >/dev/null
done
[ -f "$OUT/lstm/program.smvm" ] || "$S" compile "$FIX/lstm.onnx" --calibration "$FIX/lstm_inputs.npy" \
  --calibration-count 8 --input-shape 1,784 -o "$OUT/lstm" >/dev/null
python3 - "$Z/imagenet_inputs.npy" "$FIX/lstm_inputs.npy" "$OUT" <<'EOF'
import sys, numpy as np
np.save(f"{sys.argv[3]}/image.npy", np.load(sys.argv[1])[:1].astype(np.float32))
np.save(f"{sys.argv[3]}/row.npy", np.load(sys.argv[2])[:1].astype(np.float32))
EOF

ms() { grep -o 'time *[0-9.]*' | awk '{print $2}'; }
run() { # name dir input repeat
  "$S" run "$2/program.smvm" --weights "$2/weights.smw" --input "$3" --repeat "$4" "${tile[@]}" | ms
}
results=$OUT/rounds.txt
: > "$results"
for round in $(seq "$ROUNDS"); do
  echo "AlexNet smartvm $(run AlexNet "$OUT/alexnet" "$OUT/image.npy" 30)" >> "$results"
  echo "ResNet-18 smartvm $(run ResNet-18 "$OUT/resnet18" "$OUT/image.npy" 30)" >> "$results"
  echo "MobileNetV2 smartvm $(run MobileNetV2 "$OUT/mobilenetv2" "$OUT/image.npy" 30)" >> "$results"
  echo "LSTM smartvm $(run LSTM "$OUT/lstm" "$OUT/row.npy" 500)" >> "$results"
  echo "LeNet-5 smartvm $(run LeNet-5 models/lenet5-fashion/compiled "$OUT/row.npy" 500)" >> "$results"
  python3 scripts/ort_anchors.py "$OUT/ort.json" \
    LeNet-5=models/lenet5-fashion/lenet5_fashion.onnx:$FMNIST/t10k-images-idx3-ubyte.gz:1,1,28,28 \
    AlexNet=$Z/alexnet.onnx:$Z/imagenet_inputs.npy:1,3,224,224 \
    ResNet-18=$Z/resnet18.onnx:$Z/imagenet_inputs.npy:1,3,224,224 \
    MobileNetV2=$Z/mobilenetv2.onnx:$Z/imagenet_inputs.npy:1,3,224,224 \
    LSTM=$FIX/lstm.onnx:$FIX/lstm_inputs.npy:1,784 >/dev/null 2>&1
  python3 -c "
import json
for k, v in json.load(open('$OUT/ort.json')).items():
    print(k, 'ort_fp32', v['ort_fp32_ms']); print(k, 'ort_int8', v['ort_int8_ms'])" >> "$results"
  echo "round $round of $ROUNDS done" >&2
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
used=$("$S" run models/lenet5-fashion/compiled/program.smvm --weights models/lenet5-fashion/compiled/weights.smw \
  --input "$OUT/row.npy" "${tile[@]}" | grep -o '[a-z0-9-]* tile' | head -1 || true)
python3 - "$results" "$cpu" "$used" "$ROUNDS" "$THREADS" <<'EOF'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, engine, value = line.split()
    rows.setdefault(name, {}).setdefault(engine, []).append(float(value))
print(f"{sys.argv[2]}, {sys.argv[3]}, {sys.argv[5]} threads; medians of {sys.argv[4]} interleaved rounds, ms\n")
print("| model | SmartVM | ORT fp32 | ORT int8 | SmartVM / faster ORT | fastest rounds' ratio |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for name in ["LeNet-5", "AlexNet", "ResNet-18", "MobileNetV2", "LSTM"]:
    m = {k: statistics.median(v) for k, v in rows[name].items()}
    low = {k: min(v) for k, v in rows[name].items()}
    best = min(m["ort_fp32"], m["ort_int8"])
    fastest = low["smartvm"] / min(low["ort_fp32"], low["ort_int8"])
    print(f"| {name} | {m['smartvm']:.3f} | {m['ort_fp32']:.3f} | {m['ort_int8']:.3f} | {m['smartvm'] / best:.2f}x | {fastest:.2f}x |")
EOF
