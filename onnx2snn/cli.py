"""``onnx2snn MODEL.onnx CALIB.npy [options]``: convert, verify, write, and optionally evaluate.

Exit codes: 0 success, 1 bad input (one-line message), 2 bad command line, 3 the written
.snn.onnx, run as an ANN, failed verification. Bugs keep their traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time


from . import __version__
from .config import TASKS, Config, InvalidConfigValue
from . import viewer
from .errors import Onnx2SnnError
from .paths import model_stem, require_file

EPILOG = """\
examples:
  onnx2snn model.onnx calib.npy                      convert, verify, write model_snn/
  onnx2snn model.onnx calib.npy --eval test.npz -T 64
                                                     ... and report ANN vs SNN accuracy per step
  onnx2snn model.onnx calib.npy --max-pool wta --reset-to-zero --poisson

inputs:
  MODEL.onnx  a trained ReLU network with one float input (N, ...); batch dimension dynamic
  CALIB.npy   float32 array (N, ...) of inputs preprocessed as the model expects, e.g. 100-1000
              training images; activations on it set each layer's scale
  --eval      .npz with x (float32, like CALIB) and y (integer labels)

outputs (in --out, default ./<model>_snn/, never beside the input):
  <model>.snn.onnx  the rescaled graph, annotated (open in Netron; onnx2snn.load() rebuilds the SNN)
  config.json       every option of this run (reusable with --config)
  report.json       scales and statistics per layer, verification errors, timings, what the
                    calibration for T did (calibrated_for_T: bias shifts, readout agreement), and with
                    --eval the ANN accuracy and the SNN accuracy after every time step

calibration for a target T (default: -T; set it apart with --calibration-T):
  each layer's threshold is searched for that T, biases are shifted by the SNN's mean rate error on
  the calibration images, and the readout (membrane/spikes, first steps skipped) is chosen on the
  last 20 % of them, held back. --threshold statistic --no-bias-calibration --output spikes
  --avg-pool-neuron --max-pool gate is the seed's conversion.

