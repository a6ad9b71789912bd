"""Issue 3 patterns: each converts and verifies (edited ≡ original up to the scales, checked with
onnxruntime inside convert), its torch lowering matches onnxruntime, and its SNN converges to it."""
from collections import Counter

import numpy as np
import pytest
import torch

import graphs
from patterns import PATTERNS
from onnx2snn import Config, convert
from onnx2snn.calibrate import run
from onnx2snn.graph import clean_graph
from onnx2snn.lower import lower_model
from onnx2snn.graph.ops import RULES
from onnx2snn.lower.registry import LOWERINGS


def data(shape, n=48, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, *shape)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_converts_verifies_and_lowers(name):
    m, shape = PATTERNS[name]()
    x = data(shape)
    cfg = graphs.seed_config()
    cfg.parser.robust_norm = False     # max norm on the test data itself: no clipping, SNN -> ANN
    cfg.simulation.output = "membrane"
    cfg.simulation.max_pool.rule = "gate"
    cfg.simulation.signed_spikes = True   # (leaky_relu_cnn)
    conv = convert(m, x, cfg)
    assert max(conv.verification.errors.values()) <= 1e-4
    out_name = conv.snn_model.graph.output[0].name
    (edited,) = run(conv.snn_model, "x", x, [out_name])
    # 1. the torch lowering (ReLUs for neurons) computes what onnxruntime computes on the edited graph
    ann = lower_model(conv.snn_model, ann=True)
    np.testing.assert_allclose(ann(torch.from_numpy(x), 1, static=True)[0].numpy(), edited, rtol=1e-4, atol=1e-5)
    # 2. the SNN's readout converges to it: error well under the output range after 600 steps.
    #    The max-pool gate follows the input with the highest count so far, which approaches the max
    #    of the rates more slowly: a looser bound where a graph max-pools.
    T = 600
    snn = conv.network.simulate(x, T, device="cpu").outputs / T
    tolerance = 0.15 if any(n.op_type == "MaxPool" for n in m.graph.node) else 0.06
    assert np.abs(snn - edited).max() <= tolerance * max(1.0, np.abs(edited).max())
    # 3. and the original's logits are the edited ones times the output scale
    (orig,) = run(conv.source, "x", x, [out_name])
    np.testing.assert_allclose(edited * conv.layers[-1].lambda_out, orig, rtol=1e-4, atol=1e-5)


def test_binary_spikes_between_layers_in_residual_net():
    """Residual Adds get synaptic factors, not analog 'scaled spikes': every neuron output is 0/1."""
    m, shape = PATTERNS["residual_blocks"]()
    conv = convert(m, data(shape))
    assert conv.plan.factors, "the identity shortcut needs a factor"
    assert Counter(n.op_type for n in conv.snn_model.graph.node)["Mul"] == len(conv.plan.factors)
    seen = []
    hooks = [layer.register_forward_hook(lambda mod, args, out: seen.append(out)) for layer in conv.network.neuron_layers().values()]
    conv.network.simulate(data(shape, 4), 10, device="cpu")
    for h in hooks:
        h.remove()
    assert seen and all(torch.all((s == 0) | (s == 1)) for s in seen)


def test_concat_keeps_branch_scales():
    """With one λ per layer, the layer after a Concat takes each branch's λ for that branch's channels."""
    m, shape = PATTERNS["concat_bn_densenet"]()
    cfg = Config()
    cfg.parser.per_channel = False
    conv = convert(m, data(shape), cfg)
    bn_layer = next(l for l in conv.layers if l.node == "bn")
    assert isinstance(bn_layer.lambda_in, list) and len(set(bn_layer.lambda_in)) == 2  # per channel, 2 branches


def test_softmax_dropped_and_reported():
    m, shape = PATTERNS["nhwc_transpose"]()
    conv = convert(m, data(shape))
    assert conv.snn_model.graph.output[0].name == "logits"
    dropped = [p for p in conv.passes if p["pass"].startswith("drop output") and p["removed"]]
    assert dropped and dropped[0]["removed"] == ["softmax"]


def test_relu6_bound_rescaled():
    m, shape = PATTERNS["input_normalisation_bn_first"]()
    conv = convert(m, data(shape))
    clip = next(n for n in conv.snn_model.graph.node if n.op_type == "ClipIF")   # IF neurons standing for ReLU6
    bound = next(a.f for a in clip.attribute if a.name == "max")
    lam = next(l for l in conv.layers if l.node == "conv").lambda_out
    assert lam <= 6 + 1e-6
    assert bound == pytest.approx(6 / lam, rel=1e-5)


def test_unsupported_activation_advice():
    from onnx import helper
    import onnx2snn
    r = graphs.rng(0)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1),
             helper.make_node("LeakyRelu", ["g"], ["l"], name="leaky"),
             helper.make_node("Gemm", ["l", "w2", "b2"], ["y"], name="fc2", transB=1)]
    m = graphs.model(nodes, [graphs.init("w", r.normal(size=(3, 5))), graphs.init("b", r.normal(size=3)),
                             graphs.init("w2", r.normal(size=(2, 3))), graphs.init("b2", r.normal(size=2))], (5,))
    with pytest.raises(onnx2snn.Onnx2SnnError, match=r"leaky \(LeakyRelu\): a negative slope needs signed spikes.*"
                                                      r"--signed-spikes .*retrain with ReLU"):
        convert(m, data((5,)))


def test_every_registered_handler_has_a_pattern():
    """NIR's habit: enumerate the registry, so a new handler without a test fails here."""
    used = set()
    builds = list(PATTERNS.values()) + [lambda: (graphs.conv_bn_relu(), (1, 8, 8))]  # test_lowering's graph
    for build in builds:
        m, shape = build()
        cfg = Config()
        cfg.simulation.signed_spikes = True
        conv = convert(m, data(shape), cfg)
        # ops of the cleaned ANN (Relu, Clip, MaxPool become spiking nodes) and of the spiking graph
        used |= {n.op_type for n in clean_graph(conv.source)[0].graph.node} | {n.op_type for n in conv.snn_model.graph.node}
    assert set(RULES) <= used, f"ops without a pattern test: {set(RULES) - used}"


def test_every_op_rule_has_a_lowering_and_every_lowering_a_rule():
    """graph/ops.py says what an op means, lower/ how it runs in torch: the two tables list the same ops."""
    assert set(RULES) == set(LOWERINGS)


def test_duplicate_rule_or_lowering_registration_is_refused():
    from onnx2snn.graph.ops import rule
    from onnx2snn.lower.registry import lowers
    with pytest.raises(ValueError, match="Conv.*already registered"):
        rule("Conv", "weighted", "weighted")
    with pytest.raises(ValueError, match="Conv.*already registered"):
        lowers("Conv")(lambda node, ctx: None)
    assert RULES["Conv"].scale == "weighted" and LOWERINGS["Conv"].__name__ == "lower_conv"


@pytest.mark.parametrize("name", ["residual_blocks", "concat_bn_densenet", "input_normalisation_bn_first"])
def test_saved_snn_onnx_rebuilds_the_same_network(name, tmp_path):
    """Factors, per-channel scales and Clip bounds all live in the .snn.onnx: load() needs nothing else."""
    import onnx
    import onnx2snn
    m, shape = PATTERNS[name]()
    x = data(shape, 10)
    conv = convert(m, x)
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    onnx.checker.check_model(onnx.load(path))
    again = onnx2snn.load(path)
    np.testing.assert_array_equal(again.simulate(x, 15, device="cpu").outputs,
                                  conv.network.simulate(x, 15, device="cpu").outputs)
