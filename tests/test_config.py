"""Config: seed defaults, round trip through JSON and TOML, rejection of bad keys and values."""

import pytest

from onnx2snn import Config, Onnx2SnnError


def test_seed_defaults():
    c = Config()
    assert c.parser.robust_norm is True and c.parser.percentile == 99.9
    s = c.simulation
    assert s.T == 100 and s.reset == "subtract" and s.encoder.poisson is False
    assert (s.max_pool.if_spatial_avg, s.max_pool.if_wta, s.max_pool.momentum) == (False, False, None)


def test_low_latency_defaults():
    """onnx2snn's own defaults (issue 7): calibrated for the run's T, no neurons after average pooling,
    running-max pooling, readout chosen on held-back calibration images."""
    c = Config()
    assert c.parser.threshold == "search" and c.calibration.bias and c.calibration.T is None
    assert c.target_T == c.simulation.T == 100
    assert c.simulation.avg_pool.has_neuron is False and c.max_pool_mode == "max"
    assert c.simulation.output == "auto" and c.simulation.readout_delay is None
    c.simulation.max_pool.momentum = 0.9  # momentum means the gate
    assert c.max_pool_mode == "gate"


def test_json_round_trip(tmp_path):
    c = Config()
    c.simulation.max_pool.momentum = 0.7
    c.simulation.reset = 0.25
    c.parser.percentile = 99.5
    c.save(tmp_path / "c.json")
    assert Config.load(str(tmp_path / "c.json")) == c


def test_toml_partial_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[parser]\nrobust_norm = false\n[simulation.max_pool]\nif_wta = true\n")
    c = Config.load(str(p))
    assert c.parser.robust_norm is False and c.simulation.max_pool.if_wta is True and c.simulation.T == 100


@pytest.mark.parametrize("data,match", [
    ({"parser": {"robust": True}}, "unknown config key 'parser.robust'"),
    ({"simulation": {"T": 0}}, "simulation.T"),
    ({"simulation": {"max_pool": {"momentum": 1.5}}}, "momentum"),
    ({"simulation": {"max_pool": {"if_wta": True, "if_spatial_avg": True}}}, "at most one"),
    ({"parser": {"percentile": 0}}, "percentile"),
    ({"simulation": {"encoder": {"poisson": "yes"}}}, "poisson"),
    ({"simulation": {"output": "rates"}}, "output"),
    ({"simulation": 3}, "section"),
])
def test_rejects_bad_values(data, match):
    with pytest.raises(Onnx2SnnError, match=match):
        Config.from_dict(data)


def test_bad_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(Onnx2SnnError, match="not valid JSON"):
        Config.load(str(p))
    with pytest.raises(Onnx2SnnError, match="does not exist"):
        Config.load(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("seed_value,reset", [(None, "subtract"), (False, "subtract"), (True, 0.0), (0.25, 0.25)])
def test_seed_reset_key_is_read_as_reset(seed_value, reset):
    """The seed's ``reset_to_zero`` (and 0.1/0.2 config files) still load, as the explicit ``reset``."""
    c = Config.from_dict({"simulation": {"reset_to_zero": seed_value}})
    assert c.simulation.reset == reset
    assert "reset_to_zero" not in c.to_json()
