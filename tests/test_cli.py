"""The command line: exit codes and one-line messages for bad input; end to end on the example."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

import graphs
from conftest import EXAMPLES, HERE as HERE_TESTS

import onnx2snn

MODEL = os.path.join(EXAMPLES, "mnist_cnn.onnx")
CALIB = os.path.join(EXAMPLES, "mnist_calib.npy")
TEST = os.path.join(EXAMPLES, "mnist_test.npz")


def cli(*args, cwd):
    p = subprocess.run([sys.executable, "-m", "onnx2snn", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def assert_one_line_error(rc, err, *fragments, code=1):
    assert rc == code, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("onnx2snn: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture
def tiny(tmp_path):
    onnx.save(graphs.conv_bn_relu(), tmp_path / "tiny.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32))
    return tmp_path


def test_missing_model_file(tmp_path):
    rc, _, err = cli("nope.onnx", CALIB, cwd=tmp_path)
    assert_one_line_error(rc, err, "nope.onnx", "does not exist")


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "bad.onnx").write_text("this is not protobuf")
    rc, _, err = cli("bad.onnx", CALIB, cwd=tmp_path)
    assert_one_line_error(rc, err, "bad.onnx", "not an ONNX model")


def test_calibration_shape_mismatch(tiny):
    np.save(tiny / "wrong.npy", np.zeros((4, 1, 28, 28), np.float32))
    rc, _, err = cli("tiny.onnx", "wrong.npy", cwd=tiny)
    assert_one_line_error(rc, err, "(4, 1, 28, 28)", "(N, 1, 8, 8)")


def test_calibration_nan(tiny):
    x = np.zeros((10, 1, 8, 8), np.float32)
    x[6, 0, 2, 2] = np.nan
    np.save(tiny / "nan.npy", x)
    rc, _, err = cli("tiny.onnx", "nan.npy", cwd=tiny)
    assert_one_line_error(rc, err, "NaN", "sample 6")


def test_calibration_dtype_and_empty(tiny):
    np.save(tiny / "f64.npy", np.zeros((3, 1, 8, 8)))
    assert_one_line_error(*cli("tiny.onnx", "f64.npy", cwd=tiny)[::2], "float64", "float32")
    np.save(tiny / "empty.npy", np.zeros((0, 1, 8, 8), np.float32))
    assert_one_line_error(*cli("tiny.onnx", "empty.npy", cwd=tiny)[::2], "empty")


def test_unsupported_ops_all_listed(tmp_path):
    onnx.save(graphs.unsupported(), tmp_path / "sig.onnx")
    np.save(tmp_path / "c.npy", np.zeros((2, 5), np.float32))
    rc, _, err = cli("sig.onnx", "c.npy", cwd=tmp_path)
    assert_one_line_error(rc, err, "2 node(s)", "sig (Sigmoid)", "tanh (Tanh)", "retrain with ReLU")
    assert not [p for p in os.listdir(tmp_path) if p.endswith("_snn")], "no output on failure"


def test_bad_config_value(tiny):
    (tiny / "c.json").write_text(json.dumps({"simulation": {"max_pool": {"momentum": 2}}}))
    rc, _, err = cli("tiny.onnx", "calib.npy", "--config", "c.json", cwd=tiny)
    assert_one_line_error(rc, err, "c.json", "momentum")


def test_bad_flag_is_usage_error(tiny):
    rc, _, err = cli("tiny.onnx", "calib.npy", "--max-pool", "median", cwd=tiny)
    assert rc == 2 and "invalid choice" in err


def test_converts_without_eval_and_leaves_input_untouched(tiny):
    before = (tiny / "tiny.onnx").read_bytes()
    rc, out, err = cli("tiny.onnx", "calib.npy", "-q", cwd=tiny)
    assert rc == 0, err
    assert (tiny / "tiny.onnx").read_bytes() == before
    files = sorted(os.listdir(tiny / "tiny_snn"))
    assert files == ["config.json", "report.json", "tiny.snn.onnx"]
    assert "tiny.snn.onnx as written, run by onnxruntime as an ANN" in out and "argmax agrees on" in out
    rc, _, _ = cli("tiny.onnx", "calib.npy", "-q", cwd=tiny)  # a second run: a new folder
    assert rc == 0 and os.path.isdir(tiny / "tiny_snn-2")


def test_snn_onnx_is_self_describing_and_reloads(tiny):
    rc, _, err = cli("tiny.onnx", "calib.npy", "-q", "--max-pool", "wta", "-T", "20", cwd=tiny)
    assert rc == 0, err
    path = tiny / "tiny_snn" / "tiny.snn.onnx"
    m = onnx.load(path)
    onnx.checker.check_model(m)
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["onnx2snn.version"] == onnx2snn.__version__
    assert json.loads(meta["onnx2snn.config"])["simulation"]["T"] == 20
    assert len(meta["source_sha256"]) == 64
    conv_node = next(n for n in m.graph.node if n.op_type == "Conv")
    props = {p.key: p.value for p in conv_node.metadata_props}
    assert min(np.atleast_1d(json.loads(props["lambda"]))) > 0 and "lambda" in conv_node.doc_string  # one per channel
    # legible in Netron: λ in the node's name, short metadata keys, one metadata row per layer,
    # multi-line descriptions, the IR version that node metadata needs
    lam = np.atleast_1d(json.loads(props["lambda"]))
    assert conv_node.name.endswith(f" λ {lam[0]:.3g}" if lam.size == 1 else f" λ {lam.min():.2g}-{lam.max():.2g}")
    keys = [p.key for p in m.metadata_props] + [p.key for n in m.graph.node for p in n.metadata_props]
    assert max(map(len, keys)) <= 16
    rows = [v for k, v in meta.items() if k.startswith("layer ")]
    assert len(rows) == sum(n.op_type in ("Conv", "Gemm") for n in m.graph.node) and conv_node.name in rows[0]
    assert conv_node.doc_string.count("\n") >= 3 and m.doc_string.count("\n") >= 2
    assert m.ir_version >= 10
    # load() rebuilds the same SNN from the file alone
    x = np.load(tiny / "calib.npy")
    net = onnx2snn.load(str(path))
    stored = onnx2snn.Config.from_dict(json.loads(meta["onnx2snn.config"]))
    assert net.defaults.T == 20 and stored.max_pool_mode == "wta"
    direct = onnx2snn.convert(str(tiny / "tiny.onnx"), x, stored).network
    np.testing.assert_array_equal(net.simulate(x, 20, device="cpu").outputs,
                                  direct.simulate(x, 20, device="cpu").outputs)


def test_load_rejects_plain_onnx(tiny):
    with pytest.raises(onnx2snn.Onnx2SnnError, match="not an onnx2snn output"):
        onnx2snn.load(str(tiny / "tiny.onnx"))


def readme_main_command():
    """The `onnx2snn ...` part of the README's first set-up command."""
    readme = open(os.path.join(os.path.dirname(EXAMPLES), "README.md")).read()
    line = next(l for l in readme.splitlines() if l.startswith("pip install") and "onnx2snn models/" in l)
    return line.split("&& ")[-1].split()


