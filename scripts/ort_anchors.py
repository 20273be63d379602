#!/usr/bin/env python3
"""Native anchors for `smartvm bench --report`: ONNX Runtime fp32 and int8 (QDQ, per-channel weights,
calibrated on the same inputs SmartVM calibrates on) and PyTorch fp32 latency of each model, batch 1,
2 intra-op threads (ORT_THREADS sets another count), median of timed runs. Writes one JSON object:
{model: {"ort_fp32_ms", "ort_int8_ms", "torch_fp32_ms", ...}}.
PyTorch runs the same ONNX graph converted to a torch.fx module by onnx2torch, in eager CPU mode.
It is measured only where torch imports: its PyPI wheel brings ~3 GB of CUDA libraries, so it lives
in a venv of its own (scripts/install-torch.sh, which `make evaluation` runs), never in `make test`.

    python3 scripts/ort_anchors.py OUT.json NAME=MODEL.onnx:INPUTS:SHAPE[:CALIB] ...

INPUTS is a float32 .npy of inputs, or a gzipped IDX image file (pixels scaled to [0, 1]).
"""
import gzip
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
try:
    import onnx2torch
    import torch
except ImportError:
    torch = None
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)

THREADS = int(os.environ.get("ORT_THREADS", "2"))
RUNS = 30


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def median_ms(run, x):
    for _ in range(5):
        run(x)
    samples = []
    for _ in range(RUNS):
        t = time.perf_counter()
        run(x)
        samples.append(time.perf_counter() - t)
    return 1e3 * sorted(samples)[len(samples) // 2]


class Reader(CalibrationDataReader):
    def __init__(self, name, inputs):
        self.items = iter([{name: x} for x in inputs])

    def get_next(self):
        return next(self.items, None)


def load_inputs(path):
    if path.endswith(".npy"):
        return np.load(path).astype(np.float32)
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(data[3])]
    pixels = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims))
    return (pixels.reshape(dims[0], -1) / 255.0).astype(np.float32)


def measure(path, inputs_path, shape, calib):
    values = load_inputs(inputs_path)
    inputs = [v.reshape(shape) for v in values[: calib + 1]]
    fp32 = session(path)
    name = fp32.get_inputs()[0].name
    x = inputs[calib]
    result = {"ort_fp32_ms": median_ms(lambda v: fp32.run(None, {name: v}), x),
              "ort_version": ort.__version__, "threads": THREADS}
    with tempfile.TemporaryDirectory() as tmp:
        q = os.path.join(tmp, "int8.onnx")
        quantize_static(path, q, Reader(name, inputs[:calib]), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
        int8 = session(q)
        result["ort_int8_ms"] = median_ms(lambda v: int8.run(None, {name: v}), x)
    if torch is not None:
        try:
            result.update(torch_fp32(path, fp32, name, x))
        except Exception as e:  # one model's conversion failing leaves the others measured
            print(f"PyTorch fp32 not measured for {path}: {e}", file=sys.stderr)
            result["torch_error"] = str(e)
    return result


def torch_fp32(path, reference, name, x):
    """PyTorch fp32 on the ONNX graph, checked against ONNX Runtime's output before timing."""
    torch.set_num_threads(THREADS)
    model = onnx2torch.convert(path).eval()
    tensor = torch.from_numpy(x)
    with torch.inference_mode():
        got = model(tensor)
        got = (got[0] if isinstance(got, (list, tuple)) else got).numpy()
        want = reference.run(None, {name: x})[0]
        if not np.allclose(got, want, rtol=1e-3, atol=1e-3):
            raise ValueError(f"PyTorch and ONNX Runtime disagree: "
                             f"max |diff| {np.abs(got - want).max()}")
        ms = median_ms(model, tensor)
    return {"torch_fp32_ms": ms, "torch_version": torch.__version__}


def main():
    out, specs = sys.argv[1], sys.argv[2:]
    if torch is None:
        print("SKIPPED: PyTorch fp32 anchors (torch not importable here; "
              "install it with: bash scripts/install-torch.sh)", file=sys.stderr)
    report = {}
    for spec in specs:
        name, rest = spec.split("=", 1)
        parts = rest.split(":")
        path, inputs, shape = parts[0], parts[1], [int(d) for d in parts[2].split(",")]
        calib = int(parts[3]) if len(parts) > 3 else 8
        report[name] = measure(path, inputs, shape, calib)
        print(f"{name}: {report[name]}", file=sys.stderr)
    with open(out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