exit codes: 0 ok, 1 bad input, 2 bad command line, 3 verification failed
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="onnx2snn", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Convert a trained ReLU network (ONNX) into a rate-coded spiking network of IF neurons.")
    p.add_argument("model", metavar="MODEL.onnx", help="trained network exported to ONNX")
    p.add_argument("calib", metavar="CALIB.npy", help="calibration inputs, float32 (N, ...)")
    p.add_argument("--eval", metavar="DATA", nargs="+",
                   help="evaluation data: an .npz with x and y, a folder with x.npy and y.npy, the two .npy files "
                        "X Y (memory-mapped, streamed per batch), or X.npy alone (the SNN's agreement with the "
                        "ANN); y: class labels (N,), 0/1 multi-label targets (N, K), class maps (N, H, W) for a "
                        "(C, H, W) output, or float targets shaped as the output (regression: relative L2 error); "
                        "reports ANN vs SNN metric after every step")
    p.add_argument("--task", choices=TASKS,
                   help="what the output means (default: from the label and output shapes and the output head)")
    p.add_argument("-T", "--timesteps", type=int, help="simulation time steps (default 100)")
    p.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--batch-size", type=int, help="samples per batch for calibration and simulation (default 100)")
    p.add_argument("-o", "--out", metavar="DIR", help="output folder (default: ./<model>_snn, made new)")
    p.add_argument("--config", metavar="FILE", help="options from a JSON or TOML file; flags override it")
    p.add_argument("--seed", type=int, help="random seed for Poisson input (default 0)")
    g = p.add_argument_group("normalisation and calibration for a target T")
    g.add_argument("--threshold", choices=["search", "statistic"],
                   help="each layer's scale: minimise the T-step quantisation error (search, default) or take "
                        "the seed's statistic (--percentile / --no-robust-norm)")
    g.add_argument("--no-per-channel", action="store_true",
                   help="with --threshold search: one threshold per layer, instead of one per channel of each ReLU "
                        "(the default; folded into the weights, spikes stay binary; the output layer keeps one)")
    g.add_argument("--per-channel", action="store_true", help=argparse.SUPPRESS)  # the default since 0.3
    g.add_argument("--percentile", type=float, help="robust normalisation percentile p (default 99.9; with --threshold statistic)")
    g.add_argument("--no-robust-norm", action="store_true", help="scale by the max activation, not the percentile (with --threshold statistic)")
    g.add_argument("--calibration-T", type=int, metavar="T",
                   help="the T the thresholds, biases and readout are calibrated for (default: -T)")
    g.add_argument("--no-bias-calibration", action="store_true",
                   help="do not shift biases by the SNN's mean rate error on the calibration images")
    g.add_argument("--v-init-calibration", action="store_true",
                   help="also calibrate every neuron's initial potential (helps MNIST at T<=16, not CIFAR; off by default)")
    g = p.add_argument_group("neurons and simulation")
    g.add_argument("--reset-to-zero", nargs="?", const=0.0, type=float, metavar="V",
                   help="reset the membrane to V (default 0) after a spike, instead of subtracting the threshold")
    g.add_argument("--v-init", type=float, help="initial membrane potential / threshold (default 0.5; the seed used 0)")
    g.add_argument("--poisson", action="store_true", help="Poisson spike input (inputs must lie in [0, 1])")
    g.add_argument("--signed-spikes", action="store_true",
                   help="LeakyReLU and PReLU as signed IF neurons: +1/-1 spikes, negative threshold = threshold / slope "
                        "(Spiking-YOLO); without it they are refused")
    g.add_argument("--output", choices=["auto", "spikes", "membrane"],
                   help="classify by output spike counts or membrane potential; auto (default): whichever agrees "
                        "best with the ANN on held-back calibration images, with the readout delay")
    g.add_argument("--readout-delay", type=int, metavar="D",
                   help="the readout ignores the first D steps (default: chosen with --output auto, else 0)")
    g.add_argument("--avg-pool-neuron", action="store_true",
                   help="IF neurons after average pooling (default: none; the next layer takes the pooled spikes "
                        "through its synapses)")
    g.add_argument("--no-avg-pool-neuron", action="store_true", help=argparse.SUPPRESS)  # the default since 0.2
    g.add_argument("--max-pool", choices=["max", "gate", "wta", "avg"],
                   help="max pooling of spikes: running max of spike counts (default, exact), gate by spike "
                        "count (the seed's), winner-take-all (plain max of spikes), or average pooling instead")
    g.add_argument("--pool-before-neuron", action="store_true",
                   help="a max pooling right after the first neurons pools their constant input current before them "
                        "instead (their thresholds and biases fitted to the pooled values; not with --poisson)")
    g.add_argument("--momentum", type=float, help="max-pool gate counts c <- m*c + s (m in [0, 1]; default: plain count)")
    g.add_argument("--chunk", type=int, help="time steps simulated per layer call (default: as many as fit in memory)")
    g.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="weights and currents in reduced precision (spikes stay exact; default float32)")
    p.add_argument("--nir", nargs="?", const="", metavar="NAME",
                   help="also write the SNN in NIR (neuromorphic intermediate representation) into the output "
                        "folder, as NAME (default <model>.nir); needs pip install 'onnx2snn[nir]'")
    p.add_argument("--nir-approximate", action="store_true",
                   help="with --nir: write max pooling of spikes, which NIR cannot state, as average pooling "
                        "(listed in report.json) instead of refusing")
    p.add_argument("--netron", action="store_true",
                   help="after writing, open the .snn.onnx in Netron (served on 127.0.0.1; Ctrl+C ends it; "
                        "needs pip install 'onnx2snn[netron]')")
    p.add_argument("--port", type=int, metavar="P",
                   help="with --netron: serve on 127.0.0.1:P (default: a free port); a port in use is refused "
                        "before any work")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="log each graph pass")
    p.add_argument("--version", action="version", version=f"onnx2snn {__version__}")
    return p


