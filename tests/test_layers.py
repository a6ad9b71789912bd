"""The pipeline's layers (issue 20, part 2): the ONNX side — op rules, attribute decoding, the
spiking graph's format, normalisation, verification — never imports torch, and every module
imports only from the layers below it (the import-linter contracts in pyproject.toml)."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

ONNX_SIDE = ["onnx2snn.graph", "onnx2snn.graph.ops", "onnx2snn.graph.spiking", "onnx2snn.graph.annotate",
             "onnx2snn.normalize", "onnx2snn.verify", "onnx2snn.calibrate", "onnx2snn.thresholds",
             "onnx2snn.diagnose"]


def test_importing_the_onnx_side_does_not_import_torch():
    script = ("import sys\n" + "".join(f"import {m}\n" for m in ONNX_SIDE)
              + "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable), "lint-imports")
    if not os.path.exists(lint):
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    run = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "3 kept, 0 broken" in run.stdout
