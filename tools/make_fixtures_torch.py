#!/usr/bin/env python3
"""Train a small residual MNIST CNN and export it with both PyTorch exporters (issue 3 fixtures).

    python tools/make_fixtures_torch.py [--data ../shared/data/mnist.npz] [--out tests/fixtures]

Writes, all from the same trained network:
  torch_script_folded.onnx   TorchScript exporter, default constant folding (BN folded into Conv)
  torch_script_bn.onnx       TorchScript exporter, do_constant_folding=False (BN nodes kept)
  torch_dynamo.onnx          dynamo exporter, opset 18 (ReduceMean, Reshape from Shape chains...)
The network: Conv-BN-ReLU, MaxPool, a residual block (identity shortcut), a strided Conv-BN-ReLU,
global average pooling, ``x.view(x.size(0), -1)``, Linear. Input (N, 1, 28, 28) in [0, 1].
Needs torch and onnxscript (for the dynamo exporter).
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn


class SmallResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.c1, self.b1 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(y)) + x)
        x = self.down(x)
        x = x.mean(dim=(2, 3), keepdim=True)
        return self.fc(x.view(x.size(0), -1))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data", "mnist.npz"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    ap.add_argument("--epochs", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(0)
    d = np.load(a.data)
    x = torch.from_numpy(d["x_train"].astype(np.float32) / 255)[:, None]
    y = torch.from_numpy(d["y_train"].astype(np.int64))
    net = SmallResNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(a.epochs):
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - 127, 128):
            idx = perm[i:i + 128]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    xt = torch.from_numpy(d["x_test"][:2000].astype(np.float32) / 255)[:, None]
    with torch.no_grad():
        print("test accuracy (first 2000):", (net(xt).argmax(1).numpy() == d["y_test"][:2000]).mean())
    os.makedirs(a.out, exist_ok=True)
    dummy = (torch.zeros(2, 1, 28, 28),)
    common = dict(input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    torch.onnx.export(net, dummy, os.path.join(a.out, "torch_script_folded.onnx"), opset_version=17, dynamo=False, **common)
    torch.onnx.export(net, dummy, os.path.join(a.out, "torch_script_bn.onnx"), opset_version=17, dynamo=False,
                      do_constant_folding=False, **common)
    batch = torch.export.Dim("N", min=1)
    prog = torch.onnx.export(net, dummy, dynamo=True, opset_version=18, input_names=["input"], output_names=["logits"],
                             dynamic_shapes={"x": {0: batch}}, optimize=True)
    prog.save(os.path.join(a.out, "torch_dynamo.onnx"), external_data=False)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
