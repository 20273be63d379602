#!/usr/bin/env python3
"""LeNet-5 example: fixed-seed weights, sample inputs, the base-set program and golden outputs.

    python3 examples/lenet5/make_lenet5.py

writes, next to this file:
  weights.smw       13 weight blocks (SMWP pack): conv1, conv2, conv3 (4 blocks), fc1, fc2 and their qblocks
  inputs.bin        4 sample 1x32x32 int8 images, 1024 bytes each
  lenet5_base.sasm  the same network written with the plain base set only (the paper's "EVM" baseline)
  expected.json     the int8 logits of each input, computed here with numpy int64 from SPEC.md,
                    independently of the Rust code under test

The CNN-instruction version, lenet5.sasm, is written by hand. Needs only numpy.
"""
import hashlib
import json
import math
import os
import struct
from decimal import Decimal, getcontext

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(5)

# ---------------------------------------------------------------- integer reference (SPEC.md)

def wrap32(v):
    return ((np.asarray(v, dtype=np.int64) + 2**31) % 2**32) - 2**31


def requant(acc, mult, shift, zero, lo, hi):
    n = 31 + np.asarray(shift, dtype=np.int64)
    r = np.floor_divide(np.asarray(acc, dtype=np.int64) * np.asarray(mult, dtype=np.int64) + np.left_shift(1, n - 1),
                        np.left_shift(1, n))
    return np.clip(zero + r, lo, hi)


def conv(x, w, q):
    C, H, W = x.shape
    O, _, k, _ = w.shape
    OH, OW = H - k + 1, W - k + 1
    acc = np.zeros((O, OH, OW), dtype=np.int64)
    xs = x.astype(np.int64) - q["zx"]
    for ky in range(k):
        for kx in range(k):
            acc += np.tensordot(w[:, :, ky, kx].astype(np.int64), xs[:, ky:ky + OH, kx:kx + OW], axes=(1, 0))
    acc = wrap32(acc + q["bias"][:, None, None])
    return requant(acc, q["mult"][:, None, None], q["shift"][:, None, None], q["zy"], q["lo"], q["hi"])


