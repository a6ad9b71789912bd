"""Vision transformers (issue 22): the exporters' forms brought to one op each, the scale rules, the
spiking graph's Expect* nodes and the expectation-compensation runtime."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import onnx2snn
from onnx2snn.config import Config
from onnx2snn.errors import Onnx2SnnError
from onnx2snn.graph import clean_graph
from onnx2snn.snn.expectation import ExpectationCompensation

HERE = os.path.dirname(os.path.abspath(__file__))


def _vit_module():
    spec = importlib.util.spec_from_file_location("make_vit_models", os.path.join(HERE, "..", "tools", "make_vit_models.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_vit(seed=0):
    """A ViT with the real models' blocks: 8×8 images, patch 4 (4 tokens + the class token), dim 16."""
    torch.manual_seed(seed)
    net = _vit_module().ViT(image=8, patch=4, channels=1, dim=16, depth=2, heads=2, hidden=32, classes=5)
    with torch.no_grad():                      # a class token and LayerNorm affines that are not trivial
        net.cls.normal_(0, 0.5)
        for m in net.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return net.eval()


def export(net, path, dynamo=False, opset=17):
    dummy = (torch.zeros(2, 1, 8, 8),)
    if dynamo:
        pytest.importorskip("onnxscript")
        program = torch.onnx.export(net, dummy, input_names=["input"], output_names=["output"], opset_version=18,
                                    dynamic_shapes=({0: torch.export.Dim("N", min=1, max=1024)},), dynamo=True,
                                    verbose=False)
        program.save(path)
    else:
        torch.onnx.export(net, dummy, path, input_names=["input"], output_names=["output"], opset_version=opset,
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, dynamo=False)
    return path


@pytest.fixture(scope="module")
def vit_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("vit")
    net = tiny_vit()
    files = {"torchscript": export(net, str(d / "vit.onnx")),
             "opset14": export(net, str(d / "vit14.onnx"), opset=14)}     # LayerNorm decomposed, GELU as Erf
    tanh = tiny_vit()
    for block in tanh.blocks:
        block.mlp[1].approximate = "tanh"
    files["tanh"] = export(tanh, str(d / "vit_tanh.onnx"))
    try:
        files["dynamo"] = export(net, str(d / "vit_dynamo.onnx"), dynamo=True)
    except pytest.skip.Exception:
        pass
    x = np.random.default_rng(0).uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    return net, files, x


def _ort(model, x):
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


# --- the exporters' forms ---------------------------------------------------------------------------

@pytest.mark.parametrize("exporter", ["torchscript", "dynamo", "opset14", "tanh"])
def test_cleaned_vit_has_one_op_per_element_and_computes_the_same(vit_files, exporter):
    net, files, x = vit_files
    if exporter == "tanh":
        net = tiny_vit()
        for block in net.blocks:
            block.mlp[1].approximate = "tanh"
    if exporter not in files:
        pytest.skip("the dynamo exporter needs onnxscript")
    cleaned, _ = clean_graph(onnx.load(files[exporter]))
    ops = [n.op_type for n in cleaned.graph.node]
    for gone in ("Erf", "Tanh", "Expand", "Shape", "Where", "Concat", "Sqrt", "Pow", "Div"):   # GELU, LN, class token
        assert gone not in ops, f"{gone} left after the passes ({exporter})"
    assert ops.count("Gelu") == 2 and ops.count("LayerNormalization") == 5 and ops.count("Softmax") == 2
    # two-sided neurons: per block LN1, QKV, softmax, A·V, LN2, GELU; and the final LN
    assert ops.count("LeakyRelu") == 2 * 6 + 1
    np.testing.assert_allclose(_ort(cleaned, x), net(torch.from_numpy(x)).detach().numpy(), atol=2e-5)


