#!/usr/bin/env python3
"""ImageNet-sized networks (issue 10): conversion time and peak memory on CPU, the edited graph's
argmax against the original's, and a short simulation at T=64; writes docs/BENCHMARKS.md.

    python tools/make_imagenet_models.py --out imagenet_models/      # in a venv with torchvision
    python tools/benchmark_imagenet.py --models-dir imagenet_models/ [--calib 32] [-T 32]

For each ``<architecture>.<exporter>.onnx`` (torchvision ResNet-18, ResNet-50, VGG-16-BN,
MobileNetV2; TorchScript and dynamo exporters), each in a fresh process so that its peak resident
memory is its own:

* the seed's conversion (λ = p99.9, no SNN calibration): the graph passes, statistics, rescaling
  and onnxruntime verification alone; then the argmax of the edited graph (onnxruntime) against
  the original's on random inputs it was not calibrated on;
* for the TorchScript export, the default conversion calibrated for T (thresholds searched for T,
  bias calibration and readout choice, which simulate the calibration images), and a simulation
  of a few images at T=64 with automatic chunking (images/s on CPU).

Inputs are standard-normal 3×224×224 arrays (the networks are untrained: see
make_imagenet_models.py), so accuracies mean nothing here; what is measured is cost and fidelity.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

ARCHITECTURES = ("resnet18", "resnet50", "vgg16_bn", "mobilenet_v2")
EXPORTERS = {"torchscript": "TorchScript, opset 17, BN kept", "dynamo": "dynamo, opset 18"}
CHECK_IMAGES = 32   # random inputs the edited graph's argmax is compared on


def random_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 224, 224), dtype=np.float32)


def worker(path: str, mode: str, calib: int, T: int, sim_images: int, sim_T: int) -> dict:
    """One conversion (and for "calibrated" one simulation) in this process; returns its numbers."""
    import onnx2snn
    from onnx2snn.calibrate import run
    cfg = onnx2snn.Config()
    cfg.simulation.T, cfg.device, cfg.batch_size = T, "cpu", 8
    if mode == "seed":
        for key, value in (("parser.threshold", "statistic"), ("calibration.bias", False),
                           ("simulation.output", "spikes")):
            cfg.set(key, value)
    t = time.perf_counter()
    conv = onnx2snn.convert(path, random_images(calib, 0), cfg)
    out = {"convert_s": time.perf_counter() - t, "timings": conv.timings,
           "ops": conv.passes[-1]["ops"], "verification_max": max(conv.verification.errors.values())}
    if mode == "seed":
        x = random_images(CHECK_IMAGES, 1)
        name = conv.source.graph.output[0].name
        (ref,) = run(conv.source, conv.input_name, x, [name], 8)
        (got,) = run(conv.snn_model, conv.input_name, x, [conv.snn_model.graph.output[0].name], 8)
        out["argmax_agreement"] = float(np.mean(ref.reshape(len(x), -1).argmax(1) == got.reshape(len(x), -1).argmax(1)))
    else:
        out["peak_convert_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        x = random_images(sim_images, 2)
        t = time.perf_counter()
        onnx2snn.simulate(conv.network, x, T=sim_T, config=conv.config)
        out["simulate_s"] = time.perf_counter() - t
    out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def measure(path: str, mode: str, a) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", path, mode, "--calib", str(a.calib), "-T", str(a.T),
           "--sim-images", str(a.sim_images), "--sim-T", str(a.sim_T)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0][:300]}
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", default="imagenet_models")
    ap.add_argument("--models", default=",".join(ARCHITECTURES))
    ap.add_argument("--calib", type=int, default=32, help="random calibration images (default 32)")
    ap.add_argument("-T", type=int, default=32, help="target T of the calibrated conversion (default 32)")
    ap.add_argument("--sim-images", type=int, default=8, help="images simulated after the calibrated conversion")
    ap.add_argument("--sim-T", type=int, default=64)
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], a.worker[1], a.calib, a.T, a.sim_images, a.sim_T)), flush=True)
        return
    import onnx2snn
    from benchlib import DOCS, machine, write_section
    lines = [f"Measured {machine('cpu')}, onnx2snn {onnx2snn.__version__}; {a.calib} random calibration images "
             f"(3×224×224), batch 8; each conversion in its own process (peak: its maximum resident set). "
             "Untrained torchvision networks with random BatchNorm statistics (tools/make_imagenet_models.py). "
             "GPU throughput at batch 64–256 was not measured (no GPU lent).", "",
             "```", "python tools/make_imagenet_models.py --out imagenet_models/   # torch 2.14.1, torchvision 0.29.1",
             f"python tools/benchmark_imagenet.py --models-dir imagenet_models/ --calib {a.calib} -T {a.T} "
             f"--sim-images {a.sim_images} --sim-T {a.sim_T}", "```", "",
             f"| model | exporter | ops after clean-up | seed conversion (s) | of which normalise + verify (s) | peak (GiB) "
             f"| verification max rel. error | argmax = original ({CHECK_IMAGES} random inputs) "
             f"| calibrated for T={a.T} (s) | peak (GiB) | simulation T={a.sim_T}, CPU (images/s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for arch in a.models.split(","):
        for exporter, label in EXPORTERS.items():
            path = os.path.join(a.models_dir, f"{arch}.{exporter}.onnx")
            if not os.path.exists(path):
                print("missing", path, "(run tools/make_imagenet_models.py)", flush=True)
                continue
            size = os.path.getsize(path) / 2**20
            s = measure(path, "seed", a)
            c = measure(path, "calibrated", a) if exporter == "torchscript" else {}
            if "error" in s:
                row = f"| {arch} ({size:.0f} MB) | {label} | failed: {s['error']} |" + " |" * 8
            else:
                ops = ", ".join(f"{k} {v}" for k, v in s["ops"].items())
                cal = ("— | — | —" if not c else f"failed: {c['error']} | | " if "error" in c else
                       f"{c['convert_s']:.1f} | {c['peak_convert_gib']:.1f} | {a.sim_images / c['simulate_s']:.2f}")
                row = (f"| {arch} ({size:.0f} MB) | {label} | {ops} | {s['convert_s']:.1f} | "
                       f"{s['timings']['normalise'] + s['timings']['verify']:.1f} | {s['peak_gib']:.1f} | {s['verification_max']:.1e} | "
                       f"{100 * s['argmax_agreement']:.0f} % | {cal} |")
            lines.append(row)
            print(row, flush=True)
    text = "\n".join(lines)
    write_section("ImageNet architectures, CPU (issue 10)", text, a.out or DOCS)
    print(text)


if __name__ == "__main__":
    main()
