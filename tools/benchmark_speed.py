#!/usr/bin/env python3
"""Simulation speed and memory against the dense floor and SpikingJelly (issue 4); writes docs/BENCHMARKS.md.

    python ../shared/tools/datasets.py mnist --out data/ --calib 500
    python ../shared/tools/datasets.py cifar10 --out data/ --calib 500
    pip install spikingjelly==2.0.0          # benchmark only, never a dependency of onnx2snn
    python tools/benchmark_speed.py --data data/ [--device cuda] [--n 5000] [--batch 500]

In one run, same models, batch and device, images per second for:
  (a) the floor: the ANN in PyTorch (../shared/tools/reference_models.py) on T·B inputs at its
      best batch size, divided by T;
  (b) onnx2snn's SNN for T steps (fp32, and bf16 with its accuracy cost on the same images);
  (c) SpikingJelly 2.0 ann2snn.RateCodingRecipe ("99.9%"), its step loop as in its examples;
  (d) the same model after functional.set_step_mode(model, "m") fed [T, B, ...] (its fastest mode).
Ratios are times relative to the floor (1.00 = the floor; lower is faster).
"""
import argparse
import importlib.util
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import onnx2snn  # noqa: E402
from benchlib import DOCS, machine, write_section  # noqa: E402

DATASET = {"mnist_cnn": "mnist", "cifar_resnet20": "cifar10", "cifar_vgg16": "cifar10"}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, min_seconds=1.0):
    """Seconds per call of fn, after one warm-up call, over at least min_seconds."""
    fn()
    sync(device)
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return elapsed / calls


def peak_reset(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device):
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


@torch.no_grad()
def floor(ann, x, T, batches, device):
    """Best ANN throughput over the batch sizes (images/s), divided by T."""
    best = 0.0
    for b in batches:
        try:
            inp = torch.as_tensor(np.resize(x, (b, *x.shape[1:])), device=device)
            best = max(best, b / timed(lambda: ann(inp), device))
        except torch.OutOfMemoryError:
            break
    return best / T


