"""Models written by real exporters (made by tools/make_fixture*.py, committed so CI needs none of
those frameworks) convert, verify, and their SNN, calibrated for T=32, reaches their ANN's accuracy
within 1 % at T=32."""
import os

import numpy as np
import pytest

from conftest import EXAMPLES, HERE
import onnx2snn

FIXTURES = {
    "torch_script_folded.onnx": "NCHW",   # TorchScript exporter, BN folded by constant folding
    "torch_script_bn.onnx": "NCHW",       # TorchScript exporter, do_constant_folding=False: BN, Identity
    "torch_dynamo.onnx": "NCHW",          # dynamo exporter, opset 18
    "keras_cnn.onnx": "NHWC",             # Keras 3 via tf2onnx: Reshape/Transpose, MatMul+Add, Softmax
    "jax_cnn.onnx": "NHWC",               # Flax NNX via jax2onnx: Transpose, ReduceSum+Div, Gemm
    "keras_flatten.onnx": "NHWC",         # Keras 3 Flatten via tf2onnx: a Shape/Gather/Slice/Concat/Cast subgraph
    "keras_maxpool.onnx": "NHWC",         # Keras 3 MaxPooling2D + Flatten via tf2onnx
}
N_TEST = 500


def mnist(layout):
    calib = np.load(os.path.join(EXAMPLES, "mnist_calib.npy"))
    test = np.load(os.path.join(EXAMPLES, "mnist_test.npz"))
    x, y = test["x"][:N_TEST], test["y"][:N_TEST]
    if layout == "NHWC":
        calib, x = calib.transpose(0, 2, 3, 1).copy(), x.transpose(0, 2, 3, 1).copy()
    return calib, x, y


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_converts_and_matches_ann(name):
    path = os.path.join(HERE, "fixtures", name)
    calib, x, y = mnist(FIXTURES[name])
    cfg = onnx2snn.Config()
    cfg.simulation.T = 32
    conv = onnx2snn.convert(path, calib, cfg)
    assert max(conv.verification.errors.values()) <= 1e-4
    ann = onnx2snn.ann_accuracy(conv.source, conv.input_name, x, y)
    result = onnx2snn.simulate(conv.network, x, y, config=cfg)  # the caller's config: "auto" output, delay from the network
    assert result.accuracy >= ann - 0.01, f"{name}: SNN {result.accuracy:.4f} vs ANN {ann:.4f}"


def test_wrong_exporter_annotations_raise_no_runtime_warning(tmp_path):
    """jax2onnx annotates an intermediate tensor with its NHWC shape where it is NCHW: the loader
    drops those annotations, and onnxruntime (which warns on stderr about a mismatch) never sees them."""
    import subprocess
    import sys
    calib, _, _ = mnist("NHWC")
    np.save(tmp_path / "calib.npy", calib[:40])
    proc = subprocess.run([sys.executable, "-m", "onnx2snn", os.path.join(HERE, "fixtures", "jax_cnn.onnx"),
                           str(tmp_path / "calib.npy"), "-q", "-T", "8", "-o", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "MergeShapeInfo" not in proc.stderr and proc.stderr.strip() == ""
