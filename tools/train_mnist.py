#!/usr/bin/env python3
"""Train the seed tutorial's MNIST CNN and write the example files that ship with onnx2snn.

    python tools/train_mnist.py [--data ../shared/data/mnist.npz] [--epochs 3] [--out models]

Architecture (SpikingJelly's 2020 ann2snn tutorial): 3 x (Conv3x3 32ch, BatchNorm(eps=1e-3), ReLU,
AvgPool 2), Flatten, Linear(32, 10). Exported with the TorchScript exporter and
do_constant_folding=False, so the BatchNormalization nodes stay in the ONNX graph (the converter
absorbs them). Writes:
  mnist_cnn.onnx     the trained model, input `input` (N,1,28,28) float32 in [0,1], output `logits`
  mnist_calib.npy    the first 100 training images (the seed calibrated on 100), float32
  mnist_test.npz     the first 1000 test images `x` float32 and labels `y` int64
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn


def mnist_cnn():
    layers = []
    for cin in (1, 32, 32):
        layers += [nn.Conv2d(cin, 32, 3, 1), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU(), nn.AvgPool2d(2, 2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(32, 10))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data", "mnist.npz"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(here, "..", "models"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    d = np.load(a.data)
    x_train = torch.from_numpy(d["x_train"].astype(np.float32) / 255.0)[:, None]
    y_train = torch.from_numpy(d["y_train"].astype(np.int64))
    x_test = d["x_test"].astype(np.float32)[:, None] / 255.0
    y_test = d["y_test"].astype(np.int64)

    net = mnist_cnn()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=a.epochs * (len(x_train) // 100))
    for epoch in range(a.epochs):
        net.train()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(x_train) - 99, 100):
            idx = perm[i:i + 100]
            loss = nn.functional.cross_entropy(net(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            acc = (net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
        print(f"epoch {epoch + 1}: test accuracy {100 * acc:.2f} %")

    os.makedirs(a.out, exist_ok=True)
    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), os.path.join(a.out, "mnist_cnn.onnx"),
                      input_names=["input"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      do_constant_folding=False, dynamo=False)
    np.save(os.path.join(a.out, "mnist_calib.npy"), x_train[:100].numpy())
    np.savez_compressed(os.path.join(a.out, "mnist_test.npz"), x=x_test[:1000], y=y_test[:1000])
    print(f"wrote {a.out}: mnist_cnn.onnx, mnist_calib.npy (100), mnist_test.npz (1000)")


if __name__ == "__main__":
    main()
