#!/usr/bin/env python3
"""One conversion + evaluation of a reference model with the onnx2snn of each given source tree, one after
the other in one process each (alternate trees and repeat: machines are noisy; compare within one run).

    git worktree add /tmp/old <commit>
    python tools/benchmark_ab.py /tmp/old . [--model cifar_resnet20] [-T 32] [--limit 2000]

Needs data/ from ../shared/tools/datasets.py cifar10 --out data/ --calib 1000."""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ONE = r'''
import sys, time, numpy as np
sys.path.insert(0, sys.argv[1])
import onnx2snn
calib = np.load(sys.argv[2] + "/cifar10_calib.npy", mmap_mode="r")[:1000]
d = np.load(sys.argv[2] + "/cifar10_test.npz"); x, y = d["x"][:int(sys.argv[5])], d["y"][:int(sys.argv[5])]
cfg = onnx2snn.Config(); cfg.simulation.T = int(sys.argv[4]); cfg.device = "cpu"; cfg.batch_size = 200
t = time.perf_counter(); conv = onnx2snn.convert(sys.argv[3], calib, cfg); tc = time.perf_counter() - t
t = time.perf_counter(); acc = onnx2snn.simulate(conv.network, x, y, config=cfg).accuracy; ts = time.perf_counter() - t
print(f"| {sys.argv[1]} | {tc:.1f} | {ts:.1f} | {100 * acc:.2f} |", flush=True)
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+")
    ap.add_argument("--data", default="data")
    ap.add_argument("--model", default="cifar_resnet20")
    ap.add_argument("-T", type=int, default=32)
    ap.add_argument("--limit", type=int, default=2000)
    a = ap.parse_args()
    sys.path.insert(0, HERE)
    from benchlib import machine
    print(f"Measured {machine('cpu')}; {a.model}, 1000 calibration images, calibrated for and simulated at "
          f"T={a.T}, first {a.limit} test images, batch 200.\n")
    print("| source tree | conversion (s) | simulation (s) | SNN accuracy (%) |\n|---|---|---|---|")
    model = os.path.join(HERE, "..", "..", "shared", "models", f"{a.model}.onnx")
    for tree in a.trees:
        subprocess.run([sys.executable, "-c", ONE, os.path.abspath(tree), a.data, model, str(a.T), str(a.limit)],
                       check=True)


if __name__ == "__main__":
    main()
