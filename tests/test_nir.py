"""NIR export and the reader that honours its metadata (issue 8): the round trip gives the same SNN."""
import os

import numpy as np
import onnx
import pytest

import graphs
import onnx2snn
from conftest import EXAMPLES
from onnx2snn import Config, convert
from patterns import PATTERNS
from test_cli import assert_one_line_error, cli

nir = pytest.importorskip("nir")


def round_trip(conv, x, T, tmp_path, **kw):
    path = str(tmp_path / "m.nir")
    approximations = onnx2snn.export_nir(conv.snn_model, path, **kw)
    net = onnx2snn.load_nir(path)
    a = net.simulate(x, T, device="cpu", record_rates=True)
    b = conv.network.simulate(x, T, device="cpu", record_rates=True)
    return a, b, approximations, nir.read(path)


def test_mnist_example_round_trip_gives_identical_spikes(tmp_path):
    calib = np.load(os.path.join(EXAMPLES, "mnist_calib.npy"))
    cfg = Config()
    cfg.simulation.T = 32
    conv = convert(os.path.join(EXAMPLES, "mnist_cnn.onnx"), calib, cfg)
    a, b, approximations, graph = round_trip(conv, calib[:40], 32, tmp_path)
    assert approximations == []
    np.testing.assert_array_equal(a.outputs, b.outputs)
    assert list(a.firing_rates.values()) == list(b.firing_rates.values())    # identical spike counts per layer
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert kinds.count("IF") == 3 and kinds.count("Conv2d") == 3 and "Affine" in kinds and "I" in kinds
    neuron = next(n for n in graph.nodes.values() if type(n).__name__ == "IF")
    assert neuron.metadata["onnx2snn.reset"] == "subtract" and neuron.metadata["onnx2snn.fires"] == "v >= threshold"
    assert float(neuron.metadata["onnx2snn.v_init"]) == cfg.simulation.v_init


def test_residual_adds_become_summed_edges_and_factors_scales(tmp_path):
    m, shape = PATTERNS["residual_blocks"]()
    x = np.random.default_rng(0).uniform(0, 1, size=(30, *shape)).astype(np.float32)
    conv = convert(m, x)
    a, b, _, graph = round_trip(conv, x, 16, tmp_path)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert "Scale" in kinds
    fan_in = {}
    for _, dst in graph.edges:
        fan_in[dst] = fan_in.get(dst, 0) + 1
    assert max(fan_in.values()) >= 2                       # an Add is several edges into one node


def test_per_neuron_v_init_spike_readout_and_reset_value_survive(tmp_path):
    x = np.random.default_rng(1).uniform(0, 1, size=(40, 1, 8, 8)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T, cfg.calibration.v_init = 8, True
    conv = convert(graphs.conv_bn_relu(), x, cfg)
    assert conv.calibration.v_init_maps
    a, b, _, _ = round_trip(conv, x, 8, tmp_path)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    cfg = graphs.seed_config()
    cfg.simulation.reset, cfg.simulation.output, cfg.simulation.readout_delay = 0.1, "spikes", 2
    conv = convert(graphs.conv_bn_relu(), x, cfg)
    a, b, _, graph = round_trip(conv, x, 12, tmp_path)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    assert graph.metadata["onnx2snn.readout_delay"] == 2


def test_max_pooling_of_spikes_is_refused_by_name_unless_approximated(tmp_path):
    x = np.random.default_rng(2).uniform(0, 1, size=(20, 1, 8, 8)).astype(np.float32)
    conv = convert(graphs.conv_bn_relu(pool="MaxPool"), x)
    with pytest.raises(onnx2snn.Onnx2SnnError, match=r"pool1 \(SpikeMaxPool\): NIR has no max pooling"):
        onnx2snn.export_nir(conv.snn_model, str(tmp_path / "m.nir"))
    assert not os.listdir(tmp_path)
    approximations = onnx2snn.export_nir(conv.snn_model, str(tmp_path / "m.nir"), approximate=True)
    assert len(approximations) == 1 and "average pooling" in approximations[0]
    assert "pool1" in nir.read(str(tmp_path / "m.nir")).metadata["onnx2snn.approximations"]


def test_cli_writes_nir_beside_the_snn_onnx(tmp_path):
    rc, out, err = cli(os.path.join(EXAMPLES, "mnist_cnn.onnx"), os.path.join(EXAMPLES, "mnist_calib.npy"),
                       "-T", "8", "-q", "--nir", "-o", tmp_path / "o", cwd=tmp_path)
    assert rc == 0, err
    assert "mnist_cnn.nir" in out and os.path.isfile(tmp_path / "o" / "mnist_cnn.nir")
    net = onnx2snn.load_nir(str(tmp_path / "o" / "mnist_cnn.nir"))
    assert len(net.neuron_layers()) == 3


def test_cli_nir_refusal_is_one_line_and_leaves_nothing(tmp_path):
    onnx.save(graphs.conv_bn_relu(pool="MaxPool"), str(tmp_path / "mp.onnx"))
    np.save(tmp_path / "calib.npy", np.random.default_rng(3).uniform(0, 1, size=(50, 1, 8, 8)).astype(np.float32))
    rc, out, err = cli("mp.onnx", "calib.npy", "-T", "8", "-q", "--nir", cwd=tmp_path)
    assert_one_line_error(rc, err, "pool1 (SpikeMaxPool)", "--nir-approximate")
    assert sorted(os.listdir(tmp_path)) == ["calib.npy", "mp.onnx"]
    assert "verified" not in out          # refused before the conversion's work, not after it


def test_nir_refusals_come_before_the_conversion_for_each_kind_the_exporter_refuses(tmp_path, capsys):
    """Max pooling of spikes, ConvTranspose, signed neurons: refused by the pre-check, naming the node."""
    pytest.importorskip("nir")
    from onnx2snn import cli as cli_module
    from onnx2snn.nir_io import check_exportable
    cases = {"conv_transpose_decoder": "ConvTranspose", "leaky_relu_cnn": "SignedIF"}
    for name, fragment in cases.items():
        m, _ = PATTERNS[name]()
        cfg = Config()
        cfg.simulation.signed_spikes = True
        with pytest.raises(onnx2snn.Onnx2SnnError, match=fragment):
            check_exportable(m, cfg.spiking_options(), signed=True)
    m, shape = PATTERNS["conv_transpose_decoder"]()
    onnx.save(m, str(tmp_path / "ct.onnx"))
    np.save(tmp_path / "c.npy", np.random.default_rng(0).uniform(0, 1, size=(20, *shape)).astype(np.float32))
    rc = cli_module.main([str(tmp_path / "ct.onnx"), str(tmp_path / "c.npy"), "-q", "--nir", "-o", str(tmp_path / "o")])
    out, err = capsys.readouterr()
    assert rc == 1 and "ConvTranspose" in err and "verified" not in out and not (tmp_path / "o").exists()


def test_load_nir_names_a_bad_file(tmp_path):
    (tmp_path / "bad.nir").write_bytes(b"not hdf5")
    with pytest.raises(onnx2snn.Onnx2SnnError, match="not a readable NIR file"):
        onnx2snn.load_nir(str(tmp_path / "bad.nir"))
