#!/usr/bin/env python3
"""CIFAR-10 accuracy vs time steps for ResNet-20 and VGG-16 (issue 3); writes docs/BENCHMARKS.md.

    python ../shared/tools/datasets.py cifar10 --out data/ --calib 1000
    python tools/benchmark_cifar.py --data data/ [--device cuda] [--limit N]

Models ../shared/models/cifar_resnet20.onnx (residual Adds, projection shortcuts) and
cifar_vgg16.onnx (max pooling, dropout); the full 10k test set; 1000 calibration images. One
simulation of T=256 per row gives the accuracy after every step. SpikingJelly 2.0's numbers on the
same models are quoted from ../shared/models/README.md (measured there side by side, 500
calibration images).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx2snn  # noqa: E402
from benchlib import DOCS, machine, write_section  # noqa: E402

STEPS = (16, 32, 64, 128, 256)
SPIKINGJELLY = {  # ../shared/models/README.md: SpikingJelly 2.0.0 RateCodingRecipe, T = 16 … 256
    ("cifar_resnet20", "p99.9"): (12.28, 36.01, 72.88, 83.62, 86.04),
    ("cifar_resnet20", "max"): (9.98, 11.99, 47.63, 76.89, 84.45),
    ("cifar_vgg16", "p99.9"): (61.31, 78.63, 81.20, 79.36, 77.29),
    ("cifar_vgg16", "max"): (18.04, 61.64, 70.07, 68.97, 65.49),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with cifar10_calib.npy and cifar10_test.npz")
    ap.add_argument("--models", default=os.path.join(here, "..", "..", "shared", "models"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--limit", type=int, default=None, help="test images (default: all)")
    ap.add_argument("--out", default=DOCS)
    a = ap.parse_args()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    calib = np.load(os.path.join(a.data, "cifar10_calib.npy"), mmap_mode="r")
    test = np.load(os.path.join(a.data, "cifar10_test.npz"))
    x, y = test["x"][:a.limit], test["y"][:a.limit]

    rows = []
    for model in ("cifar_resnet20", "cifar_vgg16"):
        path = os.path.join(a.models, model + ".onnx")
        ann = None
        for mode in ("p99.9", "max"):
            cfg = onnx2snn.Config()
            cfg.parser.robust_norm = mode != "max"
            cfg.batch_size, cfg.device, cfg.simulation.T = a.batch_size, device, max(STEPS)
            t = time.perf_counter()
            conv = onnx2snn.convert(path, calib, cfg)
            t_conv = time.perf_counter() - t
            if ann is None:
                ann = onnx2snn.ann_accuracy(conv.source, conv.input_name, x, y, 1000)
            t = time.perf_counter()
            acc = onnx2snn.simulate(conv.network, x, y, config=cfg).accuracy_per_step
            t_sim = time.perf_counter() - t
            accs = [100 * acc[s - 1] for s in STEPS]
            rows.append((model, mode, 100 * ann, accs, t_conv, t_sim))
            print(model, mode, f"ANN {100 * ann:.2f}", " ".join(f"{v:.2f}" for v in accs),
                  f"conv {t_conv:.1f}s sim {t_sim:.1f}s", flush=True)

    lines = [f"Measured {machine(device)}, onnx2snn {onnx2snn.__version__}; full {len(x)}-image test set, "
             f"{len(calib)} calibration images, batch {a.batch_size}, default config otherwise "
             "(constant input, v_init=0.5, reset by subtraction, spike-count max-pool gate, spike-count output).", "",
             "```", "python ../shared/tools/datasets.py cifar10 --out data/ --calib 1000",
             f"python tools/benchmark_cifar.py --data data/ --device {device}", "```", "",
             "| model | λ from | ANN | " + " | ".join(f"T={s}" for s in STEPS) + " | conversion (s) | simulation (s) |",
             "|---|---|---|" + "---|" * len(STEPS) + "---|---|"]
    for model, mode, ann, accs, t_conv, t_sim in rows:
        lines.append(f"| {model} | {mode} | {ann:.2f} | " + " | ".join(f"**{v:.2f}**" for v in accs) +
                     f" | {t_conv:.1f} | {t_sim:.1f} |")
        sj = SPIKINGJELLY[(model, mode)]
        lines.append(f"| ↳ SpikingJelly 2.0 | {mode} | | " + " | ".join(f"{v:.2f}" for v in sj) + " | | |")
    lines.append("")
    for model, mode, ann, accs, _, _ in rows:
        if mode != "p99.9":
            continue
        t128 = accs[STEPS.index(128)]
        lines.append(f"- {model}: T=128 {t128:.2f} % vs ANN − 1 % = {ann - 1:.2f} % — "
                     + ("met" if t128 >= ann - 1 else f"missed by {ann - 1 - t128:.2f} %"))
        if model == "cifar_resnet20":
            t64 = accs[STEPS.index(64)]
            lines.append(f"- {model}: T=64 {t64:.2f} % vs target 80 % — " + ("met" if t64 >= 80 else f"missed by {80 - t64:.2f} %"))
        if model == "cifar_vgg16":
            falls = [b - a_ for a_, b in zip(accs, accs[1:]) if b < a_]
            lines.append(f"- {model}: accuracy vs T " + ("never falls" if not falls else
                         f"falls by up to {max(-f for f in falls):.2f} % between steps of the table"))
    text = "\n".join(lines)
    write_section("CIFAR-10: ResNet-20 and VGG-16, accuracy vs time steps (issue 3)", text, a.out)
    print(text)


if __name__ == "__main__":
    main()
