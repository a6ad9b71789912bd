"""Evaluation beyond class labels and output heads (issue 21): the task is inferred from the label
and output shapes, its metric is counted alike for the ANN and for the SNN after every step, and a
trailing Sigmoid/Tanh is dropped and recorded like a Softmax."""
import json

import numpy as np
import onnx
import pytest
from onnx import helper

import graphs
from onnx2snn import Onnx2SnnError, cli, convert, load
from onnx2snn.tasks import Task, counts, decisions, infer_task, metrics_from_counts, score


def sigmoid_head(seed=0, labels=4):
    """x(6) -> Gemm(8) -> Relu -> Gemm(labels) -> Sigmoid -> y: a multi-label head."""
    r = graphs.rng(seed)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], name="fc2", transB=1),
             helper.make_node("Sigmoid", ["logits"], ["y"], name="sigmoid")]
    inits = [graphs.init("w1", r.normal(0, 0.6, (8, 6))), graphs.init("b1", r.normal(0, 0.2, 8)),
             graphs.init("w2", r.normal(0, 0.6, (labels, 8))), graphs.init("b2", r.normal(0, 0.1, labels))]
    return graphs.model(nodes, inits, (6,))


def segmenter(seed=0, classes=3):
    """x(2,6,6) -> Conv(4) -> Relu -> Conv1x1(classes) -> y (N, classes, 6, 6): per-pixel logits."""
    r = graphs.rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2", "b2"], ["y"], name="classify", kernel_shape=[1, 1])]
    inits = [graphs.init("w1", r.normal(0, 0.6, (4, 2, 3, 3))), graphs.init("b1", r.normal(0, 0.2, 4)),
             graphs.init("w2", r.normal(0, 0.6, (classes, 4, 1, 1))), graphs.init("b2", r.normal(0, 0.2, classes))]
    return graphs.model(nodes, inits, (2, 6, 6), out_shape=("N", classes, 6, 6))


def test_the_task_follows_the_shapes_and_the_head():
    assert infer_task((10,), np.zeros(5, np.int64), 5).kind == "classification"
    assert infer_task((4,), np.zeros((5, 4), np.int64), 5).kind == "multilabel"
    assert infer_task((3, 8, 8), np.zeros((5, 8, 8), np.int64), 5).kind == "segmentation"
    assert infer_task((4,), None, 5, head="Sigmoid") == Task("multilabel", (4,), agreement=True)
    assert infer_task((3, 8, 8), None, 5).kind == "segmentation"
    with pytest.raises(Onnx2SnnError, match=r"shape \(5, 7\), which fits no task .* per-sample shape \(4,\)"):
        infer_task((4,), np.zeros((5, 7), np.int64), 5)
    # outputs that make no class decision: one feature, a dense bounded map; float targets
    assert infer_task((1,), None, 5) == Task("regression", (1,), agreement=True)
    assert infer_task((1, 8, 8), None, 5, head="Sigmoid").kind == "regression"
    assert infer_task((3, 8, 8), None, 5, head="Tanh").kind == "regression"
    assert infer_task((4,), np.full((5, 4), 0.3), 5).kind == "regression"
    assert infer_task((3, 8, 8), np.zeros((5, 3, 8, 8), np.float32), 5).kind == "regression"
    assert infer_task((4,), np.ones((5, 4), np.float32), 5).kind == "multilabel"      # 0/1 floats: labels
    with pytest.raises(Onnx2SnnError, match="regression targets must be finite"):
        infer_task((2,), np.full((5, 2), np.nan), 5)
    with pytest.raises(Onnx2SnnError, match="multi-label targets must be 0 or 1"):
        infer_task((4,), np.full((5, 4), 2), 5)
    with pytest.raises(Onnx2SnnError, match=r"label 3 is outside the model's classes \[0, 3\)"):
        infer_task((3, 2, 2), np.full((5, 2, 2), 3), 5)