def test_example_end_to_end(tmp_path):
    """The README's main command, as written: SNN at T=100 within 0.5 % of the ANN on the shipped subset."""
    cmd = readme_main_command()
    assert cmd[0] == "onnx2snn"
    os.symlink(EXAMPLES, tmp_path / "models")  # the README runs from the repository root
    rc, out, err = cli(*cmd[1:], "-q", cwd=tmp_path)
    assert rc == 0, err
    assert "ANN accuracy" in out and "SNN accuracy" in out
    assert "driven by" in out and "/0/Conv (Conv)" in out  # the per-layer table: op, λ, firing rate
    assert "calibrated for T=100" in out and "readout:" in out
    assert "warning: the readout was chosen on only 20 held-back" in out  # 100 calibration images: 20 held back
    rep = json.loads((tmp_path / "mnist_cnn_snn" / "report.json").read_text())
    assert len(rep["accuracy_per_step"]) == 100
    assert rep["snn_accuracy"] == rep["accuracy_per_step"][-1]
    assert rep["calibration"].endswith("mnist_calib.npy") and rep["calibrated_for_T"]["T"] == 100
    assert rep["ann_accuracy"] > 0.97
    assert rep["snn_accuracy"] >= rep["ann_accuracy"] - 0.005
    assert set(rep["firing_rates"]) and all(0 < r < 1 for r in rep["firing_rates"].values())


