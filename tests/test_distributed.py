"""The same command under torchrun (issue 10): 2 processes with the gloo backend on CPU give the
report of one process exactly (same accuracy after every step, same spike counts)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import EXAMPLES

ARGS = [os.path.join(EXAMPLES, "mnist_cnn.onnx"), os.path.join(EXAMPLES, "mnist_calib.npy"),
        "--eval", os.path.join(EXAMPLES, "mnist_test.npz"), "-T", "8", "-q", "--device", "cpu", "--batch-size", "150"]


def run(cmd, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.mark.parametrize("poisson", [False, True])
def test_two_processes_report_what_one_process_does(tmp_path, poisson):
    extra = ["--poisson"] if poisson else []
    run([sys.executable, "-m", "onnx2snn", *ARGS, *extra, "-o", "one"], tmp_path)
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "onnx2snn", *ARGS, *extra, "-o", "two"], tmp_path)
    a = json.loads((tmp_path / "one" / "report.json").read_text())
    b = json.loads((tmp_path / "two" / "report.json").read_text())
    assert b["n_eval"] == a["n_eval"] == 1000
    assert b["accuracy_per_step"] == a["accuracy_per_step"]
    assert b["firing_rates"] == a["firing_rates"]
    for layer, row in a["synaptic_operations"]["per_layer"].items():
        assert b["synaptic_operations"]["per_layer"][layer]["snn_ops"] == pytest.approx(row["snn_ops"], rel=1e-9)
    assert (tmp_path / "two" / "mnist_cnn.snn.onnx").read_bytes() == (tmp_path / "one" / "mnist_cnn.snn.onnx").read_bytes()
    # only rank 0 spoke: one summary line
    assert two.stdout.count("ANN accuracy") == 1


def test_a_failing_run_under_torchrun_exits_non_zero_with_one_message_and_no_output(tmp_path):
    """Bad input found by rank 0 (an all-zero calibration array): every rank stops, torchrun exits
    with the failure's code, the reason is printed once, and no output folder is left."""
    import numpy as np
    np.save(tmp_path / "zeros.npy", np.zeros((20, 1, 28, 28), np.float32))
    args = [ARGS[0], "zeros.npy", *ARGS[2:]]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        "-m", "onnx2snn", *args, "-o", "two"], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=600)
    assert p.returncode != 0
    assert p.stderr.count("calibration 'zeros.npy' is all zeros") == 1, p.stderr[-3000:]
    assert not (tmp_path / "two").exists() and sorted(os.listdir(tmp_path)) == ["zeros.npy"]
