#!/usr/bin/env python3
"""Side-by-side reference: SpikingJelly 2.0.0's transformer conversion recipes on our MNIST ViT.

Not part of onnx2snn and not run by CI: it needs a separate environment with SpikingJelly, which must
not go into the project's .venv. Set that up once (CPU torch, SpikingJelly without its optional heavy
dependencies; a plain `pip install spikingjelly==2.0.0` pulls torchvision/torchaudio, which upgrade
torch to a multi-GB CUDA build, and none of them is used here):

    python3 -m venv /tmp/sjenv
    /tmp/sjenv/bin/pip install torch==2.13.0                 # the CPU build (2.13.0+cpu)
    /tmp/sjenv/bin/pip install --no-deps spikingjelly==2.0.0
    /tmp/sjenv/bin/pip install numpy tqdm 'loguru>=0.7,<1' packaging requests
    /tmp/sjenv/bin/python tools/benchmark_vit_spikingjelly.py     # from the repository root

What it does (torch threads = 1; about 3 CPU minutes on one core):
  1. Loads ViT() from tools/make_vit_models.py with data/vit/vit_mnist.pt (98.60 % on the 1000 test
     images of data/vit/vit_mnist_test.npz) and shows what SpikingJelly says about the model as it is:
     TransformerTDEquivalentRecipe and STATransformerRecipe refuse its hand-written attention (the
     qkv reshape/permute(2, 0, 3, 1, 4) moves the batch axis; STA also has no rule for q @ k^T, and
     needs nn.MultiheadAttention), RateCodingRecipe refuses LayerNorm.
  2. Adapts the model: each Attention becomes nn.MultiheadAttention(64, 4, batch_first=True) called
     with need_weights=False, with in_proj = qkv and out_proj = proj copied over (same packing of
     q|k|v and of heads, same 1/sqrt(16) scale), so the ANN is unchanged (bit-identical logits here).
     TransformerTDEquivalentRecipe converts that but fails at run time on the class token (a constant
     expanded without a time axis); STATransformerRecipe converts and runs.
  3. Measures STATransformerRecipe (Jiang et al., "Spatio-Temporal Approximation", ICLR 2024):
       mode="equivalent"       (the recipe's default; no calibration, no spikes: every op works on the
                               cumulative input and emits differences, so the summed output is the ANN's)
       mode="spiking_encoder"  (the tutorial's recommended setting: threshold_mode="mse",
                               threshold_scale=0.5, T=8; also the recipe's default scale 1.0) calibrated
                               on the 1000 calibration images (batches of 100), never the test set.
     Input protocol as in SpikingJelly's example imagenet_vit_sta.py: the analog image at t=0 and zeros
     at t=1..T-1 ("first real then zero"); readout = sum of the T outputs; argmax. One extra row feeds
     x/T at every step (a rate-style constant input, NOT the recipe's protocol) for comparison.
  Prints a markdown table: T, mode, threshold_scale, input, accuracy, agreement with the ANN, max |logit
  difference|, conversion (+calibration) seconds, evaluation seconds, and for spiking_encoder the share
  of the emitted spike count that falls at t=0 and the largest spike count one neuron emits in one step
  (the encoder emits trunc(membrane / threshold) threshold-sized units per step: a multi-level burst,
  not a 0/1 spike).
"""
import argparse
import contextlib
import copy
import importlib.util
import io
import os
import platform
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_vit_module():
    spec = importlib.util.spec_from_file_location("make_vit_models", os.path.join(HERE, "make_vit_models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class MHAAttention(nn.Module):
    """Our Attention (qkv Linear, 4 heads, softmax(q k^T / sqrt(d)) v, proj Linear) as nn.MultiheadAttention."""

    def __init__(self, src, dim, heads):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        with torch.no_grad():
            self.mha.in_proj_weight.copy_(src.qkv.weight)
            self.mha.in_proj_bias.copy_(src.qkv.bias)
            self.mha.out_proj.weight.copy_(src.proj.weight)
            self.mha.out_proj.bias.copy_(src.proj.bias)

    def forward(self, x):
        out, _ = self.mha(x, x, x, need_weights=False)   # the unpacked (unused) weights output is what
        return out                                       # the step-mode backend expects (as torchvision's)


def adapt(net, dim=64, heads=4):
    ad = copy.deepcopy(net)
    for block in ad.blocks:
        block.attn = MHAAttention(block.attn, dim, heads)
    return ad.eval()


def ann_logits(net, x, batch):
    with torch.no_grad():
        return torch.cat([net(x[i:i + batch]) for i in range(0, len(x), batch)])


def snn_eval(conv, x, T, batch, encoders, input_mode="first"):
    """Run the converted model in multi-step mode; returns (summed logits, activity stats)."""
    from spikingjelly.activation_based import functional
    functional.set_step_mode(conv, "m")
    conv.eval()
    per_t = torch.zeros(T, dtype=torch.float64)        # total |spike count| emitted per time step
    max_count = 0.0
    hooks = []

    def hook(module, _inp, out):
        nonlocal max_count
        n = (out / module.v_threshold).abs()          # integer spike counts (threshold-sized units)
        per_t.add_(n.flatten(1).sum(1).double())
        max_count = max(max_count, float(n.max()))

    for m in encoders:
        hooks.append(m.register_forward_hook(hook))
    outs = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch):
                xb = x[i:i + batch]
                functional.reset_net(conv)
                if input_mode == "first":
                    xs = torch.zeros(T, *xb.shape)
                    xs[0] = xb
                else:                                  # x/T at every step (rate-style constant drive)
                    xs = (xb / T).unsqueeze(0).expand(T, *xb.shape).contiguous()
                outs.append(conv(xs).sum(0))
    finally:
        for h in hooks:
            h.remove()
    total = float(per_t.sum())
    stats = {"t0_share": float(per_t[0]) / total if total else None, "max_count": max_count if encoders else None}
    return torch.cat(outs), stats


def try_convert(label, recipe_fn, model, run=None):
    """Convert (and optionally run) and report the error SpikingJelly raises, if any."""
    from spikingjelly.activation_based.ann2snn import Converter
    try:
        with contextlib.redirect_stderr(io.StringIO()):   # RateCodingRecipe's tqdm bar
            conv = Converter(recipe=recipe_fn()).convert(copy.deepcopy(model))
        if run is not None:
            run(conv)
        print(f"- {label}: converts and runs")
        return True
    except Exception as e:  # noqa: BLE001 - the refusal is the result
        print(f"- {label}: **{type(e).__name__}**: {e}")
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "data", "vit"))
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    from importlib.metadata import version
    from spikingjelly.activation_based.ann2snn import (Converter, RateCodingRecipe, STATransformerRecipe,
                                                       TransformerTDEquivalentRecipe)
    from spikingjelly.activation_based.ann2snn.recipes.sta_transformer import _STASpikeEncoder

    mod = load_vit_module()
    net = mod.ViT()
    net.load_state_dict(torch.load(os.path.join(a.data, "vit_mnist.pt"), map_location="cpu"))
    net.eval()
    calib = torch.from_numpy(np.load(os.path.join(a.data, "vit_mnist_calib.npy")))
    test = np.load(os.path.join(a.data, "vit_mnist_test.npz"))
    x, y = torch.from_numpy(test["x"]), torch.from_numpy(test["y"]).long()
    calib_loader = [calib[i:i + a.batch] for i in range(0, len(calib), a.batch)]

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} thread), spikingjelly {version('spikingjelly')}, python {platform.python_version()}")

    t0 = time.time()
    ref = ann_logits(net, x, a.batch)
    ann_s = time.time() - t0
    ann_acc = (ref.argmax(1) == y).float().mean().item()
    ad = adapt(net)
    ref_ad = ann_logits(ad, x, a.batch)
    print(f"ANN: {100 * ann_acc:.2f} % ({ann_s:.2f} s); nn.MultiheadAttention adapter: "
          f"{100 * (ref_ad.argmax(1) == y).float().mean().item():.2f} %, max |logit diff| "
          f"{(ref - ref_ad).abs().max().item():.2e}")

    print("\nConversion of the model as it is (tools/make_vit_models.py ViT):")
    try_convert("TransformerTDEquivalentRecipe(time_steps=8)", lambda: TransformerTDEquivalentRecipe(time_steps=8), net)
    try_convert("STATransformerRecipe(time_steps=8)", lambda: STATransformerRecipe(time_steps=8), net)
    try_convert("RateCodingRecipe(dataloader=calib)", lambda: RateCodingRecipe(dataloader=calib_loader[:1]), net)
    print("Conversion of the nn.MultiheadAttention adapter:")
    smoke = lambda conv: snn_eval(conv, x[:4], 8, 4, [])  # noqa: E731
    try_convert("TransformerTDEquivalentRecipe(time_steps=8)", lambda: TransformerTDEquivalentRecipe(time_steps=8),
                ad, smoke)
    ok = try_convert("STATransformerRecipe(time_steps=8)", lambda: STATransformerRecipe(time_steps=8), ad, smoke)
    if not ok:
        return

    runs = [("equivalent", 1.0, T, "first") for T in (8, 16, 32)]
    runs += [("spiking_encoder", 0.5, T, "first") for T in (1, 2, 4, 8, 16, 32)]
    runs += [("spiking_encoder", 1.0, T, "first") for T in (8, 16, 32)]
    runs += [("spiking_encoder", 0.5, 8, "x/T each step")]
    rows = []
    for mode, scale, T, inp in runs:
        t0 = time.time()
        recipe = STATransformerRecipe(dataloader=calib_loader if mode != "equivalent" else None, time_steps=T,
                                      mode=mode, threshold_mode="mse", threshold_scale=scale)
        conv = Converter(recipe=recipe, device="cpu").convert(copy.deepcopy(ad))
        conv_s = time.time() - t0
        encoders = [m for m in conv.modules() if isinstance(m, _STASpikeEncoder)]
        t0 = time.time()
        out, st = snn_eval(conv, x, T, a.batch, encoders, "first" if inp == "first" else "rate")
        eval_s = time.time() - t0
        acc = (out.argmax(1) == y).float().mean().item()
        agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
        diff = (out - ref).abs().max().item()
        rows.append((T, mode, scale if mode != "equivalent" else "-", "x at t=0, then 0" if inp == "first" else inp,
                     acc, agree, diff, conv_s, eval_s, st, len(encoders)))
        print(f"  T={T:2d} {mode:15s} scale={scale} input={inp}: {100 * acc:.2f} % ({eval_s:.1f} s)", flush=True)

    print(f"\n### SpikingJelly {version('spikingjelly')} STATransformerRecipe on vit_mnist (1000 test images; "
          f"ANN {100 * ann_acc:.2f} % in {ann_s:.2f} s)\n")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread\n")
    print("| T | mode | threshold_scale | input | accuracy | agrees with ANN | max abs logit diff "
          "| convert+calib s | eval s | spike count at t=0 | max spikes/neuron/step |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for T, mode, scale, inp, acc, agree, diff, conv_s, eval_s, st, n_enc in rows:
        t0share = "-" if st["t0_share"] is None else f"{100 * st['t0_share']:.1f} %"
        maxc = "-" if st["max_count"] is None else f"{st['max_count']:.0f}"
        print(f"| {T} | {mode} | {scale} | {inp} | {100 * acc:.2f} % | {100 * agree:.1f} % | {diff:.3g} "
              f"| {conv_s:.1f} | {eval_s:.1f} | {t0share} | {maxc} |")
    n_enc = rows[-1][-1]
    print(f"\nspiking_encoder inserts {n_enc} spike encoders (after every LayerNorm, GELU and attention output); "
          "Conv2d/Linear/LayerNorm/GELU/attention themselves run in float on cumulative inputs.")


if __name__ == "__main__":
    main()
