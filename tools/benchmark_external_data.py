#!/usr/bin/env python3
"""A model above protobuf's 2 GiB limit (issue 10): a synthetic wide MLP written with external data,
converted and written as ``.snn.onnx`` + ``.snn.onnx.data``, read back; wall time and peak memory;
writes a section of docs/BENCHMARKS.md.

    nice -n 19 python tools/benchmark_external_data.py                     # 16384 -> 16384 -> 16384 -> 10: 2.0 GiB
    nice -n 19 python tools/benchmark_external_data.py --width 4096 --limit 33554432 --no-docs   # a quick trial

The MLP's weights are written straight to its data file, one layer at a time, so building it holds one
layer in memory. The conversion is the seed's (statistic thresholds, no SNN calibration: no SNN is
simulated) on a small random calibration array.
"""
import argparse
import gc
import os
import resource
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import onnx2snn  # noqa: E402
from onnx2snn.graph import external  # noqa: E402
from benchlib import DOCS, machine, write_section  # noqa: E402


def write_mlp(path: str, sizes, seed: int = 0) -> int:
    """Gemm + Relu layers ``sizes[0] -> … -> sizes[-1]`` (the last without Relu), every weight and
    bias in ``<path>.data``; returns the data's size in bytes."""
    rng = np.random.default_rng(seed)
    location = os.path.basename(path) + ".data"
    nodes, inits, prev = [], [], "x"
    with open(path + ".data", "wb") as f:
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
            for name, shape, scale in ((f"w{i}", (n_out, n_in), 1 / np.sqrt(n_in)), (f"b{i}", (n_out,), 0.1)):
                values = rng.standard_normal(shape, dtype=np.float32)
                values *= scale
                tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape,
                                     data_location=TensorProto.EXTERNAL)
                for key, value in (("location", location), ("offset", f.tell()), ("length", values.nbytes)):
                    tensor.external_data.add(key=key, value=str(value))
                values.tofile(f)
                inits.append(tensor)
                del values
            last = i == len(sizes) - 1
            out = "y" if last else f"g{i}"
            nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out], name=f"fc{i}", transB=1))
            if not last:
                nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
                prev = f"r{i}"
        size = f.tell()
    g = helper.make_graph(nodes, "wide_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", sizes[-1]])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, path)
    return size


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # Linux: KiB


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=16384, help="input and hidden width (default 16384)")
    ap.add_argument("--hidden", type=int, default=2, help="hidden layers (default 2)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--samples", type=int, default=64, help="calibration samples (default 64)")
    ap.add_argument("--limit", type=int, default=None, help="lower external.PROTO_LIMIT to this many bytes (a quick trial)")
    ap.add_argument("--work", default=None, help="folder for the model files (default: a temporary one)")
    ap.add_argument("--out", default=DOCS)
    ap.add_argument("--no-docs", action="store_true", help="print, do not write docs/BENCHMARKS.md")
    a = ap.parse_args()
    if a.limit:
        external.PROTO_LIMIT = a.limit
    sizes = [a.width] * (a.hidden + 1) + [a.classes]
    cfg = onnx2snn.Config()
    for key, value in (("parser.threshold", "statistic"), ("calibration.bias", False), ("simulation.output", "spikes")):
        cfg.set(key, value)
    x = np.random.default_rng(1).uniform(0, 1, (a.samples, a.width)).astype(np.float32)

    with tempfile.TemporaryDirectory(prefix="onnx2snn-bench-", dir=a.work) as work:
        path = os.path.join(work, "wide_mlp.onnx")
        t = time.perf_counter()
        size = write_mlp(path, sizes)
        t_build, peak_build = time.perf_counter() - t, peak_gib()
        print(f"wrote {path} + .data: {size / 2**30:.3f} GiB in {t_build:.1f} s (peak {peak_build:.2f} GiB)", flush=True)
        t = time.perf_counter()
        conv = onnx2snn.convert(path, x, cfg)
        t_convert, peak_convert = time.perf_counter() - t, peak_gib()
        assert external.too_big(conv.snn_model), "the converted model is not above the limit"
        print(f"converted in {t_convert:.1f} s (peak {peak_convert:.2f} GiB): {conv.timings}", flush=True)
        out = os.path.join(work, "wide_mlp.snn.onnx")
        t = time.perf_counter()
        data = conv.save(out)
        t_save = time.perf_counter() - t
        written = os.path.getsize(out) + os.path.getsize(data)
        print(f"saved {written / 2**30:.3f} GiB in {t_save:.1f} s", flush=True)
        reference, tm = conv.network.simulate(x[:4], 4, device="cpu").outputs, conv.timings
        del conv              # its three copies of the weights (source, SNN graph, network): load() makes its own
        gc.collect()
        t = time.perf_counter()
        net = onnx2snn.load(out)
        t_load = time.perf_counter() - t
        same = np.array_equal(net.simulate(x[:4], 4, device="cpu").outputs, reference)
        peak = peak_gib()
        print(f"loaded in {t_load:.1f} s; same outputs as the converted network: {same}; peak {peak:.2f} GiB", flush=True)

    limit = "" if not a.limit else f" --limit {a.limit}"
    text = "\n".join([
        f"Measured {machine('cpu')}, onnx2snn {onnx2snn.__version__}, with `nice -n 19` beside another benchmark. "
        f"A synthetic MLP {' → '.join(map(str, sizes))} (Gemm + ReLU, float32, {size / 2**30:.3f} GiB of weights in "
        f"external data, above protobuf's 2 GiB), the seed's conversion (statistic thresholds, no SNN calibration) on "
        f"{a.samples} random calibration samples, then written (`wide_mlp.snn.onnx` + `wide_mlp.snn.onnx.data`) and "
        "read back with `onnx2snn.load`. Peak memory: the process's maximum resident set.", "",
        "```", f"nice -n 19 python tools/benchmark_external_data.py --width {a.width} --hidden {a.hidden} "
        f"--samples {a.samples}{limit}", "```", "",
        "| step | wall time (s) | peak memory so far (GiB) |", "|---|---|---|",
        f"| write the model (one layer in memory at a time) | {t_build:.1f} | {peak_build:.2f} |",
        f"| `convert` (load {tm['load']:.1f} s, graph passes {tm['clean']:.1f} s, statistics {tm['calibrate']:.1f} s, "
        f"normalise + verify {tm['normalise'] + tm['verify']:.1f} s) | {t_convert:.1f} | {peak_convert:.2f} |",
        f"| `Conversion.save` ({written / 2**30:.3f} GiB) | {t_save:.1f} | — |",
        f"| `onnx2snn.load` (outputs identical to the converted network's: {'yes' if same else 'NO'}) "
        f"| {t_load:.1f} | {peak:.2f} |",
    ])
    print(text)
    if not a.no_docs:
        write_section("Models above 2 GiB, external data (issue 10)", text, a.out)


if __name__ == "__main__":
    main()
