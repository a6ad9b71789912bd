"""Graph passes: numerics against onnxruntime and node counts."""
from collections import Counter

import numpy as np
import pytest

import graphs
from onnx2snn.graph import clean_graph, load_model


def ops(m):
    return Counter(n.op_type for n in m.graph.node)


@pytest.mark.parametrize("build,in_shape", [(graphs.conv_bn_relu, (1, 8, 8)), (graphs.gemm_bn, (6,)),
                                            (graphs.identity_fed_bn, (2, 6, 6))])
def test_batchnorm_absorbed_and_numerics_kept(build, in_shape):
    m = build()
    cleaned, history = clean_graph(load_model(m).model)
    assert ops(cleaned)["BatchNormalization"] == 0
    assert ops(cleaned)["Identity"] == 0 and ops(cleaned)["Dropout"] == 0
    assert sum(ops(cleaned).values()) < sum(ops(m).values())
    assert history[0]["ops"].get("BatchNormalization") == 1
    x = np.random.default_rng(1).normal(size=(7, *in_shape)).astype(np.float32)
    np.testing.assert_allclose(graphs.ort_run(cleaned, x)[0], graphs.ort_run(m, x)[0], rtol=1e-5, atol=1e-5)


def test_gemm_canonicalised():
    cleaned, _ = clean_graph(graphs.gemm_bn())
    gemm = next(n for n in cleaned.graph.node if n.op_type == "Gemm")
    attrs = {a.name: a for a in gemm.attribute}
    assert set(attrs) == {"transB"} and attrs["transB"].i == 1


def test_dropout_as_graph_output():
    m = graphs.dropout_output()
    cleaned, _ = clean_graph(m)
    assert [n.op_type for n in cleaned.graph.node] == ["Gemm"]
    assert [o.name for o in cleaned.graph.output] == ["y"]
    x = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(graphs.ort_run(cleaned, x)[0], graphs.ort_run(m, x)[0], rtol=1e-6)


def test_identity_graph_output_keeps_name():
    cleaned, _ = clean_graph(graphs.identity_fed_bn())
    assert [o.name for o in cleaned.graph.output] == ["y"]
    assert cleaned.graph.node[-1].output[0] == "y"


def test_constants_folded():
    m = graphs.constant_weights()
    cleaned, _ = clean_graph(m)
    assert ops(cleaned)["Mul"] == 0 and ops(cleaned)["Gemm"] == 2
    x = np.random.default_rng(3).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(graphs.ort_run(cleaned, x)[0], graphs.ort_run(m, x)[0], rtol=1e-5, atol=1e-6)