def maxpool2(x):
    C, H, W = x.shape
    return x.reshape(C, H // 2, 2, W // 2, 2).max(axis=(2, 4))


def fc(x, w, q):
    acc = wrap32(w.astype(np.int64) @ (x.reshape(-1).astype(np.int64) - q["zx"]) + q["bias"])
    return requant(acc, q["mult"], q["shift"], q["zy"], q["lo"], q["hi"])

# ---------------------------------------------------------------- seeded weights and calibration

def scale_to_q31(real):
    """real = M * 2^-(31 + shift) with M in [2^30, 2^31)."""
    m, e = math.frexp(real)
    mult = min(int(round(m * 2**31)), 2**31 - 1)
    return mult, -e


# No committed byte may depend on the CPU. Python's float +, -, *, / and sqrt are IEEE-754
# double and exact on every machine; exp, sin, cos and hypot from libm or numpy are not (their
# kernels are picked per CPU), nor is numpy's summation order. So those are computed here in
# exact decimal arithmetic (40 digits) and rounded once to the nearest double.
getcontext().prec = 40


def exp(x):
    return float(Decimal(x).exp())


def hypot(a, b):
    return float((Decimal(a) ** 2 + Decimal(b) ** 2).sqrt())


def sin_cos(x):
    """sin and cos of an exact x by their Taylor series."""
    x = Decimal(x)
    s, c, term, k = Decimal(0), Decimal(0), Decimal(1), 0
    while abs(term) > Decimal(10) ** -45:
        if k % 4 == 0:
            c += term
        elif k % 4 == 1:
            s += term
        elif k % 4 == 2:
            c -= term
        else:
            s -= term
        k += 1
        term = term * x / k
    return float(s), float(c)


def spread(values):
    """Standard deviation plus mean absolute value of integers, each exact, then rounded."""
    v = [int(x) for x in np.asarray(values).reshape(-1)]
    n, total = len(v), sum(v)
    std = float((Decimal(n * sum(x * x for x in v) - total * total) / (n * n)).sqrt())
    return std + float(Decimal(sum(abs(x) for x in v)) / n)


def make_quant(acc_float_std, zx, zy, relu, out_c):
    mult, shift = zip(*[scale_to_q31(40.0 / max(s, 1.0)) for s in acc_float_std])
    return {"zx": zx, "zy": zy, "lo": zy if relu else -128, "hi": 127,
            "bias": rng.integers(-2000, 2000, size=out_c).astype(np.int64),
            "mult": np.array(mult, dtype=np.int64), "shift": np.array(shift, dtype=np.int64)}


def qblock(q):
    words = [q["zx"], q["zy"], q["lo"], q["hi"], len(q["bias"])] + list(q["bias"]) + list(q["mult"]) + list(q["shift"])
    return struct.pack("<%di" % len(words), *[int(w) for w in words])


def image(i):
    """A smooth synthetic 32x32 'stroke' image per input, int8 with background -128."""
    yy, xx = np.mgrid[0:32, 0:32]
    sin, cos = sin_cos(i)
    cy, cx, r = 16 + 3 * sin, 16 + 3 * cos, 7 + i
    ring = np.array([[exp(-((hypot(y - cy, x - cx) - r) ** 2) / 6.0) for x in range(32)] for y in range(32)])
    bar = np.array([[exp(-((x - (10 + 4 * i)) ** 2) / 4.0) for x in range(32)] for _ in range(32)])
    bar = bar * (yy > 6) * (yy < 26)
    v = np.clip((ring + bar * (i % 2)) * 255 - 128 + rng.integers(-8, 8, size=(32, 32)), -128, 127)
    return v.astype(np.int64).reshape(1, 32, 32)


inputs = [image(i) for i in range(4)]
layers = {}
x_cal = inputs[0]
zx = -128
specs = [("conv1", (6, 1, 5, 5)), ("conv2", (16, 6, 5, 5)), ("conv3", (120, 16, 5, 5)), ("fc1", (84, 120)), ("fc2", (10, 84))]
zys = {"conv1": -100, "conv2": -110, "conv3": -115, "fc1": -120, "fc2": 0}
act = x_cal
for name, shape in specs:
    w = rng.integers(-127, 128, size=shape).astype(np.int64)
    # calibrate: per-output-channel std of the accumulator on the calibration image
    if name.startswith("conv"):
        probe = conv(act, w, {"zx": zx, "zy": 0, "lo": -10**9, "hi": 10**9, "bias": np.zeros(shape[0], np.int64),
                              "mult": np.full(shape[0], 2**30), "shift": np.full(shape[0], -1)})
        stds = [spread(row) for row in probe.reshape(shape[0], -1)]
    else:
        probe = w @ (act.reshape(-1) - zx)
        stds = [spread(probe)] * shape[0]
    relu = name != "fc2"
    q = make_quant(stds, zx, zys[name], relu, shape[0])
    layers[name] = (w, q)
    act = conv(act, w, q) if name.startswith("conv") else fc(act, w, q)
    if name in ("conv1", "conv2"):
        act = maxpool2(act)
    zx = zys[name]


def forward(x):
    a = maxpool2(conv(x, *layers["conv1"]))
    a = maxpool2(conv(a, *layers["conv2"]))
    a = conv(a, *layers["conv3"])
    a = fc(a, *layers["fc1"])
    return fc(a, *layers["fc2"])


def i8bytes(a):
    return np.asarray(a, dtype=np.int64).astype(np.int8).tobytes()


blocks = [i8bytes(layers["conv1"][0]), qblock(layers["conv1"][1]),
          i8bytes(layers["conv2"][0]), qblock(layers["conv2"][1])]
w3 = layers["conv3"][0]
blocks += [i8bytes(w3[i * 30:(i + 1) * 30]) for i in range(4)]
blocks += [qblock(layers["conv3"][1]), i8bytes(layers["fc1"][0]), qblock(layers["fc1"][1]),
           i8bytes(layers["fc2"][0]), qblock(layers["fc2"][1])]

with open(os.path.join(HERE, "weights.smw"), "wb") as f:
    f.write(b"SMWP" + struct.pack("<I", len(blocks)))
    for b in blocks:
        f.write(struct.pack("<I", len(b)) + b)
with open(os.path.join(HERE, "inputs.bin"), "wb") as f:
    for x in inputs:
        f.write(i8bytes(x))
expected = [[int(v) for v in forward(x)] for x in inputs]
with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump({"generator": "examples/lenet5/make_lenet5.py", "logits": expected,
               "argmax": [int(np.argmax(e)) for e in expected],
               "block_blake2b_256": [hashlib.blake2b(b, digest_size=32).hexdigest() for b in blocks]}, f, indent=1)

# ---------------------------------------------------------------- the base-set program

class Gen:
    """Emits stack-machine assembly the way a plain contract compiler would: locals in Memory
    slots, loops as compare-and-jump, every weight read with WLOAD8 from storage."""

    def __init__(self):
        self.lines, self.labels, self.slot = [], 0, 9088

    def emit(self, *ops):
        self.lines.extend("    " + op for op in ops)

    def var(self, name):
        addr = self.slot
        self.slot += 8
        self.lines.append(f".const {name} {addr}")
        return name

    def label(self, stem):
        self.labels += 1
        return f"{stem}_{self.labels}"

    def load(self, v):
        self.emit(f"PUSH {v}", "MLOAD64")

    def store_top(self, v):
        """Stores the value on top of the stack into slot v."""
        self.emit(f"PUSH {v}", "SWAP1", "MSTORE64")

    def loop(self, v, count, body):
        start = self.label("loop")
        self.emit(f"PUSH {v}", "PUSH 0", "MSTORE64")
        self.lines.append(f"{start}:")
        self.emit("JUMPDEST")
        body()
        self.emit(f"PUSH {v}", f"PUSH {v}", "MLOAD64", "PUSH 1", "ADD", "MSTORE64")
        self.emit(f"PUSH @{start}", f"PUSH {v}", "MLOAD64", f"PUSH {count}", "LT", "JUMPI")

    def read_quant(self, qblock, prefix):
        zx, zy, lo, hi = (self.var(f"{prefix}_{n}") for n in ("ZX", "ZY", "LO", "HI"))
        for i, v in enumerate((zx, zy, lo, hi)):
            self.emit(f"PUSH {qblock}", f"PUSH {4 * i}", "WLOAD32")
            self.store_top(v)
        return zx, zy, lo, hi

    def requant_store(self, qblock, n_out, o, zy, lo, hi, acc, out_addr_fn):
        # acc = wrap32(acc + bias[o])
        self.load(acc)
        self.emit(f"PUSH {qblock}", f"PUSH 20")
        self.load(o)
        self.emit("PUSH 4", "MUL", "ADD", "WLOAD32", "ADD", "PUSH 32", "SHL", "PUSH 32", "SAR")
        # * mult[o]
        self.emit(f"PUSH {qblock}", f"PUSH {20 + 4 * n_out}")
        self.load(o)
        self.emit("PUSH 4", "MUL", "ADD", "WLOAD32", "MUL")
        # n = 31 + shift[o]; + (1 << (n - 1)); >> n
        self.emit(f"PUSH {qblock}", f"PUSH {20 + 8 * n_out}")
        self.load(o)
        self.emit("PUSH 4", "MUL", "ADD", "WLOAD32", "PUSH 31", "ADD")   # [p, n]
        self.emit("DUP1", "PUSH 1", "SWAP1", "PUSH 1", "SUB", "SHL")      # [p, n, 1<<(n-1)]
        self.emit("DUP3", "ADD", "SWAP1", "SAR", "SWAP1", "POP")        # [(p + h) >> n]
        self.load(zy)
        self.emit("ADD")
        self.load(lo)
        self.emit("MAX")
        self.load(hi)
        self.emit("MIN")
        out_addr_fn()                                                    # [y, addr]
        self.emit("SWAP1", "MSTORE8")

    def conv(self, name, src, dst, C, H, W, O, k, wblock, per_block, qblock):
        OH, OW = H - k + 1, W - k + 1
        self.lines.append(f"; {name}: {C}x{H}x{W} -> {O}x{OH}x{OW}, {k}x{k} kernel, weights from block {wblock}")
        zx, zy, lo, hi = self.read_quant(qblock, name.upper())
        o, y, x, c, ky, kx = (self.var(f"{name.upper()}_{n}") for n in ("O", "Y", "X", "C", "KY", "KX"))
        acc, row, wbase, blk = (self.var(f"{name.upper()}_{n}") for n in ("ACC", "ROW", "WBASE", "BLK"))
        taps = C * k * k

        def tap():
            # acc += (mem[row + kx] - zx) * W[blk][wbase + kx]
            self.emit(f"PUSH {acc}")
            self.load(acc)
            self.load(row)
            self.load(kx)
            self.emit("ADD", "MLOAD8")
            self.load(zx)
            self.emit("SUB")
            self.load(blk)
            self.load(wbase)
            self.load(kx)
            self.emit("ADD", "WLOAD8", "MUL", "ADD", "MSTORE64")

        def kernel_row():
            # row = src + (c*H + y + ky)*W + x ; wbase = (o % per_block)*taps + (c*k + ky)*k
            self.load(c)
            self.emit(f"PUSH {H}", "MUL")
            self.load(y)
            self.emit("ADD")
            self.load(ky)
            self.emit("ADD", f"PUSH {W}", "MUL")
            self.load(x)
            self.emit("ADD", f"PUSH {src}", "ADD")
            self.store_top(row)
            self.load(o)
            self.emit(f"PUSH {per_block}", "MOD", f"PUSH {taps}", "MUL")
            self.load(c)
            self.emit(f"PUSH {k}", "MUL")
            self.load(ky)
            self.emit("ADD", f"PUSH {k}", "MUL", "ADD")
            self.store_top(wbase)
            self.loop(kx, k, tap)

        def pixel():
            self.emit(f"PUSH {acc}", "PUSH 0", "MSTORE64")
            self.loop(c, C, lambda: self.loop(ky, k, kernel_row))

            def out_addr():
                self.load(o)
                self.emit(f"PUSH {OH}", "MUL")
                self.load(y)
                self.emit("ADD", f"PUSH {OW}", "MUL")
                self.load(x)
                self.emit("ADD", f"PUSH {dst}", "ADD")
            self.requant_store(qblock, O, o, zy, lo, hi, acc, out_addr)

        def channel():
            self.load(o)
            self.emit(f"PUSH {per_block}", "DIV", f"PUSH {wblock}", "ADD")
            self.store_top(blk)
            self.loop(y, OH, lambda: self.loop(x, OW, pixel))
        self.loop(o, O, channel)

    def maxpool2(self, name, src, dst, C, H, W):
        OH, OW = H // 2, W // 2
        self.lines.append(f"; {name}: 2x2 max pool {C}x{H}x{W} -> {C}x{OH}x{OW}")
        c, y, x, base = (self.var(f"{name.upper()}_{n}") for n in ("C", "Y", "X", "BASE"))

        def cell():
            # base = src + (c*H + 2y)*W + 2x
            self.load(c)
            self.emit(f"PUSH {H}", "MUL")
            self.load(y)
            self.emit("PUSH 2", "MUL", "ADD", f"PUSH {W}", "MUL")
            self.load(x)
            self.emit("PUSH 2", "MUL", "ADD", f"PUSH {src}", "ADD")
            self.store_top(base)
            # dst address first, then max of the four cells
            self.load(c)
            self.emit(f"PUSH {OH}", "MUL")
            self.load(y)
            self.emit("ADD", f"PUSH {OW}", "MUL")
            self.load(x)
            self.emit("ADD", f"PUSH {dst}", "ADD")
            for i, off in enumerate((0, 1, W, W + 1)):
                self.load(base)
                self.emit(f"PUSH {off}", "ADD", "MLOAD8")
                if i:
                    self.emit("MAX")
            self.emit("MSTORE8")
        self.loop(c, C, lambda: self.loop(y, OH, lambda: self.loop(x, OW, cell)))

    def fc(self, name, src, dst, N, O, wblock, qblock):
        self.lines.append(f"; {name}: {N} -> {O}, weights in block {wblock}")
        zx, zy, lo, hi = self.read_quant(qblock, name.upper())
        o, i, acc = (self.var(f"{name.upper()}_{n}") for n in ("O", "I", "ACC"))

        def term():
            self.emit(f"PUSH {acc}")
            self.load(acc)
            self.load(i)
            self.emit(f"PUSH {src}", "ADD", "MLOAD8")
            self.load(zx)
            self.emit("SUB", f"PUSH {wblock}")
            self.load(o)
            self.emit(f"PUSH {N}", "MUL")
            self.load(i)
            self.emit("ADD", "WLOAD8", "MUL", "ADD", "MSTORE64")

        def row():
            self.emit(f"PUSH {acc}", "PUSH 0", "MSTORE64")
            self.loop(i, N, term)

            def out_addr():
                self.load(o)
                self.emit(f"PUSH {dst}", "ADD")
            self.requant_store(qblock, O, o, zy, lo, hi, acc, out_addr)
        self.loop(o, O, row)


g = Gen()
g.lines += ["; LeNet-5 with the plain base set only, generated by make_lenet5.py: do not edit.",
            "; Feature maps live in Memory and are never freed, as a plain contract would keep them.",
            ".input 1 1 32 32", ".output 10"]
IN, C1, P1, C2, P2, C3, F1, F2 = 0, 1024, 1024 + 4704, 5728 + 1176, 6904 + 1600, 8504 + 400, 8904 + 120, 9024 + 84
g.conv("conv1", IN, C1, 1, 32, 32, 6, 5, 0, 6, 1)
g.maxpool2("pool1", C1, P1, 6, 28, 28)
g.conv("conv2", P1, C2, 6, 14, 14, 16, 5, 2, 16, 3)
g.maxpool2("pool2", C2, P2, 16, 10, 10)
g.conv("conv3", P2, C3, 16, 5, 5, 120, 5, 4, 30, 8)
g.fc("fc1", C3, F1, 120, 84, 9, 10)
g.fc("fc2", F1, F2, 84, 10, 11, 12)
g.emit(f"PUSH {F2}", "PUSH 10", "RETURN")
with open(os.path.join(HERE, "lenet5_base.sasm"), "w") as f:
    f.write("\n".join(g.lines) + "\n")
print("logits:", expected)
