"""From conversion to audit in one flow (issue 12): live accuracy in the progress bar, the network
listing, Netron one flag away, fast answers to --help and bad options."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from conftest import EXAMPLES
from test_cli import CALIB, MODEL, TEST, assert_one_line_error, cli

import onnx2snn
from onnx2snn import viewer


def test_progress_bar_shows_live_accuracy(tmp_path):
    """Without -q the bar (on stderr) carries the SNN's accuracy so far; with -q there is no bar."""
    rc, out, err = cli(MODEL, CALIB, "--eval", TEST, "-T", "8", "--batch-size", "250", cwd=tmp_path)
    assert rc == 0, err
    assert "simulating T=8" in err and "SNN acc " in err and "%" in err.split("SNN acc ")[-1]
    rc, out, err = cli(MODEL, CALIB, "--eval", TEST, "-T", "8", "-q", "-o", tmp_path / "q", cwd=tmp_path)
    assert rc == 0 and err == ""


def test_verbose_lists_the_spiking_network(tmp_path):
    """-v prints one line per step (op, shape, neurons, λ), the same text as print(network)."""
    rc, out, err = cli(MODEL, CALIB, "-T", "8", "-v", "-q", cwd=tmp_path)
    assert rc == 0, err
    net = onnx2snn.load(str(tmp_path / "mnist_cnn_snn" / "mnist_cnn.snn.onnx"))
    listing = repr(net)
    assert listing in out
    lines = listing.splitlines()
    assert len(lines) == 2 + len(net.steps)
    relu = next(l for l in lines[2:] if l.split()[1] == "IF")
    assert "IFNeuron(v_threshold=1.0, reset=subtract, v_init=0.5)" in relu and "32×26×26" in relu
    conv = next(l for l in lines if " Conv " in l)
    lo, hi = map(float, conv.split()[-1].split("-"))      # per channel: "min-max"
    lam = np.atleast_1d(net.layer_scales[0].lambda_out)
    assert (lo, hi) == (pytest.approx(lam.min(), rel=1e-3), pytest.approx(lam.max(), rel=1e-3))


def test_netron_missing_is_one_line_before_any_work(tmp_path):
    """With the extra absent, --netron fails at once, naming the install command; nothing is written."""
    code = ("import importlib.util, sys; real = importlib.util.find_spec; "
            "importlib.util.find_spec = lambda n, *a: None if n == 'netron' else real(n, *a); "
            "from onnx2snn import cli; sys.exit(cli.main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", code, MODEL, CALIB, "--netron"], cwd=tmp_path, capture_output=True,
                       text=True)
    assert_one_line_error(p.returncode, p.stderr, "--netron needs the netron package", "onnx2snn[netron]")
    assert os.listdir(tmp_path) == []


def test_netron_on_a_busy_port_is_one_line_before_any_work(tmp_path, capsys):
    pytest.importorskip("netron")
    from onnx2snn import cli as cli_module
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = cli_module.main([MODEL, CALIB, "--netron", "--port", str(port), "-q", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith(f"onnx2snn: error: --port {port}: 127.0.0.1:{port} cannot be served")
    assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()
    rc = cli_module.main([MODEL, CALIB, "--port", "8080", "-q", "-o", str(tmp_path / "o")])
    assert rc == 1 and "give --netron too" in capsys.readouterr().err


def test_netron_serves_the_file_on_localhost_and_stops(tmp_path):
    pytest.importorskip("netron")
    conv = onnx2snn.convert(MODEL, CALIB)
    path = str(tmp_path / "m.snn.onnx")
    conv.save(path)
    host, port = viewer.serve(path, browse=False)
    try:
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as r:
            assert r.status == 200 and b"netron" in r.read().lower()
    finally:
        viewer.stop((host, port))
    for _ in range(50):  # the listening socket closes as the server thread ends
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"Netron still answers on {host}:{port} after stop()")


def test_help_and_option_errors_do_not_import_the_runtime(tmp_path):
    """--help, --version and option errors answer without importing torch or onnxruntime."""
    code = ("import sys; from onnx2snn import cli\n"
            "try:\n    rc = cli.main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('heavy' if {'torch', 'onnxruntime', 'onnx'} & set(sys.modules) else 'light', rc)")
    for args, rc in ((["--help"], 0), (["--version"], 0), ([MODEL, CALIB, "-T", "0"], 1),
                     (["missing.onnx", CALIB], 1)):
        p = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True)
        assert p.stdout.split()[-2:] == ["light", str(rc)], (args, p.stdout, p.stderr)
    p = subprocess.run([sys.executable, "-m", "onnx2snn", "--version"], capture_output=True, text=True)
    assert p.stdout.strip() == f"onnx2snn {onnx2snn.__version__}"