def test_shared_initializer_not_modified():
    """Two convs share one weight; absorbing BN into one must not change the other."""
    from onnx import helper
    r = graphs.rng(4)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c1"], name="c1", kernel_shape=[1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["n1"], name="bn"),
             helper.make_node("Conv", ["x", "w", "b"], ["c2"], name="c2", kernel_shape=[1, 1]),
             helper.make_node("Add", ["n1", "c2"], ["y"], name="add")]
    inits = [graphs.init("w", r.normal(size=(2, 2, 1, 1))), graphs.init("b", r.normal(size=2)), *graphs.bn_params("bn", 2, r)]
    m = graphs.model(nodes, inits, (2, 3, 3), out_shape=("N", 2, 3, 3))
    cleaned, _ = clean_graph(m)
    assert ops(cleaned)["BatchNormalization"] == 0
    x = r.normal(size=(3, 2, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(graphs.ort_run(cleaned, x)[0], graphs.ort_run(m, x)[0], rtol=1e-5, atol=1e-5)


def test_caller_model_not_modified():
    m = graphs.conv_bn_relu()
    before = m.SerializeToString()
    clean_graph(load_model(m).model)
    assert m.SerializeToString() == before


def test_fixed_batch_input_made_dynamic():
    """A model exported with batch 1 still calibrates in batches."""
    import onnx2snn
    m = graphs.conv_bn_relu()
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].Clear()
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    info = load_model(m)
    assert info.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = np.random.default_rng(0).normal(size=(9, 1, 8, 8)).astype(np.float32)
    conv = onnx2snn.convert(m, x, graphs.seed_config())
    assert max(conv.verification.errors.values()) < 1e-4


def _two_max_pools():
    """x(1,8,8) -> Conv -> Relu -> MaxPool 2 -> Conv -> Relu -> MaxPool 2 -> Flatten -> Gemm -> y"""
    from onnx import helper
    r = graphs.rng(3)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p2"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1)]
    inits = [graphs.init("w1", r.normal(0, 0.5, (4, 1, 3, 3))), graphs.init("b1", r.normal(0, 0.3, 4)),
             graphs.init("w2", r.normal(0, 0.5, (4, 4, 3, 3))), graphs.init("b2", r.normal(0, 0.3, 4)),
             graphs.init("w3", r.normal(0, 0.5, (3, 16))), graphs.init("b3", r.normal(0, 0.3, 3))]
    return graphs.model(nodes, inits, (1, 8, 8))


def test_max_pool_moves_before_the_first_neurons_only():
    """pool_currents: the MaxPool after the first ReLU (whose input is the constant current) comes
    before it; the one after the second ReLU (its input depends on neurons) stays; values equal."""
    m = _two_max_pools()
    cleaned, history = clean_graph(load_model(m).model, pool_currents=True)
    producer = {o: n for n in cleaned.graph.node for o in n.output}
    pools = [n for n in cleaned.graph.node if n.op_type == "MaxPool"]
    assert [producer[p.input[0]].op_type for p in pools] == ["Conv", "Relu"]
    assert producer["p1"].op_type == "Relu" and producer["p1"].input[0] == "r1_pooled"
    assert history[-1]["pass"].startswith("max pooling of the constant current")
    x = np.random.default_rng(1).normal(size=(9, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(graphs.ort_run(cleaned, x)[0], graphs.ort_run(m, x)[0], rtol=1e-6, atol=1e-6)
    plain, _ = clean_graph(load_model(m).model)
    assert [n.op_type for n in plain.graph.node][:3] == ["Conv", "Relu", "MaxPool"]


def test_token_wise_dense_layers_become_1x1_convolutions_between_transposes():
    """MatMul on (N, L, C) by a constant + its bias Add: Transpose -> Conv 1x1 -> Transpose, same numbers."""
    from patterns import PATTERNS
    m, shape = PATTERNS["token_mixer"]()
    cleaned, _ = clean_graph(load_model(m).model)     # shape-inferred, as convert() passes it
    counts = ops(cleaned)
    # 2 + 2 * 3 Transposes, less the two pairs that cancel between consecutive token-wise layers once
    # their ReLUs moved ahead of the Transposes back
    assert counts.get("MatMul", 0) == 0 and counts["Conv"] == 3 and counts["Transpose"] == 2 + 2 * 3 - 4
    relus = [n for n in cleaned.graph.node if n.op_type == "Relu"]
    producers = {o: n for n in cleaned.graph.node for o in n.output}
    assert all(producers[r.input[0]].op_type == "Conv" for r in relus)      # features on axis 1
    x = np.random.default_rng(0).uniform(-1, 1, size=(5, *shape)).astype(np.float32)
    (a,) = graphs.ort_run(m, x)
    (b,) = graphs.ort_run(cleaned, x)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_constant_that_varies_across_tokens_is_a_current_at_the_adds_scale():
    """A position embedding (N, L, C) + const (L, C) is not a bias: it stays an Add of a constant,
    divided by the scale of the Add (the input's here: λ = 1), and the rescaled graph keeps the
    original's outputs up to the output scale; a constant with a batch axis of its own is refused."""
    from onnx import helper
    from onnx2snn import Onnx2SnnError, convert
    from onnx2snn.calibrate import run
    r = graphs.rng(0)

    def net(pos_shape):
        nodes = [helper.make_node("Add", ["x", "pos"], ["p"], name="pos_embed"),
                 helper.make_node("MatMul", ["p", "w"], ["m"], name="dense"),
                 helper.make_node("Relu", ["m"], ["r"], name="relu"),
                 helper.make_node("MatMul", ["r", "w2"], ["m2"], name="dense2"),
                 helper.make_node("Add", ["m2", "pos2"], ["q"], name="pos_embed2"),
                 helper.make_node("Relu", ["q"], ["q2"], name="relu2"),
                 helper.make_node("ReduceMean", ["q2"], ["y"], name="pool", axes=[1], keepdims=0)]
        return graphs.model(nodes, [graphs.init("pos", r.normal(0, 1, pos_shape)),
                                    graphs.init("w", r.normal(0, 1, (3, 2))), graphs.init("w2", r.normal(0, 1, (2, 2))),
                                    graphs.init("pos2", r.normal(0, 1, (1, 4, 2)))], (4, 3))
    x = r.uniform(0, 1, (20, 4, 3)).astype(np.float32)
    m = net((4, 3))
    conv = convert(m, x, graphs.seed_config())
    adds = {n.name: n for n in conv.snn_model.graph.node if n.op_type == "Add"}
    assert set(adds) == {"pos_embed", "pos_embed2"} and conv.verification.agreement == 1.0
    (orig,) = run(m, "x", x, ["y"])
    (edited,) = run(conv.snn_model, "x", x, ["y"])
    np.testing.assert_allclose(edited * conv.layers[-1].lambda_out, orig, rtol=1e-4, atol=1e-5)
    with pytest.raises(Onnx2SnnError, match=r"pos_embed \(Add\): Add of a constant of shape \(2, 4, 3\) that does "
                                            r"not broadcast over one sample"):
        convert(net((2, 4, 3)), x)


def test_a_relu_after_a_token_wise_residual_add_gets_one_lambda_not_one_per_token():
    """(MLP-Mixer's last block: ReLU(x + channel_mlp(x)) on (N, L, C)): axis 1 there is tokens on
    one branch of the Add and not on the other, so per-channel λ must not apply (it broke the
    normalisation once)."""
    from onnx import helper
    from patterns import PATTERNS
    from onnx2snn import Config, convert
    m, shape = PATTERNS["token_mixer"]()
    nodes = list(m.graph.node)
    k = next(i for i, n in enumerate(nodes) if n.name == "residual")
    nodes[k + 1].input[0] = "s_relu"
    nodes.insert(k + 1, helper.make_node("Relu", ["s"], ["s_relu"], name="residual_relu"))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    x = np.random.default_rng(0).uniform(0, 1, size=(40, *shape)).astype(np.float32)
    conv = convert(m, x, Config())
    assert conv.verification.agreement == 1.0
    assert np.asarray(conv.plan.scales["s_relu"]).size == 1
    # the token MLP's own neurons see its features (the tokens) on axis 1: one λ per token there; the
    # channel MLP's, whose features a Transpose moves onto the token MLP's positions, one λ
    per_channel = {l.node: isinstance(l.lambda_out, list) for l in conv.layers}
    assert per_channel["token_mlp/MatMul"] and not per_channel["channel_mlp/MatMul"]


def test_per_channel_scales_go_only_where_every_layer_downstream_can_fold_them():
    """A channel shuffle (Reshape, Transpose, Reshape) permutes channels: per-channel λ passes it; a
    Transpose that makes the features a Conv's spatial axis does not."""
    from patterns import PATTERNS
    from onnx2snn.graph import load_model
    from onnx2snn.graph.view import GraphView
    from onnx2snn.normalize import foldable_channel_scales
    for name, expect in (("channel_split_shuffle", None), ("token_mixer", {"channel_relu/channels_first": False})):
        m, _ = PATTERNS[name]()
        cleaned, _ = clean_graph(load_model(m).model)
        view = GraphView(cleaned)
        relus = [n.output[0] for n in view.nodes if n.op_type == "Relu"]
        kept = foldable_channel_scales(view, relus)
        if expect is None:
            assert kept == relus
        for t, allowed in (expect or {}).items():
            assert (t in kept) == allowed
