"""Property tests (issue 9, hypothesis): random ReLU networks normalise exactly, IF neurons rate-code
any constant input within their quantisation step, chunking never changes a spike."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import graphs
from graphs import bn_params, init
from onnx2snn import convert
from onnx2snn.calibrate import run
from onnx2snn.snn.neurons import IFNeuron

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


# --- random ReLU networks ---------------------------------------------------------------------------

@st.composite
def relu_networks(draw):
    """x(C,8,8) -> blocks of Conv[-BN]-ReLU, with optional pooling, residual Add and Concat -> GAP -> Gemm."""
    seed = draw(st.integers(0, 2 ** 16))
    r = np.random.default_rng(seed)
    c_in = draw(st.integers(1, 3))
    nodes, inits, size, tensor, channels = [], [], 8, "x", c_in
    for b in range(draw(st.integers(1, 3))):
        c = draw(st.integers(2, 5))
        kind = draw(st.sampled_from(["plain", "bn", "residual", "concat"]))
        w, bias = f"w{b}", f"b{b}"
        nodes.append(helper.make_node("Conv", [tensor, w, bias], [f"c{b}"], name=f"conv{b}", kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1]))
        inits += [init(w, r.normal(0, 0.6, (c, channels, 3, 3))), init(bias, r.normal(0, 0.3, c))]
        out = f"c{b}"
        if kind == "bn":
            nodes.append(helper.make_node("BatchNormalization", [out, f"bn{b}.gamma", f"bn{b}.beta", f"bn{b}.mean",
                                                                 f"bn{b}.var"], [f"n{b}"], name=f"bn{b}"))
            inits += bn_params(f"bn{b}", c, r)
            out = f"n{b}"
        nodes.append(helper.make_node("Relu", [out], [f"r{b}"], name=f"relu{b}"))
        out = f"r{b}"
        if kind == "residual":   # a second conv, added back onto the first block's spikes
            nodes += [helper.make_node("Conv", [out, f"w{b}r", f"b{b}r"], [f"c{b}r"], name=f"conv{b}r",
                                       kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                      helper.make_node("Add", [f"c{b}r", out], [f"a{b}"], name=f"add{b}"),
                      helper.make_node("Relu", [f"a{b}"], [f"ra{b}"], name=f"relu{b}a")]
            inits += [init(f"w{b}r", r.normal(0, 0.6, (c, c, 3, 3))), init(f"b{b}r", r.normal(0, 0.3, c))]
            out = f"ra{b}"
        elif kind == "concat":   # concatenated with its own input branch (its scale per channel)
            nodes.append(helper.make_node("Concat", [out, tensor], [f"cat{b}"], name=f"cat{b}", axis=1))
            out, c = f"cat{b}", c + channels
        if size >= 4 and draw(st.booleans()):
            pool = draw(st.sampled_from(["AveragePool", "MaxPool"]))
            nodes.append(helper.make_node(pool, [out], [f"p{b}"], name=f"pool{b}", kernel_shape=[2, 2], strides=[2, 2]))
            out, size = f"p{b}", size // 2
        tensor, channels = out, c
    classes = draw(st.integers(2, 5))
    nodes += [helper.make_node("GlobalAveragePool", [tensor], ["g"], name="gap"),
              helper.make_node("Flatten", ["g"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "wh", "bh"], ["y"], name="head", transB=1)]
    inits += [init("wh", r.normal(0, 0.6, (classes, channels))), init("bh", r.normal(0, 0.3, classes))]
    return graphs.model(nodes, inits, (c_in, 8, 8)), (c_in, 8, 8), seed


@settings(max_examples=200, **SETTINGS)
@given(relu_networks())
def test_random_relu_networks_normalise_exactly(case):
    """The cleaned, normalised graph reproduces the original's output / λ (within 1e-5 relative);
    convert() itself verifies every normalised tensor and raises otherwise."""
    m, shape, seed = case
    x = np.random.default_rng(seed).uniform(0, 1, size=(12, *shape)).astype(np.float32)
    conv = convert(m, x, graphs.seed_config())
    assert max(conv.verification.errors.values()) <= 1e-5
    scale = next(l.lambda_out for l in conv.layers if l.stat_tensor == "y")
    (ann,) = run(m, "x", x, ["y"], 12)
    (snn_as_ann,) = run(conv.snn_model, "x", x, ["y"], 12)
    np.testing.assert_allclose(snn_as_ann * scale, ann, rtol=1e-5, atol=1e-5 * float(np.abs(ann).max()))


# --- IF neurons --------------------------------------------------------------------------------------

@settings(max_examples=200, **SETTINGS)
@given(st.lists(st.floats(-1.0, 2.0, allow_nan=False, width=32), min_size=1, max_size=16),
       st.integers(1, 300), st.sampled_from([0.0, 0.5]))
def test_if_rate_is_within_one_step_of_the_clipped_input(z, T, v_init):
    """Reset by subtraction: after T steps of constant input z the rate is clip(z, 0, 1) up to one
    quantisation step 1/T (half a step with v_init = 0.5)."""
    current = torch.tensor(z, dtype=torch.float32).view(1, -1)
    neuron = IFNeuron(v_threshold=1.0, v_init=v_init)
    rate = neuron(current, T, static=True).sum(0).numpy().reshape(-1) / T
    target = np.clip(np.array(z, np.float64), 0, 1)
    bound = (0.5 if v_init == 0.5 else 1.0) / T + 1e-6
    assert np.all(np.abs(rate - target) <= bound), (rate, target)


@settings(max_examples=60, **SETTINGS)
@given(st.integers(0, 2 ** 16), st.integers(2, 40), st.lists(st.integers(1, 40), min_size=1, max_size=4))
def test_chunking_never_changes_a_spike(seed, T, cuts):
    """Any split of T steps into chunks gives exactly the spikes of one chunk of T."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(T, 3, 5, generator=g) * 1.5 - 0.25
    whole = IFNeuron(v_init=0.5)(z, T)
    neuron, parts, t = IFNeuron(v_init=0.5), [], 0
    for c in cuts + [T]:
        steps = min(c, T - t)
        if steps <= 0:
            break
        parts.append(neuron(z[t:t + steps], steps))
        t += steps
    assert torch.equal(torch.cat(parts), whole[:t])
