"""Neurons, spiking max pooling, encoders and the chunked runner on hand-made inputs."""
import numpy as np
import pytest
import torch

import graphs
from onnx2snn import Config, Onnx2SnnError, convert
from onnx2snn.snn import GatedMaxPool, IFNeuron, if_step
from onnx2snn.lower import lower_model


@pytest.mark.parametrize("T", [10, 50, 200])
def test_if_rate_approximates_clipped_input(T):
    z = torch.linspace(-0.5, 1.5, 81)
    neuron = IFNeuron(v_threshold=1.0)
    rate = neuron(z, T, static=True).mean(0)
    err = (rate - z.clamp(0, 1)).abs().max().item()
    assert err <= 1.0 / T + 1e-6


def test_if_reset_to_value():
    spike, v = if_step(torch.tensor([0.7]), torch.tensor([0.6]), 1.0, v_reset=0.0)
    assert spike.item() == 1 and v.item() == 0.0
    spike, v = if_step(torch.tensor([0.7]), torch.tensor([0.6]), 1.0, v_reset=None)
    assert spike.item() == 1 and v.item() == pytest.approx(0.3)
    # Reset to zero loses the overshoot: input 0.6 fires every second step with subtraction
    # (rate 0.6) but only every second step with reset to zero (rate 0.5).
    sub = IFNeuron(1.0)(torch.tensor([0.6]), 100, static=True).mean().item()
    zero = IFNeuron(1.0, v_reset=0.0)(torch.tensor([0.6]), 100, static=True).mean().item()
    assert sub == pytest.approx(0.6, abs=0.01) and zero == pytest.approx(0.5, abs=0.01)


def test_if_state_carries_across_chunks():
    z = torch.rand(40, 3, 5)
    whole = IFNeuron()(z, 40)
    n = IFNeuron()
    parts = torch.cat([n(z[:13], 13), n(z[13:], 27)])
    assert torch.equal(whole, parts)


def spikes_2x2():
    """One 2x2 window, 6 steps. Input 0 fires early then stops; input 1 fires steadily later.
    t:     0 1 2 3 4 5
    in0:   1 1 0 0 0 0
    in1:   0 1 1 1 1 1
    in2,3: 0
    """
    s = torch.zeros(6, 1, 1, 2, 2)
    s[0:2, 0, 0, 0, 0] = 1
    s[1:6, 0, 0, 0, 1] = 1
    return s


def test_gated_max_pool_follows_highest_count():
    out = GatedMaxPool([2, 2], [2, 2], [0, 0, 0, 0], [1, 1], False)(spikes_2x2(), 6).flatten().tolist()
    # counts (in0, in1): t0 (1,0)->in0 spike 1; t1 (2,1)->in0 1; t2 (2,2) tie->in0 0; t3 (2,3)->in1 1 ...
    assert out == [1, 1, 0, 1, 1, 1]


def test_gated_max_pool_chunks_equal_whole():
    s = (torch.rand(30, 2, 3, 6, 6) < 0.3).float()
    pool = lambda: GatedMaxPool([2, 2], [2, 2], [0, 0, 0, 0], [1, 1], False, momentum=None)
    whole = pool()(s, 30)
    p = pool()
    assert torch.equal(whole, torch.cat([p(s[:7], 7), p(s[7:], 23)]))


def test_gated_max_pool_momentum():
    """c <- m·c + s. For m <= 0.5 a firing input's count (>= 1) always beats a silent one's (< 1), so
    the gate passes a spike whenever any input fires, as m = 0 does; a long memory (m = 0.9) keeps
    following an input that has gone silent.
    t:     0 1 2 3 4
    in0:   1 1 1 1 0
    in1:   0 0 0 0 1
    """
    s = torch.zeros(5, 1, 1, 1, 2)
    s[0:4, 0, 0, 0, 0] = 1
    s[4, 0, 0, 0, 1] = 1
    gate = lambda m: GatedMaxPool([1, 2], [1, 2], [0, 0, 0, 0], [1, 1], False, momentum=m)(s, 5).flatten().tolist()
    assert gate(0.0) == gate(0.5) == [1, 1, 1, 1, 1]
    # m = 0.9 at t4: in0 0.9·(1 + 0.9 + 0.81 + 0.729) = 3.10 > in1 1 -> in0's (absent) spike
    assert gate(0.9) == [1, 1, 1, 1, 0]
    # m = 1 is the accumulated count: 4 > 1 as well
    assert gate(1.0) == gate(None) == [1, 1, 1, 1, 0]