# (config key, the flag that sets it, its argparse name): an invalid value is reported as typed
VALUE_FLAGS = (
    ("simulation.T", "-T", "timesteps"), ("device", "--device", "device"), ("batch_size", "--batch-size", "batch_size"),
    ("seed", "--seed", "seed"), ("parser.percentile", "--percentile", "percentile"),
    ("simulation.v_init", "--v-init", "v_init"), ("simulation.output", "--output", "output"),
    ("simulation.reset", "--reset-to-zero", "reset_to_zero"), ("simulation.max_pool.momentum", "--momentum", "momentum"),
    ("simulation.chunk", "--chunk", "chunk"), ("simulation.dtype", "--dtype", "dtype"),
    ("parser.threshold", "--threshold", "threshold"), ("calibration.T", "--calibration-T", "calibration_T"),
    ("simulation.readout_delay", "--readout-delay", "readout_delay"), ("task", "--task", "task"),
)


def config_from_args(a: argparse.Namespace) -> Config:
    cfg = Config.load(a.config) if a.config else Config()
    overrides = {key: getattr(a, name) for key, _, name in VALUE_FLAGS}
    for key, value in overrides.items():
        if value is not None:
            cfg.set(key, value)
    if a.no_robust_norm:
        cfg.parser.robust_norm = False
    if a.per_channel or a.no_per_channel:
        cfg.parser.per_channel = not a.no_per_channel
    if a.poisson:
        cfg.simulation.encoder.poisson = True
    if a.signed_spikes:
        cfg.simulation.signed_spikes = True
    if a.no_avg_pool_neuron or a.avg_pool_neuron:
        cfg.simulation.avg_pool.has_neuron = bool(a.avg_pool_neuron)
    if a.no_bias_calibration:
        cfg.calibration.bias = False
    if a.v_init_calibration:
        cfg.calibration.v_init = True
    if a.pool_before_neuron:
        cfg.simulation.max_pool.before_neuron = True
    if a.max_pool:
        cfg.simulation.max_pool.if_wta = a.max_pool == "wta"
        cfg.simulation.max_pool.if_spatial_avg = a.max_pool == "avg"
        if a.max_pool in ("max", "gate"):
            cfg.simulation.max_pool.rule = a.max_pool
    try:
        return cfg.validate()
    except InvalidConfigValue as e:
        flag = next((f for key, f, _ in VALUE_FLAGS if key == e.key and overrides[key] is not None), None)
        if flag is None:
            raise                # (a value from --config was checked, naming the file, when it was read)
        raise Onnx2SnnError(f"{flag} {e.value!r}: expected {e.expected} (config key {e.key})") from None


class LiveAccuracy:
    """The progress bar's callback: images done, and the SNN's accuracy so far at the final T (the
    seed printed it as it went, so that a long run can be stopped early)."""

    def __init__(self, bar, name: str = "acc"):
        self.bar, self.done, self.correct, self.name = bar, 0, 0, name

    def __call__(self, n: int, correct) -> None:
        self.done += n
        if correct is not None:
            self.correct += correct
            self.bar.set_postfix_str(f"SNN {self.name} {100 * self.correct / self.done:.2f} %", refresh=False)
        self.bar.update(n)


PROGRESS_NAME = {"classification": "acc", "multilabel": "label acc", "segmentation": "pixel acc",
                 "regression": "rel. L2"}
LONG_RUN = 1e12   # element-steps above which the CLI says how much work a simulation is (hours on a CPU)


