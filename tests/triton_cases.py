"""The CUDA kernels of ``snn/triton_kernels.py`` against the torch path, on CPU tensors: run by
``test_triton_interpreter.py`` in a process of its own with ``TRITON_INTERPRET=1`` (Triton's
interpreter executes the kernels with numpy) and ``ONNX2SNN_KERNELS=torch`` (the reference path).
Prints one line per failed case and exits non-zero if any failed."""
import itertools
import sys

import torch

from onnx2snn.snn import GatedMaxPool, IFNeuron, RunningMaxPool
from onnx2snn.snn import triton_kernels
from onnx2snn.snn.cpu_kernel import pool_layout
from onnx2snn.snn.pooling import AveragePool2d

STEPS = [5, 4, 6]   # chunks: the state is carried from one to the next


def currents(static, layout, dtype, shape=(2, 3, 6, 6), seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = (torch.rand(sum(STEPS), *shape, generator=gen) * 1.2 - 0.1).to(dtype)   # [T, B, C, H, W]
    z = torch.stack([s.contiguous(memory_format=layout) for s in z])
    z = z.as_strided(z.shape, (z[0].numel(), *z[0].stride()))
    return z[0] if static else z


def chunks(z, static):
    """Each chunk's currents in memory of their own (the interpreter copies a tensor's storage from
    its start: a view into the middle of a larger one would not survive the trip)."""
    t = 0
    for n in STEPS:
        chunk = z if static else z[t:t + n]
        yield torch.empty_like(chunk).copy_(chunk), n    # empty_like keeps a dense tensor's strides
        t += n


def pooling(rule, window, momentum=None):
    if rule == "average":
        return AveragePool2d(3, window, window)
    if rule == "running max":
        return RunningMaxPool(window, window, [0, 0, 0, 0], [1, 1], False)
    return GatedMaxPool(window, window, [0, 0, 0, 0], [1, 1], False, momentum=momentum)


def run_reference(pool, spikes, n):
    if isinstance(pool, AveragePool2d):
        out = pool(spikes.flatten(0, 1))
        return out.view(n, spikes.shape[1], *out.shape[1:])
    return pool(spikes, n)


def check_plain(static, layout, dtype, v_reset):
    z = currents(static, layout, dtype)
    ref, fused = IFNeuron(0.8, v_reset, v_init=0.3), IFNeuron(0.8, v_reset, v_init=0.3)
    a, b = [], []
    for chunk, n in chunks(z, static):
        a.append(ref(chunk, n, static))
        fused._start(chunk, static)
        v = fused.v
        out = torch.empty(n * v.numel(), dtype=chunk.dtype).as_strided((n, *v.shape), (v.numel(), *v.stride()))
        triton_kernels.if_chunk(chunk, v, out, n, static, 0.8, v_reset)
        b.append(out)
    return torch.equal(torch.cat(a), torch.cat(b)) and torch.equal(ref.v, fused.v)


def check_pooled(rule, window, static, layout, dtype, v_reset, momentum):
    z = currents(static, layout, dtype)
    ref, fused = IFNeuron(0.8, v_reset, v_init=0.3), IFNeuron(0.8, v_reset, v_init=0.3)
    ref_pool, pool = pooling(rule, window, momentum), pooling(rule, window, momentum)
    expected, got, fired = [], [], 0.0
    for chunk, n in chunks(z, static):
        spikes = ref(chunk, n, static)
        expected.append(run_reference(ref_pool, spikes, n))
        fused._start(chunk, static)
        counts, best = pool.fused_state(fused.v)
        out, total = triton_kernels.if_pool_chunk(chunk, fused.v, n, static, 0.8, v_reset, window,
                                                  pool_layout(fused.v), rule, counts, best, momentum, count=True)
        if not out[0].is_contiguous(memory_format=layout) or out.dtype != dtype:
            return False
        got.append(out)
        fired += float(total)
        expected_fired = float(spikes.float().sum())
        if float(total) != expected_fired:
            return False
    expected, got = torch.cat(expected), torch.cat(got)
    if rule == "average":   # exact but for one rounding of a 1/6 average (bfloat16: 8 bits of mantissa)
        ok = torch.allclose(expected.float(), got.float(), rtol=0, atol=1e-6 if dtype == torch.float32 else 4e-3)
    else:
        ok = torch.equal(expected, got)
    ok = ok and torch.equal(ref.v, fused.v)
    if rule != "average":
        ok = ok and torch.equal(ref_pool.count, pool.count)
    if rule == "running max":
        ok = ok and torch.equal(ref_pool.pooled, pool.pooled)
    return ok


def main():
    failed, cases = [], 0
    layouts = [torch.contiguous_format, torch.channels_last]
    # float32 only: the interpreter (Triton 3.9) cannot load bfloat16 ("cannot reshape array of size
    # 256 into shape (1024,)"); the bfloat16 paths are checked on a GPU (tests/test_cuda.py)
    for static, layout, dtype, v_reset in itertools.product([False, True], layouts, [torch.float32], [None, 0.0]):
        cases += 1
        if not check_plain(static, layout, dtype, v_reset):
            failed.append(("plain", static, layout, dtype, v_reset))
        for rule, window, momentum in [("average", (2, 2), None), ("average", (3, 2), None),
                                       ("running max", (2, 2), None), ("running max", (3, 2), None),
                                       ("gate", (2, 2), None), ("gate", (3, 2), None), ("gate", (2, 2), 0.7)]:
            cases += 1
            if not check_pooled(rule, window, static, layout, dtype, v_reset, momentum):
                failed.append((rule, window, momentum, static, layout, dtype, v_reset))
    for case in failed:
        print("FAILED", *case)
    print(f"{cases - len(failed)} of {cases} cases agree with the torch path")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
