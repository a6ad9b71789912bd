"""The adversarial corpus (issue 9): bad input is refused with exit 1 and one line naming the cause,
before any conversion work, leaving nothing behind and the inputs untouched; degenerate input
converts with a clear warning. In-process ``cli.main()`` keeps it fast."""
import hashlib
import os
import signal
import time

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import graphs
from onnx2snn import cli

SHAPE = (1, 8, 8)


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder with a tiny model (5 classes), calibration and evaluation data; cwd is the folder."""
    onnx.save(graphs.conv_bn_relu(), tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.uniform(0, 1, size=(30, *SHAPE)).astype(np.float32))
    np.savez(tmp_path / "test.npz", x=rng.uniform(0, 1, size=(10, *SHAPE)).astype(np.float32),
             y=rng.integers(0, 5, 10))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(folder):
    return {f: hashlib.sha256(open(os.path.join(folder, f), "rb").read()).hexdigest()
            for f in sorted(os.listdir(folder)) if os.path.isfile(os.path.join(folder, f))}


def refused(work, capsys, args, *fragments, code=1):
    before = snapshot(work)
    entries = sorted(os.listdir(work))
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == code, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("onnx2snn: error: "), err
    for f in fragments:
        assert f in lines[0], lines[0]
    assert sorted(os.listdir(work)) == entries, "something was left behind"
    assert snapshot(work) == before, "an input file changed"
    return lines[0]


def save_npz(path, **arrays):
    np.savez(path, **arrays)
    return path.name


# --- evaluation labels ------------------------------------------------------------------------------

@pytest.mark.parametrize("labels,fragment", [
    ([0, 1, 2, 3, 5, 0, 1, 2, 3, 4], "label 5 is outside the model's classes [0, 5)"),
    ([0, 1, 2, 3, 4, 0, 1, 2, 3, 99], "label 99"),
    ([0, -1, 2, 3, 4, 0, 1, 2, 3, 4], "label -1"),
])
def test_labels_outside_the_classes(work, capsys, labels, fragment):
    x = np.zeros((10, *SHAPE), np.float32)
    name = save_npz(work / "bad.npz", x=x, y=np.array(labels))
    refused(work, capsys, ["m.onnx", "calib.npy", "--eval", name, "-q"], fragment)


def test_float_labels(work, capsys):
    name = save_npz(work / "bad.npz", x=np.zeros((10, *SHAPE), np.float32), y=np.linspace(0, 4, 10))
    refused(work, capsys, ["m.onnx", "calib.npy", "--eval", name, "-q"], "y must be integer labels")


# --- neuron settings, from flags and from config files ------------------------------------------

@pytest.mark.parametrize("args,fragment", [
    (["--v-init", "nan"], "simulation.v_init"),
    (["--v-init", "inf"], "simulation.v_init"),
    (["--v-init=-inf"], "simulation.v_init"),
    (["--reset-to-zero", "nan"], "simulation.reset"),
    (["--reset-to-zero", "1.0"], "below the threshold"),
    (["--reset-to-zero", "3"], "below the threshold"),
    (["--reset-to-zero", "inf"], "simulation.reset"),
    (["--percentile", "nan"], "parser.percentile"),
    (["--percentile", "0"], "parser.percentile"),
    (["--percentile", "101"], "parser.percentile"),
    (["--momentum", "nan"], "momentum"),
    (["--momentum", "1.5"], "momentum"),
    (["--seed=-1"], "seed"),
    (["--seed", str(2 ** 64)], "seed"),
    (["-T", "0"], "simulation.T"),
    (["--calibration-T", "0"], "calibration.T"),
    (["--batch-size", "0"], "batch_size"),
    (["--readout-delay=-2"], "readout_delay"),
    (["--chunk", "0"], "simulation.chunk"),
])
def test_bad_option_values(work, capsys, args, fragment):
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", *args], fragment)


@pytest.mark.parametrize("name,content,fragment", [
    ("c.json", '{"simulation": {"v_init": NaN}}', "simulation.v_init"),
    ("c.json", '{"simulation": {"reset_to_zero": 2.0}}', "below the threshold"),
    ("c.json", '{"simulation": {"reset_to_zero": Infinity}}', "simulation.reset"),
    ("c.json", '{"calibration": {"holdout": NaN}}', "calibration.holdout"),
    ("c.json", '{"seed": -5}', "seed"),
    # the options added since 0.4, as TOML
    ("c.toml", '[simulation]\nsigned_spikes = "yes"\n', "simulation.signed_spikes = 'yes': expected true or false"),
    ("c.toml", '[simulation]\nsigned_spike = true\n', "signed_spike"),
    ("c.toml", 'task = "detection"\n', "task = 'detection'"),
    ("c.toml", 'task = 3\n', "task = 3"),
    ("c.toml", '[simulation.avg_pool]\nhas_neuron = 1\n', "simulation.avg_pool.has_neuron"),
    ("c.toml", '[simulation]\nreadout_delay = -1\n', "simulation.readout_delay"),
])
def test_bad_config_files(work, capsys, name, content, fragment):
    (work / name).write_text(content)
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", "--config", name], f"config file {name!r}", fragment)


# --- devices ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("device,fragment", [
    ("meta", "onnx2snn simulates on cpu, cuda or mps"),
    ("cuda:7" if not __import__("torch").cuda.is_available() else "cuda:99", "cuda:"),
    ("nonsense", "invalid device"),
    ("mps", "mps"),
])
def test_unusable_devices(work, capsys, device, fragment):
    import torch
    if device == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", "--device", device], fragment)


# --- models -----------------------------------------------------------------------------------------

def test_nan_weights_are_named(work, capsys):
    m = graphs.conv_bn_relu()
    w = next(i for i in m.graph.initializer if i.name == "w2")
    arr = numpy_helper.to_array(w).copy()
    arr[0, 3] = np.inf
    w.CopyFrom(numpy_helper.from_array(arr, "w2"))
    onnx.save(m, work / "nan.onnx")
    refused(work, capsys, ["nan.onnx", "calib.npy", "-q"], "weight 'w2'", "fc (Gemm)", "1 NaN or infinite")


def test_opset_newer_than_onnxruntime(work, capsys):
    m = graphs.conv_bn_relu()
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("", 99))
    onnx.save(m, work / "future.onnx")
    line = refused(work, capsys, ["future.onnx", "calib.npy", "-q"], "future.onnx")
    assert "opset" in line or "onnxruntime" in line


@pytest.mark.parametrize("opset", [7, 9])
def test_old_ir3_model_with_initializers_as_inputs_converts_and_reloads(work, capsys, opset):
    """IR 3 listed every initializer as a graph input: the written file must still pass the checker and load.
    At opset 7 (Min without broadcasting) the nodes the conversion inserts must be valid too."""
    import onnx2snn
    m = graphs.conv_bn_relu()
    for init in m.graph.initializer:
        m.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    m.ir_version = 3
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("", opset))
    onnx.save(m, work / "old.onnx")
    rc = cli.main(["old.onnx", "calib.npy", "-q", "-T", "4", "-o", "out"])
    assert rc == 0, capsys.readouterr().err
    written = onnx.load(str(work / "out" / "old.snn.onnx"))
    onnx.checker.check_model(written, full_check=True)
    net = onnx2snn.load(str(work / "out" / "old.snn.onnx"))
    assert len(net.neuron_layers()) == 1


# --- output paths -----------------------------------------------------------------------------------

def test_output_is_an_existing_file(work, capsys):
    (work / "afile").write_text("x")
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", "-o", "afile"], "is a file")


def test_output_is_a_symlink_to_a_folder(work, capsys):
    os.mkdir(work / "real")
    os.symlink(work / "real", work / "link")
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", "-o", "link"], "symbolic link")


def test_output_is_a_dangling_symlink(work, capsys):
    os.symlink(work / "nowhere", work / "dangling")
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", "-o", "dangling"], "symbolic link")


def test_output_is_an_empty_string(work, capsys):
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", "-o", ""], "--out is empty")


@pytest.mark.parametrize("name", ["sub/x.nir", "config.json", "m.snn.onnx", "  "])
def test_bad_nir_names(work, capsys, name):
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", "--nir", name], "--nir")


def test_output_folder_gets_the_umask_permissions(work, capsys):
    old = os.umask(0o022)
    try:
        assert cli.main(["m.onnx", "calib.npy", "-q", "-T", "4", "-o", "perm"]) == 0
    finally:
        os.umask(old)
    assert (os.stat(work / "perm").st_mode & 0o777) == 0o755


def test_sigterm_cleans_up_like_sigint(work, capsys, monkeypatch):
    """SIGTERM while the output is being written (the hidden temporary folder exists): exit 143 and
    nothing left behind, as for Ctrl+C."""
    from onnx2snn import report

    def write_then_terminated(path, rep):
        open(path, "w").close()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)                                 # the handler interrupts this
        raise AssertionError("SIGTERM was not handled")

    monkeypatch.setattr(report, "write_json", write_then_terminated)
    before = sorted(os.listdir(work))
    rc = cli.main(["m.onnx", "calib.npy", "-q", "-T", "4", "-o", "out"])
    assert rc == 143 and "onnx2snn: terminated" in capsys.readouterr().err
    assert sorted(os.listdir(work)) == before
    assert signal.getsignal(signal.SIGTERM) is not cli._terminate      # the handler is removed again


# --- degenerate input: converts, with a warning ---------------------------------------------------

def _warnings(capsys, args):
    rc = cli.main(args)
    out, err = capsys.readouterr()
    assert rc == 0, err
    return [l for l in out.splitlines() if l.startswith("warning: ")]


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_constant_calibration_is_refused_with_or_without_eval(work, capsys, value):
    """Nothing can be calibrated from zeros (or one value everywhere): refused, naming the file."""
    np.save(work / "flat.npy", np.full((30, *SHAPE), value, np.float32))
    what = "all zeros" if value == 0 else "the constant 0.5 everywhere"
    refused(work, capsys, ["m.onnx", "flat.npy", "-q", "-T", "4", "-o", "z"], "calibration 'flat.npy' is " + what)
    refused(work, capsys, ["m.onnx", "flat.npy", "--eval", "test.npz", "-q", "-T", "4", "-o", "z"],
            "calibration 'flat.npy' is " + what)


@pytest.mark.parametrize("factor, fragment", [(255.0, "255× apart"), (1e30, "1e+30× apart")])
def test_calibration_that_cannot_describe_the_evaluation_data_is_refused(work, capsys, factor, fragment):
    """0-255 calibration for 0-1 evaluation inputs, or absurd values: refused before any work, with both ranges."""
    x = np.load(work / "calib.npy")
    np.save(work / "far.npy", (x * factor).astype(np.float32))
    refused(work, capsys, ["m.onnx", "far.npy", "--eval", "test.npz", "-q", "-T", "4", "-o", "f"],
            "the calibration inputs 'far.npy' span [", "the evaluation inputs 'test.npz' [", fragment,
            "cannot come from one distribution")


def test_calibration_a_few_times_off_the_evaluation_data_warns(work, capsys):
    x = np.load(work / "calib.npy")
    np.save(work / "off.npy", (x * 4).astype(np.float32))
    lines = _warnings(capsys, ["m.onnx", "off.npy", "--eval", "test.npz", "-q", "-T", "4", "-o", "o"])
    assert any("the calibration inputs 'off.npy'" in l and "× apart" in l for l in lines)


def test_identical_samples_warn(work, capsys):
    np.save(work / "same.npy", np.repeat(np.random.default_rng(2).uniform(0, 1, (1, *SHAPE)), 30, 0).astype(np.float32))
    lines = _warnings(capsys, ["m.onnx", "same.npy", "-q", "-T", "4", "-o", "s"])
    assert any("identical" in l for l in lines)


def test_dead_layer_warns(work, capsys):
    m = graphs.conv_bn_relu()
    b = next(i for i in m.graph.initializer if i.name == "bn.beta")
    b.CopyFrom(numpy_helper.from_array(np.full(4, -50.0, np.float32), "bn.beta"))   # every ReLU input negative
    onnx.save(m, work / "dead.onnx")
    lines = _warnings(capsys, ["dead.onnx", "calib.npy", "-q", "-T", "4", "-o", "d"])
    assert any("never positive" in l and "conv1" in l for l in lines)


def test_calibration_on_another_scale_warns(work, capsys):
    """0-255 data for a model whose input layer expects 0-1 makes λ jump by orders of magnitude."""
    np.save(work / "bytes.npy", (np.random.default_rng(3).uniform(0, 1, (30, *SHAPE)) * 255 * 1000).astype(np.float32))
    lines = _warnings(capsys, ["m.onnx", "bytes.npy", "-q", "-T", "4", "-o", "b"])
    assert any("its input's" in l for l in lines)


def test_warnings_are_in_the_report(work, capsys):
    import json
    np.save(work / "same.npy", np.repeat(np.random.default_rng(2).uniform(0, 1, (1, *SHAPE)), 30, 0).astype(np.float32))
    assert cli.main(["m.onnx", "same.npy", "-q", "-T", "4", "-o", "r"]) == 0
    rep = json.loads((work / "r" / "report.json").read_text())
    assert any("identical" in w for w in rep["warnings"])


def test_output_not_from_a_weighted_layer_warns(work, capsys):
    m = graphs.conv_bn_relu()
    g = m.graph
    fc = next(n for n in g.node if n.op_type == "Gemm")
    g.node.remove(fc)
    flat_out = next(n for n in g.node if n.op_type == "Flatten").output[0]
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(flat_out, onnx.TensorProto.FLOAT, ["N", 64]))
    onnx.save(m, work / "flat.onnx")
    lines = _warnings(capsys, ["flat.onnx", "calib.npy", "-q", "-T", "4", "-o", "f"])
    assert any("not written by a weighted layer" in l for l in lines)
    # evaluated on labels 0-4: 64 output features are not these classes' logits
    import json
    lines = _warnings(capsys, ["flat.onnx", "calib.npy", "--eval", "test.npz", "-q", "-T", "4", "-o", "e"])
    assert any("has 64 features but the labels use classes 0-4 only" in l for l in lines)
    assert any("64 features" in w for w in json.loads((work / "e" / "report.json").read_text())["warnings"])


# --- determinism and side effects ---------------------------------------------------------------------

def test_converting_twice_writes_identical_bytes(work):
    from onnx2snn import convert
    x = np.load(work / "calib.npy")
    a = convert(str(work / "m.onnx"), x).snn_model.SerializeToString()
    b = convert(str(work / "m.onnx"), x).snn_model.SerializeToString()
    assert a == b


def test_simulate_leaves_the_network_as_it_was(work):
    import torch
    from onnx2snn import convert
    x = np.load(work / "calib.npy")
    net = convert(str(work / "m.onnx"), x).network
    before = {k: (v.device, v.stride(), v.clone()) for k, v in net.state_dict().items()}
    net.simulate(x, 4, device="cpu", channels_last=True)
    after = net.state_dict()
    for k, (device, stride, value) in before.items():
        assert after[k].device == device and after[k].stride() == stride and torch.equal(after[k], value), k


# --- files: calibration, model, evaluation, config -------------------------------------------------

def _write(work, name, kind):
    """Bad files, each of one kind."""
    p = work / name
    rng = np.random.default_rng(5)
    if kind == "wrong_shape":
        np.save(p, np.zeros((10, 1, 9, 9), np.float32))
    elif kind == "float64":
        np.save(p, np.zeros((10, *SHAPE), np.float64))
    elif kind == "empty":
        np.save(p, np.zeros((0, *SHAPE), np.float32))
    elif kind == "nan":
        a = rng.uniform(0, 1, (10, *SHAPE)).astype(np.float32)
        a[3, 0, 1, 1] = np.nan
        np.save(p, a)
    elif kind == "object":
        np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif kind == "npz":
        np.savez(p, x=np.zeros((10, *SHAPE), np.float32))
    elif kind == "text":
        p.write_text("not numpy")
    elif kind == "no_x":
        np.savez(p, y=np.zeros(10, np.int64))
    elif kind == "no_y":
        np.savez(p, x=np.zeros((10, *SHAPE), np.float32))
    elif kind == "single":
        np.save(p, np.zeros((10, *SHAPE), np.float32))
    elif kind == "y_length":
        np.savez(p, x=np.zeros((10, *SHAPE), np.float32), y=np.zeros(7, np.int64))
    elif kind == "x_shape":
        np.savez(p, x=np.zeros((10, 3, 8, 8), np.float32), y=np.zeros(10, np.int64))
    return name


@pytest.mark.parametrize("kind,fragment", [
    ("wrong_shape", "(10, 1, 9, 9)"), ("float64", "float64"), ("empty", "is empty"), ("nan", "NaN"),
    ("object", "not a NumPy .npy array"), ("npz", ".npz archive"), ("text", "not a NumPy .npy array"),
])
def test_bad_calibration_files(work, capsys, kind, fragment):
    name = _write(work, f"bad_{kind}.npy" if kind != "npz" else "bad.npz", kind)
    refused(work, capsys, ["m.onnx", name, "-q"], fragment)


@pytest.mark.parametrize("kind,fragment", [
    ("no_x", "lacks array(s) x"), ("no_y", "lacks array(s) y"),
    ("y_length", "shape (10,)"), ("x_shape", "(10, 3, 8, 8)"), ("text", "not a NumPy .npz archive"),
])
def test_bad_evaluation_files(work, capsys, kind, fragment):
    name = _write(work, f"bad_{kind}.npz" if kind != "single" else "single.npy", kind)
    refused(work, capsys, ["m.onnx", "calib.npy", "--eval", name, "-q"], fragment)


def _model_with(work, name, change):
    m = graphs.conv_bn_relu()
    change(m)
    onnx.save(m, work / name)
    return name


def _two_inputs(m):
    m.graph.input.append(helper.make_tensor_value_info("x2", onnx.TensorProto.FLOAT, ["N", 3]))


def _int_input(m):
    m.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT64


def _sigmoid(m):
    relu = next(n for n in m.graph.node if n.op_type == "Relu")
    relu.op_type = "Sigmoid"


def _dynamic_width(m):
    m.graph.input[0].type.tensor_type.shape.dim[3].Clear()
    m.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "W"


@pytest.mark.parametrize("change,fragment", [
    (_two_inputs, "2 inputs"), (_int_input, "bad.onnx"), (_sigmoid, "relu1 (Sigmoid)"), (_dynamic_width, "dimension 3 is dynamic"),
])
def test_bad_models(work, capsys, change, fragment):
    refused(work, capsys, [_model_with(work, "bad.onnx", change), "calib.npy", "-q"], fragment)


@pytest.mark.parametrize("name,content,fragment", [
    ("c.json", '{"simulation": {"nonsense": 1}}', "nonsense"),
    ("c.json", '{"simulation": ', "c.json"),
    ("c.toml", "[simulation\nT = 3", "c.toml"),
    ("c.json", '{"simulation": {"output": "rates"}}', "simulation.output"),
    ("c.json", '{"simulation": {"max_pool": {"rule": "median"}}}', "simulation.max_pool.rule"),
    ("c.json", '{"parser": {"threshold": "magic"}}', "parser.threshold"),
])
def test_bad_config_file_contents(work, capsys, name, content, fragment):
    (work / name).write_text(content)
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", "--config", name], fragment)


@pytest.mark.parametrize("args,fragment", [
    (["missing.onnx", "calib.npy"], "missing.onnx"),
    (["m.onnx", "missing.npy"], "missing.npy"),
    (["m.onnx", "calib.npy", "--eval", "missing.npz"], "missing.npz"),
    (["m.onnx", "calib.npy", "--config", "missing.json"], "missing.json"),
    (["m.onnx", "calib.npy", "-o", "no/such/parent/out"], "not a writable folder"),
])
def test_missing_paths(work, capsys, args, fragment):
    refused(work, capsys, [*args, "-q"], fragment)


def test_absurd_T_is_refused(work, capsys):
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", "-T", "10000000"], "simulation.T", "[1, 100000]")
    refused(work, capsys, ["m.onnx", "calib.npy", "-q", "--calibration-T", "10000000"], "calibration.T")


def test_many_refused_nodes_read_as_one_phrase_per_reason():
    """A Mixer's dozens of refused nodes: grouped by reason, three names each, the rest counted."""
    from onnx2snn import Onnx2SnnError, convert
    nodes = [helper.make_node("Relu", ["x"], ["h0"], name="relu")]
    for k in range(5):
        nodes.append(helper.make_node("Elu", [f"h{k}"], [f"h{k + 1}"], name=f"block{k}/elu"))
    nodes.append(helper.make_node("Selu", ["h5"], ["h6"], name="last/selu"))
    nodes.append(helper.make_node("Flatten", ["h6"], ["y"], name="flat"))
    m = graphs.model(nodes, [], SHAPE)
    with pytest.raises(Onnx2SnnError) as e:
        convert(m, np.random.default_rng(0).uniform(0, 1, size=(30, *SHAPE)).astype(np.float32))
    text = str(e.value)
    assert "6 node(s)" in text and "\n" not in text
    assert ("not rate-codable with IF neurons; retrain with ReLU: 6 nodes, block0/elu (Elu), block1/elu (Elu), "
            "block2/elu (Elu), …") in text
    assert "block3/elu" not in text and text.count("retrain with ReLU") == 1