def check_out_dir(path: str) -> str:
    """The folder --out names, made new or empty: not a file, not a symbolic link (the output is
    renamed into place, which a link would break or redirect), not an empty string."""
    if not path.strip():
        raise Onnx2SnnError("--out is empty; give the output folder's path")
    out = os.path.abspath(path)
    if os.path.islink(path.rstrip("/")) or os.path.islink(out):
        raise Onnx2SnnError(f"output folder {out!r} is a symbolic link; give a real folder (new or empty)")
    if os.path.exists(out) and not os.path.isdir(out):
        raise Onnx2SnnError(f"output folder {out!r} exists and is a file; choose a folder with --out")
    if os.path.isdir(out) and os.listdir(out):
        raise Onnx2SnnError(f"output folder {out!r} exists and is not empty; choose another with --out")
    return out


def follow(a: argparse.Namespace, group) -> int:
    """A rank other than 0 under torchrun: take the network rank 0 converted, simulate this rank's
    share of the evaluation set; rank 0 reports and writes."""
    import json
    import onnx
    from . import api, distributed
    from .data import load_labelled
    message = distributed.broadcast(None)
    if message[0] != "ok":
        raise Follower(1)
    _, data, config_json = message
    config = Config.from_dict(json.loads(config_json))
    config.device = f"cuda:{group.local_rank}" if group.backend == "nccl" else "cpu"
    model = onnx.load_from_string(data)
    network = api.load(model, config)
    if a.eval:
        from .graph import load_model
        info = load_model(model)
        x, y = load_labelled(a.eval, info.sample_shape)
        task = eval_task(info, y, len(x), config, a.eval)
        # the .snn.onnx's output is the logits (its head dropped): the decisions rank 0 takes from the original
        if y is None:   # agreement: the ANN's own decisions are the labels
            from .tasks import decisions
            y = decisions(api.ann_outputs(model, info.input_name, x, config.batch_size), task)
        api.simulate(network, x, y, config=config, record_rates=True, shard=(group.rank, group.world), task=task)
    return 0


def eval_task(info, y, n: int, cfg: Config, paths):
    """The evaluation's task (``tasks.py``), from the labels' and the model output's shapes and head."""
    from .graph.ops import output_head
    from .tasks import infer_task
    shape = info.output_shape or (info.classes or 1,)
    return infer_task(shape, y, n, output_head(info.model), cfg.task,
                      where=f"the evaluation labels y of {' '.join(paths)!r}")


