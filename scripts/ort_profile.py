#!/usr/bin/env python3
"""ONNX Runtime's own time per node (its profiler, 2 intra-op threads or ORT_THREADS, median of 30 runs) for the
int8 QDQ model that `scripts/ort_anchors.py` times (per-channel weights, calibrated on the first 8
inputs) and for the float model: the per-layer yardstick for `smartvm run --profile`. A one-off
measuring tool, not a test step.

    python3 scripts/ort_profile.py MODEL.onnx INPUTS.npy 1,3,224,224 [TOP]
"""
import collections
import json
import os
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)

CALIBRATION = 8
RUNS = 30


class Reader(CalibrationDataReader):
    def __init__(self, name, inputs):
        self.items = iter([{name: x} for x in inputs])

    def get_next(self):
        return next(self.items, None)


def node_medians(model, name, x):
    """Median microseconds of each node over RUNS runs, from ORT's profiler."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "2"))
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    for _ in range(RUNS):
        session.run(None, {name: x})
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    times = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[(e["name"][: -len("_kernel_time")], e["args"].get("op_name"))].append(e["dur"])
    return {key: sorted(d)[len(d) // 2] for key, d in times.items()}


def main():
    path, inputs_path, shape = sys.argv[1], sys.argv[2], [int(d) for d in sys.argv[3].split(",")]
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 12
    inputs = [v.reshape(shape) for v in np.load(inputs_path).astype(np.float32)[: CALIBRATION + 1]]
    name = ort.InferenceSession(path).get_inputs()[0].name
    with tempfile.TemporaryDirectory() as tmp:
        int8 = os.path.join(tmp, "int8.onnx")
        quantize_static(path, int8, Reader(name, inputs[:CALIBRATION]),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        for label, model in [("int8", int8), ("fp32", path)]:
            medians = node_medians(model, name, inputs[CALIBRATION])
            print(f"{label}: sum of node medians {sum(medians.values())} us")
            for (node, op), us in sorted(medians.items(), key=lambda kv: -kv[1])[:top]:
                print(f"  {us:8d} us  {op:18s} {node}")


if __name__ == "__main__":
    main()
