#!/usr/bin/env python3
"""Issue 22's benchmark: the small vision transformers of tools/make_vit_models.py, each as both
PyTorch exporters write it, converted for T = 8, 16, 32, 64 with 1000 calibration images and
evaluated on the 1000 saved test images (or the full test set: --test-set shared).

    python tools/make_vit_models.py              # once: trains and exports to data/vit/
    python tools/benchmark_vit.py [--models vit_mnist ...] [--exporters torchscript dynamo] [--T 16 32] [--write]

Each T is a conversion of its own, as a user runs ``onnx2snn MODEL CALIB --eval TEST -T <T>``. At
T=32 the peak memory of simulating the test images at batch 100 is measured in a fresh process that
loads the written .snn.onnx (resident set size, the process's maximum). Targets (issue 22): MNIST ViT
within 0.5 points of its ANN at T=32 and 1.5 at T=16; CIFAR-10 ViT within 1.5 at T=32; both exporters'
files the same SNN accuracy; CIFAR at T=32, batch 100 within 4 GiB.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402

import onnx2snn  # noqa: E402
from benchmark_idioms import gap_standard_error  # noqa: E402
from onnx2snn import tasks  # noqa: E402
from onnx2snn.calibrate import run  # noqa: E402
from onnx2snn.graph import load_model  # noqa: E402

MODELS = {"vit_mnist": ("MNIST ViT: patch 7, dim 64, 4 blocks, 4 heads", "mnist", {16: 1.5, 32: 0.5}),
          "vit_cifar": ("CIFAR-10 ViT: patch 4, dim 64, 6 blocks, 4 heads", "cifar10", {32: 1.5})}
EXPORTERS = {"torchscript": "", "dynamo": "_dynamo"}

MEMORY = """
import resource, sys, numpy as np, onnx2snn
net = onnx2snn.load(sys.argv[1])
test = np.load(sys.argv[2])
net.simulate(test["x"], int(sys.argv[3]), test["y"], batch_size=100, device="cpu")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def peak_memory(snn_path, test_path, T):
    """Peak resident memory (bytes) of a fresh process that loads the file and simulates the test set."""
    out = subprocess.run([sys.executable, "-c", MEMORY, snn_path, test_path, str(T)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip().splitlines()[-1])


def full_test_set(dataset, saved):
    sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "tools"))
    import datasets
    _, _, x, y = datasets.load(dataset)
    if not np.array_equal(x[:len(saved["x"])], saved["x"]):
        raise SystemExit("../shared's test images differ from the saved ones")
    return x, y


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "data", "vit"))
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--exporters", nargs="*", default=list(EXPORTERS), choices=list(EXPORTERS))
    ap.add_argument("--T", nargs="*", type=int, default=[8, 16, 32, 64])
    ap.add_argument("--test-set", choices=["saved", "shared"], default="saved")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement at T=32")
    ap.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    a = ap.parse_args()
    rows = []
    for name in a.models:
        for exporter in a.exporters:
            path = os.path.join(a.data, name + EXPORTERS[exporter] + ".onnx")
            if not os.path.exists(path):
                print(f"{name} ({exporter}): {path} missing; run tools/make_vit_models.py first", flush=True)
                continue
            info = load_model(path)
            calib = np.load(os.path.join(a.data, name + "_calib.npy"))
            test_path = os.path.join(a.data, name + "_test.npz")
            test = np.load(test_path)
            x, y = test["x"], test["y"]
            if a.test_set == "shared":
                x, y = full_test_set(MODELS[name][1], test)
            task = tasks.infer_task(info.output_shape, y, len(x), None)
            (ann_out,) = run(info.model, info.input_name, x, [info.output_names[0]], 100)
            ann = tasks.score(ann_out, y, task, None)["accuracy"]
            for T in a.T:
                cfg = onnx2snn.Config()
                cfg.simulation.T = T
                cfg.device = "cpu"
                for item in a.set:
                    key, _, value = item.partition("=")
                    cfg.set(key, json.loads(value))
                t0 = time.perf_counter()
                conv = onnx2snn.convert(path, calib, cfg)
                t1 = time.perf_counter()
                r = onnx2snn.simulate(conv.network, x, y, config=cfg, task=task)
                t2 = time.perf_counter()
                memory = None
                if T == 32 and not a.no_memory:
                    with tempfile.TemporaryDirectory() as tmp:
                        snn_path = os.path.join(tmp, "model.snn.onnx")
                        conv.save(snn_path)
                        memory = peak_memory(snn_path, test_path, T)
                row = dict(model=name, exporter=exporter, T=T, ann=ann, snn=r.accuracy, n=len(x),
                           se=gap_standard_error(ann_out, r.outputs, y, task, None), convert_s=t1 - t0,
                           simulate_s=t2 - t1, memory=memory, readout="/".join(map(str, conv.readout)))
                rows.append(row)
                print(f"{name} ({exporter}) T={T}: ANN {100 * ann:.2f}  SNN {100 * r.accuracy:.2f} "
                      f"(gap ± {100 * row['se']:.2f} s.e., {len(x)} images), conversion {row['convert_s']:.0f} s, "
                      f"simulation {row['simulate_s']:.0f} s"
                      + (f", peak memory {memory / 2**30:.2f} GiB" if memory else ""), flush=True)
    if a.write and rows:
        lines = [f"Measured {benchlib.machine('cpu')}.",
                 "Command: `python tools/make_vit_models.py && python tools/benchmark_vit.py "
                 + " ".join(sys.argv[1:]) + "` (1000 calibration images; one conversion per T, default options; "
                 + ("the full test set from ../shared/data" if a.test_set == "shared" else "the 1000 saved test images")
                 + "; peak memory: a fresh process loading the .snn.onnx and simulating them at batch 100).",
                 "", "| model | exporter | T | test images | ANN | SNN | gap (points) | ± s.e. | readout | "
                 "conversion s | simulation s | peak memory |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            memory = "-" if r["memory"] is None else f"{r['memory'] / 2**30:.2f} GiB"
            lines.append(f"| {r['model']} | {r['exporter']} | {r['T']} | {r['n']} | {100 * r['ann']:.2f} | "
                         f"{100 * r['snn']:.2f} | {100 * (r['ann'] - r['snn']):+.2f} | {100 * r['se']:.2f} | "
                         f"{r['readout']} | {r['convert_s']:.0f} | {r['simulate_s']:.0f} | {memory} |")
        lines += ["", "Targets (issue 22): " + "; ".join(
            f"{MODELS[m][0].split(':')[0]} within " + ", ".join(f"{g} points at T={t}" for t, g in MODELS[m][2].items())
            for m in MODELS) + "; both exporters alike; CIFAR-10 at T=32, batch 100 within 4 GiB."]
        benchlib.write_section("Vision transformers (issue 22): " + ", ".join(dict.fromkeys(r["model"] for r in rows))
                               + (", full test sets" if a.test_set == "shared" else ""),
                               "\n".join(lines))
        print("wrote docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
