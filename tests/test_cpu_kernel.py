"""The CPU fast path (issue 11): the Numba IF kernel gives the torch loop's spikes bit for bit, the
runner uses it, and freed chunk memory is reused instead of page-faulted again."""
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import torch

import graphs
from onnx2snn import Config, convert
from onnx2snn.snn import IFNeuron, RunningMaxPool, cpu_kernel, cpu_memory, kernels
from onnx2snn.snn.pooling import AveragePool2d

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
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_numba_kernel_matches_torch_loop(monkeypatch, v_reset, static, channels_last, dtype):
    assert kernels.available(torch.zeros(1, dtype=dtype)), "the Numba kernel should run on CPU float32 and bfloat16"
    gen = torch.Generator().manual_seed(0)
    z = (torch.rand(37, 3, 5, 6, 7, generator=gen) * 1.5 - 0.2).to(dtype)   # [T, B, C, H, W]
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
    assert 0 < a.float().mean() < 1
    assert a.dtype == dtype and torch.equal(a, b)
    assert torch.equal(fast.v, slow.v)
    assert fast.v.stride() == slow.v.stride()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_whole_simulation_is_the_same_with_and_without_the_kernel(monkeypatch, dtype):
    x = np.random.default_rng(0).uniform(0, 1, size=(40, 1, 8, 8)).astype(np.float32)
    conv = convert(graphs.conv_bn_relu(pool="MaxPool"), x, Config())
    y = np.arange(40) % 5
    calls = []
    for name in ("if_chunk", "if_pool_chunk"):   # the neurons alone, or fused with the max pooling
        original = getattr(cpu_kernel, name)
        monkeypatch.setattr(cpu_kernel, name, lambda *a, f=original: calls.append(1) or f(*a))
    a = conv.network.simulate(x, 30, y, device="cpu", record_rates=True, batch_size=16, chunk=7, dtype=dtype)
    assert calls, "the runner did not use the Numba kernel"
    monkeypatch.setenv("ONNX2SNN_KERNELS", "torch")
    b = conv.network.simulate(x, 30, y, device="cpu", record_rates=True, batch_size=16, chunk=7, dtype=dtype)
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


