"""The CPU fast path (issue 11): the Numba IF kernel gives the torch loop's spikes bit for bit, the
runner uses it, and freed chunk memory is reused instead of page-faulted again."""
import resource
import sys

import numpy as np
import pytest
import torch

import graphs
from onnx2snn import Config, convert
from onnx2snn.snn import IFNeuron, cpu_kernel, cpu_memory, kernels

pytest.importorskip("numba")


def run_chunks(neuron, z, chunks, static):
    out, t = [], 0
    for steps in chunks:
        out.append(neuron(z if static else z[t:t + steps], steps, static))
        t += steps
    return torch.cat(out)


@pytest.mark.parametrize("v_reset", [None, 0.0, 0.25])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_numba_kernel_matches_torch_loop(monkeypatch, v_reset, static, channels_last):
    assert kernels.available(torch.zeros(1)), "the Numba kernel should run on CPU float32"
    gen = torch.Generator().manual_seed(0)
    z = torch.rand(37, 3, 5, 6, 7, generator=gen) * 1.5 - 0.2   # [T, B, C, H, W]
    if static:
        z = z[0]
    if channels_last:   # NHWC currents: the spikes keep the layout, the kernel indexes memory flat
        z = z.contiguous(memory_format=torch.channels_last) if static else \
            torch.stack([s.contiguous(memory_format=torch.channels_last) for s in z])
        z = z if static else z.as_strided(z.shape, (z[0].numel(), *z[0].stride()))
    chunks = [20, 17]
    v_init = torch.rand(5, 6, 7, generator=gen) - 0.5
    fast = IFNeuron(v_threshold=0.9, v_reset=v_reset, v_init_map=v_init)
    a = run_chunks(fast, z, chunks, static)
    monkeypatch.setenv("ONNX2SNN_KERNELS", "torch")
    assert not kernels.available(torch.zeros(1))
    slow = IFNeuron(v_threshold=0.9, v_reset=v_reset, v_init_map=v_init)
    b = run_chunks(slow, z, chunks, static)
    assert 0 < a.mean() < 1
    assert torch.equal(a, b)
    assert torch.equal(fast.v, slow.v)
    assert fast.v.stride() == slow.v.stride()


def test_whole_simulation_is_the_same_with_and_without_the_kernel(monkeypatch):
    x = np.random.default_rng(0).uniform(0, 1, size=(40, 1, 8, 8)).astype(np.float32)
    conv = convert(graphs.conv_bn_relu(pool="MaxPool"), x, Config())
    y = np.arange(40) % 5
    calls = []
    original = cpu_kernel.if_chunk
    monkeypatch.setattr(cpu_kernel, "if_chunk", lambda *a: calls.append(1) or original(*a))
    a = conv.network.simulate(x, 30, y, device="cpu", record_rates=True, batch_size=16, chunk=7)
    assert calls, "the runner did not use the Numba kernel"
    monkeypatch.setenv("ONNX2SNN_KERNELS", "torch")
    b = conv.network.simulate(x, 30, y, device="cpu", record_rates=True, batch_size=16, chunk=7)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.correct_per_step, b.correct_per_step)
    assert a.firing_rates == b.firing_rates


@pytest.mark.skipif(not sys.platform.startswith("linux") or cpu_memory._LIBC is None, reason="glibc only")
def test_freed_chunk_memory_is_reused_not_page_faulted():
    def faults(size, repeats=16):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(repeats):
            t = torch.empty(size, dtype=torch.uint8)
            t.fill_(1)     # touch every page
            del t
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    pages = (64 << 20) // resource.getpagesize()
    outside = faults(64 << 20)
    if outside < 8 * pages:
        pytest.skip("this process's malloc already keeps freed memory (e.g. MALLOC_MMAP_MAX_ set)")
    with cpu_memory.keep_freed_memory():
        with cpu_memory.keep_freed_memory():   # nested uses are fine
            inside = faults(64 << 20)
    assert inside < outside / 2, (inside, outside)   # most blocks reuse freed memory (how many: heap layout)
    # Whether glibc maps fresh pages again after the block depends on the heap's layout (a freed
    # block below a live allocation is reused), so the restored settings are not asserted here.
