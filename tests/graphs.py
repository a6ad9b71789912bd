"""Tiny ONNX graphs for the tests, built with onnx.helper: non-zero biases, non-trivial BN."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def seed_config():
    """The seed's conversion (λ = percentile, no SNN calibration, IF neurons after average pooling,
    spike-count gate, spike-count readout): the edited graph is exactly the original rescaled, and
    any calibration array size works."""
    from onnx2snn import Config
    cfg = Config()
    cfg.parser.threshold = "statistic"
    cfg.calibration.bias = False
    cfg.simulation.output = "spikes"
    cfg.simulation.avg_pool.has_neuron = True
    cfg.simulation.max_pool.rule = "gate"
    return cfg


def rng(seed=0):
    return np.random.default_rng(seed)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def bn_params(prefix, c, r):
    return [init(f"{prefix}.gamma", r.uniform(0.5, 2.0, c)), init(f"{prefix}.beta", r.normal(0, 0.5, c)),
            init(f"{prefix}.mean", r.normal(0, 0.5, c)), init(f"{prefix}.var", r.uniform(0.3, 2.0, c))]


def model(nodes, inits, in_shape, out_name="y", out_shape=("N", None), extra_outputs=(), opset=OPSET):
    g = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)] +
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, []) for o in extra_outputs],
        inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def conv_bn_relu(seed=0, pool="AveragePool"):
    """x(1,8,8) -> Conv3x3(4) -> BN -> Relu -> pool 2 -> Flatten -> Gemm(5) -> y"""
    r = rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["n1"],
                         name="bn1", epsilon=1e-3),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node(pool, ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flat", axis=1),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["y"], name="fc", transB=1),
    ]
    inits = [init("w1", r.normal(0, 0.5, (4, 1, 3, 3))), init("b1", r.normal(0, 0.3, 4)),
             *bn_params("bn", 4, r), init("w2", r.normal(0, 0.5, (5, 64))), init("b2", r.normal(0, 0.3, 5))]
    return model(nodes, inits, (1, 8, 8))


def gemm_bn(seed=0):
    """x(6) -> Gemm(alpha=0.5, transB=0, 4) -> BN -> Relu -> Gemm(3) -> y"""
    r = rng(seed)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["g1"], name="fc1", alpha=0.5, beta=2.0, transB=0),
        helper.make_node("BatchNormalization", ["g1", "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "w2", "b2"], ["y"], name="fc2", transB=1),
    ]
    inits = [init("w1", r.normal(0, 0.5, (6, 4))), init("b1", r.normal(0, 0.3, 4)), *bn_params("bn", 4, r),
             init("w2", r.normal(0, 0.5, (3, 4))), init("b2", r.normal(0, 0.3, 3))]
    return model(nodes, inits, (6,))


def identity_fed_bn(seed=0):
    """Conv -> BN whose γ and β come through Identity nodes (as torch's exporter writes shared
    parameters) -> Relu -> Dropout -> GlobalAveragePool -> Flatten -> Gemm -> Identity -> y"""
    r = rng(seed)
    nodes = [
        helper.make_node("Identity", ["bn.gamma"], ["gamma_id"], name="id_gamma"),
        helper.make_node("Identity", ["bn.beta"], ["beta_id"], name="id_beta"),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c1", "gamma_id", "beta_id", "bn.mean", "bn.var"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Dropout", ["r1"], ["d1"], name="drop1"),
        helper.make_node("GlobalAveragePool", ["d1"], ["p1"], name="gap"),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flat"),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["g2"], name="fc", transB=1),
        helper.make_node("Identity", ["g2"], ["y"], name="id_out"),
    ]
    inits = [init("w1", r.normal(0, 0.5, (3, 2, 3, 3))), init("b1", r.normal(0, 0.3, 3)), *bn_params("bn", 3, r),
             init("w2", r.normal(0, 0.5, (4, 3))), init("b2", r.normal(0, 0.3, 4))]
    return model(nodes, inits, (2, 6, 6))


def dropout_output(seed=0):
    """x(5) -> Gemm(3) -> Dropout -> y: the Dropout's output is the graph output."""
    r = rng(seed)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1),
             helper.make_node("Dropout", ["g"], ["y"], name="drop")]
    return model(nodes, [init("w", r.normal(0, 0.5, (3, 5))), init("b", r.normal(0, 0.3, 3))], (5,))


def constant_weights(seed=0):
    """The Gemm weight is computed from constants (Mul of two initializers): folding makes it one."""
    r = rng(seed)
    nodes = [helper.make_node("Mul", ["w_half", "two"], ["w"], name="scale_w"),
             helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1),
             helper.make_node("Relu", ["g"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1)]
    inits = [init("w_half", r.normal(0, 0.5, (4, 5))), init("two", np.array(2.0)), init("b", r.normal(0, 0.3, 4)),
             init("w2", r.normal(0, 0.5, (3, 4))), init("b2", r.normal(0, 0.3, 3))]
    return model(nodes, inits, (5,))


def unsupported(seed=0):
    """Two ops onnx2snn cannot convert inside a network: Sigmoid and Tanh (a Gemm after them: at the
    output they would be a head, dropped)."""
    r = rng(seed)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1),
             helper.make_node("Sigmoid", ["g"], ["s"], name="sig"),
             helper.make_node("Tanh", ["s"], ["t"], name="tanh"),
             helper.make_node("Gemm", ["t", "w2", "b2"], ["y"], name="fc2", transB=1)]
    return model(nodes, [init("w", r.normal(0, 0.5, (3, 5))), init("b", r.normal(0, 0.3, 3)),
                         init("w2", r.normal(0, 0.5, (2, 3))), init("b2", r.normal(0, 0.3, 2))], (5,))


def ort_run(m, x, outputs=None):
    """Run with onnxruntime; ``outputs`` may name intermediate tensors."""
    from onnx2snn.calibrate import session
    return session(m, outputs or ()).run(outputs, {"x": x})
