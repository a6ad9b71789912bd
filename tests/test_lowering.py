"""Every lowered op computes what onnxruntime computes (the graph lowered as an ANN)."""
import numpy as np
import pytest
import torch

import graphs
from onnx2snn.graph import clean_graph
from onnx2snn.lower import lower_model


def ann_outputs(model, x):
    net = lower_model(model, ann=True)
    return net(torch.from_numpy(x), 1, static=True)[0].numpy()


@pytest.mark.parametrize("build,in_shape", [
    (graphs.conv_bn_relu, (1, 8, 8)), (lambda: graphs.conv_bn_relu(pool="MaxPool"), (1, 8, 8)),
    (graphs.gemm_bn, (6,)), (graphs.identity_fed_bn, (2, 6, 6)), (graphs.constant_weights, (5,))])
def test_ann_lowering_matches_onnxruntime(build, in_shape):
    m = build()
    cleaned, _ = clean_graph(m)
    x = np.random.default_rng(5).normal(size=(6, *in_shape)).astype(np.float32)
    np.testing.assert_allclose(ann_outputs(cleaned, x), graphs.ort_run(m, x)[0], rtol=1e-4, atol=1e-5)


def pool_graph(op, **attrs):
    from onnx import helper
    nodes = [helper.make_node(op, ["x"], ["p"], name="pool", **attrs),
             helper.make_node("Flatten", ["p"], ["y"], name="flat")]
    return graphs.model(nodes, [], (2, 7, 7))


@pytest.mark.parametrize("op,attrs", [
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0)),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_UPPER")),
    ("GlobalAveragePool", {}),
])
def test_pooling_lowering_matches_onnxruntime(op, attrs):
    m = pool_graph(op, **attrs)
    cleaned, _ = clean_graph(m)
    x = np.random.default_rng(6).normal(size=(3, 2, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(ann_outputs(cleaned, x), graphs.ort_run(m, x)[0], rtol=1e-5, atol=1e-6)



def test_reshape_to_2d_lowering():
    from onnx import helper
    r = graphs.rng(7)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="reshape"),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc", transB=1)]
    inits = [graphs.init("w", r.normal(size=(3, 18))), graphs.init("b", r.normal(size=3))]
    from onnx import numpy_helper
    inits.append(numpy_helper.from_array(np.array([-1, 18], np.int64), "shape"))
    m = graphs.model(nodes, inits, (2, 3, 3))
    cleaned, _ = clean_graph(m)
    x = r.normal(size=(4, 2, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(ann_outputs(cleaned, x), graphs.ort_run(m, x)[0], rtol=1e-5, atol=1e-6)


def test_synaptic_factor_mul_is_fused_into_its_add():
    """Residual Adds whose skip input is a synaptic-factor Mul become one ScaledAdd (a + b·c), and
    the network computes exactly what the unfused steps compute."""
    from patterns import PATTERNS
    from onnx2snn import Config, convert
    from onnx2snn.lower import fuse_scaled_adds
    from onnx2snn.lower.modules import ConstantMul, ScaledAdd
    model, shape = PATTERNS["residual_blocks"]()
    x = np.random.default_rng(0).uniform(0, 1, size=(24, *shape)).astype(np.float32)
    net = convert(model, x, Config()).network
    fused = [m for m in net.layers if isinstance(m, ScaledAdd)]
    assert fused, "no Add was fused"
    mul_outputs = {s.output for s, m in zip(net.steps, net.layers) if isinstance(m, ConstantMul)}
    assert not any(name in mul_outputs for s in net.steps if s.op == "Add" for name in s.inputs)
    # Undo the fusion by hand: the same steps with a separate Mul reproduce the spikes exactly.
    from onnx2snn.snn.network import SpikingNetwork, Step
    steps, layers = [], []
    for s, m in zip(net.steps, net.layers):
        if isinstance(m, ScaledAdd):
            steps.append(Step(s.name + " mul", "Mul", [s.inputs[1]], s.output + " scaled"))
            layers.append(ConstantMul(m.const))
            steps.append(Step(s.name, "Add", [s.inputs[0], s.output + " scaled"], s.output, s.shape))
            layers.append(lower_add_module())
        else:
            steps.append(s)
            layers.append(m)
    plain = SpikingNetwork(steps, layers, net.input_name, net.output_name, net.elements_per_sample, net.readout_delay)
    _, refused = fuse_scaled_adds(steps, layers, net.output_name)   # the pass finds them all again
    assert sum(isinstance(m, ScaledAdd) for m in refused) == len(fused)
    a = net.simulate(x, 20, device="cpu", record_steps=True).step_outputs
    b = plain.simulate(x, 20, device="cpu", record_steps=True).step_outputs
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def lower_add_module():
    from onnx2snn.lower.modules import Function
    return Function(torch.add, "add")