@pytest.mark.parametrize("v_reset", [None, 0.0])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("window", [(2, 2), (3, 2)])
@pytest.mark.parametrize("pooling", ["average", "running max"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_neurons_fused_with_the_pooling_after_them_give_the_pooled_spikes(v_reset, static, channels_last, window,
                                                                          pooling, dtype):
    """IF neurons then pooling with non-overlapping windows, in one kernel: the same potentials and
    spike count as the neurons alone, and the pooling module's output of their spikes (its state
    carried over chunks too) — rows and columns past the last whole window (7 and 9 here) are
    updated but pooled into nothing."""
    gen = torch.Generator().manual_seed(1)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    steps = [6, 5, 9]
    z = (torch.rand(sum(steps), 3, 4, 7, 9, generator=gen) * 1.2 - 0.1).to(dtype)   # [T, B, C, H, W]
    z = torch.stack([s.contiguous(memory_format=layout) for s in z])
    z = z.as_strided(z.shape, (z[0].numel(), *z[0].stride()))
    if static:
        z = z[0]
    v_init = torch.rand(4, 7, 9, generator=gen) - 0.5
    fused, apart = (IFNeuron(v_threshold=0.8, v_reset=v_reset, v_init_map=v_init) for _ in range(2))
    fused.count_spikes = apart.count_spikes = True
    if pooling == "average":
        pool, reference = (AveragePool2d(4, window, window) for _ in range(2))
        run_reference = lambda s, n: reference(s.flatten(0, 1)).view(n, *s.shape[1:3], *reference(s[0]).shape[2:])
    else:
        pool, reference = (RunningMaxPool(window, window, [0, 0, 0, 0], [1, 1], False) for _ in range(2))
        run_reference = lambda s, n: reference(s, n)
    assert pool.fusable_window == window
    pooled, expected, t = [], [], 0
    for n in steps:
        chunk = z if static else z[t:t + n]
        pooled.append(fused.forward_pooled(chunk, n, static, pool))
        expected.append(run_reference(apart(chunk, n, static), n))
        t += n
    assert all(p is not None for p in pooled), "the fused kernel should run on CPU float32"
    assert all(p[0].is_contiguous(memory_format=layout) for p in pooled), "each step keeps the layout"
    pooled, expected = torch.cat(pooled), torch.cat(expected)
    assert pooled.dtype == dtype and 0 < expected.float().mean() < 1
    # exact, but for one rounding of the 1/6 average (bfloat16: 8 bits of mantissa)
    torch.testing.assert_close(pooled, expected, rtol=0, atol=1e-6 if dtype == torch.float32 else 4e-3)
    assert torch.equal(fused.v, apart.v)
    assert float(fused.spike_count) == float(apart.spike_count) and fused.neuron_steps == apart.neuron_steps
    if pooling == "running max":
        assert torch.equal(pool.count, reference.count) and torch.equal(pool.pooled, reference.pooled)


def test_overlapping_or_padded_max_pooling_is_not_fused():
    assert RunningMaxPool((3, 3), (2, 2), [0, 0, 0, 0], [1, 1], False).fusable_window is None
    assert RunningMaxPool((2, 2), (2, 2), [1, 1, 1, 1], [1, 1], False).fusable_window is None
    assert RunningMaxPool((2, 2), (2, 2), [0, 0, 0, 0], [1, 1], True).fusable_window is None
    assert RunningMaxPool((2,), (2,), [0, 0], [1], False).fusable_window is None
    assert AveragePool2d(3, (3, 3), (2, 2)).fusable_window is None


@pytest.mark.parametrize("poisson", [False, True])
@pytest.mark.parametrize("pool", ["AveragePool", "MaxPool"])
def test_runner_fuses_neurons_with_the_pooling_after_them(monkeypatch, poisson, pool):
    x = np.random.default_rng(0).uniform(0, 1, size=(40, 1, 8, 8)).astype(np.float32)
    conv = convert(graphs.conv_bn_relu(pool=pool), x, Config())
    y = np.arange(40) % 5
    calls = []
    original = cpu_kernel.if_pool_chunk
    monkeypatch.setattr(cpu_kernel, "if_pool_chunk", lambda *a: calls.append(1) or original(*a))
    run = dict(T=30, labels=y, device="cpu", record_rates=True, batch_size=16, chunk=7, poisson=poisson)
    a = conv.network.simulate(x, **run)
    assert calls, "the runner did not fuse the neurons with the pooling"
    conv.network.fuse_pooling = False
    calls.clear()
    b = conv.network.simulate(x, **run)
    assert not calls
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.correct_per_step, b.correct_per_step)
    assert a.firing_rates == b.firing_rates and a.synaptic_ops == b.synaptic_ops


def test_neurons_whose_spikes_are_read_elsewhere_are_not_fused():
    """A pooling is fused into the neurons before it only where nothing else reads their spikes."""
    x = np.random.default_rng(0).uniform(0, 1, size=(20, 1, 8, 8)).astype(np.float32)
    net = convert(graphs.conv_bn_relu(pool="AveragePool"), x, Config()).network
    pooled = [(net.steps[i].op, net.steps[i + 1].op) for i in net._read_only_by_next]
    assert ("IF", "AveragePool") in pooled
    neuron = next(i for i, s in enumerate(net.steps) if s.op == "IF")
    net.steps.append(type(net.steps[0])("reader", "Identity", [net.steps[neuron].output], "spikes_copy"))
    net.layers.append(torch.nn.Identity())
    rebuilt = type(net)(net.steps, list(net.layers), net.input_name, net.output_name, net.elements_per_sample)
    assert neuron not in rebuilt._read_only_by_next


def test_bias_calibration_fuses_the_pooling_and_finds_the_same_shifts(monkeypatch):
    """The bias calibration's stand-in for the neurons runs its kept shift through the fused kernel
    too; the shifts, rate errors and readout agreement are those of the torch path."""
    x = np.random.default_rng(3).uniform(0, 1, size=(120, 1, 8, 8)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T = 16
    calls = []
    original = cpu_kernel.if_pool_chunk
    monkeypatch.setattr(cpu_kernel, "if_pool_chunk", lambda *a: calls.append(a[1].shape[0]) or original(*a))
    fused = convert(graphs.conv_bn_relu(pool="AveragePool"), x, cfg).calibration
    assert fused.fit_images in calls, "the bias calibration's run (all fit images, one batch) did not use the fused kernel"
    monkeypatch.setenv("ONNX2SNN_KERNELS", "torch")
    reference = convert(graphs.conv_bn_relu(pool="AveragePool"), x, cfg).calibration
    assert fused.offsets.keys() == reference.offsets.keys() and fused.offsets
    for layer, shift in fused.offsets.items():
        np.testing.assert_array_equal(shift, reference.offsets[layer])
    assert fused.rate_error == reference.rate_error
    assert fused.readout_agreement == reference.readout_agreement


def test_a_second_process_loads_the_kernels_from_numbas_cache(tmp_path):
    """Numba caches the compiled kernels: a later process loads them (about 0.2 s) instead of
    compiling them again (about 2 s a kernel; a jitted closure calling another once missed the
    cache in every process)."""
    script = (
        "import torch\n"
        "from onnx2snn.snn import cpu_kernel\n"
        "assert cpu_kernel._load()\n"
        "from onnx2snn.snn import numba_kernels as nk\n"
        "z, v = torch.rand(2, 3, 6, 6), torch.zeros(2, 3, 6, 6)\n"
        "out = torch.empty(3, 2, 3, 6, 6)\n"
        "cpu_kernel.if_chunk(z, v, out, 3, True, 1.0, None)\n"
        "cpu_kernel.if_pool_chunk(z, v, 3, True, 1.0, None, (2, 2), True)\n"
        "print(sum(k.stats.cache_misses.total() for k in (nk.if_kernel, nk.if_pool_kernel)),\n"
        "      sum(k.stats.cache_hits.total() for k in (nk.if_kernel, nk.if_pool_kernel)))\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    first, second = (tuple(map(int, r.stdout.split())) for r in runs)
    assert first[0] == 2, first          # the first process compiled both kernels
    assert second == (0, 2), second      # the second loaded both from the cache


def test_trial_shifts_added_in_the_kernel_give_the_torch_paths_calibration(monkeypatch):
    """The bias calibration's trial shifts: added by the kernel as it goes (no shifted copy of the
    currents) on a residual network whose deeper neurons get a new current every step — the same
    shifts as the torch path, which adds them to the currents; no neuron keeps a shift afterwards."""
    from patterns import PATTERNS
    m, shape = PATTERNS["residual_blocks"]()
    x = np.random.default_rng(5).uniform(0, 1, size=(60, *shape)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T = 8
    from onnx2snn import snn_calibration
    shifted, calibrated = [], []
    original = cpu_kernel.if_chunk
    monkeypatch.setattr(cpu_kernel, "if_chunk", lambda *a: shifted.append(a[-1] is not None) or original(*a))
    calibrate = snn_calibration.calibrate_biases
    monkeypatch.setattr(snn_calibration, "calibrate_biases",
                        lambda network, *a, **k: (calibrated.append(network), calibrate(network, *a, **k))[1])
    conv = convert(m, x, cfg)
    assert any(shifted), "no trial shift was added in the kernel"
    assert calibrated and all(n.input_shift is None for n in calibrated[0].neuron_layers().values())
    monkeypatch.setenv("ONNX2SNN_KERNELS", "torch")
    reference = convert(m, x, cfg).calibration
    assert conv.calibration.offsets.keys() == reference.offsets.keys()
    for layer, shift in conv.calibration.offsets.items():
        np.testing.assert_array_equal(shift, reference.offsets[layer])
    assert conv.calibration.rate_error == reference.rate_error


def test_a_network_without_this_versions_attributes_still_simulates():
    """A network pickled by 0.3.0 lacks the fusion's attributes: it runs unfused, with the same outputs."""
    x = np.random.default_rng(4).uniform(0, 1, size=(20, 1, 8, 8)).astype(np.float32)
    net = convert(graphs.conv_bn_relu(pool="AveragePool"), x, Config()).network
    fused = net.simulate(x, 12, device="cpu")
    del net._read_only_by_next, net.fuse_pooling
    for neuron in net.neuron_layers().values():
        del neuron.input_shift
    np.testing.assert_array_equal(net.simulate(x, 12, device="cpu").outputs, fused.outputs)
