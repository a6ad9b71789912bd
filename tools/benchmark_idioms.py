#!/usr/bin/env python3
"""Issue 21's benchmark: models built around one vision idiom each (tools/make_idiom_models.py),
converted for T = 8, 16, 32, 64 with 1000 calibration images and evaluated on 1000 test images
with their task's metric (accuracy, mean label accuracy, mean IoU: onnx2snn/tasks.py).

    python tools/make_idiom_models.py            # once: trains and exports to data/idioms/
    python tools/benchmark_idioms.py [--models unet_mnist ...] [--T 8 16 32 64] [--write]

Each T is a conversion of its own (thresholds and calibration for that T), as a user runs
``onnx2snn MODEL CALIB --eval TEST -T <T>``. Targets (issue 21): classification and multi-label
within 1.0 point of the ANN at T=32, segmentation mIoU within 2.0 points.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402

import onnx2snn  # noqa: E402
from onnx2snn import tasks  # noqa: E402
from onnx2snn.calibrate import run  # noqa: E402
from onnx2snn.graph import load_model  # noqa: E402
from onnx2snn.graph.ops import output_head  # noqa: E402

MODELS = {   # name: (idiom, target gap in points at T=32)
    "unet_mnist": ("U-Net segmentation: ConvTranspose, nearest upsampling, Concat skips, max pooling", 2.0),
    "shufflenet_cifar": ("ShuffleNetV2 units: channel split (Slice), depthwise conv, channel shuffle", 1.0),
    "sigmoid_mnist": ("CNN with a Sigmoid head, 4 binary attributes (multi-label)", 1.0),
    "leaky_cifar": ("CIFAR-10 CNN, LeakyReLU(0.1), max pooling: signed IF neurons (--signed-spikes)", 1.0),
    "mixer_mnist": ("MLP-Mixer on 7x7 patches: token-wise MatMul + Add, Transposes, residual Adds", 1.0),
}


DATASET = {"shufflenet_cifar": "cifar10", "leaky_cifar": "cifar10", "mixer_mnist": "mnist"}


def full_test_set(name, saved):
    """The whole test set of a classification model's dataset, as make_idiom_models.py preprocessed
    its first 1000 (checked against the saved ones)."""
    if name not in DATASET:
        raise SystemExit(f"--test-set shared: {name}'s labels are derived (class maps, attributes); use the saved set")
    sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "tools"))
    import datasets
    _, _, x, y = datasets.load(DATASET[name])
    if not np.array_equal(x[:len(saved["x"])], saved["x"]):
        raise SystemExit(f"{name}: ../shared's test images differ from the saved ones")
    return x, y


def gap_standard_error(ann_out, snn_out, y, task, head):
    """The standard error of the ANN−SNN gap, from the paired per-sample differences (classification:
    correct or not; multi-label: the share of right labels); None for a segmentation (mIoU is not a
    mean over samples)."""
    if task.kind not in ("classification", "multilabel"):
        return None
    per = []
    for out in (ann_out, snn_out):
        d = tasks.decisions(out, task, head if out is ann_out else None)
        right = (d == y) if task.kind == "classification" else (d == y).mean(1)
        per.append(np.asarray(right, np.float64))
    diff = per[0] - per[1]
    return float(diff.std(ddof=1) / np.sqrt(len(diff)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "data", "idioms"))
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--T", nargs="*", type=int, default=[8, 16, 32, 64])
    ap.add_argument("--test-images", type=int, default=1000, help="the first N test images (default 1000)")
    ap.add_argument("--test-set", choices=["saved", "shared"], default="saved",
                    help="saved: the 1000 test images make_idiom_models.py wrote (the issue's protocol); shared: "
                         "the full test set of the model's dataset from ../shared/data (classification models)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. calibration.bias=false parser.per_channel=false")
    ap.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    a = ap.parse_args()
    rows = []
    for name in a.models:
        path = os.path.join(a.data, name + ".onnx")
        if not os.path.exists(path):
            print(f"{name}: {path} missing; run tools/make_idiom_models.py first", flush=True)
            continue
        info = load_model(path)
        calib = np.load(os.path.join(a.data, name + "_calib.npy"))
        test = np.load(os.path.join(a.data, name + "_test.npz"))
        x, y = test["x"][:a.test_images], test["y"][:a.test_images]
        if a.test_set == "shared":
            x, y = full_test_set(name, test)        # (--test-images does not cut it)
        head = output_head(info.model)
        task = tasks.infer_task(info.output_shape, y, len(x), head)
        (ann_out,) = run(info.model, info.input_name, x, [info.output_names[0]], 100)
        ann = tasks.score(ann_out, y, task, head)
        for T in a.T:
            cfg = onnx2snn.Config()
            cfg.simulation.T = T
            cfg.device = "cpu"
            cfg.simulation.signed_spikes = name == "leaky_cifar"
            for item in a.set:
                key, _, value = item.partition("=")
                cfg.set(key, json.loads(value))
            t0 = time.perf_counter()
            try:
                conv = onnx2snn.convert(path, calib, cfg)
            except onnx2snn.Onnx2SnnError as e:       # a refusal is a result too
                print(f"{name} T={T}: refused: {e}", flush=True)
                rows.append(dict(model=name, T=T, metric=task.metric, ann=ann[task.metric], snn=float("nan"),
                                 extra="refused", convert_s=0.0, simulate_s=0.0, readout="-"))
                continue
            t1 = time.perf_counter()
            r = onnx2snn.simulate(conv.network, x, y, config=cfg, task=task)
            t2 = time.perf_counter()
            snn = {k: float(v[-1]) for k, v in r.metrics_per_step.items()}
            row = dict(model=name, T=T, metric=task.metric, ann=ann[task.metric], snn=snn[task.metric], n=len(x),
                       se=gap_standard_error(ann_out, r.outputs, y, task, head),
                       extra="" if task.kind != "segmentation" else
                       f"pixel acc. {100 * ann['pixel_accuracy']:.2f} → {100 * snn['pixel_accuracy']:.2f}",
                       convert_s=t1 - t0, simulate_s=t2 - t1, readout="/".join(map(str, conv.readout)))
            rows.append(row)
            print(f"{name} T={T}: ANN {100 * row['ann']:.2f}  SNN {100 * row['snn']:.2f} {task.metric} "
                  f"(gap ± {100 * row['se']:.2f} s.e., {len(x)} images) "
                  f"({row['extra']}) conversion {row['convert_s']:.0f} s, simulation {row['simulate_s']:.0f} s",
                  flush=True)
    if a.write and rows:
        lines = [f"Measured {benchlib.machine('cpu')}.",
                 "Command: `python tools/make_idiom_models.py && python tools/benchmark_idioms.py "
                 + " ".join(sys.argv[1:]) + "` (1000 calibration images; one conversion per T, default options; "
                 + ("the full test set from ../shared/data" if a.test_set == "shared" else
                    f"the first {a.test_images} test images") + ").",
                 "", "| model | idiom | metric | T | test images | ANN | SNN | gap (points) | ± s.e. | readout | "
                 "conversion s | simulation s |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            gap = 100 * (r["ann"] - r["snn"])
            se = "-" if r.get("se") is None else f"{100 * r['se']:.2f}"
            lines.append(f"| {r['model']} | {MODELS[r['model']][0]} | {r['metric'].replace('_', ' ')}"
                         f"{' (' + r['extra'] + ')' if r['extra'] else ''} | {r['T']} | {r.get('n', '-')} | "
                         f"{100 * r['ann']:.2f} | {100 * r['snn']:.2f} | {gap:+.2f} | "
                         f"{se} | {r['readout']} | "
                         f"{r['convert_s']:.0f} | "
                         f"{r['simulate_s']:.0f} |")
        lines += ["", "Targets at T=32 (issue 21): " + "; ".join(f"{m} within {g:.1f} points" for m, (_, g) in
                                                                 MODELS.items()) + "."]
        benchlib.write_section("Vision idioms (issue 21)" + (": full test sets" if a.test_set == "shared" else ""),
                               "\n".join(lines))
        print("wrote docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
