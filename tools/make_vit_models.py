#!/usr/bin/env python3
"""Train the small vision transformers of issue 22's benchmark and export each with both PyTorch
exporters, with their calibration and test arrays.

    python tools/make_vit_models.py [--out data/vit] [--only mnist cifar] [--epochs N]

Models (timm-style blocks: pre-norm LayerNorm, manual softmax attention, GELU MLP, a class token and
a learned position embedding; no dropout, as they are trained to convert):
  vit_mnist   patch 7 (16 patches + class token), dim 64, 4 blocks, 4 heads, MLP 128; ~10 CPU minutes
  vit_cifar   patch 4 (64 patches + class token), dim 64, 6 blocks, 4 heads, MLP 128, random crops and
              flips, 6 epochs: ~25 minutes on a 2-core CPU (the issue's budget is 30)

Each is exported twice: NAME.onnx by the TorchScript exporter at opset 17 (LayerNormalization as one
op, GELU as its Erf form, the class token through Shape/ConstantOfShape/Expand for a dynamic batch)
and NAME_dynamo.onnx by the dynamo exporter (opset 18). NAME_calib.npy holds 1000 training images
not used in training, NAME_test.npz 1000 test images (x, y); NAME.pt the state dict. Seeds are fixed.
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


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):                                          # (N, L, C)
        n, l, c = x.shape
        qkv = self.qkv(x).reshape(n, l, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                             # (N, H, L, C/H)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, l, c))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, image=28, patch=7, channels=1, dim=64, depth=4, heads=4, hidden=128, classes=10):
        super().__init__()
        tokens = (image // patch) ** 2
        self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)                 # (N, tokens, dim)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def augment(x):
    """CIFAR: random 4-pixel-padded crops and horizontal flips, per batch."""
    n = x.shape[0]
    flip = torch.rand(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    i, j = np.random.randint(0, 9, 2)
    return padded[:, :, i:i + 32, j:j + 32]


def train(net, x, y, epochs, lr, batch=128, label="", transform=None):
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * (len(x) // batch))
    net.train()
    t0 = time.time()
    for epoch in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):
            idx = order[i:i + batch]
            xb = x[idx] if transform is None else transform(x[idx])
            opt.zero_grad()
            loss = F.cross_entropy(net(xb), y[idx], label_smoothing=0.1)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
        print(f"{label} epoch {epoch + 1}/{epochs}: loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    net.eval()
    return net


def accuracy(net, x, y):
    with torch.no_grad():
        return float((torch.cat([net(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)]) == y).float().mean())


def export(net, shape, stem):
    dummy = (torch.zeros(2, *shape),)
    torch.onnx.export(net, dummy, stem + ".onnx", input_names=["input"], output_names=["output"],
                      opset_version=17, dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, dynamo=False)
    program = torch.onnx.export(net, dummy, input_names=["input"], output_names=["output"], opset_version=18,
                                dynamic_shapes=({0: torch.export.Dim("N", min=1, max=4096)},), dynamo=True)
    program.save(stem + "_dynamo.onnx")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "data", "vit"))
    ap.add_argument("--only", nargs="*", choices=["mnist", "cifar"])
    ap.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    import datasets
    torch.set_num_threads(os.cpu_count() or 1)
    for name in a.only or ["mnist", "cifar"]:
        torch.manual_seed(0)
        np.random.seed(0)
        if name == "mnist":
            xtr, ytr, xte, yte = datasets.load("mnist")
            used, net, epochs, lr, transform = 59000, ViT(), a.epochs or 10, 2e-3, None
        else:
            xtr, ytr, xte, yte = datasets.load("cifar10")
            used, transform = 49000, augment
            net = ViT(image=32, patch=4, channels=3, dim=64, depth=6, heads=4, hidden=128)
            epochs, lr = a.epochs or 6, 2e-3
        net = train(net, torch.from_numpy(xtr[:used]), torch.from_numpy(ytr[:used]).long(), epochs, lr,
                    label=f"vit_{name}", transform=transform)
        acc = accuracy(net, torch.from_numpy(xte[:1000]), torch.from_numpy(yte[:1000]).long())
        stem = os.path.join(a.out, f"vit_{name}")
        torch.save(net.state_dict(), stem + ".pt")
        export(net, xtr.shape[1:], stem)
        np.save(stem + "_calib.npy", xtr[used:used + 1000])
        np.savez(stem + "_test.npz", x=xte[:1000], y=yte[:1000])
        print(f"wrote {stem}.onnx and _dynamo.onnx (torch accuracy on 1000 test images {acc:.4f})", flush=True)


if __name__ == "__main__":
    main()
