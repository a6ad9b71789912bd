#!/usr/bin/env python3
"""Train the small models of issue 21's benchmark, one vision idiom each, and export them to ONNX
(TorchScript exporter, opset 17, as most users export) with their calibration and test arrays.

    python tools/make_idiom_models.py [--out data/idioms] [--only unet ...] [--epochs N]

Models (a few CPU minutes each on ../shared/data):
  unet_mnist        MNIST digit segmentation, 11 classes per pixel (background + the digit's class on
                    its strokes, pixel >= 0.5): two encoder levels with max pooling, one ConvTranspose
                    and one nearest upsampling (F.interpolate) back up, Concat skips, output (11, 28, 28)
  shufflenet_cifar  a ShuffleNetV2-style CIFAR-10 net: channel split (x.chunk(2, 1)), depthwise 3x3
                    convolutions, Concat, channel shuffle (view/transpose/view), strided units
  mixer_mnist       an MLP-Mixer on 7x7 patches (no LayerNorm): token-wise dense layers (nn.Linear on
                    (N, L, C) exports as MatMul + Add), transposes, residual Adds, a mean over tokens
  leaky_cifar       a CIFAR-10 CNN with LeakyReLU(0.1) (converts with --signed-spikes) and max pooling
  sigmoid_mnist     a CNN with a Sigmoid head for 4 binary attributes of the digit: even, >= 5,
                    has a closed loop (0, 4, 6, 8, 9), prime (2, 3, 5, 7); trained with BCE

Each writes NAME.onnx, NAME_calib.npy (1000 training images) and NAME_test.npz (1000 test images,
x and y: class maps (N, 28, 28), labels (N,) or 0/1 targets (N, 4)). Seeds are fixed.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "tools"))


class UNet(nn.Module):
    def __init__(self, classes=11):
        super().__init__()
        block = lambda cin, cout: nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())
        self.enc1, self.enc2, self.mid = block(1, 16), block(16, 32), block(32, 32)
        self.up = nn.ConvTranspose2d(32, 32, 2, stride=2)           # 7 -> 14
        self.dec2 = block(64, 32)
        self.dec1 = block(48, 16)
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)                                             # 28
        e2 = self.enc2(F.max_pool2d(e1, 2))                           # 14
        m = self.mid(F.max_pool2d(e2, 2))                             # 7
        d2 = self.dec2(torch.cat([F.relu(self.up(m)), e2], 1))        # 14
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2, mode="nearest"), e1], 1))   # 28
        return self.head(d1)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's unit: stride 1 splits the channels, stride 2 downsamples both halves."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        half = cout // 2
        branch_in = cin // 2 if stride == 1 else cin
        self.branch = nn.Sequential(
            nn.Conv2d(branch_in, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())
        if stride == 2:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.branch(b)], 1)
        else:
            out = torch.cat([self.short(x), self.branch(x)], 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.units = nn.Sequential(ShuffleUnit(24, 48, 2), ShuffleUnit(48, 48, 1), ShuffleUnit(48, 96, 2),
                                   ShuffleUnit(96, 96, 1), ShuffleUnit(96, 96, 1))
        self.head = nn.Linear(96, 10)

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.units(self.stem(x)), 1).flatten(1))


class MixerBlock(nn.Module):
    """MLP-Mixer's block without LayerNorm (issue 21's idiom; LayerNorm is issue 22's)."""

    def __init__(self, tokens, channels, hidden=64):
        super().__init__()
        self.token1, self.token2 = nn.Linear(tokens, hidden), nn.Linear(hidden, tokens)
        self.channel1, self.channel2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def forward(self, x):                                     # (N, tokens, channels)
        x = x + self.token2(F.relu(self.token1(x.transpose(1, 2)))).transpose(1, 2)
        return x + self.channel2(F.relu(self.channel1(x)))


class Mixer(nn.Module):
    def __init__(self, channels=32, blocks=2):
        super().__init__()
        self.embed = nn.Conv2d(1, channels, 7, stride=7)      # 16 patches of 7x7
        self.blocks = nn.Sequential(*[MixerBlock(16, channels) for _ in range(blocks)])
        self.head = nn.Linear(channels, 10)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)     # (N, 16, channels)
        return self.head(F.relu(self.blocks(tokens)).mean(1))