@pytest.mark.parametrize("value", ["nan", "inf", "5"])
def test_an_invalid_value_names_the_flag_typed_or_the_config_file(tmp_path, capsys, value):
    """--reset-to-zero nan is reported as --reset-to-zero, not as the config key alone; the same value
    in a --config file names the file. Nothing is written, exit 1."""
    from onnx2snn import cli as cli_module
    rc = cli_module.main([MODEL, CALIB, "--reset-to-zero", value, "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith(f"onnx2snn: error: --reset-to-zero {float(value)!r}: expected") and \
        "(config key simulation.reset)" in err and len(err.splitlines()) == 1
    config = tmp_path / "c.toml"
    config.write_text(f"[simulation]\nreset = {value}\n")
    rc = cli_module.main([MODEL, CALIB, "--config", str(config), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and f"config file {str(config)!r}: invalid config value simulation.reset" in err
    assert not (tmp_path / "o").exists()


def test_progress_callback_gets_correct_counts():
    """simulate(progress=...) is told, per batch, how many samples were right after T steps."""
    test = np.load(TEST)
    x, y = test["x"][:60], test["y"][:60]
    conv = onnx2snn.convert(os.path.join(EXAMPLES, "mnist_cnn.onnx"), CALIB)
    calls = []
    result = conv.network.simulate(x, 8, y, batch_size=25, progress=lambda n, c: calls.append((n, c)))
    assert [n for n, _ in calls] == [25, 25, 10]
    assert sum(c for _, c in calls) == result.correct_per_step[-1]


def test_eval_writes_plots_and_synaptic_operations(tmp_path):
    """With --eval: accuracy_vs_T.png and firing_rates.png in the output folder, and the SNN's
    operations per layer against the ANN's MACs in the printout and report.json."""
    import json
    rc, out, err = cli(MODEL, CALIB, "--eval", TEST, "-T", "8", "-q", "-o", tmp_path / "o", cwd=tmp_path)
    assert rc == 0, err
    for png in ("accuracy_vs_T.png", "firing_rates.png"):
        with open(tmp_path / "o" / png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "accuracy_vs_T.png, firing_rates.png" in out
    assert "SNN ops per inference (T=8)" in out and "energy estimate per inference" in out and "Horowitz" in out
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    ops = rep["synaptic_operations"]
    assert len(ops["per_layer"]) == 4 and ops["total"]["ann_macs"] == sum(r["ann_macs"] for r in ops["per_layer"].values())
    first = next(iter(ops["per_layer"].values()))
    assert first["snn_op"] == "MAC" and all(r["snn_op"] == "AC" for r in list(ops["per_layer"].values())[1:])


def test_without_matplotlib_a_note_and_no_plots(tmp_path, monkeypatch, capsys):
    from onnx2snn import cli as cli_module
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib raises ImportError
    rc = cli_module.main([MODEL, CALIB, "--eval", TEST, "-T", "4", "-q", "-o", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "note: no plots (matplotlib is not installed" in out
    assert sorted(os.listdir(tmp_path / "o")) == ["config.json", "mnist_cnn.snn.onnx", "report.json"]


def test_eval_from_npy_pair_and_folder_streams_like_npz(tmp_path, capsys):
    """--eval X.npy Y.npy and --eval FOLDER (x.npy, y.npy) give the .npz's report; x is memory-mapped."""
    import json
    from onnx2snn import cli as cli_module
    from onnx2snn.data import load_labelled
    d = np.load(TEST)
    os.mkdir(tmp_path / "folder")
    np.save(tmp_path / "folder" / "x.npy", d["x"])
    np.save(tmp_path / "folder" / "y.npy", d["y"])
    x, y = load_labelled([str(tmp_path / "folder" / "x.npy"), str(tmp_path / "folder" / "y.npy")], (1, 28, 28), 10)
    assert isinstance(x, np.memmap)
    reports = []
    for i, data in enumerate(([TEST], [str(tmp_path / "folder")],
                              [str(tmp_path / "folder" / "x.npy"), str(tmp_path / "folder" / "y.npy")])):
        assert cli_module.main([MODEL, CALIB, "--eval", *data, "-T", "4", "-q", "-o", str(tmp_path / f"o{i}")]) == 0
        reports.append(json.loads((tmp_path / f"o{i}" / "report.json").read_text()))
    capsys.readouterr()
    assert reports[0]["accuracy_per_step"] == reports[1]["accuracy_per_step"] == reports[2]["accuracy_per_step"]
    assert cli_module.main([MODEL, CALIB, "--eval", TEST, TEST, TEST, "-q"]) == 1
    assert "--eval takes one .npz, one folder or two .npy files" in capsys.readouterr().err
