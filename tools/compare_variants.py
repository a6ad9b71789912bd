#!/usr/bin/env python3
"""Accuracy of config variants side by side: one conversion for the target T and one simulation each.

    python tools/compare_variants.py MODEL.onnx -T 32 --limit 2000 \\
        --variants '[{}, {"parser.per_channel": false}, {"simulation.max_pool.before_neuron": true}]'

The exploratory measurements in docs/BENCHMARKS.md's notes that are not a benchmark table of their
own come from this script (before it existed, from the same loop in /tmp). MODEL's data set is
MNIST unless its name says cifar; --nhwc transposes the images for channels-last exports (Keras,
JAX). Prints the ANN's accuracy, then per variant its SNN accuracy, the readout chosen and the
conversion time; writes nothing.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import onnx2snn  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("-T", type=int, required=True)
    ap.add_argument("--variants", default="[{}]", help="JSON list of {dotted config key: value} overrides")
    ap.add_argument("--data", default="data", help="folder with DATASET_calib.npy and DATASET_test.npz")
    ap.add_argument("--limit", type=int, default=None, help="test images (default: all)")
    ap.add_argument("--nhwc", action="store_true", help="channels-last model: transpose the images")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    ds = "cifar10" if "cifar" in os.path.basename(a.model) else "mnist"
    calib = np.load(os.path.join(a.data, f"{ds}_calib.npy"), mmap_mode="r")
    test = np.load(os.path.join(a.data, f"{ds}_test.npz"))
    x, y = test["x"][:a.limit], test["y"][:a.limit]
    if a.nhwc:
        calib, x = np.ascontiguousarray(calib.transpose(0, 2, 3, 1)), np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    source = onnx2snn.graph.load_model(a.model)
    print(f"ANN {100 * onnx2snn.ann_accuracy(source.model, source.input_name, x, y, 500):.2f} % on {len(x)} images")
    for overrides in json.loads(a.variants):
        cfg = onnx2snn.Config()
        cfg.simulation.T, cfg.device, cfg.batch_size = a.T, a.device, 500
        for key, value in overrides.items():
            cfg.set(key, value)
        t = time.perf_counter()
        conv = onnx2snn.convert(a.model, calib, cfg)
        seconds = time.perf_counter() - t
        acc = onnx2snn.simulate(conv.network, x, y, config=conv.config).accuracy
        mode, delay = conv.readout
        print(f"{json.dumps(overrides)}  T={a.T}: {100 * acc:.2f} %  (readout {mode}, delay "
              f"{delay}; conversion {seconds:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
