"""LeakyReLU as signed IF neurons under --signed-spikes (issue 21): a node of its own in the
spiking graph (its body the LeakyRelu, so the file runs as the rescaled ANN), load() round trip,
|spikes| counted as synaptic events, NIR refusing it by name, and refused without the flag."""
import numpy as np
import pytest
import torch

from onnx2snn import Config, Onnx2SnnError, convert, load
from patterns import PATTERNS


def converted():
    m, shape = PATTERNS["leaky_relu_cnn"]()
    x = np.random.default_rng(0).uniform(0, 1, size=(40, *shape)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T, cfg.simulation.signed_spikes = 16, True
    return convert(m, x, cfg), x


def test_signed_neurons_are_nodes_of_their_own_and_reload_identically(tmp_path):
    conv, x = converted()
    signed = [n for n in conv.snn_model.graph.node if n.op_type == "SignedIF"]
    assert [n.name for n in signed] == ["leaky0", "leaky1"]
    alpha = {a.name: a.f for a in signed[0].attribute}["alpha"]
    assert alpha == pytest.approx(0.1) and "imbalanced threshold" in next(
        f.doc_string for f in conv.snn_model.functions if f.name == "SignedIF")
    assert conv.verification.agreement == 1.0
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    np.testing.assert_array_equal(load(path).simulate(x, 16, device="cpu").outputs,
                                  conv.network.simulate(x, 16, device="cpu").outputs)


def test_synaptic_operations_count_negative_spikes_as_events():
    """conv1's ACs are its fan-out times the |events| it receives, not the net (+1 − 1) count."""
    from onnx2snn.snn.synops import connections, pooling_area
    conv, x = converted()
    index = next(i for i, s in enumerate(conv.network.steps) if s.name.startswith("conv1"))
    inputs = []
    hook = conv.network.layers[index].register_forward_hook(lambda mod, args, out: inputs.append(args[0]))
    r = conv.network.simulate(x, 16, device="cpu", record_rates=True, batch_size=len(x))
    hook.remove()
    received = torch.cat(inputs, 0)
    assert (received < 0).any(), "the pattern should send negative events"
    module, area = conv.network.layers[index], pooling_area(conv.network.steps, index)
    absolute = connections(module, received.abs().sum(0) / len(x)) * area
    net = connections(module, received.sum(0) / len(x)) * area
    row = r.synaptic_ops[conv.network.steps[index].name]
    assert row["snn_ops"] == pytest.approx(absolute, rel=1e-5) and absolute > net


def test_without_the_flag_leaky_relu_is_refused_naming_the_flag():
    m, shape = PATTERNS["leaky_relu_cnn"]()
    with pytest.raises(Onnx2SnnError, match=r"leaky0 \(LeakyRelu\), leaky1 \(LeakyRelu\).*|--signed-spikes"):
        convert(m, np.random.default_rng(0).uniform(0, 1, size=(20, *shape)).astype(np.float32))


def test_nir_export_refuses_signed_neurons_naming_them(tmp_path):
    pytest.importorskip("nir")
    from onnx2snn import export_nir
    conv, _ = converted()
    with pytest.raises(Onnx2SnnError, match=r"leaky0.*SignedIF.*NIR has no node"):
        export_nir(conv.snn_model, str(tmp_path / "m.nir"))


def test_a_prelu_with_one_slope_converts_as_a_leaky_relu_and_one_per_channel_as_prelu_neurons():
    from onnx import helper
    import graphs
    from patterns import f32
    r = graphs.rng(0)

    def net(slope):
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1),
                 helper.make_node("PRelu", ["g", "slope"], ["p"], name="prelu"),
                 helper.make_node("Gemm", ["p", "w2", "b2"], ["y"], name="fc2", transB=1)]
        return graphs.model(nodes, [graphs.init("w", r.normal(size=(3, 5))), graphs.init("b", r.normal(size=3)),
                                    f32("slope", slope), graphs.init("w2", r.normal(size=(2, 3))),
                                    graphs.init("b2", r.normal(size=2))], (5,))
    cfg = Config()
    cfg.simulation.signed_spikes = True
    x = np.random.default_rng(0).uniform(-1, 1, size=(40, 5)).astype(np.float32)
    conv = convert(net([0.25]), x, cfg)
    node = next(n for n in conv.snn_model.graph.node if n.op_type == "SignedIF")
    assert {a.name: a.f for a in node.attribute}["alpha"] == pytest.approx(0.25)
    conv = convert(net([0.1, 0.2, 0.3]), x, cfg)
    node = next(n for n in conv.snn_model.graph.node if n.op_type == "PReluIF")
    assert node.input[3] == "slope" and conv.verification.agreement == 1.0
    neuron = conv.network.neuron_layers()["prelu"]
    np.testing.assert_allclose(neuron.negative_threshold().reshape(-1), 1 / np.array([0.1, 0.2, 0.3]), rtol=1e-6)
    with pytest.raises(Onnx2SnnError, match=r"prelu \(PRelu\): slope -0.2..0.3: signed neurons need finite slopes > 0"):
        convert(net([0.1, -0.2, 0.3]), x, cfg)
    with pytest.raises(Onnx2SnnError, match=r"prelu \(PRelu\):.*--signed-spikes"):
        convert(net([0.1, 0.2, 0.3]), x)


def test_prelu_neurons_fire_minus_one_at_their_channel_threshold_and_reload_identically(tmp_path):
    """A constant input −z in channel c gives −1 spikes at rate slope[c]·z/θ (each channel its own
    negative threshold); the file's PReluIF node reloads as the same network."""
    from onnx2snn.snn.neurons import SignedIFNeuron
    slope = torch.tensor([0.1, 0.5]).reshape(2, 1, 1)
    neuron = SignedIFNeuron(slope_map=slope)
    z = torch.full((1, 2, 1, 1), -0.8)
    rates = neuron(z, 400, static=True).mean(0).reshape(-1)
    np.testing.assert_allclose(rates.numpy(), [-0.08, -0.4], atol=0.01)
    m, shape = PATTERNS["prelu_cnn"]()
    x = np.random.default_rng(1).uniform(0, 1, size=(30, *shape)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T, cfg.simulation.signed_spikes = 16, True
    conv = convert(m, x, cfg)
    assert [n.op_type for n in conv.snn_model.graph.node if n.name.startswith("prelu")] == ["PReluIF"] * 2
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    np.testing.assert_array_equal(load(path).simulate(x, 16, device="cpu").outputs,
                                  conv.network.simulate(x, 16, device="cpu").outputs)