class LeakyCNN(nn.Module):
    """A YOLO-style CIFAR-10 backbone: Conv-BN-LeakyReLU(0.1) blocks, max pooling, GAP."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for cout in (32, 64, 128):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1),
                       nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1),
                       nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class AttributeCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(16, 32, 3), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(32, 32, 3), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return torch.sigmoid(self.head(self.features(x).flatten(1)))


def attributes(y):
    """even, >= 5, a closed loop, prime: (N, 4) in {0, 1}."""
    return np.stack([y % 2 == 0, y >= 5, np.isin(y, [0, 4, 6, 8, 9]), np.isin(y, [2, 3, 5, 7])], 1).astype(np.int64)


def class_maps(x, y):
    """Per pixel: 0 for background, 1 + the digit's class where the stroke is (pixel >= 0.5)."""
    return np.where(x[:, 0] >= 0.5, y[:, None, None] + 1, 0).astype(np.int64)


def train(net, x, targets, loss_fn, epochs, lr=2e-3, batch=128, label=""):
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * (len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    net.train()
    t0, step = time.time(), 0
    for epoch in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), targets[idx])
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        print(f"{label} epoch {epoch + 1}/{epochs}: loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    net.eval()
    return net


def export(net, shape, path):
    torch.onnx.export(net, (torch.zeros(1, *shape),), path, input_names=["input"], output_names=["output"],
                      opset_version=17, dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, dynamo=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "data", "idioms"))
    ap.add_argument("--only", nargs="*", choices=["unet", "shufflenet", "sigmoid", "mixer", "leaky"])
    ap.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    ap.add_argument("--train", type=int, default=20000, help="training images per model")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    import datasets
    which = a.only or ["unet", "shufflenet", "sigmoid", "mixer", "leaky"]
    torch.set_num_threads(os.cpu_count() or 1)
    if {"unet", "sigmoid", "mixer"} & set(which):
        xtr, ytr, xte, yte = datasets.load("mnist")
    for name in which:
        torch.manual_seed(0)
        if name == "unet":
            net = train(UNet(), torch.from_numpy(xtr[:a.train]), torch.from_numpy(class_maps(xtr[:a.train], ytr[:a.train])),
                        nn.CrossEntropyLoss(), a.epochs or 3, label=name)
            files, shape = ("unet_mnist", xtr, class_maps(xte[:1000], yte[:1000]), xte), (1, 28, 28)
        elif name == "mixer":
            net = train(Mixer(), torch.from_numpy(xtr[:a.train]), torch.from_numpy(ytr[:a.train]),
                        nn.CrossEntropyLoss(), a.epochs or 5, lr=2e-3, label=name)
            files, shape = ("mixer_mnist", xtr, yte[:1000], xte), (1, 28, 28)
        elif name == "sigmoid":
            net = train(AttributeCNN(), torch.from_numpy(xtr[:a.train]),
                        torch.from_numpy(attributes(ytr[:a.train]).astype(np.float32)),
                        lambda p, t: F.binary_cross_entropy(p, t), a.epochs or 4, label=name)
            files, shape = ("sigmoid_mnist", xtr, attributes(yte[:1000]), xte), (1, 28, 28)
        elif name == "leaky":
            cx, cy, cxt, cyt = datasets.load("cifar10")
            net = train(LeakyCNN(), torch.from_numpy(cx[:a.train]), torch.from_numpy(cy[:a.train]),
                        nn.CrossEntropyLoss(), a.epochs or 4, label=name)
            files, shape = ("leaky_cifar", cx, cyt[:1000], cxt), (3, 32, 32)
        else:
            cx, cy, cxt, cyt = datasets.load("cifar10")
            net = train(ShuffleNet(), torch.from_numpy(cx[:a.train]), torch.from_numpy(cy[:a.train]),
                        nn.CrossEntropyLoss(), a.epochs or 6, label=name)
            files, shape = ("shufflenet_cifar", cx, cyt[:1000], cxt), (3, 32, 32)
        stem, x_train, y_test, x_test = files
        export(net, shape, os.path.join(a.out, stem + ".onnx"))
        np.save(os.path.join(a.out, stem + "_calib.npy"), x_train[a.train:a.train + 1000])
        np.savez(os.path.join(a.out, stem + "_test.npz"), x=x_test[:1000], y=y_test)
        print(f"wrote {stem}.onnx, {stem}_calib.npy, {stem}_test.npz", flush=True)


if __name__ == "__main__":
    main()
