#!/usr/bin/env python3
"""Trains LeNet-5 on Fashion-MNIST (the Debian package dataset-fashion-mnist) and exports ONNX.

A one-off step with PyTorch (CPU use only; PyPI's torch wheel brings ~5.6 GB of CUDA libraries,
so it lives in its own venv and is never part of `make test`):

    python3 -m venv ~/.cache/smartvm/venv-train
    ~/.cache/smartvm/venv-train/bin/pip install torch numpy onnx
    ~/.cache/smartvm/venv-train/bin/python models/lenet5-fashion/train.py

writes models/lenet5-fashion/lenet5_fashion.onnx: input "input" float [1, 1, 28, 28] = pixel / 255,
output "logits" [1, 10]. The first conv pads by 2, so the feature maps are the paper's LeNet-5
(6x28x28, 16x10x10, ...) and the on-chain input is the raw 28x28 image. Seeded; 2 threads.
"""
import gzip
import os

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = "/usr/share/datasets/fashion-mnist"
torch.manual_seed(5)
np.random.seed(5)
torch.set_num_threads(2)


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def main():
    x_train = torch.tensor(idx("train-images-idx3-ubyte.gz"), dtype=torch.float32).unsqueeze(1) / 255.0
    y_train = torch.tensor(idx("train-labels-idx1-ubyte.gz"), dtype=torch.long)
    x_test = torch.tensor(idx("t10k-images-idx3-ubyte.gz"), dtype=torch.float32).unsqueeze(1) / 255.0
    y_test = torch.tensor(idx("t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    model = LeNet5()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(12):
        model.train()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(x_train), 128):
            batch = perm[i:i + 128]
            opt.zero_grad()
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"epoch {epoch + 1}: test accuracy {100 * acc:.2f}%", flush=True)
    model.eval()
    out = os.path.join(HERE, "lenet5_fashion.onnx")
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), out, input_names=["input"], output_names=["logits"],
                      opset_version=13, dynamo=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