def max_pool_network(mode):
    cfg = Config()
    cfg.simulation.max_pool.if_wta = mode == "wta"
    cfg.simulation.max_pool.if_spatial_avg = mode == "avg"
    if mode in ("max", "gate"):
        cfg.simulation.max_pool.rule = mode
    cfg.simulation.avg_pool.has_neuron = True
    from onnx2snn.graph import clean_graph
    cleaned, _ = clean_graph(graphs.conv_bn_relu(pool="MaxPool"))
    return lower_model(cleaned, cfg.spiking_options())


@pytest.mark.parametrize("mode,always,alternating", [("max", 1.0, 0.5), ("gate", 1.0, 0.5), ("wta", 1.0, 1.0),
                                                     ("avg", 0.25, 0.25)])
def test_max_pool_modes_lowered(mode, always, alternating):
    """Each --max-pool rule lowers to a pooling that does what it says, found by its step (not by
    class name or position) and driven with spikes: one input of each 2x2 window firing every step
    (max, gate and WTA pass rate 1; average pooling 1/4), or two inputs firing on alternate steps
    (the max of the rates is 1/2; WTA passes a spike every step; average 1/4)."""
    net = max_pool_network(mode)
    (index,) = [i for i, st in enumerate(net.steps) if st.op in ("SpikeMaxPool", "MaxPool")]
    pool = net.layers[index]
    if mode == "avg":       # average pooling of spikes, then IF neurons (avg_pool.has_neuron)
        assert net.steps[index + 1].op == "IF"
    T, (c, h, w) = 40, net.steps[index - 1].shape
    for pattern, expected in (("always", always), ("alternating", alternating)):
        s = torch.zeros(T, 1, c, h, w)
        s[:, :, :, 0::2, 0::2] = 1 if pattern == "always" else 0
        if pattern == "alternating":
            s[0::2, :, :, 0::2, 0::2] = 1
            s[1::2, :, :, 0::2, 1::2] = 1
        if getattr(pool, "stateful", False):
            out = pool(s, T, static=False)
        else:
            out = pool(s.flatten(0, 1)).reshape(T, 1, c, h // 2, w // 2)
        assert out.float().mean().item() == pytest.approx(expected, abs=0.05), (mode, pattern)


def test_wta_over_counts_and_gate_does_not():
    """Two inputs firing at rate 1/2 out of phase: max of rates is 1/2; WTA passes a spike every step."""
    s = torch.zeros(20, 1, 1, 1, 2)
    s[0::2, 0, 0, 0, 0] = 1
    s[1::2, 0, 0, 0, 1] = 1
    gate = GatedMaxPool([1, 2], [1, 2], [0, 0, 0, 0], [1, 1], False)(s, 20).mean().item()
    wta = torch.nn.functional.max_pool2d(s.flatten(0, 1), (1, 2)).mean().item()
    assert wta == 1.0 and gate == pytest.approx(0.5, abs=0.05)


def poisson_setup():
    x = np.random.default_rng(0).uniform(0, 1, size=(20, 1, 8, 8)).astype(np.float32)
    cfg = Config()
    cfg.simulation.encoder.poisson = True
    return convert(graphs.conv_bn_relu(), x, cfg), x


def test_poisson_deterministic_under_seed():
    conv, x = poisson_setup()
    run = lambda seed: conv.network.simulate(x, 30, poisson=True, seed=seed, device="cpu").outputs
    a, b, c = run(1), run(1), run(2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_poisson_rejects_inputs_outside_unit_interval():
    conv, x = poisson_setup()
    with pytest.raises(Onnx2SnnError, match=r"\[0, 1\]"):
        conv.network.simulate(x * 3 - 1, 5, poisson=True, device="cpu")


def test_chunking_does_not_change_results():
    conv, x = poisson_setup()
    y = np.arange(len(x)) % 5
    results = [conv.network.simulate(x, 37, labels=y, chunk=c, device="cpu", batch_size=7, record_rates=True)
               for c in (1, 5, 37)]
    for r in results[1:]:
        np.testing.assert_allclose(r.outputs, results[0].outputs, rtol=1e-6, atol=1e-6)
        assert np.array_equal(r.correct_per_step, results[0].correct_per_step)
        assert r.firing_rates and r.firing_rates == pytest.approx(results[0].firing_rates)


def test_membrane_output_reads_accumulated_current():
    x = np.random.default_rng(0).normal(size=(10, 1, 8, 8)).astype(np.float32)
    cfg = Config()
    cfg.simulation.output = "membrane"
    cfg.parser.robust_norm = False  # no activation above 1, so no clipping: the readout converges
    conv = convert(graphs.conv_bn_relu(), x, cfg)
    assert type(conv.network.layers[-1]).__name__ == "MembraneReadout"
    r = conv.network.simulate(x, 1000, device="cpu")
    # Accumulated output current / T approaches the normalised ANN's logits.
    logits = graphs.ort_run(conv.snn_model, x)[0]
    np.testing.assert_allclose(r.outputs / 1000, logits, atol=0.03)


def test_spatial_avg_mode_on_spikes():
    """if_spatial_avg: a window with inputs at rates 1, 1/2, 0, 0 passes rate 3/8 (the average),
    re-spiked by IF neurons."""
    from onnx2snn.graph import clean_graph
    from onnx import helper
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["y"], name="flat")]
    m = graphs.model(nodes, [], (1, 2, 2))
    cfg = Config()
    cfg.simulation.max_pool.if_spatial_avg = True
    cfg.simulation.output = "membrane"
    net = lower_model(clean_graph(m)[0], cfg.spiking_options())
    x = np.array([[[[1.0, 0.5], [0.0, 0.0]]]], np.float32)
    r = net.simulate(x, 80, device="cpu")
    assert r.outputs[0, 0] / 80 == pytest.approx(0.375, abs=1 / 40)
    cfg.simulation.max_pool.if_spatial_avg = False  # the gate: the max rate, 1
    r = lower_model(clean_graph(m)[0], cfg.spiking_options()).simulate(x, 80, device="cpu")
    assert r.outputs[0, 0] / 80 == pytest.approx(1.0, abs=1 / 40)


