#!/usr/bin/env python3
"""Simulation speed against two floors, and the whole command-line run (issues 4 and 11); writes docs/BENCHMARKS.md.

    python ../shared/tools/datasets.py mnist --out data/ --calib 1000
    python ../shared/tools/datasets.py cifar10 --out data/ --calib 1000
    pip install spikingjelly==2.0.0          # optional, benchmark only, never a dependency of onnx2snn
    python tools/benchmark_speed.py --data data/ --device cpu --cli-run
    python tools/benchmark_speed.py --data data/ --device cuda

In one run, same images, batch and device, seconds for:
  (a) the onnxruntime floor: the original ANN in onnxruntime (the engine a user would otherwise run;
      CPU execution provider, CUDA's where the device is CUDA and onnxruntime-gpu is installed), one
      pass over the images, times T;
  (b) the dense floor: the convolutions and linear layers the SNN simulation itself calls, replayed
      on binary inputs of the same shapes and memory layout (fp32), without the neurons — what a
      dense simulator cannot go below (work done once per sample, such as the first layer on a
      constant input current, is not in it, as the runner does it once);
  (c) onnx2snn's simulation for T steps (fp32 and bf16; the floors stay fp32);
  (d) SpikingJelly 2.0's converted model in its multi-step mode, if installed.
Each is measured twice, interleaved, and the faster run kept (the machine is shared and noisy).
With --cli-run: the whole ``onnx2snn MODEL CALIB --eval … -T 128`` run on the MNIST example's 1000
test images (import, conversion with calibration for T, ANN evaluation, simulation), against (a).
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import onnx2snn  # noqa: E402
from onnx2snn.snn.synops import weighted_layer  # noqa: E402
from benchlib import DOCS, machine, write_section  # noqa: E402

DATASET = {"mnist_cnn": "mnist", "cifar_resnet20": "cifar10", "cifar_vgg16": "cifar10"}
IMAGES = {"mnist_cnn": 1000, "cifar_resnet20": 300, "cifar_vgg16": 200}   # per model, unless --n
REPEATS = 2


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_of(fn, device, repeats=REPEATS):
    """Fastest of ``repeats`` timed calls (seconds)."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def ort_session(path, device):
    import onnxruntime as ort
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(path, providers=providers)
    return session, session.get_providers()[0]


def ort_pass(session, x, batch):
    """One pass of the ANN over ``x`` in onnxruntime."""
    name = session.get_inputs()[0].name
    def run():
        for start in range(0, len(x), batch):
            session.run(None, {name: x[start:start + batch]})
    return run


def dense_replay(network, x, T, batch, device):
    """The weighted layers' calls of one simulation, recorded (input shape, layout) and returned as
    a function that replays them on binary inputs: floor (b)."""
    calls, hooks = [], []
    for module in network.layers:
        layer = weighted_layer(module)
        if layer is not None:
            hooks.append(module.register_forward_hook(
                lambda mod, args, out: calls.append((mod, tuple(args[0].shape), args[0].stride()))))
    network.simulate(x, T, batch_size=batch, device=device)
    for h in hooks:
        h.remove()
    network.to(device)
    for m in network.modules():   # the layout simulate() gives them (it puts them back afterwards)
        if isinstance(m, torch.nn.Conv2d):
            m.to(memory_format=torch.channels_last)
    # One binary input per shape and layout: spike rates of about 10 %, as in the simulation.
    inputs = {}
    for _, shape, stride in calls:
        if (shape, stride) not in inputs:
            inputs[(shape, stride)] = torch.empty_strided(shape, stride, device=device).bernoulli_(0.1)

    @torch.no_grad()
    def run():
        for module, shape, stride in calls:
            module(inputs[(shape, stride)])
    return run, len(calls)


