"""The CUDA kernels (``snn/triton_kernels.py``: the IF update, and the IF update fused with average
pooling, the running max of counts and the gate) give the torch path's spikes, pooled outputs and
state — checked without a GPU by Triton's interpreter in a process of its own
(``tests/triton_cases.py``). Skipped where Triton is not installed (``pip install triton``; CUDA
builds of torch ship it)."""
import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton not installed")
def test_triton_kernels_match_the_torch_path_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", ONNX2SNN_KERNELS="torch")
    run = subprocess.run([sys.executable, os.path.join(HERE, "triton_cases.py")], env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "cases agree" in run.stdout