def test_bfloat16_on_cpu_runs_and_stays_close():
    conv, x = poisson_setup()
    a = conv.network.simulate(x, 40, device="cpu").outputs
    b = conv.network.simulate(x, 40, device="cpu", dtype="bfloat16").outputs
    assert np.abs(a - b).max() <= 0.1 * np.abs(a).max()


def test_reduced_precision_leaves_float32_weights_alone():
    conv, x = poisson_setup()
    before = [p.clone() for p in conv.network.parameters()]
    conv.network.simulate(x, 5, device="cpu", dtype="float16")
    assert all(p.dtype == torch.float32 and torch.equal(p, q) for p, q in zip(conv.network.parameters(), before))


def test_reduced_precision_through_residual_factors():
    """Synaptic factors (Mul by constants) follow the network's dtype."""
    from patterns import PATTERNS
    m, shape = PATTERNS["residual_blocks"]()
    x = np.random.default_rng(0).uniform(0, 1, size=(6, *shape)).astype(np.float32)
    conv = convert(m, x, graphs.seed_config())
    full = conv.network.simulate(x, 10, device="cpu").outputs
    half = conv.network.simulate(x, 10, device="cpu", dtype="bfloat16").outputs
    # bf16 weights and currents (8-bit mantissa): the readout after 10 steps stays within a few % of fp32
    assert np.abs(half - full).max() <= 0.05 * np.abs(full).max()