class Follower(Exception):
    """A rank other than 0 ends: rank 0 says why."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def default_out_dir(model_path: str) -> str:
    base = os.path.abspath(f"{model_stem(model_path)}_snn")
    out, i = base, 2
    while os.path.exists(out):
        out, i = f"{base}-{i}", i + 1
    return out


def run(a: argparse.Namespace) -> int:
    """The whole command: check, convert (once, under torchrun too), evaluate, write."""
    cfg, out_dir, nir_name = check_arguments(a)   # before the heavy imports (onnx, onnxruntime, torch: seconds)
    import torch
    torch.backends.cudnn.benchmark = True  # the CLI owns the process: let cuDNN pick its fastest kernels
    from . import distributed
    group = distributed.from_environment()    # under torchrun: rank 0 converts, every rank simulates a share
    if group is not None:
        cfg.device = distributed.start(group, cfg.device)
        if not group.leader:
            return follow(a, group)
    conv, labelled = convert_once(a, cfg, group)
    print_conversion(a, conv)
    rep = conversion_report(a, conv)
    result = ann = None
    if a.eval:
        ann, result = evaluate(a, conv, labelled, rep, (group.rank, group.world) if group is not None else None)
    name, written = write_outputs(a, conv, rep, out_dir, nir_name, ann, result)
    print(f"wrote {out_dir}/: {', '.join(written)}")
    if a.netron:
        open_in_netron(os.path.join(out_dir, name), a.port or 0)
    return 0


def check_arguments(a: argparse.Namespace):
    """The config, the output folder and the NIR file name, with every option and path checked."""
    cfg = config_from_args(a)
    out_dir = check_out_dir(a.out) if a.out is not None else default_out_dir(a.model)
    nir_name = None
    if a.nir is not None:
        nir_name = a.nir or model_stem(a.model) + ".nir"
        if os.path.basename(nir_name) != nir_name or nir_name in (model_stem(a.model) + ".snn.onnx", "config.json",
                                                                  "report.json") or not nir_name.strip():
            raise Onnx2SnnError(f"--nir {nir_name!r}: give a file name for the output folder (no folder part), "
                                "other than the files written there")
    parent = os.path.dirname(out_dir)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise Onnx2SnnError(f"cannot write the output folder {out_dir!r}: {parent!r} is not a writable folder")
    if a.port is not None and not a.netron:
        raise Onnx2SnnError("--port is the port of --netron's server: give --netron too")
    if a.netron:
        viewer.check_available()
        if a.port is not None:
            viewer.check_port(a.port)
    if a.eval is not None and len(a.eval) > 2:
        raise Onnx2SnnError(f"--eval takes one .npz, one folder or two .npy files; got {len(a.eval)} paths")
    for path, what in ((a.model, "model file"), (a.calib, "calibration file")):
        require_file(path, what)
    return cfg, out_dir, nir_name


def convert_once(a: argparse.Namespace, cfg: Config, group):
    """Load, check the labelled data against the model, convert; under torchrun, send the result (or
    the error) from rank 0 to the other ranks."""
    from . import api, distributed
    from .data import load_labelled
    from .graph import load_model
    from .snn.network import resolve_device
    try:
        resolve_device(cfg.device)            # a device this machine cannot use is refused before any work
        info = load_model(a.model)
        labelled = None
        if a.eval:      # checked against the model before any conversion work
            x, y = load_labelled(a.eval, info.sample_shape)
            labelled = (x, y, eval_task(info, y, len(x), cfg, a.eval))
        input_warnings = compare_with_evaluation(a, info, labelled[0]) if a.eval else []
        if a.nir is not None:   # what NIR cannot state is refused now, not after the calibration
            from .nir_io import check_exportable
            check_exportable(info.model, cfg.spiking_options(), a.nir_approximate, cfg.pools_currents,
                             cfg.simulation.signed_spikes, f"model {info.name!r}")
        conv = api.convert(info, a.calib, cfg)
        conv.warnings[:0] = input_warnings
    except BaseException as e:
        if group is not None:
            distributed.broadcast(("error", str(e)))
        raise
    if group is not None:
        from .graph import external
        if external.too_big(conv.snn_model):   # one message cannot carry it (protobuf's 2 GiB); no file sharing yet
            distributed.broadcast(("error", "too big"))
            raise Onnx2SnnError(f"{a.model!r}: models above 2 GiB are not yet supported under torchrun")
        distributed.broadcast(("ok", conv.snn_model.SerializeToString(), conv.config.to_json()))
    return conv, labelled


def compare_with_evaluation(a: argparse.Namespace, info, x_eval) -> list:
    """Calibration inputs that cannot describe the evaluation inputs are refused before any work
    (``diagnose.compare_inputs``); a smaller mismatch is a warning."""
    from . import diagnose
    from .data import load_calibration
    return diagnose.compare_inputs(load_calibration(a.calib, info.sample_shape), x_eval, repr(a.calib),
                                   repr(" ".join(a.eval)))


def print_conversion(a: argparse.Namespace, conv) -> None:
    from . import report
    before, after = conv.passes[0]["ops"], conv.passes[-1]["ops"]
    print(f"converted {a.model}: {sum(before.values())} nodes -> {sum(after.values())} "
          f"({', '.join(f'{k} {v}' for k, v in after.items())})")
    for p in conv.passes:
        if p["pass"].startswith("drop output") and p.get("removed"):
            print(f"dropped {', '.join(p['removed'])} at the output (argmax unchanged; the SNN reads the logits)")
    print(report.layer_table(conv.layers))
    if a.verbose:
        print(conv.network)
    print(f"verified {model_stem(a.model)}.snn.onnx as written, run by onnxruntime as an ANN: "
          f"{conv.verification.summary()}")
    if conv.calibration is not None:
        print(report.calibration_lines(conv.calibration, conv.config))
    for line in conv.warnings:
        print(f"warning: {line}")


def conversion_report(a: argparse.Namespace, conv) -> dict:
    """report.json's conversion part (evaluate() adds the accuracies)."""
    from .graph.ops import output_head
    return {"onnx2snn_version": __version__, "output_head": output_head(conv.source), "model": os.path.abspath(a.model), "calibration": os.path.abspath(a.calib),
            "config": conv.config.to_dict(), "passes": conv.passes, "layers": [l.to_dict() for l in conv.layers],
            "statistics": {k: v.to_dict() for k, v in conv.stats.items()}, "verification": {"relative_error": conv.verification.errors, "images": conv.verification.samples,
                             "argmax_agreement": conv.verification.agreement},
            "timings_s": dict(conv.timings),
            "calibrated_for_T": conv.calibration.to_dict() if conv.calibration else None,
            "warnings": list(conv.warnings)}


