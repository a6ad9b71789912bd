#!/usr/bin/env python3
"""Low latency (issue 7): accuracy at a target T with calibration for that T, and what each technique adds.

    python ../shared/tools/datasets.py mnist   --out data/ --calib 1000
    python ../shared/tools/datasets.py cifar10 --out data/ --calib 1000
    python tools/benchmark_low_latency.py --data data/ --models mnist_cnn --steps 8,16,32,64,128
    python tools/benchmark_low_latency.py --data data/ --models cifar_resnet20,cifar_vgg16 --limit 2000 \\
        --steps 8,16,32,64 --ablation 16,32 --ablation-limit 1000

For every target T the model is converted for that T (thresholds searched for it, biases and
readout calibrated on the 1000 calibration images, 20 % of them held back for the readout choice)
and simulated for T steps: one conversion and one simulation per cell. The ablation adds the
techniques one at a time, starting from the seed's conversion (λ = p99.9, IF neurons after average
pooling, spike-count gate, spike-count readout), then measures each option that is off by default
on top of the default. Writes one section of docs/BENCHMARKS.md per run.
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

DATASET = {"mnist_cnn": "mnist", "cifar_resnet20": "cifar10", "cifar_vgg16": "cifar10"}
# The seed's conversion; each ablation row drops one of these settings (adds one technique) after the
# row above, and the last row is the default config.
SEED = {"parser.threshold": "statistic", "parser.per_channel": False, "calibration.bias": False,
        "simulation.output": "spikes", "simulation.avg_pool.has_neuron": True, "simulation.max_pool.rule": "gate"}
TECHNIQUES = [("seed: p99.9, IF after avg-pool, gate, spike readout", None),
              ("+ threshold search for T (one per layer)", "parser.threshold"),
              ("+ bias calibration", "calibration.bias"),
              ("+ readout chosen (membrane/spikes, delay)", "simulation.output"),
              ("+ no IF after avg-pool", "simulation.avg_pool.has_neuron"),
              ("+ running-max pooling", "simulation.max_pool.rule"),
              ("+ thresholds per channel = default", "parser.per_channel")]

# Options that stay off by default, each measured on top of the default config.
OPTIONS = [("default + v_init calibration (--v-init-calibration)", {"calibration.v_init": True}),
           ("default + max pooling before the first neurons (--pool-before-neuron)",
            {"simulation.max_pool.before_neuron": True})]


def ablation_rows():
    """(row name, config overrides) per row: the seed's settings left after dropping each in turn,
    then the options."""
    rows, left = [], dict(SEED)
    for name, key in TECHNIQUES:
        left.pop(key, None)
        rows.append((name, dict(left)))
    return rows + OPTIONS

# ../shared/models/README.md: SpikingJelly 2.0.0 RateCodingRecipe, best mode (p99.9), T = 16 … 256.
SPIKINGJELLY = {"mnist_cnn": {16: 91.21, 32: 98.67, 64: 98.89, 128: 98.93},
                "cifar_resnet20": {16: 12.28, 32: 36.01, 64: 72.88, 128: 83.62, 256: 86.04},
                "cifar_vgg16": {16: 61.31, 32: 78.63, 64: 81.20, 128: 79.36, 256: 77.29}}
TARGETS = {"mnist_cnn": {8: 98.0, 16: 98.7, 32: 98.85},
           "cifar_resnet20": {16: 83.8, 32: 85.8, 64: 86.4, 128: 86.5},
           "cifar_vgg16": {16: 85.0, 32: 87.0, 64: 87.6, 256: 87.8}}


def run(path, calib, x, y, T, overrides, device, batch):
    cfg = onnx2snn.Config()
    cfg.simulation.T, cfg.device, cfg.batch_size = T, device, batch
    for k, v in overrides.items():
        cfg.set(k, v)
    t = time.perf_counter()
    conv = onnx2snn.convert(path, calib, cfg)
    t_conv = time.perf_counter() - t
    acc = onnx2snn.simulate(conv.network, x, y, config=conv.config).accuracy
    mode, delay = conv.readout
    return 100 * acc, t_conv, mode + (f", delay {delay}" if delay else "")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with DATASET_calib.npy and DATASET_test.npz")
    ap.add_argument("--models", default="mnist_cnn,cifar_resnet20,cifar_vgg16")
    ap.add_argument("--shared-models", default=os.path.join(here, "..", "..", "shared", "models"))
    ap.add_argument("--steps", default="8,16,32,64,128", help="target T of the default config")
    ap.add_argument("--ablation", default="", help="target T of the ablation rows (default: none)")
    ap.add_argument("--limit", type=int, default=None, help="test images (default: all)")
    ap.add_argument("--ablation-limit", type=int, default=None, help="test images of the ablation (default: --limit)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--out", default=DOCS)
    a = ap.parse_args()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    steps = [int(s) for s in a.steps.split(",") if s]
    ablation_steps = [int(s) for s in a.ablation.split(",") if s]
    models = a.models.split(",")
    lines = [f"Measured {machine(device)}, onnx2snn {onnx2snn.__version__}; 1000 calibration images "
             "(800 fit, 200 held back); batch {0}. Each cell is its own conversion for that T and a "
             "simulation of T steps.".format(a.batch_size), "", "```",
             " ".join(["python tools/benchmark_low_latency.py --data data/", f"--models {a.models}",
                       f"--steps {a.steps}"] + ([f"--ablation {a.ablation}"] if a.ablation else [])
                      + ([f"--limit {a.limit}"] if a.limit else [])
                      + ([f"--ablation-limit {a.ablation_limit}"] if a.ablation_limit else [])
                      + [f"--device {device}"]), "```", ""]
    for model in models:
        ds = DATASET[model]
        calib = np.load(os.path.join(a.data, f"{ds}_calib.npy"), mmap_mode="r")
        test = np.load(os.path.join(a.data, f"{ds}_test.npz"))
        path = os.path.join(a.shared_models, model + ".onnx")
        x, y = test["x"][:a.limit], test["y"][:a.limit]
        source = onnx2snn.graph.load_model(path)
        ann = 100 * onnx2snn.ann_accuracy(source.model, source.input_name, x, y, 500)
        lines += [f"### {model}: default config, {len(x)} test images (ANN {ann:.2f} %)", "",
                  "| | " + " | ".join(f"T={T}" for T in steps) + " |", "|---|" + "---|" * len(steps)]
        cells = [run(path, calib, x, y, T, {}, device, a.batch_size) for T in steps]
        for T, c in zip(steps, cells):
            print(model, "default", T, c, flush=True)
        lines.append("| onnx2snn (default) | " + " | ".join(f"**{c[0]:.2f}**" for c in cells) + " |")
        lines.append("| readout chosen | " + " | ".join(c[2] for c in cells) + " |")
        lines.append("| conversion (s) | " + " | ".join(f"{c[1]:.1f}" for c in cells) + " |")
        sj = SPIKINGJELLY.get(model, {})
        lines.append("| SpikingJelly 2.0, p99.9 (full test set, H200) | "
                     + " | ".join(f"{sj[T]:.2f}" if T in sj else "—" for T in steps) + " |")
        target = TARGETS.get(model, {})
        lines.append("| issue-7 target (full test set) | "
                     + " | ".join(f"≥ {target[T]:.2f}" if T in target else "—" for T in steps) + " |")
        lines.append("")
        if ablation_steps:
            xa, ya = test["x"][:a.ablation_limit or a.limit], test["y"][:a.ablation_limit or a.limit]
            ann_a = 100 * onnx2snn.ann_accuracy(source.model, source.input_name, xa, ya, 500)
            lines += [f"Ablation, {len(xa)} test images (ANN {ann_a:.2f} %): each row adds one technique; each "
                      "option below the default is added to the default alone.", "",
                      "| | " + " | ".join(f"T={T}" for T in ablation_steps) + " |",
                      "|---|" + "---|" * len(ablation_steps)]
            for name, overrides in ablation_rows():
                row = [run(path, calib, xa, ya, T, overrides, device, a.batch_size) for T in ablation_steps]
                print(model, name, row, flush=True)
                lines.append(f"| {name} | " + " | ".join(f"{c[0]:.2f}" for c in row) + " |")
            lines.append("")
    title = f"Low latency (issue 7): {', '.join(models)}, T={a.steps}"
    write_section(title, "\n".join(lines), a.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