def _gelu_graph(form):
    """GELU's Erf form in one of the orders exporters write its Muls."""
    c = lambda name, v: numpy_helper.from_array(np.array(v, np.float32), name)
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["p"])]
    if form == "x_then_half":
        nodes += [helper.make_node("Mul", ["x", "p"], ["q"]), helper.make_node("Mul", ["q", "half"], ["g"])]
    elif form == "half_then_x":
        nodes += [helper.make_node("Mul", ["p", "half"], ["q"]), helper.make_node("Mul", ["x", "q"], ["g"])]
    else:                                                                 # (0.5·x)·(1 + erf)
        nodes += [helper.make_node("Mul", ["x", "half"], ["hx"]), helper.make_node("Mul", ["hx", "p"], ["g"])]
    nodes.append(helper.make_node("Relu", ["g"], ["y"]))
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])],
                              [c("sqrt2", 2 ** 0.5), c("one", 1.0), c("half", 0.5)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("form", ["x_then_half", "half_then_x", "half_x_first"])
def test_gelu_erf_forms_become_one_node(form):
    model = _gelu_graph(form)
    cleaned, _ = clean_graph(model)
    assert [n.op_type for n in cleaned.graph.node] == ["Gelu", "Relu"]
    onnx.checker.check_model(cleaned, full_check=True)                   # (the onnx2snn.ann function below 20)
    x = np.linspace(-4, 4, 36, dtype=np.float32).reshape(6, 6)
    run = lambda m: ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(run(cleaned), run(model), atol=1e-6)


def test_gelu_with_another_coefficient_is_left_alone():
    model = _gelu_graph("x_then_half")
    next(i for i in model.graph.initializer if i.name == "half").CopyFrom(
        numpy_helper.from_array(np.array(0.4, np.float32), "half"))
    cleaned, _ = clean_graph(model)
    assert "Gelu" not in [n.op_type for n in cleaned.graph.node]


# --- expectation compensation ------------------------------------------------------------------------

def _run(module, inputs, chunk):
    module.reset()
    T = inputs[0].shape[0]
    return torch.cat([module(*[z[t:t + chunk] for z in inputs], n_steps=min(chunk, T - t)) for t in range(0, T, chunk)])


FUNCTIONS = {"gelu": (torch.nn.functional.gelu, 1), "softmax": (lambda x: torch.softmax(x, -1), 1),
             "layer_norm": (lambda x: torch.nn.functional.layer_norm(x, (6,)), 1), "matmul": (torch.matmul, 2)}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_outputs_sum_to_t_times_f_of_the_running_mean(name):
    fn, arity = FUNCTIONS[name]
    g = torch.Generator().manual_seed(1)
    T = 20
    shapes = [(T, 3, 4, 6), (T, 3, 6, 5)][:arity] if arity == 2 else [(T, 3, 4, 6)]
    inputs = [torch.randint(-1, 2, s, generator=g).float() for s in shapes]            # ±1 spike trains
    out = _run(ExpectationCompensation(fn, name, arity), inputs, chunk=7)
    t = torch.arange(1, T + 1, dtype=torch.float32).view(-1, 1, 1, 1)
    means = [torch.cumsum(z, 0) / t for z in inputs]
    expected = t * torch.stack([fn(*[m[k] for m in means]) for k in range(T)])
    torch.testing.assert_close(torch.cumsum(out, 0), expected, atol=1e-4, rtol=1e-5)
    # whatever the chunk: the same outputs
    torch.testing.assert_close(_run(ExpectationCompensation(fn, name, arity), inputs, chunk=1), out, atol=1e-5, rtol=1e-5)


def test_constant_input_gives_f_at_every_step():
    x = torch.randn(3, 4, 6)
    module = ExpectationCompensation(torch.nn.functional.gelu, "gelu")
    out = _run(module, [x.expand(5, *x.shape)], chunk=5)
    torch.testing.assert_close(out, torch.nn.functional.gelu(x).expand(5, *x.shape), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(module.constant(x), torch.nn.functional.gelu(x))


def test_rate_coded_input_converges_to_the_op():
    """Two-sided IF neurons encode x ∈ (−1, 1) as ±1 spikes; softmax of their running mean approaches
    softmax(x) as T grows (error ∝ 1/T)."""
    from onnx2snn.snn.neurons import SignedIFNeuron
    x = torch.rand(2, 3, 7) * 1.8 - 0.9
    errors = []
    for T in (8, 32, 128):
        spikes = SignedIFNeuron(alpha=1.0, v_init=0.5)(x, T, static=True)
        module = ExpectationCompensation(lambda z: torch.softmax(z * 4, -1), "softmax")
        mean = _run(module, [spikes], chunk=T).sum(0) / T
        errors.append(float((mean - torch.softmax(x * 4, -1)).abs().max()))
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.01, errors


# --- conversion -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def converted(vit_files):
    net, files, x = vit_files
    config = Config()
    config.calibration.bias = False
    return onnx2snn.convert(files["torchscript"], x, config)


def test_vit_converts_and_the_file_is_the_rescaled_ann(converted, vit_files, tmp_path):
    net, files, x = vit_files
    assert max(converted.verification.errors.values()) < 1e-4 and converted.verification.agreement == 1
    path = str(tmp_path / "vit.snn.onnx")
    converted.save(path)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"ExpectLayerNorm", "ExpectGelu", "ExpectSoftmax", "ExpectMatMul", "SignedIF"} <= ops
    assert not {"LayerNormalization", "Gelu", "Softmax", "MatMul", "Erf"} & ops
    assert all(o.domain != "onnx2snn.ann" for o in model.opset_import)
    # run as an ANN, the file gives the original's decisions
    assert (_ort(path, x).argmax(1) == net(torch.from_numpy(x)).detach().numpy().argmax(1)).all()


def test_layer_norm_epsilon_follows_the_input_scale():
    """LN(x)/λ_out = LN(x/λ_in; γ/λ_out, β/λ_out, ε/λ_in²): with λ_in ≠ 1 (the patch embedding feeding
    the LN through a ReLU) the rescaled graph still matches the original (verify: to 1e-4)."""
    r = np.random.default_rng(3)
    init = lambda n, a: numpy_helper.from_array(np.asarray(a, np.float32), n)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["tokens"]),
             helper.make_node("LayerNormalization", ["tokens", "gamma", "beta"], ["n"], axis=-1, epsilon=0.5),
             helper.make_node("Flatten", ["n"], ["f"]), helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [init("w", r.normal(0, 3, (8, 6))), init("b", r.normal(0, 1, 8)),
                               numpy_helper.from_array(np.array([0, 2, 4], np.int64), "shape"),
                               init("gamma", r.uniform(0.5, 1.5, 4)), init("beta", r.normal(0, 0.3, 4)),
                               init("w2", r.normal(0, 1, (3, 8))), init("b2", r.normal(0, 0.1, 3))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = r.uniform(0, 1, (32, 6)).astype(np.float32)
    config = Config()
    config.calibration.bias = False
    conv = onnx2snn.convert(model, x, config)
    assert max(conv.verification.errors.values()) < 1e-4
    ln = next(l for l in conv.layers if l.op == "LayerNormalization")
    assert ln.lambda_in > 2                       # the ReLU's λ: ε had to shrink by its square
    node = next(n for n in conv.snn_model.graph.node if n.op_type == "ExpectLayerNorm")
    eps = next(a.f for a in node.attribute if a.name == "epsilon")
    assert eps == pytest.approx(0.5 / ln.lambda_in ** 2, rel=1e-5)


def test_snn_approaches_the_ann_as_T_grows(converted, vit_files):
    net, files, x = vit_files
    logits = net(torch.from_numpy(x)).detach().numpy()
    errors = []
    for T in (4, 16, 64):
        out = converted.network.simulate(x, T, batch_size=64).outputs / T * converted.network.output_scale
        errors.append(np.linalg.norm(out - logits) / np.linalg.norm(logits))
    assert errors[2] < errors[0] and errors[2] < 0.1, errors


def test_tanh_gelu_converts_to_its_own_spiking_node(vit_files, tmp_path):
    net, files, x = vit_files
    config = Config()
    config.calibration.bias = False
    conv = onnx2snn.convert(files["tanh"], x, config)
    path = str(tmp_path / "tanh.snn.onnx")
    conv.save(path)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    gelus = [n for n in model.graph.node if n.op_type == "ExpectGelu"]
    assert gelus and all(helper.get_attribute_value(a) == b"tanh" for n in gelus for a in n.attribute
                         if a.name == "approximate")
    assert "Tanh" in {n.op_type for f in model.functions if f.name == "ExpectGelu" for n in f.node}   # (opset 17 body)
    tanh = tiny_vit()
    for block in tanh.blocks:
        block.mlp[1].approximate = "tanh"
    assert (_ort(path, x).argmax(1) == tanh(torch.from_numpy(x)).detach().numpy().argmax(1)).all()


@pytest.mark.parametrize("exporter", ["dynamo", "opset14"])
def test_both_exporters_and_opsets_give_the_same_snn(vit_files, converted, exporter, tmp_path):
    net, files, x = vit_files
    if exporter not in files:
        pytest.skip("the dynamo exporter needs onnxscript")
    config = Config()
    config.calibration.bias = False
    other = onnx2snn.convert(files[exporter], x, config)
    path = str(tmp_path / "other.snn.onnx")
    other.save(path)
    onnx.checker.check_model(onnx.load(path), full_check=True)      # (opset 14: decomposed function bodies)
    assert (_ort(path, x).argmax(1) == net(torch.from_numpy(x)).detach().numpy().argmax(1)).all()
    a = converted.network.simulate(x, 16, batch_size=64).outputs
    b = other.network.simulate(x, 16, batch_size=64).outputs
    np.testing.assert_allclose(a, b, atol=1e-3 * np.abs(a).max())


def test_load_round_trip_gives_identical_outputs(converted, vit_files, tmp_path):
    net, files, x = vit_files
    path = str(tmp_path / "vit.snn.onnx")
    converted.save(path)
    loaded = onnx2snn.load(path)
    a = converted.network.simulate(x[:16], 12, batch_size=16, chunk=5).outputs
    b = loaded.simulate(x[:16], 12, batch_size=16, chunk=12).outputs
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_nir_export_refuses_naming_a_node(converted, tmp_path):
    pytest.importorskip("nir")
    from onnx2snn.nir_io import export_nir
    with pytest.raises(Onnx2SnnError, match=r"^\S+ \(\w+\): "):
        export_nir(converted.snn_model, str(tmp_path / "vit.nir"))


def test_synaptic_operations_say_which_layers_are_event_driven_and_which_analog(converted, vit_files):
    net, files, x = vit_files
    T = 6
    table = converted.network.simulate(x[:4], T, batch_size=4, record_rates=True).synaptic_ops
    kinds = {r["op"]: set() for r in table.values()}
    for r in table.values():
        kinds[r["op"]].add(r["kind"])
    assert kinds["ExpectSoftmax"] == kinds["ExpectGelu"] == kinds["ExpectMatMul"] == {"analog on rate estimates"}
    assert kinds["ExpectLayerNorm"] == {"constant input", "analog on rate estimates"}   # the first LN: before any neuron
    assert kinds["Conv"] >= {"event-driven"} and "Gemm" in kinds
    softmax = next(r for r in table.values() if r["op"] == "ExpectSoftmax")
    outputs = 2 * 5 * 5                                       # heads × tokens × tokens
    assert softmax["ann_macs"] == 5 * outputs and softmax["snn_ops"] == pytest.approx((5 + 2) * outputs * T)
    first_ln = next(r for r in table.values() if r["op"] == "ExpectLayerNorm")
    assert first_ln["kind"] == "constant input" and first_ln["snn_ops"] == first_ln["ann_macs"]
