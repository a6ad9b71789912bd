#!/usr/bin/env python3
"""Conversion time (load, graph passes, statistics and threshold search, normalisation + verification,
SNN calibration, lowering) on CPU, and peak memory; writes docs/BENCHMARKS.md.

    python ../shared/tools/datasets.py cifar10 --out data/ --calib 1000
    python tools/benchmark_conversion.py --data data/ [-T 32]

Target (issue 7): ResNet-20 with 1000 calibration images, calibrated for T=32, in ≤ 60 s on a 2-core CPU;
memory flat in the length of the calibration array (the seed's conversion: ≤ 10 s, issue 4).
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import onnx2snn  # noqa: E402
from benchlib import DOCS, machine, write_section  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", default=os.path.join(HERE, "..", "..", "shared", "models"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-T", type=int, default=32, help="target T of the calibration (default 32)")
    ap.add_argument("--device", default="cpu", help="where the calibration simulates (cpu, cuda)")
    ap.add_argument("--out", default=DOCS)
    a = ap.parse_args()
    calib = np.load(os.path.join(a.data, "cifar10_calib.npy"), mmap_mode="r")[:1000]
    import resource
    lines = [f"Measured {machine(a.device)}, onnx2snn {onnx2snn.__version__}; {len(calib)} calibration images "
             f"(memory-mapped), batch 100, default config calibrated for T={a.T} (and the seed's conversion for "
             f"comparison); best of {a.repeats} runs. Peak memory: the process's maximum resident set so far.", "",
             "```", f"python tools/benchmark_conversion.py --data data/ -T {a.T} --repeats {a.repeats}"
             + ("" if a.device == "cpu" else f" --device {a.device}"), "```", "",
             "| model | conversion | load (s) | graph passes (s) | statistics + thresholds (s) | normalise + verify (s) "
             "| SNN calibration (s) | total (s) | peak memory (GiB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    seed = onnx2snn.Config()
    for key, value in (("parser.threshold", "statistic"), ("calibration.bias", False), ("simulation.output", "spikes")):
        seed.set(key, value)
    default = onnx2snn.Config()
    for cfg in (seed, default):
        cfg.simulation.T, cfg.device = a.T, a.device
    for name in ("cifar_resnet20", "cifar_vgg16"):
        for label, cfg in (("seed", seed), (f"calibrated for T={a.T}", default)):
            best = None
            for _ in range(a.repeats):
                t = time.perf_counter()
                conv = onnx2snn.convert(os.path.join(a.models, name + ".onnx"), calib, cfg)
                total = time.perf_counter() - t
                if best is None or total < best[0]:
                    best = (total, conv.timings)
            total, tm = best
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            lines.append(f"| {name} | {label} | {tm['load']:.2f} | {tm['clean']:.2f} | {tm['calibrate']:.2f} | "
                         f"{tm['normalise'] + tm['verify']:.2f} | {tm.get('snn_calibration', 0):.2f} | {total:.2f} | {peak:.1f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    write_section(f"Conversion time, {a.device.split(':')[0].upper()} (issues 4 and 7)", text, a.out)
    print(text)


if __name__ == "__main__":
    main()