def test_shared_reference_model_verifies(shared_dir, tmp_path):
    """The reference MNIST model from ../shared converts and verifies (skipped without ../shared)."""
    data = np.load(os.path.join(shared_dir, "data", "mnist.npz"))
    calib = (data["x_train"][:50].astype(np.float32) / 255)[:, None]
    conv = onnx2snn.convert(os.path.join(shared_dir, "models", "mnist_cnn.onnx"), calib)
    assert max(conv.verification.errors.values()) < 1e-4 and len(conv.layers) == 4


def test_several_inputs_and_non_float_input_named(tmp_path):
    from onnx import TensorProto, helper
    two = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"], name="add")], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(two, tmp_path / "two.onnx")
    ints = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.INT32, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["N", 3])]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(ints, tmp_path / "ints.onnx")
    np.save(tmp_path / "c.npy", np.zeros((2, 3), np.float32))
    assert_one_line_error(*cli("two.onnx", "c.npy", cwd=tmp_path)[::2], "2 inputs", "a, b")
    assert_one_line_error(*cli("ints.onnx", "c.npy", cwd=tmp_path)[::2], "input 'x'", "INT32", "FLOAT")


def test_output_softmax_dropped_message(tmp_path):
    import sys as _sys
    _sys.path.insert(0, HERE_TESTS)
    from patterns import PATTERNS
    m, shape = PATTERNS["nhwc_transpose"]()
    onnx.save(m, tmp_path / "soft.onnx")
    np.save(tmp_path / "c.npy", np.random.default_rng(0).uniform(size=(16, *shape)).astype(np.float32))
    rc, out, err = cli("soft.onnx", "c.npy", "-q", cwd=tmp_path)
    assert rc == 0, err
    assert "dropped softmax at the output" in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(tiny):
    x = np.load(tiny / "calib.npy")[:4]
    np.savez(tiny / "eval.npz", x=x, y=np.zeros(4, np.int64))
    rc, _, err = cli("tiny.onnx", "calib.npy", "--eval", "eval.npz", "--device", "cuda", "-q", cwd=tiny)
    assert_one_line_error(rc, err, "no CUDA device")
    assert not os.path.exists(tiny / "tiny_snn")


def test_bad_evaluation_files(tiny):
    x = np.load(tiny / "calib.npy")[:4]
    np.savez(tiny / "noy.npz", x=x)
    assert_one_line_error(*cli("tiny.onnx", "calib.npy", "--eval", "noy.npz", "-q", cwd=tiny)[::2], "noy.npz", "lacks", "y")
    np.savez(tiny / "short.npz", x=x, y=np.zeros(3, np.int64))
    assert_one_line_error(*cli("tiny.onnx", "calib.npy", "--eval", "short.npz", "-q", cwd=tiny)[::2], "(4,)", "(3,)")
    np.savez(tiny / "shape.npz", x=np.zeros((4, 1, 9, 9), np.float32), y=np.zeros(4, np.int64))
    assert_one_line_error(*cli("tiny.onnx", "calib.npy", "--eval", "shape.npz", "-q", cwd=tiny)[::2],
                          "(4, 1, 9, 9)", "(N, 1, 8, 8)")
    assert not os.path.exists(tiny / "tiny_snn"), "no output on failure"


def test_example_paths_resolve_from_any_folder(tmp_path):
    """`onnx2snn $(python -m onnx2snn.examples)` runs the example outside the repository (pip users)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "onnx2snn.examples"], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[2] == "--eval" and all(os.path.isfile(p) for p in (out[0], out[1], out[3]))
    assert os.path.samefile(os.path.dirname(out[0]), EXAMPLES)
