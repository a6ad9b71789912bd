#!/usr/bin/env python3
"""Accuracy-vs-T benchmark on the reference MNIST CNN; writes docs/BENCHMARKS.md.

    python tools/benchmark_mnist.py [--shared ../shared] [--device cuda] [--out docs/BENCHMARKS.md]

Model ../shared/models/mnist_cnn.onnx, data as ../shared/tools/datasets.py mnist writes it (x/255):
the full 10k test set, calibration on the first 100 and the first 1000 training images. For every
config below, one simulation of T=128 steps gives the accuracy after each step (T=8…128 read off
the same pass), plus the conversion wall time (load, clean, calibrate, normalise, verify, lower).
"""
import argparse
import importlib.util
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx2snn  # noqa: E402
from onnx2snn import Config  # noqa: E402
from benchlib import DOCS, machine, write_section  # noqa: E402

STEPS = (8, 16, 32, 64, 100, 128)
CONFIGS = {
    "default (p99.9, subtract reset, v_init=0.5, constant input, IF after avg-pool, spike-count output)": {},
    "seed defaults (as default, v_init=0)": {"simulation.v_init": 0.0},
    "max normalisation (robust_norm=false)": {"parser.robust_norm": False},
    "reset to 0": {"simulation.reset": 0.0},
    "Poisson input": {"simulation.encoder.poisson": True},
    "avg_pool.has_neuron=false": {"simulation.avg_pool.has_neuron": False},
    "membrane-potential output": {"simulation.output": "membrane"},
}


def load_mnist(shared):
    spec = importlib.util.spec_from_file_location("datasets", os.path.join(shared, "tools", "datasets.py"))
    ds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ds)
    return ds.load("mnist")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=None, help="test images (default: all 10k)")
    ap.add_argument("--out", default=DOCS, help="benchmarks file; this script replaces its own section")
    a = ap.parse_args()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = os.path.join(a.shared, "models", "mnist_cnn.onnx")
    x_train, _, x_test, y_test = load_mnist(a.shared)
    x_test, y_test = x_test[:a.limit], y_test[:a.limit]

    rows = []
    ann = None
    for n_calib in (100, 1000):
        for label, overrides in CONFIGS.items():
            cfg = Config()
            for k, v in overrides.items():
                cfg.set(k, v)
            cfg.batch_size, cfg.device, cfg.simulation.T = a.batch_size, device, max(STEPS)
            t = time.perf_counter()
            conv = onnx2snn.convert(model, x_train[:n_calib], cfg)
            t_conv = time.perf_counter() - t
            if ann is None:
                ann = onnx2snn.ann_accuracy(conv.source, conv.input_name, x_test, y_test, 1000)
            t = time.perf_counter()
            res = onnx2snn.simulate(conv.network, x_test, y_test, config=cfg)
            t_sim = time.perf_counter() - t
            acc = res.accuracy_per_step
            rows.append((n_calib, label, [100 * acc[s - 1] for s in STEPS], t_conv, t_sim))
            print(f"calib {n_calib:5d}  {label[:40]:40s} " + " ".join(f"{100 * acc[s - 1]:6.2f}" for s in STEPS) +
                  f"  conv {t_conv:.2f}s sim {t_sim:.1f}s", flush=True)

    lines = [
        f"Measured {machine(device)}, onnx2snn {onnx2snn.__version__}.",
        f"Model `../shared/models/mnist_cnn.onnx`, full {len(x_test)}-image MNIST test set, calibration on the first "
        "100 / 1000 training images (as `../shared/tools/datasets.py mnist` writes them). One simulation of T=128 per row; "
        "each column is the accuracy after that many steps of the same pass.", "",
        "```", f"python tools/benchmark_mnist.py --device {device}", "```", "",
        f"ANN accuracy (onnxruntime): **{100 * ann:.2f} %**. Targets with the default config: T=100 ≥ ANN − 0.1 % "
        f"= {100 * ann - 0.1:.2f} %, T=32 ≥ ANN − 0.3 % = {100 * ann - 0.3:.2f} %.", "",
        "| calib | config | " + " | ".join(f"T={s}" for s in STEPS) + " | conversion (s) | simulation (s) |",
        "|---|---|" + "---|" * len(STEPS) + "---|---|",
    ]
    for n_calib, label, accs, t_conv, t_sim in rows:
        lines.append(f"| {n_calib} | {label} | " + " | ".join(f"{v:.2f}" for v in accs) + f" | {t_conv:.2f} | {t_sim:.1f} |")
    lines.append("")
    for n_calib, label, accs, _, _ in rows:
        if label.startswith("default"):
            t100, t32 = accs[STEPS.index(100)], accs[STEPS.index(32)]
            miss = []
            for t, got, target in ((100, t100, 100 * ann - 0.1), (32, t32, 100 * ann - 0.3)):
                miss.append(f"T={t}: {got:.2f} % vs target {target:.2f} % — "
                            + ("met" if got >= target - 1e-9 else f"missed by {target - got:.2f} %"))
            lines.append(f"- default config, {n_calib} calibration images: " + "; ".join(miss))
    lines.append("")
    text = "\n".join(lines)
    write_section("MNIST CNN: accuracy vs time steps (issue 2)", text, a.out)
    print(text)


if __name__ == "__main__":
    main()
