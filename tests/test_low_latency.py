"""Calibration for a target T (issue 7): threshold search, bias calibration, readout choice,
running-max pooling."""
import json
import os

import numpy as np
import onnx
import pytest
import torch

import graphs
from conftest import EXAMPLES
from onnx2snn import Config, Onnx2SnnError, convert, simulate
from onnx2snn.graph.annotate import read_metadata
from onnx2snn.graph.spiking import InputEncoding
from onnx2snn.snn import RunningMaxPool
from onnx2snn.snn_calibration import ann_targets, clearly_better, delays, per_channel
from onnx2snn.thresholds import StreamingHistogram, quantisation_error, search_threshold
from patterns import PATTERNS


# --- threshold search ------------------------------------------------------------------------------

def test_histogram_doubling_is_exact():
    """Bins merge pairwise when the range doubles: the counts equal one histogram over the final range."""
    r = np.random.default_rng(0)
    parts = [r.exponential(0.2, 1000), r.exponential(1.0, 1000), r.exponential(5.0, 1000), -r.random(50)]
    h = StreamingHistogram(bins=64)
    for p in parts:
        h.update(p.astype(np.float32))
    values = np.maximum(np.concatenate(parts), 0).astype(np.float32)
    expected, _ = np.histogram(values, bins=64, range=(0, h.range))
    assert h.range > values.max() and h.counts.sum() == values.size
    np.testing.assert_array_equal(h.counts, expected)


@pytest.mark.parametrize("T", [4, 16, 64])
def test_search_never_increases_the_error_it_minimises(T):
    """The searched λ has an error at most that of the max and of the 99.9th percentile."""
    r = np.random.default_rng(T)
    values = np.maximum(r.normal(0.3, 1.0, 50_000), 0) * r.choice([1, 8], 50_000, p=[0.999, 0.001])
    h = StreamingHistogram()
    h.update(values)
    lam = search_threshold(h, T, 0.5)
    err = lambda l: quantisation_error(h, np.array([l]), T, 0.5)[0]
    assert 0 < lam <= values.max()
    assert err(lam) <= err(values.max()) + 1e-12
    assert err(lam) <= err(np.percentile(values, 99.9)) + 1e-12
    assert lam < values.max()  # the outliers are clipped at low T


def test_search_lambda_falls_with_T():
    """Fewer steps: coarser quantisation, so the search clips more (a smaller λ)."""
    h = StreamingHistogram()
    h.update(np.random.default_rng(1).exponential(1.0, 100_000))
    lams = [search_threshold(h, T, 0.5) for T in (4, 32, 256)]
    assert lams[0] < lams[1] < lams[2]


# --- bias calibration ------------------------------------------------------------------------------

