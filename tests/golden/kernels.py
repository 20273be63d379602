#!/usr/bin/env python3
"""Golden vectors for the SmartVM kernels, computed independently from primitives/kernels/SPEC.md.

This is a second implementation of the spec in numpy with int64 arithmetic (wrapping to int32
where the spec says so). It shares no code with the Rust kernels; the Rust tests load the JSON it
writes and require every backend to reproduce it exactly.

    python3 tests/golden/kernels.py      # rewrites tests/golden/kernels.json (seeded, deterministic)
"""
import json
from decimal import ROUND_HALF_EVEN, Decimal, getcontext
import os

import numpy as np

rng = np.random.default_rng(20221129)


def wrap32(v):
    v = np.asarray(v, dtype=np.int64)
    return ((v + 2**31) % 2**32) - 2**31


def requant(acc, mult, shift, zero, lo, hi):
    acc = np.asarray(acc, dtype=np.int64)
    n = 31 + np.asarray(shift, dtype=np.int64)
    prod = acc * np.asarray(mult, dtype=np.int64)
    r = np.floor_divide(prod + np.left_shift(np.int64(1), n - 1), np.left_shift(np.int64(1), n))
    return np.clip(zero + r, lo, hi).astype(np.int64)


def i8(shape, extreme=False):
    if extreme:
        return rng.choice(np.array([-128, 127, -127, 0], dtype=np.int64), size=shape)
    return rng.integers(-128, 128, size=shape, dtype=np.int64)


def channel_quant(out_c, zx, extreme=False):
    zy = int(rng.integers(-128, 128))
    lo = int(rng.integers(-128, zy + 1)) if not extreme else -128
    hi = int(rng.integers(zy, 128)) if not extreme else 127
    return {
        "input_zero": zx, "output_zero": zy, "lo": lo, "hi": hi,
        "bias": [int(b) for b in rng.integers(-(2**31) if extreme else -5000, 2**31 if extreme else 5000, size=out_c)],
        "mult": [int(m) for m in rng.integers(2**30, 2**31, size=out_c)],
        "shift": [int(s) for s in rng.integers(0 if not extreme else -30, 16 if not extreme else 32, size=out_c)],
    }


