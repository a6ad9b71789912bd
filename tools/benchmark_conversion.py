#!/usr/bin/env python3
"""Conversion time (load, graph passes, calibration, normalisation + verification, lowering) on CPU;
writes docs/BENCHMARKS.md.

    python ../shared/tools/datasets.py cifar10 --out data/ --calib 1000
    python tools/benchmark_conversion.py --data data/

Target (issue 4): ResNet-20 with 1000 calibration images in ≤ 10 s on a 2-core CPU.
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
    ap.add_argument("--out", default=DOCS)
    a = ap.parse_args()
    calib = np.load(os.path.join(a.data, "cifar10_calib.npy"), mmap_mode="r")[:1000]
    lines = [f"Measured {machine('cpu')}, onnx2snn {onnx2snn.__version__}; {len(calib)} calibration images "
             f"(memory-mapped), batch 100; best of {a.repeats} runs.", "",
             "```", "python tools/benchmark_conversion.py --data data/", "```", "",
             "| model | load (s) | graph passes (s) | calibration (s) | normalise + verify (s) | total (s) |",
             "|---|---|---|---|---|---|"]
    for name in ("cifar_resnet20", "cifar_vgg16"):
        best = None
        for _ in range(a.repeats):
            t = time.perf_counter()
            conv = onnx2snn.convert(os.path.join(a.models, name + ".onnx"), calib)
            total = time.perf_counter() - t
            if best is None or total < best[0]:
                best = (total, conv.timings)
        total, tm = best
        lines.append(f"| {name} | {tm['load']:.2f} | {tm['clean']:.2f} | {tm['calibrate']:.2f} | "
                     f"{tm['normalise+verify']:.2f} | {total:.2f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    write_section("Conversion time, CPU (issue 4)", text, a.out)
    print(text)


if __name__ == "__main__":
    main()
