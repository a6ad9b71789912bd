"""The .snn.onnx is the spiking network (issue 8): explicit onnx2snn nodes that onnx.checker accepts,
that onnxruntime runs as the rescaled ANN, and from which alone load() rebuilds the SNN."""
import numpy as np
import onnx
import pytest

import graphs
import onnx2snn
from onnx2snn import Config, convert
from onnx2snn.calibrate import run
from onnx2snn.graph import clean_graph
from onnx2snn.graph.spiking import DOMAIN, to_spiking
from patterns import PATTERNS


def data(shape, n=40, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, *shape)).astype(np.float32)


def ops(model):
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_spiking_graph_is_valid_onnx_and_runs_as_the_ann(name, tmp_path):
    m, shape = PATTERNS[name]()
    x = data(shape)
    cfg = graphs.seed_config()
    cfg.simulation.signed_spikes = True       # (leaky_relu_cnn)
    conv = convert(m, x, cfg)
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    written = onnx.load(path)
    onnx.checker.check_model(written, full_check=True)
    assert written.ir_version >= 10                       # node metadata_props need IR 10
    # onnxruntime inlines the functions: the rescaled ANN, whose argmax is the original's
    (ann,) = run(conv.source, conv.input_name, x, [conv.source.graph.output[0].name], 100)
    (snn_as_ann,) = run(written, conv.input_name, x, [written.graph.output[0].name], 100)
    np.testing.assert_array_equal(snn_as_ann.reshape(len(x), -1).argmax(1), ann.reshape(len(x), -1).argmax(1))
    # every ReLU/Clip of the source is an IF node now (seed config: more after average pooling), and
    # every two-sided neuron the passes put on a transformer's tensors (LeakyRelu alpha=1) a SignedIF
    source_relus = sum(op in ("Relu", "Clip", "LeakyRelu") for op in ops(clean_graph(conv.source)[0]))
    spiking = [n for n in written.graph.node if n.domain == DOMAIN]
    assert sum(n.op_type in ("IF", "ClipIF", "SignedIF") and not n.name.endswith(("/IF", "/SignedIF"))
               for n in spiking) == source_relus
    assert "Relu" not in ops(written) and "Clip" not in ops(written) and "LeakyRelu" not in ops(written)
    assert [n.op_type for n in spiking].count("Readout") == 1
    assert written.graph.node[-1].op_type == "Readout"
    assert {f.name for f in written.functions} == {n.op_type for n in spiking}


def test_neuron_attributes_come_from_the_config():
    cfg = graphs.seed_config()
    cfg.simulation.reset = 0.25
    cfg.simulation.v_init = 0.3
    conv = convert(graphs.conv_bn_relu(), data((1, 8, 8)), cfg)
    neuron = next(n for n in conv.snn_model.graph.node if n.op_type == "IF")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in neuron.attribute}
    assert attrs == {"threshold": 1.0, "reset": b"value", "v_reset": 0.25, "v_init": pytest.approx(0.3)}
    module = next(mod for s, mod in zip(conv.network.steps, conv.network.layers) if s.op == "IF")
    assert (module.v_threshold, module.v_reset, module.v_init) == (1.0, 0.25, pytest.approx(0.3))


@pytest.mark.parametrize("rule", ["max", "gate", "wta", "avg"])
def test_max_pool_rule_is_a_node_attribute_and_survives_load(rule, tmp_path):
    cfg = graphs.seed_config()
    cfg.simulation.max_pool.rule = rule if rule in ("max", "gate") else "max"
    cfg.simulation.max_pool.if_wta = rule == "wta"
    cfg.simulation.max_pool.if_spatial_avg = rule == "avg"
    x = data((1, 8, 8))
    conv = convert(graphs.conv_bn_relu(pool="MaxPool"), x, cfg)
    (pool,) = [n for n in conv.snn_model.graph.node if n.op_type == "SpikeMaxPool"]
    assert onnx.helper.get_attribute_value(next(a for a in pool.attribute if a.name == "rule")).decode() == rule
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    # load() with a config asking for another rule still builds what the file says
    other = Config()
    other.simulation.max_pool.rule = "gate" if rule != "gate" else "max"
    net = onnx2snn.load(path, other)
    np.testing.assert_array_equal(net.simulate(x, 12, device="cpu").outputs,
                                  conv.network.simulate(x, 12, device="cpu").outputs)


