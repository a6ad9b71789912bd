#!/usr/bin/env python3
"""Exporter fixtures (tests/fixtures): ANN vs SNN accuracy at T=16 and T=32 on MNIST; writes docs/BENCHMARKS.md.

    python ../shared/tools/datasets.py mnist --out data/ --calib 1000
    python tools/benchmark_fixtures.py --data data/ [--device cuda] [--limit N]

Each fixture is the same kind of small CNN trained in its own framework and written by its own
exporter (tools/make_fixture*.py); NHWC models get the images transposed. Each T is its own
conversion, calibrated for that T (the default config); the last column is T=32 with one threshold
per layer (the default before 0.3).
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx2snn  # noqa: E402
from benchlib import DOCS, machine, write_section  # noqa: E402

FIXTURES = {
    "torch_script_folded.onnx": ("NCHW", "PyTorch TorchScript exporter, BN folded"),
    "torch_script_bn.onnx": ("NCHW", "PyTorch TorchScript exporter, do_constant_folding=False"),
    "torch_dynamo.onnx": ("NCHW", "PyTorch dynamo exporter, opset 18"),
    "keras_cnn.onnx": ("NHWC", "Keras 3 via tf2onnx"),
    "jax_cnn.onnx": ("NHWC", "Flax NNX via jax2onnx"),
    "keras_flatten.onnx": ("NHWC", "Keras 3 Flatten via tf2onnx (shape subgraph)"),
    "keras_maxpool.onnx": ("NHWC", "Keras 3 MaxPooling2D + Flatten via tf2onnx"),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with mnist_calib.npy and mnist_test.npz")
    ap.add_argument("--device", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default=DOCS)
    a = ap.parse_args()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    calib = np.load(os.path.join(a.data, "mnist_calib.npy"))
    test = np.load(os.path.join(a.data, "mnist_test.npz"))
    x, y = test["x"][:a.limit], test["y"][:a.limit]
    steps = (16, 32)
    lines = [f"Measured {machine(device)}, onnx2snn {onnx2snn.__version__}; MNIST test set ({len(x)} images), "
             f"{len(calib)} calibration images, default config, each T its own conversion calibrated for it.", "",
             "```", "python ../shared/tools/datasets.py mnist --out data/ --calib 1000",
             f"python tools/benchmark_fixtures.py --data data/ --device {device}"
             + (f" --limit {a.limit}" if a.limit else ""), "```", "",
             "| fixture | exporter | ops after clean-up | ANN | " + " | ".join(f"SNN T={T}" for T in steps)
             + " | SNN − ANN at T=32 | T=32, one λ per layer (--no-per-channel) |",
             "|---|---|---|---|" + "---|" * len(steps) + "---|---|"]
    for name, (layout, exporter) in FIXTURES.items():
        c, xx = (calib, x) if layout == "NCHW" else (calib.transpose(0, 2, 3, 1).copy(), x.transpose(0, 2, 3, 1).copy())
        accs = []
        for T, per_channel in [(T, True) for T in steps] + [(32, False)]:
            cfg = onnx2snn.Config()
            cfg.simulation.T, cfg.device, cfg.batch_size, cfg.parser.per_channel = T, device, 500, per_channel
            conv = onnx2snn.convert(os.path.join(here, "..", "tests", "fixtures", name), c, cfg)
            accs.append(onnx2snn.simulate(conv.network, xx, y, config=conv.config).accuracy)
        layer_wise = accs.pop()
        ann = onnx2snn.ann_accuracy(conv.source, conv.input_name, xx, y, 1000)
        ops = ", ".join(f"{k} {v}" for k, v in conv.passes[-1]["ops"].items())
        lines.append(f"| `{name}` | {exporter} | {ops} | {100 * ann:.2f} | "
                     + " | ".join(f"{100 * a_:.2f}" for a_ in accs) + f" | {100 * (accs[-1] - ann):+.2f} | "
                     f"{100 * layer_wise:.2f} ({100 * (layer_wise - ann):+.2f}) |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    write_section("Exporter fixtures: ANN vs SNN (issue 3)", text, a.out)
    print(text)


if __name__ == "__main__":
    main()