def test_mean_iou_and_pixel_accuracy_by_hand():
    task = Task("segmentation", (3, 1, 4))
    labels = np.array([[[0, 0, 1, 2]]])
    logits = np.zeros((1, 3, 1, 4))
    logits[0, [0, 1, 1, 2], 0, [0, 1, 2, 3]] = 1            # predicts 0, 1, 1, 2
    m = score(logits, labels, task)
    # class 0: 1 / 2, class 1: 1 / 2, class 2: 1 / 1
    assert m["pixel_accuracy"] == pytest.approx(3 / 4) and m["mean_iou"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    # a class neither labelled nor predicted does not count
    m = metrics_from_counts(counts(decisions(logits, task), labels, task), 1, Task("segmentation", (3, 1, 4)))
    assert m["mean_iou"] == pytest.approx(2 / 3)


def test_snn_counts_per_step_are_the_tasks_counts_of_its_readout():
    """What the runtime adds up in torch after every step is what tasks.py counts on the outputs."""
    m = segmenter()
    x = np.random.default_rng(0).uniform(0, 1, size=(12, 2, 6, 6)).astype(np.float32)
    conv = convert(m, x, graphs.seed_config())
    task = Task("segmentation", (3, 6, 6))
    y = np.random.default_rng(1).integers(0, 3, size=(12, 6, 6))
    r = conv.network.simulate(x, 10, y, device="cpu", task=task, batch_size=5)
    assert r.correct_per_step.shape == (10, 3, 3)
    final = counts(decisions(r.outputs, task), y, task)
    np.testing.assert_array_equal(r.correct_per_step[-1], final)
    assert r.accuracy == pytest.approx(metrics_from_counts(final, 12, task)["mean_iou"])
    multi = Task("multilabel", (r.outputs.shape[1],))
    bits = np.random.default_rng(2).integers(0, 2, size=r.outputs.shape)
    r2 = conv.network.simulate(x, 10, bits, device="cpu", task=multi, batch_size=5)
    assert r2.correct_per_step[-1] == int(np.sum((r2.outputs > 0) == bits))


def denoiser(seed=0):
    """x(2,6,6) -> Conv(4) -> Relu -> Conv1x1(1) -> Sigmoid -> y (N, 1, 6, 6): a dense map, no classes."""
    m = segmenter(seed, classes=1)
    m.graph.node[-1].output[0] = "logits"
    m.graph.node.append(helper.make_node("Sigmoid", ["logits"], ["y"], name="sigmoid"))
    return m


def test_regression_error_per_step_is_the_relative_l2_of_the_scaled_readout_under_its_head():
    """The runtime's per-step sums are tasks.counts of sigmoid(readout / steps · output scale)."""
    m = denoiser()
    x = np.random.default_rng(0).uniform(0, 1, size=(30, 2, 6, 6)).astype(np.float32)
    conv = convert(m, x, graphs.seed_config())
    assert conv.network.output_head == "Sigmoid" and conv.network.output_scale != 1.0
    from onnx2snn.calibrate import run
    (y,) = run(m, "x", x, ["y"])
    task = infer_task((1, 6, 6), None, len(x), "Sigmoid")
    r = conv.network.simulate(x, 40, y, device="cpu", task=task, batch_size=7)
    assert r.correct_per_step.shape == (40, 2)
    estimate = 1 / (1 + np.exp(-r.outputs.astype(np.float64) / 40 * conv.network.output_scale))
    np.testing.assert_allclose(r.correct_per_step[-1], counts(decisions(estimate, task), y, task), rtol=1e-9)
    error = r.accuracy_per_step
    assert error[-1] < 0.05 and error[-1] < error[0]
    reloaded = load(conv.snn_model).simulate(x, 40, y, device="cpu", task=task)
    assert reloaded.accuracy == pytest.approx(r.accuracy)


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
def test_a_trailing_sigmoid_or_tanh_is_dropped_and_recorded(op):
    m = sigmoid_head()
    m.graph.node[-1].op_type = op
    x = np.random.default_rng(0).uniform(-1, 1, size=(60, 6)).astype(np.float32)
    conv = convert(m, x)
    readout = next(n for n in conv.snn_model.graph.node if n.op_type == "Readout")
    attrs = {a.name: helper.get_attribute_value(a) for a in readout.attribute}
    assert attrs["head"] == op.encode() and f"applies {op}" in readout.doc_string
    assert not any(n.op_type == op for n in conv.snn_model.graph.node)
    assert load(conv.snn_model).simulate(x, 8, device="cpu").outputs.shape == (60, 4)


def test_sigmoid_inside_the_network_is_still_refused():
    m = sigmoid_head()
    m.graph.node[1].op_type = "Sigmoid"          # in place of the hidden ReLU
    with pytest.raises(Onnx2SnnError, match=r"relu \(Sigmoid\): not rate-codable with IF neurons inside"):
        convert(m, np.zeros((30, 6), np.float32) + 0.5)


def _run(tmp_path, monkeypatch, model, x, y=None, extra=()):
    monkeypatch.chdir(tmp_path)
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", x)
    if y is None:
        np.save(tmp_path / "x_eval.npy", x[:40])
        eval_args = ["x_eval.npy"]
    else:
        np.savez(tmp_path / "eval.npz", x=x[:40], y=y)
        eval_args = ["eval.npz"]
    rc = cli.main(["m.onnx", "calib.npy", "--eval", *eval_args, "-T", "32", "-q", "-o", "out", *extra])
    assert rc == 0
    return json.load(open(tmp_path / "out" / "report.json"))


def test_cli_multilabel_evaluation_reports_mean_label_accuracy(tmp_path, monkeypatch, capsys):
    m = sigmoid_head()
    x = np.random.default_rng(0).uniform(-1, 1, size=(200, 6)).astype(np.float32)
    from onnx2snn.calibrate import run
    (probs,) = run(m, "x", x[:40], ["y"])
    y = (probs > 0.5).astype(np.int64)
    y[:4] = 1 - y[:4]                          # the ANN is wrong on a few labels
    rep = _run(tmp_path, monkeypatch, m, x, y)
    assert rep["task"] == "multilabel" and rep["metric"] == "label_accuracy" and rep["output_head"] == "Sigmoid"
    assert rep["ann_accuracy"] == pytest.approx(1 - 16 / 160)
    assert abs(rep["snn_accuracy"] - rep["ann_accuracy"]) <= 0.06
    assert len(rep["accuracy_per_step"]) == 32
    assert "SNN mean label accuracy after each time step" in capsys.readouterr().out


def test_cli_segmentation_evaluation_reports_mean_iou(tmp_path, monkeypatch):
    m = segmenter()
    x = np.random.default_rng(0).uniform(0, 1, size=(120, 2, 6, 6)).astype(np.float32)
    from onnx2snn.calibrate import run
    (logits,) = run(m, "x", x[:40], ["y"])
    rep = _run(tmp_path, monkeypatch, m, x, logits.argmax(1))
    assert rep["task"] == "segmentation" and rep["metric"] == "mean_iou"
    assert rep["ann_accuracy"] == pytest.approx(1.0) and rep["ann_metrics"]["pixel_accuracy"] == pytest.approx(1.0)
    assert rep["snn_accuracy"] >= 0.8 and len(rep["metrics_per_step"]["pixel_accuracy"]) == 32


def test_cli_without_labels_measures_agreement_with_the_ann(tmp_path, monkeypatch, capsys):
    x = np.random.default_rng(0).uniform(0, 1, size=(80, 1, 8, 8)).astype(np.float32)
    rep = _run(tmp_path, monkeypatch, graphs.conv_bn_relu(), x)
    assert rep["agreement_with_ann"] is True and rep["task"] == "classification"
    assert rep["ann_accuracy"] == 1.0 and rep["snn_accuracy"] >= 0.7
    assert "accuracy (agreement with the ANN) after each time step" in capsys.readouterr().out


def test_cli_regression_without_labels_reports_the_relative_l2_error(tmp_path, monkeypatch, capsys):
    x = np.random.default_rng(0).uniform(0, 1, size=(120, 2, 6, 6)).astype(np.float32)
    rep = _run(tmp_path, monkeypatch, denoiser(), x)
    assert rep["task"] == "regression" and rep["metric"] == "relative_l2" and rep["agreement_with_ann"] is True
    assert rep["ann_accuracy"] == 0.0 and rep["snn_accuracy"] < 0.05
    assert rep["accuracy_per_step"][-1] < rep["accuracy_per_step"][0]
    assert "relative L2 error against the ANN's output after each time step" in capsys.readouterr().out


def test_labels_that_fit_no_task_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    onnx.save(sigmoid_head(), tmp_path / "m.onnx")
    x = np.random.default_rng(0).uniform(-1, 1, size=(40, 6)).astype(np.float32)
    np.save(tmp_path / "calib.npy", x)
    np.savez(tmp_path / "eval.npz", x=x, y=np.zeros((40, 3), np.int64))
    rc = cli.main(["m.onnx", "calib.npy", "--eval", "eval.npz", "-q", "-o", "out"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "(40, 3), which fits no task" in err and "(4,)" in err
    assert not (tmp_path / "out").exists()