def evaluate(a: argparse.Namespace, conv, labelled, rep: dict, shard):
    """ANN and SNN metric (accuracy, mean label accuracy, mean IoU: ``tasks.py``) on the evaluation
    data, printed and added to ``rep``; without labels, the ANN's own decisions are the labels."""
    from . import api, report, tasks
    from .graph.ops import output_head
    from .snn import synops
    cfg = conv.config  # the simulation options (the readout is the network's)
    x, y, task = labelled
    t = time.perf_counter()
    head = output_head(conv.source)
    ann_out = api.ann_outputs(conv.source, conv.input_name, x, cfg.batch_size)
    if y is None:
        y = tasks.decisions(ann_out, task, head)
    elif task.kind == "classification":
        from .diagnose import label_warnings
        for line in label_warnings(task.classes, y):
            print(f"warning: {line}")
            rep["warnings"].append(line)
    ann_metrics = tasks.score(ann_out, y, task, head)
    ann = ann_metrics[task.metric]
    del ann_out
    rep["timings_s"]["ann_eval"] = time.perf_counter() - t
    work = len(x) * cfg.simulation.T * conv.network.elements_per_sample
    if work > LONG_RUN:
        print(f"note: simulating {len(x)} samples × T={cfg.simulation.T} steps × "
              f"{conv.network.elements_per_sample} neurons and currents each = {work:.2g} element-steps; "
              "the progress bar shows the rate once it starts (Ctrl+C stops cleanly)")
    bar = None
    if not a.quiet:
        from tqdm import tqdm
        bar = tqdm(total=len(x), desc=f"simulating T={cfg.simulation.T}", unit="img", file=sys.stderr)
    t = time.perf_counter()
    try:
        result = api.simulate(conv.network, x, y, config=cfg, record_rates=True,
                              progress=LiveAccuracy(bar, PROGRESS_NAME[task.kind]) if bar else None, shard=shard, task=task)
    finally:
        if bar:
            bar.close()
    rep["timings_s"]["snn_simulation"] = time.perf_counter() - t
    acc = result.accuracy_per_step
    print(f"SNN {task.describe()} after each time step (%):")
    for t0 in range(0, len(acc), 10):
        print(f"  T={t0 + 1:>4}-{min(t0 + 10, len(acc)):<4} " + " ".join(f"{100 * v:6.2f}" for v in acc[t0:t0 + 10]))
    producer = {o: n.name for n in conv.snn_model.graph.node for o in n.output}
    outputs = {o.name for o in conv.snn_model.graph.output}
    layers = conv.network.layer_scales   # named as in the .snn.onnx, like the network's steps
    neuron_of = {l.node: "output" if l.stat_tensor in outputs else producer[l.stat_tensor]
                 for l in layers if l.stat_tensor}
    print(report.rates_table(layers, result.firing_rates, neuron_of))
    totals = synops.energy(result.synaptic_ops)
    print(report.synops_table(result.synaptic_ops, totals, cfg.simulation.T))
    print(report.summary_line(ann, result.accuracy, task.describe()))
    # ann_accuracy, snn_accuracy and accuracy_per_step hold the task's headline metric ("metric")
    rep.update(task=task.kind, metric=task.metric, agreement_with_ann=task.agreement,
               ann_accuracy=ann, snn_accuracy=result.accuracy, accuracy_per_step=acc,
               ann_metrics=ann_metrics, metrics_per_step=result.metrics_per_step,
               firing_rates=result.firing_rates, n_eval=len(x),
               synaptic_operations={"per_layer": result.synaptic_ops, "total": totals})
    return ann, result


