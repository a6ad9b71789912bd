"""Every fixture and the three reference models: .snn.onnx -> load() -> identical spikes (issue 8),
and onnxruntime runs the written file with the original's argmax."""
import os

import numpy as np
import onnx
import pytest

import onnx2snn
from conftest import HERE
from onnx2snn.calibrate import run

FIXTURES = sorted(f for f in os.listdir(os.path.join(HERE, "fixtures")) if f.endswith(".onnx") and ".snn." not in f)
REFERENCE = ["mnist_cnn.onnx", "cifar_resnet20.onnx", "cifar_vgg16.onnx"]


def fast_config():
    """Statistics only (no SNN calibration): the round trip, not the accuracy, is under test."""
    cfg = onnx2snn.Config()
    cfg.parser.threshold, cfg.calibration.bias, cfg.simulation.output = "statistic", False, "membrane"
    cfg.simulation.T = 6
    return cfg


def check_round_trip(path, tmp_path):
    shape = onnx2snn.graph.load_model(path).sample_shape
    x = np.random.default_rng(0).uniform(0, 1, size=(24, *shape)).astype(np.float32)
    conv = onnx2snn.convert(path, x, fast_config())
    out = str(tmp_path / "m.snn.onnx")
    conv.save(out)
    written = onnx.load(out)
    onnx.checker.check_model(written, full_check=True)
    net = onnx2snn.load(out)
    a = net.simulate(x[:6], 6, device="cpu", record_rates=True)
    b = conv.network.simulate(x[:6], 6, device="cpu", record_rates=True)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    assert a.firing_rates == b.firing_rates                       # the same spikes, layer by layer
    (ann,) = run(conv.source, conv.input_name, x[:6], [conv.source.graph.output[0].name], 6)
    (snn_as_ann,) = run(written, conv.input_name, x[:6], [written.graph.output[0].name], 6)
    np.testing.assert_array_equal(ann.reshape(6, -1).argmax(1), snn_as_ann.reshape(6, -1).argmax(1))


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_round_trip(name, tmp_path):
    check_round_trip(os.path.join(HERE, "fixtures", name), tmp_path)


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_model_round_trip(name, tmp_path, shared_dir):
    check_round_trip(os.path.join(shared_dir, "models", name), tmp_path)