@pytest.mark.parametrize("pattern", ["residual_blocks", "concat_bn_densenet", "nhwc_transpose"])
def test_channels_last_layout_gives_same_results(pattern):
    """The NHWC layout used on CUDA computes exactly what the default layout computes."""
    from patterns import PATTERNS
    m, shape = PATTERNS[pattern]()
    x = np.random.default_rng(0).uniform(0, 1, size=(12, *shape)).astype(np.float32)
    conv = convert(m, x)
    a = conv.network.simulate(x, 12, device="cpu", channels_last=False).outputs
    b = conv.network.simulate(x, 12, device="cpu", channels_last=True).outputs
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_chunks_even_out():
    """With a budget that fits ``most`` steps, the chunk count is the fewest that fit, and the chunks
    are evened out (all but the last the same size, the last at most one step shorter per chunk)."""
    conv, _ = poisson_setup()
    net = conv.network
    per_step = 2 * 4 * net.elements_per_sample * 10   # bytes per time step of a batch of 10, fp32
    for T, most in ((100, 30), (128, 7), (7, 3), (50, 1), (64, 64)):
        tc = net.auto_chunk(T, 10, torch.device("cpu"), budget=most * per_step)
        chunks = -(-T // tc)
        assert 1 <= tc <= most, (T, most, tc)
        assert chunks == -(-T // most), (T, most, tc)          # no more chunks than needed
        assert chunks * tc - T < chunks, (T, most, tc)         # evened out: not 30+30+30+10


def test_static_part_computed_once_per_input():
    """With constant input, the layers before the first neurons run once per batch, not per chunk,
    and a new input is never served from the cache."""
    conv, x = poisson_setup()
    net = conv.network
    calls = []
    hook = net.layers[0].register_forward_hook(lambda *a: calls.append(1))
    net.simulate(x[:7], 20, device="cpu", chunk=4, batch_size=7)
    assert len(calls) == 1
    net.reset()
    a = net(torch.from_numpy(x[:3]), 2, static=True)
    net.reset()
    b = net(torch.from_numpy(x[3:6]), 2, static=True)
    hook.remove()
    assert len(calls) == 3 and not torch.equal(a, b)


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_signed_neurons_rate_code_leaky_relu(alpha):
    """Constant inputs: +1 spikes at rate z, −1 spikes at rate alpha·|z| (within 1/T), spikes in {−1, 0, 1};
    each sign integrates on its own membrane, so a fluctuating input of mean m gives LeakyReLU(m)."""
    from onnx2snn.snn.neurons import SignedIFNeuron
    T = 400
    z = torch.tensor([[0.3, -0.5, -1.0, 0.9, 0.0, -0.02]])
    n = SignedIFNeuron(alpha, v_threshold=1.0, v_init=0.5)
    out = n(z, T, static=True)
    assert set(out.unique().tolist()) <= {-1.0, 0.0, 1.0}
    expected = torch.nn.functional.leaky_relu(z, alpha)
    assert torch.all((out.mean(0) - expected).abs() <= 1.0 / T + 1e-6)
    n.reset()
    noise = torch.where(torch.arange(T) % 2 == 0, 0.8, -0.8).view(T, 1, 1)   # mean 0.3 / -0.5 ± 0.8 per step
    out = n((z + noise)[:, :, :2], T, static=False)
    assert torch.allclose(out.mean(0), expected[:, :2], atol=2.0 / T)


def test_the_listing_shows_the_code_path_each_layer_of_neurons_took():
    """print(network): 'not run yet' before a simulation; after it, the kernel or loop each IF layer ran."""
    from onnx2snn.snn import kernels
    conv = convert(graphs.conv_bn_relu(), np.random.default_rng(0).uniform(0, 1, size=(20, 1, 8, 8)).astype(np.float32))
    assert "code path (last run)" in str(conv.network) and "not run yet" in str(conv.network)
    conv.network.simulate(np.random.default_rng(1).uniform(0, 1, size=(4, 1, 8, 8)).astype(np.float32), 4, device="cpu")
    listing = str(conv.network)
    expected = "Numba kernel" if kernels.available(torch.zeros(1)) else "torch loop"
    assert "not run yet" not in listing and expected in listing
