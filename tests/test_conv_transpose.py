"""ConvTranspose (issue 21): a weighted layer, normalised as Conv is, BatchNormalization after it
absorbed; its torch lowering computes what onnxruntime computes for 1-D/2-D/3-D kernels, groups,
strides, dilations, symmetric and asymmetric pads, output_padding, output_shape and auto_pad."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import graphs
from onnx2snn import Config, convert
from onnx2snn.calibrate import run
from onnx2snn.graph import clean_graph
from onnx2snn.lower import lower_model
from onnx2snn.snn.synops import connections
from patterns import PATTERNS


def transposed(in_shape, cin, cout, kernel, seed=0, bias=True, **attrs):
    """x -> Relu -> ConvTranspose -> y (the layer alone, shapes inferred)."""
    r = np.random.default_rng(seed)
    group = attrs.get("group", 1)
    inits = [graphs.init("w", r.normal(0, 0.5, (cin, cout // group, *kernel)))]
    inputs = ["r", "w"]
    if bias:
        inits.append(graphs.init("b", r.normal(0, 0.3, cout)))
        inputs.append("b")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("ConvTranspose", inputs, ["y"], name="up", kernel_shape=list(kernel), **attrs)]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, *in_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m)
    onnx.checker.check_model(m)
    return m


CASES = [
    ((5,), 2, 3, (3,), dict(strides=[2])),                                              # 1-D
    ((4, 4), 3, 4, (2, 2), dict(strides=[2, 2])),                                      # U-Net's up-convolution
    ((4, 5), 4, 6, (3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])),
    ((4, 5), 4, 6, (3, 3), dict(strides=[2, 1], pads=[1, 0, 0, 2], group=2)),          # asymmetric pads, groups
    ((3, 3), 2, 2, (3, 3), dict(strides=[3, 3], dilations=[2, 1], output_padding=[2, 0])),
    ((4, 4), 2, 3, (3, 3), dict(strides=[2, 2], output_shape=[9, 8])),                 # output_shape
    ((4, 4), 2, 3, (3, 3), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    ((4, 4), 2, 3, (4, 4), dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    ((3, 3, 3), 2, 2, (2, 2, 2), dict(strides=[2, 2, 2])),                             # 3-D
]


@pytest.mark.parametrize("in_shape,cin,cout,kernel,attrs", CASES)
def test_conv_transpose_lowering_matches_onnxruntime(in_shape, cin, cout, kernel, attrs):
    m = transposed(in_shape, cin, cout, kernel, **attrs)
    x = np.random.default_rng(1).uniform(-1, 1, size=(3, cin, *in_shape)).astype(np.float32)
    (expected,) = run(m, "x", x, ["y"])
    ann = lower_model(clean_graph(m)[0], ann=True)
    got = ann(torch.from_numpy(x), 1, static=True)[0].numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("in_shape,cin,cout,kernel,attrs", [CASES[1], CASES[3], CASES[4]])
def test_synaptic_operations_count_the_fan_out_of_every_input(in_shape, cin, cout, kernel, attrs):
    """On all-ones counts, the ACs are the (input, weight) pairs whose output lands inside the
    ONNX output (pads crop, output_padding extends), counted by brute force."""
    from onnx2snn.graph.ops import conv_transpose_arguments
    from onnx2snn.graph.view import GraphView
    m = transposed(in_shape, cin, cout, kernel, **attrs)
    cleaned = clean_graph(m)[0]
    view = GraphView(cleaned)
    node = next(n for n in view.nodes if n.op_type == "ConvTranspose")
    _, strides, dilations, pads, output_padding, group = conv_transpose_arguments(node, view)
    out = view.sample_shape("y")[1:]
    pairs = 0
    for i in np.ndindex(*in_shape):
        for k in np.ndindex(*kernel):
            o = [a * s + b * d - p for a, b, s, d, p in zip(i, k, strides, dilations, pads[:2])]
            pairs += all(0 <= v < n for v, n in zip(o, out))
    module = next(mod for mod in lower_model(cleaned).layers if hasattr(mod, "crop") or "ConvTranspose" in type(mod).__name__)
    assert connections(module, torch.ones(cin, *in_shape)) == pairs * cin * (cout // group)


def test_conv_transpose_net_normalises_per_channel_and_its_snn_converges():
    """Per-channel λ through a grouped ConvTranspose (W laid out (C_in, C_out/group, …)): the
    conversion verifies (the rescaled graph is the original up to λ, checked inside convert), and
    the SNN's readout approaches the ANN's."""
    m, shape = PATTERNS["conv_transpose_decoder"]()
    x = np.random.default_rng(2).uniform(0, 1, size=(60, *shape)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T = 64
    conv = convert(m, x, cfg)
    assert max(conv.verification.errors.values()) <= 1e-4 and conv.verification.agreement == 1.0
    layers = {l.node: l for l in conv.layers}
    assert isinstance(layers["up2"].lambda_out, list) and len(set(layers["up2"].lambda_out)) > 1
    assert not any(n.op_type == "BatchNormalization" for n in conv.snn_model.graph.node)   # absorbed
    ann = run(conv.source, "x", x, [conv.source.graph.output[0].name])[0].argmax(1)
    snn = conv.network.simulate(x, 64, device="cpu").outputs.argmax(1)
    assert np.mean(ann == snn) >= 0.85


def test_nir_export_refuses_a_transposed_convolution_naming_it(tmp_path):
    pytest.importorskip("nir")
    from onnx2snn import Onnx2SnnError, export_nir
    m, shape = PATTERNS["conv_transpose_decoder"]()
    conv = convert(m, np.random.default_rng(2).uniform(0, 1, size=(30, *shape)).astype(np.float32),
                   graphs.seed_config())
    with pytest.raises(Onnx2SnnError, match=r"up1.*ConvTranspose.*NIR has no node"):
        export_nir(conv.snn_model, str(tmp_path / "m.nir"))
    assert not (tmp_path / "m.nir").exists()