def test_one_calibration_image_is_refused_naming_the_flags_that_convert_it(work, capsys):
    """Too few images to hold some back for the T-calibration: the message names the flags, and
    with them the same image converts."""
    np.save(work / "one.npy", np.load(work / "calib.npy")[:1])
    line = refused(work, capsys, ["m.onnx", "one.npy", "-q", "-T", "16", "-o", "o"], "has 1 image(s)",
                   "calibrating for T=16 needs at least 10")
    flags = line[line.index("(--") + 1:line.rindex(")")].split()
    assert flags == ["--threshold", "statistic", "--no-bias-calibration", "--output", "spikes"]
    assert cli.main(["m.onnx", "one.npy", "-q", "-T", "16", "-o", "o", *flags]) == 0


def test_calibration_on_another_scale_than_the_models_own_input_normalisation_warns():
    """(x - mean) / std inside the graph with means 0.3-0.5: calibration data 30 times larger is named."""
    from patterns import PATTERNS
    from onnx2snn import convert
    m, shape = PATTERNS["input_normalisation_bn_first"]()
    x = np.random.default_rng(0).uniform(0, 1, size=(40, *shape)).astype(np.float32)
    assert not any("subtracts a mean" in w for w in convert(m, x).warnings)
    warnings = convert(m, x * 30).warnings
    assert any("the model subtracts a mean of 0.3 (channel 2) from its input (sub_mean)" in w and "apart" in w
               for w in warnings), warnings