def test_neurons_after_average_pooling_are_nodes():
    cfg = graphs.seed_config()
    cfg.simulation.avg_pool.has_neuron = True
    conv = convert(graphs.conv_bn_relu(pool="AveragePool"), data((1, 8, 8)), cfg)
    names = ops(conv.snn_model)
    pool = names.index("AveragePool")
    assert names[pool + 1] == "IF"
    cfg.simulation.avg_pool.has_neuron = False
    assert "IF" not in ops(convert(graphs.conv_bn_relu(pool="AveragePool"), data((1, 8, 8)), cfg).snn_model)[pool:]


def test_readout_node_carries_mode_and_delay(tmp_path):
    cfg = graphs.seed_config()
    cfg.simulation.output, cfg.simulation.readout_delay = "spikes", 3
    x = data((1, 8, 8))
    conv = convert(graphs.conv_bn_relu(), x, cfg)
    readout = conv.snn_model.graph.node[-1]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in readout.attribute}
    assert attrs["mode"] == b"spikes" and attrs["delay"] == 3
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    net = onnx2snn.load(path)
    assert net.readout_delay == 3 and type(net.layers[-1]).__name__ == "IFNeuron"


def test_lowering_reads_the_nodes_not_the_config():
    """The lowering reads the file's nodes, not the config: a default Config() lowers the same SNN."""
    cfg = graphs.seed_config()
    cfg.simulation.v_init, cfg.simulation.reset = 0.2, 0.0
    x = data((1, 8, 8))
    conv = convert(graphs.conv_bn_relu(pool="MaxPool"), x, cfg)
    from onnx2snn.lower import lower_model
    again = lower_model(conv.snn_model)
    np.testing.assert_array_equal(again.simulate(x, 10, device="cpu").outputs,
                                  conv.network.simulate(x, 10, device="cpu").outputs)


def test_bad_neuron_attributes_are_named():
    conv = convert(graphs.conv_bn_relu(), data((1, 8, 8)), graphs.seed_config())
    m = onnx.ModelProto()
    m.CopyFrom(conv.snn_model)
    neuron = next(n for n in m.graph.node if n.op_type == "IF")
    next(a for a in neuron.attribute if a.name == "threshold").f = float("nan")
    with pytest.raises(onnx2snn.Onnx2SnnError, match=r"IF\): threshold=nan"):
        onnx2snn.load(m)


def test_a_spiking_graph_passes_through_to_spiking_unchanged():
    conv = convert(graphs.conv_bn_relu(), data((1, 8, 8)), graphs.seed_config())
    assert to_spiking(conv.snn_model).SerializeToString() == conv.snn_model.SerializeToString()


def test_synaptic_factor_nodes_are_described():
    m, shape = PATTERNS["residual_blocks"]()
    conv = convert(m, data(shape), graphs.seed_config())
    factors = [n for n in conv.snn_model.graph.node if n.op_type == "Mul" and "/factor" in n.name]
    assert factors
    for node in factors:
        assert "Synaptic factor" in node.doc_string and node.doc_string.count("\n") >= 2
        assert float({p.key: p.value for p in node.metadata_props}["factor"].split()[-1].split("-")[-1]) > 0
        assert node.output[0] == node.name + "_output_0"


def test_a_config_given_to_load_changes_the_simulation_options_not_the_network(tmp_path):
    """The readout delay is the Readout node's alone (issue 20, part 3): a config passed to load()
    or simulate() with another delay leaves the network's readout as the file states it."""
    import onnx2snn
    from onnx2snn import simulate
    m = graphs.conv_bn_relu()
    x = np.random.default_rng(6).uniform(0, 1, size=(20, 1, 8, 8)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T, cfg.simulation.output, cfg.simulation.readout_delay = 10, "membrane", 3
    conv = convert(m, x, cfg)
    assert conv.readout == ("membrane", 3) and conv.network.readout_delay == 3
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    other = Config()
    other.simulation.T, other.simulation.readout_delay, other.batch_size = 7, 0, 5
    net = onnx2snn.load(path, other)
    assert net.readout_delay == 3 and net.defaults.T == 7 and net.defaults.batch_size == 5
    a = simulate(net, x)                         # T and batch size from the config given to load()
    b = simulate(conv.network, x, T=7, config=other)
    assert a.T == 7
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.outputs, conv.network.simulate(x, 7, device="cpu", readout_delay=3).outputs)
