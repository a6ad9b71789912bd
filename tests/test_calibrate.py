"""Calibration statistics equal NumPy's over the same activations; normalisation invariant."""
import numpy as np
import pytest

import graphs
from onnx2snn import convert
from onnx2snn.calibrate import StreamingPercentile, collect_stats
from onnx2snn.graph import clean_graph


@pytest.mark.parametrize("p", [99.9, 99.0, 50.0, 100.0, 0.5])
@pytest.mark.parametrize("batches", [1, 3, 17])
@pytest.mark.parametrize("clipped", [False, True])
def test_streaming_percentile_equals_numpy(p, batches, clipped):
    values = np.random.default_rng(0).exponential(size=5003).astype(np.float32)
    values[::7] = 0  # ReLU-like ties at zero
    if clipped:      # ReLU6-like ties at the top: later batches bring values equal to the K-th largest
        values = np.minimum(values, 1.5)
    tracker = StreamingPercentile(values.size, p)
    for chunk in np.array_split(values, batches):
        tracker.update(chunk)
    assert tracker.result() == pytest.approx(float(np.percentile(values, p)), rel=1e-6, abs=1e-7)
    assert tracker.max == values.max()


def test_streaming_percentile_keeps_only_the_top():
    tracker = StreamingPercentile(100_000, 99.9)
    for chunk in np.array_split(np.random.default_rng(1).normal(size=100_000).astype(np.float32), 10):
        tracker.update(chunk)
    assert tracker.top.size <= 101


def test_collect_stats_equals_numpy_over_ort_activations():
    m, _ = clean_graph(graphs.conv_bn_relu())
    x = np.random.default_rng(2).normal(size=(53, 1, 8, 8)).astype(np.float32)
    stats = collect_stats(m, "x", ["r1", "y"], x, p=99.9, batch_size=10)
    r1, y = graphs.ort_run(m, x, ["r1", "y"])
    for name, ref in (("r1", r1), ("y", y)):
        assert stats[name].max == pytest.approx(float(ref.max()), rel=1e-6)
        assert stats[name].percentile == pytest.approx(float(np.percentile(ref, 99.9)), rel=1e-5)
        assert stats[name].count == ref.size


@pytest.mark.parametrize("robust", [True, False])
def test_normalised_graph_is_original_divided_by_lambda(robust):
    """ReLU networks are positively homogeneous: every normalised activation is the original / λ."""
    m = graphs.conv_bn_relu()
    x = np.random.default_rng(3).normal(size=(40, 1, 8, 8)).astype(np.float32)
    cfg = graphs.seed_config()
    cfg.parser.robust_norm = robust
    conv = convert(m, x, cfg)
    (l1, l2) = conv.layers
    assert l1.stat_tensor == "r1" and l2.stat_tensor == "y" and l2.lambda_in == l1.lambda_out
    r1_ref, y_ref = graphs.ort_run(m, x, ["r1", "y"])
    r1, y = graphs.ort_run(conv.snn_model, x, ["r1", "y"])
    np.testing.assert_allclose(r1 * l1.lambda_out, r1_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y * l2.lambda_out, y_ref, rtol=1e-5, atol=1e-5)
    expected = np.percentile(r1_ref, 99.9) if robust else r1_ref.max()
    assert l1.lambda_out == pytest.approx(float(expected), rel=1e-5)
    assert np.percentile(r1, 99.9) <= 1 + 1e-5 if robust else r1.max() <= 1 + 1e-5


def test_verification_names_every_layer_that_differs():
    from onnx2snn.errors import VerificationError
    from onnx2snn.verify import verify
    m = graphs.conv_bn_relu()
    x = np.random.default_rng(4).normal(size=(12, 1, 8, 8)).astype(np.float32)
    conv = convert(m, x, graphs.seed_config())
    cleaned, _ = clean_graph(m)
    assert verify(m, cleaned, conv.snn_model, "x", conv.plan, x)  # as converted: passes
    conv.plan.scales["r1"] = conv.plan.scales["r1"] * 1.01  # a scale the edited graph does not have
    with pytest.raises(VerificationError, match=r"at 1 of 2 .*layer conv1 \(Conv\), tensor 'r1'") as e:
        verify(m, cleaned, conv.snn_model, "x", conv.plan, x)
    assert e.value.exit_code == 3
    conv.plan.scales["y"] = conv.plan.scales["y"] * 0.9
    with pytest.raises(VerificationError, match=r"at 2 of 2 .*tensor 'r1'.*; layer fc \(Gemm\), tensor 'y'"):
        verify(m, cleaned, conv.snn_model, "x", conv.plan, x)


def test_verification_streams_batches_and_keeps_a_nan():
    """The graphs run side by side one batch at a time: the errors do not depend on the batch size,
    and a NaN in the last batch alone still fails the check (a max() would drop it)."""
    from onnx2snn.errors import VerificationError
    from onnx2snn.verify import verify
    m = graphs.conv_bn_relu()
    x = np.random.default_rng(5).normal(size=(12, 1, 8, 8)).astype(np.float32)
    conv = convert(m, x, graphs.seed_config())
    cleaned, _ = clean_graph(m)
    whole = verify(m, cleaned, conv.snn_model, "x", conv.plan, x, batch_size=12).errors
    batched = verify(m, cleaned, conv.snn_model, "x", conv.plan, x, batch_size=5).errors
    assert whole.keys() == batched.keys() and all(abs(whole[k] - batched[k]) <= 1e-9 for k in whole)
    x[-1, 0, 0, 0] = np.nan
    with pytest.raises(VerificationError, match="relative error nan"):
        verify(m, cleaned, conv.snn_model, "x", conv.plan, x, batch_size=5)


def test_calibration_streams_a_memory_mapped_array_in_bounded_memory(tmp_path):
    """20 000 samples, memory-mapped: the statistics must not hold the activations (20 MB here)
    nor the whole input (5 MB); only a batch and the top 0.1 % of values."""
    import tracemalloc
    path = tmp_path / "calib.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(20_000, 1, 8, 8))
    x[:] = np.random.default_rng(5).normal(size=x.shape).astype(np.float32)
    x.flush()
    del x
    m, _ = clean_graph(graphs.conv_bn_relu())
    x = np.load(path, mmap_mode="r")
    tracemalloc.start()
    stats = collect_stats(m, "x", ["r1"], x, p=99.9, batch_size=200)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats["r1"].count == 20_000 * 4 * 8 * 8
    assert peak < 2 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_assign_scales_is_idempotent():
    """A second call recomputes the plan: no Add factor twice."""
    from patterns import PATTERNS
    from onnx2snn.graph.view import GraphView
    from onnx2snn.normalize import assign_scales
    m, shape = PATTERNS["residual_blocks"]()
    conv = convert(m, np.random.default_rng(0).uniform(size=(12, *shape)).astype(np.float32), graphs.seed_config())
    cleaned, _ = clean_graph(m)
    lambdas = {l.stat_tensor: (l.lambda_out, l.statistic) for l in conv.layers if l.stat_tensor}
    lambdas.update({t: lambdas.get(t) or (1.0, "") for t in conv.plan.merge_stats.values() if t})
    factors = [(n, i, f.copy()) for n, i, f in conv.plan.factors]
    assert factors
    for _ in range(2):
        assign_scales(GraphView(cleaned), conv.plan, lambdas)
        assert [(n, i) for n, i, _ in conv.plan.factors] == [(n, i) for n, i, _ in factors]