def spikingjelly_models(ann, calib, device):
    from spikingjelly.activation_based import ann2snn
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(calib), torch.zeros(len(calib))),
                                         batch_size=100)
    converter = ann2snn.FXConverter(recipe=ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%"), device=device)
    return converter.convert(ann).to(device).eval()


@torch.no_grad()
def sj_speed(snn, x, T, batch, device, multi):
    from spikingjelly.activation_based import functional
    functional.set_step_mode(snn, "m" if multi else "s")
    xb = torch.as_tensor(x[:batch], device=device)

    def run():
        functional.reset_net(snn)
        if multi:
            return snn(xb.unsqueeze(0).expand(T, *xb.shape).contiguous()).sum(0)
        out = 0
        for _ in range(T):
            out = out + snn(xb)
        return out
    peak_reset(device)
    return batch / timed(run, device, 0.5), peak_gib(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with {mnist,cifar10}_calib.npy and _test.npz")
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--n", type=int, default=5000, help="test images simulated by onnx2snn")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--steps", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--models", nargs="+", default=list(DATASET))
    ap.add_argument("--long-T", type=int, default=1024, help="VGG-16 memory check at this T (0: skip)")
    ap.add_argument("--dtypes", nargs="+", default=None,
                    help="onnx2snn precisions (default: float32 bfloat16 on CUDA, float32 on CPU)")
    ap.add_argument("--out", default=DOCS)
    a = ap.parse_args()
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtypes = a.dtypes or (["float32", "bfloat16"] if device.type == "cuda" else ["float32"])
    torch.backends.cudnn.benchmark = True
    spec = importlib.util.spec_from_file_location("reference_models", os.path.join(a.shared, "tools", "reference_models.py"))
    refs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refs)
    try:
        import spikingjelly  # noqa: F401
        have_sj = True
    except ImportError:
        have_sj = False

    rows, notes = [], []
    for name in a.models:
        ds = DATASET[name]
        calib = np.load(os.path.join(a.data, f"{ds}_calib.npy"))[:500]
        test = np.load(os.path.join(a.data, f"{ds}_test.npz"))
        x, y = test["x"][:a.n], test["y"][:a.n]
        model_path = os.path.join(a.shared, "models", name + ".onnx")
        ann = refs.load_torch(name, model_path).to(device).eval()
        conv = onnx2snn.convert(model_path, calib)
        sj = spikingjelly_models(refs.load_torch(name, model_path), calib, device) if have_sj else None
        batches = [a.batch, 8 * a.batch, 64 * a.batch] if device.type == "cuda" else [a.batch, 4 * a.batch]
        for T in a.steps:
            fl = floor(ann, x, T, batches, device)
            res = {}
            for dtype in dtypes:
                conv.network.simulate(x[:a.batch], T, y[:a.batch], batch_size=a.batch, device=device, dtype=dtype)  # warm-up
                peak_reset(device)
                sync(device)
                t0 = time.perf_counter()
                r = conv.network.simulate(x, T, y, batch_size=a.batch, device=device, dtype=dtype)
                sync(device)
                res[dtype] = (len(x) / (time.perf_counter() - t0), peak_gib(device), r.accuracy)
            sj_step = sj_speed(sj, x, T, a.batch, device, multi=False) if sj is not None else (float("nan"),) * 2
            sj_multi = sj_speed(sj, x, T, a.batch, device, multi=True) if sj is not None else (float("nan"),) * 2
            rows.append((name, T, fl, res, sj_step, sj_multi))
            print(name, T, f"floor {fl:.0f}/s", {k: f"{v[0]:.0f}/s {v[1]:.2f}GiB acc {v[2]:.4f}" for k, v in res.items()},
                  f"SJ step {sj_step[0]:.0f}/s SJ multi {sj_multi[0]:.0f}/s", flush=True)

    if a.long_T and "cifar_vgg16" in a.models:
        test = np.load(os.path.join(a.data, "cifar10_test.npz"))
        model_path = os.path.join(a.shared, "models", "cifar_vgg16.onnx")
        conv = onnx2snn.convert(model_path, np.load(os.path.join(a.data, "cifar10_calib.npy"))[:500])
        peak_reset(device)
        t0 = time.perf_counter()
        r = conv.network.simulate(test["x"][:a.batch], a.long_T, test["y"][:a.batch], batch_size=a.batch, device=device)
        sync(device)
        notes.append(f"- VGG-16 at T={a.long_T}, batch {a.batch}: ran in {time.perf_counter() - t0:.1f} s, peak memory "
                     f"{peak_gib(device):.2f} GiB (automatic chunking), accuracy on those {a.batch} images {100 * r.accuracy:.2f} %.")
        print(notes[-1])

    def ratio(rate, fl):
        return f"{rate:,.0f} ({fl / rate:.2f}×)" if rate == rate else "—"

    def times(a_, b_):
        return f"{a_ / b_:.2f}×" if a_ == a_ and b_ == b_ else "—"
    lines = [f"Measured {machine(str(device))}; {a.n} test images, batch {a.batch}; SpikingJelly 2.0.0 "
             f"{'installed' if have_sj else 'not installed: its columns are empty'}. Images/s, and in brackets the time "
             "relative to the floor (1.00× = the floor; lower is faster). Peak memory is the GPU's "
             "(torch.cuda.max_memory_allocated).", "",
             "```", f"python tools/benchmark_speed.py --data data/ --device {device.type} --n {a.n} --batch {a.batch}", "```", "",
             "| model | T | (a) floor | (b) onnx2snn fp32 | (b) onnx2snn bf16 | bf16 accuracy cost | (c) SJ step loop | (d) SJ multi-step | (d)/(b) fp32 | (d)/(b) bf16 | peak GiB (b) fp32 / (d) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    nan3 = (float("nan"),) * 3
    for name, T, fl, res, sj_step, sj_multi in rows:
        f32, b16 = res["float32"], res.get("bfloat16", nan3)
        cost = f"{100 * (f32[2] - b16[2]):+.2f} %" if b16[2] == b16[2] else "—"
        lines.append(f"| {name} | {T} | {fl:,.0f} | {ratio(f32[0], fl)} | {ratio(b16[0], fl)} | {cost} | "
                     f"{ratio(sj_step[0], fl)} | {ratio(sj_multi[0], fl)} | {times(f32[0], sj_multi[0])} | {times(b16[0], sj_multi[0])} | "
                     + (f"{f32[1]:.2f} / {sj_multi[1]:.2f} |" if f32[1] == f32[1] else "— |"))
    lines += [""] + notes
    text = "\n".join(lines)
    write_section(f"Simulation speed and memory, {device.type.upper()} (issue 4)", text, a.out)
    print(text)


if __name__ == "__main__":
    main()