def conv_ref(x, w, q, groups, k, stride, pad, dil):
    """x: C×D×H×W, w: O×(C/g)×KD×KH×KW; k/stride/pad/dil are 3-tuples (D, H, W)."""
    C, D, H, W = x.shape
    O = w.shape[0]
    outs = [(n + 2 * p - d * (kk - 1) - 1) // s + 1 for n, kk, s, p, d in zip((D, H, W), k, stride, pad, dil)]
    xp = np.zeros((C, D + 2 * pad[0], H + 2 * pad[1], W + 2 * pad[2]), dtype=np.int64)
    xp[:, pad[0]:pad[0] + D, pad[1]:pad[1] + H, pad[2]:pad[2] + W] = x - q["input_zero"]
    gi, go = C // groups, O // groups
    acc = np.zeros((O, *outs), dtype=np.int64)
    for o in range(O):
        g = o // go
        for a in range(k[0]):
            for b in range(k[1]):
                for e in range(k[2]):
                    sl = xp[g * gi:(g + 1) * gi,
                            a * dil[0]: a * dil[0] + stride[0] * (outs[0] - 1) + 1: stride[0],
                            b * dil[1]: b * dil[1] + stride[1] * (outs[1] - 1) + 1: stride[1],
                            e * dil[2]: e * dil[2] + stride[2] * (outs[2] - 1) + 1: stride[2]]
                    acc[o] += np.tensordot(w[o, :, a, b, e], sl, axes=(0, 0))
    acc = wrap32(acc + np.array(q["bias"], dtype=np.int64)[:, None, None, None])
    sh = (O, 1, 1, 1)
    return requant(acc, np.array(q["mult"]).reshape(sh), np.array(q["shift"]).reshape(sh), q["output_zero"], q["lo"], q["hi"])


def conv_transpose_ref(x, w, q, groups, k, stride, pad, out_pad):
    C, _, H, W = x.shape
    go = w.shape[1]
    O = go * groups
    gi = C // groups
    OH = (H - 1) * stride - 2 * pad + k + out_pad
    OW = (W - 1) * stride - 2 * pad + k + out_pad
    full = np.zeros((O, (H - 1) * stride + k + out_pad + pad, (W - 1) * stride + k + out_pad + pad), dtype=np.int64)
    xs = x[:, 0] - q["input_zero"]
    for c in range(C):
        g = c // gi
        for j in range(go):
            o = g * go + j
            for ih in range(H):
                for iw in range(W):
                    full[o, ih * stride: ih * stride + k, iw * stride: iw * stride + k] += xs[c, ih, iw] * w[c, j]
    acc = full[:, pad:pad + OH, pad:pad + OW]
    acc = wrap32(acc + np.array(q["bias"], dtype=np.int64)[:, None, None])
    sh = (O, 1, 1)
    y = requant(acc, np.array(q["mult"]).reshape(sh), np.array(q["shift"]).reshape(sh), q["output_zero"], q["lo"], q["hi"])
    return y[:, None]


def pool_ref(x, k, stride, pad, kind):
    C, _, H, W = x.shape

    def size(n):
        span = n + 2 * pad - k
        if kind == "max_ceil":
            out = -(-span // stride) + 1
            if (out - 1) * stride >= n + pad:
                out -= 1
            return out
        return span // stride + 1

    OH, OW = size(H), size(W)
    y = np.zeros((C, 1, OH, OW), dtype=np.int64)
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * stride - pad, ow * stride - pad
            win = x[:, 0, max(h0, 0):min(h0 + k, H), max(w0, 0):min(w0 + k, W)].reshape(C, -1)
            if kind == "avg":
                s, cnt = win.sum(axis=1), win.shape[1]
                y[:, 0, oh, ow] = np.floor_divide(2 * s + cnt, 2 * cnt)
            else:
                y[:, 0, oh, ow] = win.max(axis=1)
    return y


def flat(a):
    return [int(v) for v in np.asarray(a).reshape(-1)]


cases = []


def add_conv(C, D, H, W, O, k, stride, pad, dil, groups, extreme=False, name="conv"):
    x = i8((C, D, H, W), extreme)
    w = i8((O, C // groups, *k), extreme)
    zx = -128 if extreme else int(rng.integers(-128, 128))
    q = channel_quant(O, zx, extreme)
    y = conv_ref(x, w, q, groups, k, stride, pad, dil)
    cases.append({"kind": name, "input_shape": [C, D, H, W], "out_c": O, "k": k[1], "stride": stride[1], "pad": pad[1],
                  "dilation": dil[1], "groups": groups, "input": flat(x), "weights": flat(w), "quant": q,
                  "output_shape": list(y.shape), "expected": flat(y)})


add_conv(1, 1, 12, 12, 3, (1, 5, 5), (1, 1, 1), (0, 0, 0), (1, 1, 1), 1, name="conv2d")
add_conv(4, 1, 9, 7, 6, (1, 3, 3), (1, 2, 2), (0, 1, 1), (1, 1, 1), 1, name="conv2d")
add_conv(6, 1, 8, 8, 6, (1, 3, 3), (1, 1, 1), (0, 1, 1), (1, 1, 1), 6, name="conv2d")        # depthwise
add_conv(4, 1, 10, 10, 8, (1, 3, 3), (1, 1, 1), (0, 2, 2), (1, 2, 2), 2, name="conv2d")       # grouped, dilated
add_conv(16, 1, 5, 5, 4, (1, 5, 5), (1, 1, 1), (0, 0, 0), (1, 1, 1), 1, extreme=True, name="conv2d")
add_conv(2, 5, 5, 5, 3, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), 1, name="conv3d")

for (C, H, W, O, k, s, p, op, g) in [(3, 4, 5, 2, 3, 2, 1, 1, 1), (4, 3, 3, 4, 2, 2, 0, 0, 2)]:
    x = i8((C, 1, H, W))
    w = i8((C, O // g, k, k))
    q = channel_quant(O, int(rng.integers(-128, 128)))
    y = conv_transpose_ref(x, w, q, g, k, s, p, op)
    cases.append({"kind": "conv_transpose", "input_shape": [C, 1, H, W], "out_c": O, "k": k, "stride": s, "pad": p,
                  "out_pad": op, "groups": g, "input": flat(x), "weights": flat(w), "quant": q,
                  "output_shape": list(y.shape), "expected": flat(y)})

for kind, (C, H, W, k, s, p) in [("max", (3, 8, 8, 2, 2, 0)), ("max", (2, 7, 7, 3, 2, 1)),
                                  ("max_ceil", (2, 6, 6, 3, 2, 0)), ("avg", (3, 7, 5, 3, 2, 1)),
                                  ("avg", (1, 4, 4, 2, 2, 0))]:
    x = i8((C, 1, H, W), extreme=(kind == "avg" and C == 1))
    y = pool_ref(x, k, s, p, kind)
    cases.append({"kind": "pool_" + kind, "input_shape": [C, 1, H, W], "k": k, "stride": s, "pad": p,
                  "input": flat(x), "output_shape": list(y.shape), "expected": flat(y)})

for (N, O, extreme) in [(25, 7, False), (400, 120, False), (1000, 3, True)]:
    x = i8((N,), extreme)
    w = i8((O, N), extreme)
    zx = -128 if extreme else int(rng.integers(-128, 128))
    q = channel_quant(O, zx, extreme)
    acc = wrap32(w @ (x - zx) + np.array(q["bias"], dtype=np.int64))
    y = requant(acc, np.array(q["mult"]), np.array(q["shift"]), q["output_zero"], q["lo"], q["hi"])
    cases.append({"kind": "fc", "input": flat(x), "weights": flat(w), "quant": q, "expected": flat(y)})

M, K, N = 3, 5, 4
a, b = i8((M, K)), i8((K, N))
pq = {"a_zero": int(rng.integers(-128, 128)), "b_zero": int(rng.integers(-128, 128)), "output_zero": 5, "lo": -128, "hi": 127,
      "mult": int(rng.integers(2**30, 2**31)), "shift": 10}
acc = wrap32((a - pq["a_zero"]) @ (b - pq["b_zero"]))
cases.append({"kind": "matmul", "dims": [M, K, N], "a": flat(a), "b": flat(b), "pair": pq,
              "expected": flat(requant(acc, pq["mult"], pq["shift"], pq["output_zero"], pq["lo"], pq["hi"]))})

a, b = i8((64,)), i8((64,))
aq = {"a_zero": 3, "b_zero": -7, "output_zero": -2, "lo": -128, "hi": 127,
      "a_mult": int(rng.integers(2**30, 2**31)), "b_mult": int(rng.integers(2**29, 2**31)), "shift": 0}
n = 31 + aq["shift"]
t = (a - aq["a_zero"]) * aq["a_mult"] + (b - aq["b_zero"]) * aq["b_mult"]
y = np.clip(aq["output_zero"] + np.floor_divide(t + 2 ** (n - 1), 2**n), aq["lo"], aq["hi"])
cases.append({"kind": "add", "a": flat(a), "b": flat(b), "add": aq, "expected": flat(y)})

mq = {"a_zero": -128, "b_zero": 0, "output_zero": 0, "lo": -128, "hi": 127, "mult": int(rng.integers(2**30, 2**31)), "shift": 8}
n = 31 + mq["shift"]
t = (a - mq["a_zero"]) * (b - mq["b_zero"]) * mq["mult"]
y = np.clip(mq["output_zero"] + np.floor_divide(t + 2 ** (n - 1), 2**n), mq["lo"], mq["hi"])
cases.append({"kind": "mul", "a": flat(a), "b": flat(b), "pair": mq, "expected": flat(y)})

table = rng.integers(-128, 128, size=256)
x = np.arange(-128, 128)
cases.append({"kind": "lut", "table": flat(table), "input": flat(x), "expected": flat(table[x % 256])})

C, P = 10, 3
x = i8((C, 1, 1, P))
# exp in exact decimal arithmetic (correctly rounded, no float library whose kernels vary by CPU),
# rounded half to even like Python's round.
getcontext().prec = 40
etab = np.array([int((65536 * (Decimal(-d) / 16).exp()).to_integral_value(ROUND_HALF_EVEN))
                 for d in range(256)], dtype=np.int64)
mx = x.max(axis=0, keepdims=True)
e = etab[mx - x]
s = e.sum(axis=0, keepdims=True)
y = np.clip(-128 + np.floor_divide(512 * e + s, 2 * s), -128, 127)
cases.append({"kind": "softmax", "input_shape": [C, 1, 1, P], "table": flat(etab), "input": flat(x), "expected": flat(y)})

x = i8((5, 1, 3, 3))
s = x.reshape(5, -1).sum(axis=1)
cases.append({"kind": "global_avg_pool", "input_shape": [5, 1, 3, 3], "input": flat(x),
              "expected": flat(np.floor_divide(2 * s + 9, 18))})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels.json")
with open(path, "w") as f:
    json.dump({"generator": "tests/golden/kernels.py", "cases": cases}, f, separators=(",", ":"))
print(f"wrote {len(cases)} cases to {path}")