def write_outputs(a: argparse.Namespace, conv, rep: dict, out_dir: str, nir_name, ann, result):
    """Everything into a temporary folder beside the target, then one rename: no half-written output.
    Returns the .snn.onnx's name and the files written."""
    from . import plots, report
    tmp = tempfile.mkdtemp(prefix=".onnx2snn-", dir=os.path.dirname(out_dir))
    try:
        name = model_stem(a.model) + ".snn.onnx"
        data_file = conv.save(os.path.join(tmp, name))   # a data file beside it only above 2 GiB
        conv.config.save(os.path.join(tmp, "config.json"))
        report.write_json(os.path.join(tmp, "report.json"), rep)
        written = [name] + ([os.path.basename(data_file)] if data_file else []) + ["config.json", "report.json"]
        if a.nir is not None:
            from .nir_io import export_nir
            approximations = export_nir(conv.snn_model, os.path.join(tmp, nir_name), a.nir_approximate)
            rep["nir"] = {"file": nir_name, "approximations": approximations}
            report.write_json(os.path.join(tmp, "report.json"), rep)
            written.append(nir_name)
            for line in approximations:
                print(f"warning: NIR approximation: {line}")
        if result is not None:
            try:
                written += plots.write_plots(tmp, result.accuracy_per_step, ann, result.firing_rates, model_stem(a.model),
                                             rep.get("metric", "accuracy").replace("_", " "),
                                             lower_is_better=result.task is not None and result.task.lower_is_better)
            except ImportError:
                print("note: no plots (matplotlib is not installed: pip install 'onnx2snn[plot]')")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700): give it the permissions of a new folder
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return name, written


def open_in_netron(path: str, port: int = 0) -> None:
    """Serve the written file with Netron until Ctrl+C (``port`` 0: a free one)."""
    host, port = viewer.serve(path, port)
    print(f"Netron is serving {os.path.basename(path)} at http://{host}:{port} (Ctrl+C to stop); from another "
          f"machine: ssh -L {port}:{host}:{port} <this host>, then open http://{host}:{port} there", flush=True)
    try:
        import netron
        netron.wait()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop((host, port))


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(name)s: %(message)s")
    previous = _on_sigterm(_terminate)
    quiet = int(os.environ.get("RANK", "0") or 0) != 0    # under torchrun only rank 0 speaks
    try:
        return run(a)
    except Follower as e:
        return e.code
    except Onnx2SnnError as e:
        if not quiet:
            print(f"onnx2snn: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("onnx2snn: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("onnx2snn: terminated", file=sys.stderr)
        return 143
    finally:
        _on_sigterm(previous)
        if "torch.distributed" in sys.modules:
            from . import distributed
            distributed.stop()


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so that the same clean-up as for Ctrl+C runs (the
    half-written output folder is removed)."""


def _terminate(signum, frame):
    raise Terminated()


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM (from the main thread only); return the previous one."""
    import signal
    import threading
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