def _layer_rate_errors(conv, reference_model, x, T):
    """Mean |ANN rate − SNN rate| per channel, per layer of neurons that follows a weighted layer."""
    from onnx2snn.snn_calibration import bias_targets
    targets = bias_targets(conv.network, conv.snn_model, conv.plan)
    goal = ann_targets(reference_model, "x", [t.tensor for t in targets], x, 100)
    sums = {}

    def hook(tensor):
        def h(module, args, out):
            dims = [d for d in range(out.dim()) if d != 2]
            sums.setdefault(tensor, []).append((out.sum(dim=dims, dtype=torch.float64), out.numel() // out.shape[2]))
        return h

    handles = [t.neuron.register_forward_hook(hook(t.tensor)) for t in targets]
    conv.network.simulate(x, T, device="cpu")
    for h in handles:
        h.remove()
    errors = {}
    for t in targets:
        rate = sum(s for s, _ in sums[t.tensor]) / sum(n for _, n in sums[t.tensor])
        errors[t.tensor] = float(np.mean(np.abs(per_channel(goal[t.tensor]) - rate.numpy())))
    return errors


@pytest.mark.parametrize("name", ["residual_blocks", "concat_bn_densenet", "conv1d_bn_maxpool"])
def test_bias_calibration_reduces_every_layers_rate_error(name):
    m, shape = PATTERNS[name]()
    x = np.random.default_rng(0).uniform(0, 1, size=(120, *shape)).astype(np.float32)
    T = 8
    cfg = Config()
    cfg.simulation.T = T
    cfg.calibration.bias = False
    plain = convert(m, x, cfg)
    cfg.calibration.bias = True
    calibrated = convert(m, x, cfg)
    assert calibrated.calibration.offsets, "some layer's bias was calibrated"
    fit = x[:len(x) - calibrated.calibration.holdout_images]
    before = _layer_rate_errors(plain, plain.snn_model, fit, T)
    after = _layer_rate_errors(calibrated, plain.snn_model, fit, T)  # same λ: the uncalibrated graph is the goal
    assert set(before) == set(after)
    for tensor in before:
        assert after[tensor] <= before[tensor] + 1e-9, (tensor, before[tensor], after[tensor])
    assert np.mean(list(after.values())) < np.mean(list(before.values()))


def test_calibration_is_deterministic_and_independent_of_batch_size():
    m, shape = PATTERNS["residual_blocks"]()
    x = np.random.default_rng(1).uniform(0, 1, size=(60, *shape)).astype(np.float32)
    results = []
    for batch in (7, 100, 7):
        cfg = Config()
        cfg.simulation.T = 16
        cfg.batch_size = batch
        results.append(convert(m, x, cfg))
    a, b, c = ({i.name: np.frombuffer(i.raw_data, np.float32) if i.raw_data else None for i in r.snn_model.graph.initializer}
               for r in results)
    assert results[0].snn_model.SerializeToString() == results[2].snn_model.SerializeToString()
    assert a.keys() == b.keys()
    for k in a:
        if a[k] is not None:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert results[0].readout == results[1].readout


def test_calibrated_network_reloads_identically(tmp_path):
    """The calibrated biases and the chosen readout live in the .snn.onnx: load() gives the same SNN."""
    import onnx2snn
    m, shape = PATTERNS["residual_blocks"]()
    x = np.random.default_rng(2).uniform(0, 1, size=(40, *shape)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T = 12
    conv = convert(m, x, cfg)
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    net = onnx2snn.load(path)
    assert conv.readout[0] in ("spikes", "membrane") and net.readout_delay == conv.readout[1]
    np.testing.assert_array_equal(simulate(net, x).outputs, simulate(conv.network, x).outputs)


def test_calibration_errors():
    m = graphs.conv_bn_relu()
    x = np.random.default_rng(0).normal(size=(6, 1, 8, 8)).astype(np.float32)
    with pytest.raises(Onnx2SnnError, match="has 6 image.*at least 10"):
        convert(m, x)
    cfg = Config()
    cfg.calibration.T = 0
    with pytest.raises(Onnx2SnnError, match="calibration.T = 0"):
        convert(m, np.concatenate([x, x]), cfg)
    convert(m, x, graphs.seed_config())  # the seed's conversion needs no split


def test_mnist_example_low_T_better_with_calibration():
    """The shipped example at T=16: calibrated for T=16 beats the seed's conversion."""
    calib = np.load(os.path.join(EXAMPLES, "mnist_calib.npy"))
    test = np.load(os.path.join(EXAMPLES, "mnist_test.npz"))
    model = os.path.join(EXAMPLES, "mnist_cnn.onnx")
    accuracy = {}
    for name, cfg in (("seed", graphs.seed_config()), ("calibrated", Config())):
        cfg.simulation.T = 16
        accuracy[name] = simulate(convert(model, calib, cfg).network, test["x"], test["y"]).accuracy
    assert accuracy["calibrated"] > accuracy["seed"] + 0.005, accuracy


# --- readout ---------------------------------------------------------------------------------------

def test_readout_delay_ignores_first_steps():
    m, shape = PATTERNS["residual_blocks"]()
    x = np.random.default_rng(3).uniform(0, 1, size=(12, *shape)).astype(np.float32)
    conv = convert(m, x, graphs.seed_config())
    full = conv.network.simulate(x, 10, device="cpu", record_steps=True)
    late = conv.network.simulate(x, 10, device="cpu", readout_delay=4)
    assert full.step_outputs.shape == (10, 12, full.outputs.shape[1])
    np.testing.assert_allclose(late.outputs, full.step_outputs[4:].sum(0), rtol=1e-5, atol=1e-5)


def test_readout_switch_needs_a_clear_margin():
    """Another readout replaces membrane-without-delay only when it wins clearly on the held-back
    images: one or two images more is noise, a consistent gain is not."""
    default = np.array([True] * 190 + [False] * 10)
    one_more = default.copy(); one_more[190] = True
    assert not clearly_better(one_more, default)
    swapped = default.copy(); swapped[190:196] = True; swapped[:4] = False   # 6 wins, 4 losses: 2 < √10
    assert not clearly_better(swapped, default)
    consistent = default.copy(); consistent[190:198] = True                   # 8 wins, no loss
    assert clearly_better(consistent, default)
    assert not clearly_better(default, consistent)


def test_delay_candidates():
    assert delays(8) == [0, 1, 2, 3, 4]
    assert delays(32) == [0, 1, 2, 3, 4, 6, 8, 12, 16]


# --- running-max pooling ---------------------------------------------------------------------------

def test_running_max_pool_count_is_the_max_of_counts():
    """At every step, the output count is exactly the largest input count of the window; chunks agree."""
    s = (torch.rand(40, 2, 3, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    pool = lambda: RunningMaxPool([2, 2], [2, 2], [0, 0, 0, 0], [1, 1], False)
    out = pool()(s, 40)
    assert torch.all((out == 0) | (out == 1))
    counts = torch.cumsum(s, 0).flatten(0, 1)
    expected = torch.nn.functional.max_pool2d(counts, 2, 2).view(40, 2, 3, 3, 3)
    assert torch.equal(torch.cumsum(out, 0), expected)
    p = pool()
    assert torch.equal(out, torch.cat([p(s[:9], 9), p(s[9:], 31)]))



def test_per_neuron_v_init_round_trips(tmp_path):
    """Potential calibration gives every neuron its own v_init; the .snn.onnx carries them (an
    initializer named on the ReLU node), onnx.checker accepts the file, and load() rebuilds them."""
    import onnx
    import onnx2snn
    m, shape = PATTERNS["residual_blocks"]()
    x = np.random.default_rng(4).uniform(0, 1, size=(60, *shape)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T = 8
    cfg.calibration.v_init = True
    conv = convert(m, x, cfg)
    maps = conv.calibration.v_init_maps
    assert maps and any(np.any(v != cfg.simulation.v_init) for v in maps.values())
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    net = onnx2snn.load(path)
    loaded = {step.output: mod.v_init_map for step, mod in zip(net.steps, net.layers)
              if getattr(mod, "v_init_map", None) is not None}
    assert len(loaded) == len(maps)
    for tensor, v in maps.items():
        np.testing.assert_array_equal(loaded[tensor].numpy(), v.astype(np.float32))
    np.testing.assert_array_equal(simulate(net, x).outputs, simulate(conv.network, x).outputs)


def test_files_written_by_0_1_0_load_as_they_were():
    """A .snn.onnx written by onnx2snn 0.1.0 (commit 74b0ff9: ``convert(graphs.conv_bn_relu(pool="MaxPool"),
    x)`` with x below, then ``save``) predates the max-pool rule and the readout choice: it loads with
    the gate it was converted for, and simulates to 0.1.0's outputs (saved beside it)."""
    import onnx2snn
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    net = onnx2snn.load(os.path.join(fixtures, "v0.1.0_conv_maxpool.snn.onnx"))
    assert any(type(m).__name__ == "GatedMaxPool" for m in net.layers) and type(net.layers[-1]).__name__ == "IFNeuron"
    x = np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32)
    expected = np.load(os.path.join(fixtures, "v0.1.0_conv_maxpool.outputs.npy"))
    np.testing.assert_array_equal(net.simulate(x, 20, device="cpu").outputs, expected)


def test_calibration_runs_in_passes_when_memory_is_short(monkeypatch):
    """At high T one pass holds fewer images: the calibration then runs several passes over
    disjoint parts, each applying its share of the correction, and still reduces every layer's error."""
    from onnx2snn import snn_calibration
    m, shape = PATTERNS["residual_blocks"]()
    x = np.random.default_rng(7).uniform(0, 1, size=(150, *shape)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T, cfg.calibration.samples = 8, 96
    one = convert(m, x, cfg).calibration
    monkeypatch.setattr(snn_calibration, "sample_budget", lambda network, T, options: 32)
    calls = []
    original = snn_calibration.calibrate_biases
    monkeypatch.setattr(snn_calibration, "calibrate_biases",
                        lambda *a, **k: (calls.append((len(a[4]), k.get("weight"))), original(*a, **k))[1])
    several = convert(m, x, cfg).calibration
    assert calls == [(32, 1.0), (32, 0.5), (32, pytest.approx(1 / 3))]
    assert one.fit_images == several.fit_images == 96
    for tensor, errors in several.rate_error.items():
        assert errors[-1] <= errors[0] + 1e-9, tensor
    assert any(not np.allclose(one.offsets[k], several.offsets[k]) for k in one.offsets)


def test_memory_bound_wins_over_the_images_a_pass_would_like(monkeypatch):
    """Where one image's T steps take a sizeable share of the budget (ImageNet networks: gigabytes),
    a pass holds as many images as fit, fewer than 32, and whole passes cover the images asked for;
    at least one image runs."""
    from onnx2snn import snn_calibration
    m, shape = PATTERNS["residual_blocks"]()
    x = np.random.default_rng(3).uniform(0, 1, size=(60, *shape)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T, cfg.calibration.samples = 8, 20
    net = convert(m, x, cfg).network
    per_image = snn_calibration.BYTES_PER_ELEMENT_STEP * 8 * net.elements_per_sample
    options = cfg.calibration_options()
    assert snn_calibration.sample_budget(net, 8, options, budget=3 * per_image + 1) == 3
    assert snn_calibration.sample_budget(net, 8, options, budget=per_image // 2) == 1
    assert snn_calibration.sample_budget(net, 8, options, budget=10 ** 12) == 20
    real = snn_calibration.sample_budget
    monkeypatch.setattr(snn_calibration, "sample_budget",
                        lambda network, T, options: real(network, T, options, budget=3 * per_image + 1))
    passes = snn_calibration.calibration_passes(net, x[:48], 8, options)
    assert [len(p) for p in passes] == [3] * 7   # 20 images asked: seven whole passes of 3


@pytest.mark.parametrize("name", ["residual_blocks", "concat_bn_densenet", "nhwc_transpose", "depthwise_dilated_strided",
                                  "token_mixer", "channel_split_shuffle", "conv_transpose_decoder",
                                  "nearest_upsample_skip", "gather_channels_and_token"])
def test_per_channel_thresholds_stay_exact_and_round_trip(name, tmp_path):
    """One λ per channel folds into the weights: the edited graph still verifies (convert checks
    every tensor), onnxruntime keeps the original's argmax, load() gives the same spikes, and the
    channels' λ differ."""
    import onnx2snn
    from onnx2snn.calibrate import run
    m, shape = PATTERNS[name]()
    x = np.random.default_rng(8).uniform(0, 1, size=(60, *shape)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T, cfg.parser.per_channel = 16, True
    conv = convert(m, x, cfg)
    vectors = {l.node: l.lambda_out for l in conv.layers if isinstance(l.lambda_out, list)}
    assert vectors and any(len(set(v)) > 1 for v in vectors.values())
    if name == "token_mixer":   # the channel MLP's features become the token MLP's positions: one λ there
        assert "channel_mlp/MatMul" not in vectors and "grid_mlp/MatMul" in vectors
    (ann,) = run(conv.source, conv.input_name, x, [conv.source.graph.output[0].name], 60)
    (edited,) = run(conv.snn_model, conv.input_name, x, [conv.snn_model.graph.output[0].name], 60)
    assert np.mean(ann.reshape(60, -1).argmax(1) == edited.reshape(60, -1).argmax(1)) >= 0.95  # biases calibrated
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    np.testing.assert_array_equal(onnx2snn.load(path).simulate(x, 16, device="cpu").outputs,
                                  conv.network.simulate(x, 16, device="cpu").outputs)


def test_per_channel_search_error_is_at_most_the_layers():
    """Each channel's λ minimises that channel's T-step error: summed over channels it is no larger
    than the error of the layer's single λ (up to the grids' resolution)."""
    from onnx2snn.thresholds import ChannelHistograms, quantisation_error
    rng = np.random.default_rng(9)
    values = np.maximum(rng.normal(0, 1, (200, 4, 6, 6)) * np.array([0.2, 1, 3, 10])[None, :, None, None], 0)
    per = ChannelHistograms()
    per.update(values)
    whole = StreamingHistogram()
    whole.update(values)
    T = 8
    lam = search_threshold(whole, T, 0.5)
    lams = [search_threshold(c, T, 0.5) for c in per.channels]
    err_per = sum(quantisation_error(c, np.array([l]), T, 0.5)[0] for c, l in zip(per.channels, lams))
    err_one = sum(quantisation_error(c, np.array([lam]), T, 0.5)[0] for c in per.channels)
    assert err_per < 0.5 * err_one


# --- max pooling before the first neurons ---------------------------------------------------------

def test_stem_max_pool_pools_the_current_before_the_neurons():
    """Conv -> ReLU -> MaxPool at the input: the spiking graph pools the constant current and has
    IF neurons only after it (a quarter as many), whose spike counts are exactly the T-step rate of
    the pooled, normalised ANN activation; with Poisson input the pooling stays on spikes."""
    import onnx2snn
    from onnx2snn.calibrate import run
    m = graphs.conv_bn_relu(pool="MaxPool")
    x = np.random.default_rng(0).normal(size=(40, 1, 8, 8)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T, cfg.device, cfg.calibration.bias, cfg.simulation.output = 16, "cpu", False, "membrane"
    cfg.simulation.max_pool.before_neuron = True
    conv = convert(m, x, cfg)
    producer = {o: n.op_type for n in conv.snn_model.graph.node for o in n.output}
    pool = next(n for n in conv.snn_model.graph.node if n.op_type == "MaxPool")
    assert producer[pool.input[0]] == "Conv" and "before the neurons" in pool.doc_string   # legible in Netron
    if_node = next(n for n in conv.snn_model.graph.node if n.op_type == "IF")
    assert if_node.input[0] == "r1_pooled" and if_node.output[0] == "p1"
    assert not any(n.op_type == "SpikeMaxPool" for n in conv.snn_model.graph.node)
    neuron = next(mod for mod in conv.network.modules() if mod.__class__.__name__ == "IFNeuron")
    counts = []
    handle = neuron.register_forward_hook(lambda mod, args, out: counts.append(out.sum(0)))
    conv.network.simulate(x, 16, device="cpu")
    handle.remove()
    spikes = torch.cat(counts).numpy().reshape(len(x), -1)
    (a,) = run(conv.snn_model, "x", x, ["p1"], 100)   # onnxruntime runs the spiking graph as the rescaled ANN
    assert spikes.shape == a.reshape(len(x), -1).shape == (40, 4 * 4 * 4)
    expected = np.clip(np.floor(a.reshape(len(x), -1) * 16 + 0.5), 0, 16)
    assert np.mean(spikes == expected) > 0.99 and np.abs(spikes - expected).max() <= 1
    poisson = Config.from_dict(cfg.to_dict())
    poisson.simulation.encoder.poisson = True
    # the file records the input it takes; the runtime refuses Poisson input, with or without a config
    assert json.loads(read_metadata(conv.snn_model)["onnx2snn.input"]) == {
        "encoding": "current", "poisson_refused": pytest.approx(conv.network.encoding.poisson_refused)}
    with pytest.raises(Onnx2SnnError, match="pools its constant input current"):   # load() with a Poisson config
        onnx2snn.simulate(onnx2snn.load(conv.snn_model, poisson), x, T=4)
    with pytest.raises(Onnx2SnnError, match="pools its constant input current"):
        conv.network.simulate(np.clip(x, 0, 1), 4, poisson=True)
    assert onnx2snn.load(conv.snn_model, cfg).defaults.poisson is False
    older = onnx.ModelProto()       # a file written before the record: read from its structure
    older.CopyFrom(conv.snn_model)
    kept = [p for p in older.metadata_props if p.key != "onnx2snn.input"]
    del older.metadata_props[:]
    older.metadata_props.extend(kept)
    assert onnx2snn.load(older).encoding == conv.network.encoding
    conv = convert(m, np.clip(x, 0, 1), poisson)
    assert any(n.op_type == "SpikeMaxPool" for n in conv.snn_model.graph.node)
    assert onnx2snn.load(conv.snn_model).encoding == InputEncoding("poisson", None)


def test_max_pool_of_a_deeper_current_is_described_and_loads_with_poisson():
    """Conv -> MaxPool -> ReLU after the first neurons (an exporter's order, not pool_before_neurons):
    its current changes every step, the node says so, and a Poisson override still loads."""
    import onnx2snn
    from onnx import helper
    r = graphs.rng(2)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Relu", ["p2"], ["r2"], name="relu2"),
             helper.make_node("Flatten", ["r2"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1)]
    inits = [graphs.init("w1", r.normal(0, 0.5, (4, 1, 3, 3))), graphs.init("b1", r.normal(0, 0.3, 4)),
             graphs.init("w2", r.normal(0, 0.5, (4, 4, 3, 3))), graphs.init("b2", r.normal(0, 0.3, 4)),
             graphs.init("w3", r.normal(0, 0.5, (3, 64))), graphs.init("b3", r.normal(0, 0.3, 3))]
    x = np.random.default_rng(0).uniform(0, 1, (40, 1, 8, 8)).astype(np.float32)
    cfg = Config()
    cfg.simulation.T, cfg.device, cfg.simulation.max_pool.before_neuron = 8, "cpu", True
    conv = convert(graphs.model(nodes, inits, (1, 8, 8)), x, cfg)
    pool = next(n for n in conv.snn_model.graph.node if n.op_type == "MaxPool")
    assert "each time step's current" in pool.doc_string
    poisson = Config.from_dict(conv.config.to_dict())
    poisson.simulation.encoder.poisson = True
    assert onnx2snn.load(conv.snn_model, poisson).defaults.poisson