def spikingjelly_model(refs, name, path, calib, device):
    from spikingjelly.activation_based import ann2snn
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(calib), torch.zeros(len(calib))),
                                         batch_size=100)
    converter = ann2snn.FXConverter(recipe=ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%"), device=device)
    return converter.convert(refs.load_torch(name, path)).to(device).eval()


def sj_run(snn, x, T, batch, device):
    from spikingjelly.activation_based import functional
    functional.set_step_mode(snn, "m")

    @torch.no_grad()
    def run():
        for start in range(0, len(x), batch):
            xb = torch.as_tensor(x[start:start + batch], device=device)
            functional.reset_net(snn)
            snn(xb.unsqueeze(0).expand(T, *xb.shape).contiguous()).sum(0)
    return run


def cli_run(shared, data, T, device):
    """Wall time of the whole command-line run on 1000 MNIST test images, default options and with
    no calibration for T (the seed's thresholds, membrane readout), against T onnxruntime passes."""
    model, calib = os.path.join(shared, "models", "mnist_cnn.onnx"), os.path.join(data, "mnist_calib.npy")
    test = np.load(os.path.join(data, "mnist_test.npz"))
    x, y = test["x"][:1000], test["y"][:1000]
    session, provider = ort_session(model, device)
    floor = best_of(ort_pass(session, x, 100), device, 3) * T
    exe = [sys.executable, "-m", "onnx2snn"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(os.path.join(tmp, "test.npz"), x=x, y=y)
        variants = [("default (calibrated for T)", []),
                    ("no calibration for T (--threshold statistic --no-bias-calibration --output membrane)",
                     ["--threshold", "statistic", "--no-bias-calibration", "--output", "membrane"])]
        for label, extra in variants:
            best = None
            for r in range(REPEATS):
                out = os.path.join(tmp, f"out{len(rows)}_{r}")
                t0 = time.perf_counter()
                subprocess.run(exe + [model, calib, "--eval", os.path.join(tmp, "test.npz"), "-T", str(T),
                                      "--device", device.type, "-o", out] + extra,
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wall = time.perf_counter() - t0
                report = json.load(open(os.path.join(out, "report.json")))
                if best is None or wall < best[0]:
                    best = (wall, report["timings_s"], report["snn_accuracy"])
            rows.append((label, *best))
            print(label, f"{best[0]:.1f} s", flush=True)
    t0 = time.perf_counter()
    subprocess.run(exe + ["--help"], check=True, stdout=subprocess.DEVNULL)
    help_s = time.perf_counter() - t0
    lines = [f"The whole run, `onnx2snn models/mnist_cnn.onnx mnist_calib.npy --eval (1000 MNIST test images) "
             f"-T {T} --device {device.type}`, wall clock (best of {REPEATS}), against {T} passes of the ANN in "
             f"onnxruntime ({provider}, batch 100) over the same 1000 images: **{floor:.2f} s**. "
             f"`onnx2snn --help` takes {help_s:.2f} s (torch and onnxruntime are imported only when a run needs them).", "",
             "| options | whole run (s) | × onnxruntime floor | conversion (s) | of which calibration for T (s) | "
             "ANN evaluation (s) | SNN simulation (s) | SNN accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for label, wall, t, acc in rows:
        lines.append(f"| {label} | {wall:.1f} | {wall / floor:.2f}× | {t['total']:.1f} | {t.get('snn_calibration', 0):.1f} | "
                     f"{t['ann_eval']:.2f} | {t['snn_simulation']:.1f} | {100 * acc:.2f} % |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with {mnist,cifar10}_calib.npy and _test.npz")
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--n", type=int, help=f"test images per model (default {IMAGES})")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--models", nargs="+", default=list(DATASET))
    ap.add_argument("--dtypes", nargs="+", default=None,
                    help="onnx2snn precisions (default: float32 bfloat16)")
    ap.add_argument("--cli-run", action="store_true", help="also time the whole command-line run on MNIST (T=128)")
    ap.add_argument("--out", default=DOCS)
    a = ap.parse_args()
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtypes = a.dtypes or ["float32", "bfloat16"]
    torch.backends.cudnn.benchmark = True
    spec = importlib.util.spec_from_file_location("reference_models", os.path.join(a.shared, "tools", "reference_models.py"))
    refs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refs)
    have_sj = importlib.util.find_spec("spikingjelly") is not None

    rows = []
    for name in a.models:
        ds, n = DATASET[name], a.n or IMAGES[name]
        calib = np.load(os.path.join(a.data, f"{ds}_calib.npy"))[:1000]
        test = np.load(os.path.join(a.data, f"{ds}_test.npz"))
        x, y = test["x"][:n], test["y"][:n]
        path = os.path.join(a.shared, "models", name + ".onnx")
        session, provider = ort_session(path, device)
        sj = spikingjelly_model(refs, name, path, calib[:500], device) if have_sj else None
        for T in a.steps:
            config = onnx2snn.Config()
            config.simulation.T = T
            network = onnx2snn.convert(path, calib, config).network
            ort_s = best_of(ort_pass(session, x, a.batch), device) * T
            replay, n_calls = dense_replay(network, x, T, a.batch, device)
            dense_s = best_of(replay, device)
            res = {}
            for dtype in dtypes:
                network.simulate(x[:a.batch], T, y[:a.batch], batch_size=a.batch, device=device, dtype=dtype)  # warm-up
                accuracy = []
                s = best_of(lambda: accuracy.append(network.simulate(x, T, y, batch_size=a.batch, device=device,
                                                                    dtype=dtype).accuracy), device)
                res[dtype] = (s, accuracy[-1])
            sj_s = best_of(sj_run(sj, x, T, a.batch, device), device) if sj is not None else float("nan")
            rows.append((name, T, n, provider, ort_s, dense_s, n_calls, res, sj_s))
            print(name, T, f"ORT {ort_s:.2f}s dense {dense_s:.2f}s", {k: f"{v[0]:.2f}s acc {v[1]:.4f}" for k, v in res.items()},
                  f"SJ {sj_s:.2f}s", flush=True)

    def cell(seconds, ort_s, dense_s):
        return f"{seconds:.2f} ({seconds / ort_s:.2f}× / {seconds / dense_s:.2f}×)" if seconds == seconds else "—"

    command = (f"python tools/benchmark_speed.py --data data/ --device {device.type} --batch {a.batch} "
               f"--steps {' '.join(map(str, a.steps))} --models {' '.join(a.models)}"
               + (f" --n {a.n}" if a.n else "") + (" --cli-run" if a.cli_run else ""))
    lines = [f"Measured {machine(str(device))}, onnx2snn {onnx2snn.__version__}; batch {a.batch}; SpikingJelly 2.0.0 "
             f"{'installed' if have_sj else 'not installed: its column is empty'}. Seconds for the whole test subset "
             "(best of two interleaved runs), and in brackets the time relative to floor (a) / floor (b): "
             "1.00× = the floor, lower is faster.", "",
             "```", command, "```", "",
             "| model | T | images | (a) onnxruntime, T passes | (b) dense layers the SNN calls | (c) onnx2snn fp32 | "
             "(c) onnx2snn bf16 | bf16 accuracy cost | (d) SpikingJelly multi-step |",
             "|---|---|---|---|---|---|---|---|---|"]
    nan2 = (float("nan"), float("nan"))
    for name, T, n, provider, ort_s, dense_s, n_calls, res, sj_s in rows:
        f32, b16 = res["float32"], res.get("bfloat16", nan2)
        cost = f"{100 * (f32[1] - b16[1]):+.2f} %" if b16[1] == b16[1] else "—"
        lines.append(f"| {name} | {T} | {n} | {ort_s:.2f} ({provider.replace('ExecutionProvider', '')}) | "
                     f"{dense_s:.2f} ({n_calls} calls) | {cell(f32[0], ort_s, dense_s)} | {cell(b16[0], ort_s, dense_s)} | "
                     f"{cost} | {cell(sj_s, ort_s, dense_s)} |")
    if a.cli_run:
        lines += [""] + cli_run(a.shared, a.data, 128, device)
    text = "\n".join(lines)
    write_section(f"Simulation speed, {device.type.upper()} (issues 4 and 11)", text, a.out)
    print(text)


if __name__ == "__main__":
    main()
