"""GPU paths (the Triton IF kernel, CUDA simulation, bf16): run where CUDA is available, skipped
elsewhere. The CPU paths they must agree with are tested everywhere."""
import numpy as np
import pytest
import torch

import graphs
from onnx2snn import Config, convert
from onnx2snn.snn import IFNeuron
from onnx2snn.snn import kernels

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
@pytest.mark.parametrize("v_reset", [None, 0.0, 0.25])
@pytest.mark.parametrize("static", [False, True])
def test_triton_if_kernel_matches_torch_loop(v_reset, static):
    assert kernels.available(torch.zeros(1, device="cuda")), "Triton should be used on CUDA"
    z = torch.rand(37, 3, 50) * 1.5 - 0.2
    if static:
        z = z[0]
    cpu, gpu = IFNeuron(v_reset=v_reset, v_init=0.5), IFNeuron(v_reset=v_reset, v_init=0.5)
    a = torch.cat([cpu(z[:20] if not static else z, 20, static), cpu(z[20:] if not static else z, 17, static)])
    zc = z.cuda()
    b = torch.cat([gpu(zc[:20] if not static else zc, 20, static), gpu(zc[20:] if not static else zc, 17, static)])
    assert torch.equal(a, b.cpu())
    torch.testing.assert_close(cpu.v, gpu.v.cpu())


@cuda
def test_cuda_simulation_matches_cpu():
    x = np.random.default_rng(0).uniform(0, 1, size=(30, 1, 8, 8)).astype(np.float32)
    conv = convert(graphs.conv_bn_relu(pool="MaxPool"), x, Config())
    y = np.arange(30) % 5
    a = conv.network.simulate(x, 50, y, device="cpu", record_rates=True)
    b = conv.network.simulate(x, 50, y, device="cuda", record_rates=True)
    np.testing.assert_allclose(a.outputs, b.outputs, atol=1e-3)
    assert a.firing_rates == pytest.approx(b.firing_rates, abs=1e-3)


@cuda
def test_bfloat16_spikes_stay_binary():
    x = np.random.default_rng(1).uniform(0, 1, size=(20, 1, 8, 8)).astype(np.float32)
    conv = convert(graphs.conv_bn_relu(), x, Config())
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(out)) for m in conv.network.neuron_layers().values()]
    conv.network.simulate(x, 20, device="cuda", dtype="bfloat16")
    for h in hooks:
        h.remove()
    assert all(s.dtype == torch.bfloat16 and torch.all((s == 0) | (s == 1)) for s in seen)


@cuda
@pytest.mark.parametrize("pool,rule,momentum", [("AveragePool", "max", None), ("MaxPool", "max", None),
                                                ("MaxPool", "gate", None), ("MaxPool", "gate", 0.7)])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_neurons_fused_with_pooling_match_them_apart(pool, rule, momentum, dtype):
    """The Triton kernel that runs IF neurons and the pooling after them in one pass (average, the
    running max of counts, the gate) gives the outputs, correct-per-step and rates of the two run
    apart on the same GPU; the CPU interpreter check is tests/test_triton_interpreter.py."""
    from onnx2snn.snn import triton_kernels
    x = np.random.default_rng(2).uniform(0, 1, size=(40, 1, 8, 8)).astype(np.float32)
    cfg = Config()
    cfg.simulation.max_pool.rule, cfg.simulation.max_pool.momentum = rule, momentum
    net = convert(graphs.conv_bn_relu(pool=pool), x, cfg).network
    y = np.arange(40) % 5
    calls = []
    original = triton_kernels.if_pool_chunk
    triton_kernels.if_pool_chunk = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        a = net.simulate(x, 30, y, device="cuda", record_rates=True, batch_size=16, chunk=7, dtype=dtype)
    finally:
        triton_kernels.if_pool_chunk = original
    assert calls, "the runner did not fuse the neurons with the pooling on CUDA"
    net.fuse_pooling = False
    b = net.simulate(x, 30, y, device="cuda", record_rates=True, batch_size=16, chunk=7, dtype=dtype)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.correct_per_step, b.correct_per_step)
    assert a.firing_rates == b.firing_rates
