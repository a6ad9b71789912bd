"""The Python API the CLI is built on: ``convert``, ``load``, ``simulate``, ``ann_accuracy``.

    conv = onnx2snn.convert("model.onnx", "calib.npy", Config())   # or an onnx.ModelProto / array
    conv.save("model.snn.onnx")
    result = conv.network.simulate(x, T=100, labels=y)
    net = onnx2snn.load("model.snn.onnx")                           # the same SNN, from the file alone
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import onnx

from . import __version__
from . import diagnose, snn_calibration, tasks
from .calibrate import TensorStats, collect_histograms, collect_stats, run
from .config import Config
from .data import check_inputs, load_calibration
from .errors import Onnx2SnnError
from .graph import clean_graph, external, load_model
from .graph.annotate import KEY_CONFIG, annotate, read_metadata
from .graph.spiking import to_spiking
from .graph.view import GraphView
from .graph.ops import RULES, check_supported, output_head
from .lower import lower_model
from .normalize import (Lambdas, LayerScale, Plan, apply_scales, assign_scales, foldable_channel_scales,
                        layer_scales, plan_layers,
                        statistic_lambdas, usable_lambdas)
from .snn import cpu_memory
from .snn.network import SimulationResult, SpikingNetwork
from .thresholds import clipped_model, search_thresholds
from .verify import Verification, needs_cleaned, verify

GC_MIN_BYTES = 256 << 20   # models this large have their dropped graph copies collected at once


@dataclass
class Conversion:
    """Everything a conversion produced."""
    snn_model: onnx.ModelProto          # the annotated, rescaled graph (write with ``save``)
    network: SpikingNetwork             # the torch SNN lowered from it
    plan: Plan                          # λ per weighted layer, tensor scales, Add factors, Clip bounds
    stats: Dict[str, TensorStats]       # calibration statistics per activation tensor
    config: Config                      # the options asked for (the readout chosen is the Readout node's)
    source: onnx.ModelProto             # the original model (shape-inferred copy)
    input_name: str
    sample_shape: tuple                 # the model input's shape without the batch dimension
    passes: List[dict]                  # op counts after each graph pass
    verification: Verification         # the written file run as an ANN against the original
    calibration: Optional[snn_calibration.CalibrationReport] = None  # bias shifts, readout choice
    timings: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)   # degenerate input that converted (diagnose.py)

    @property
    def readout(self) -> tuple:
        """(mode, delay) of the output layer, as the Readout node states it ("spikes" where the
        output is spikes already)."""
        node = next((n for n in self.snn_model.graph.node if n.op_type == "Readout"), None)
        if node is None:
            return "spikes", self.network.readout_delay
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        return attrs.get("mode", b"membrane").decode(), int(attrs.get("delay", 0))

    @property
    def layers(self) -> List[LayerScale]:
        """λ_pre, λ and the statistic per weighted layer."""
        return self.plan.layers

    def save(self, path: str) -> Optional[str]:
        """Write the ``*.snn.onnx`` file atomically (a temporary file, then a rename); above 2 GiB its
        weights go to ``<path>.data`` beside it, whose path is returned (``graph/external.py``)."""
        return external.save(self.snn_model, path)


def convert(model: Union[str, os.PathLike, onnx.ModelProto], calibration: Union[str, np.ndarray],
            config: Optional[Config] = None,
            progress: Optional[Callable[[str, int, int], None]] = None) -> Conversion:
    """Convert a trained ReLU network to a rate-coded SNN.

    ``model``: an ONNX file or ``ModelProto`` (never modified). ``calibration``: a ``.npy`` path or
    an array of inputs ``(N, *input_shape)``, float32. ``progress(stage, done, total)`` is called
    while calibrating. Raises ``Onnx2SnnError`` (one-line message) on bad input."""
    config = (config or Config()).validate()
    timings, t0 = {}, time.perf_counter()
    info = load_model(model)
    label = f"model {info.name!r}"
    if isinstance(calibration, (str, os.PathLike)):
        x = load_calibration(os.fspath(calibration), info.sample_shape)
    else:
        x = calibration
        check_inputs(x, info.sample_shape, "calibration array")
    timings["load"] = time.perf_counter() - t0
    # Full garbage collections below free the weights of dropped graph copies at once; they cost
    # 0.1-0.2 s each once torch is imported, worth it only where the weights are large.
    collect = gc.collect if external.size(info.model) > GC_MIN_BYTES else (lambda: None)

    t = time.perf_counter()
    cleaned, passes = clean_graph(info.model, pool_currents=config.pools_currents)
    # onnx-graphsurgeon graphs are reference cycles: free the weight arrays of those the passes
    # dropped now, not at Python's next full collection (above 2 GiB each copy of the weights counts)
    collect()
    view = GraphView(cleaned)
    check_supported(view, label, signed=config.simulation.signed_spikes)
    input_warnings = diagnose.calibration_warnings(            # (all zeros or one value: refused here)
        x, f"calibration {os.fspath(calibration)!r}" if isinstance(calibration, (str, os.PathLike)) else
        "the calibration array")
    input_warnings += diagnose.normalisation_warnings(info.model, x)
    plan = plan_layers(view)
    timings["clean"] = time.perf_counter() - t

    calibration_options = config.calibration_options()
    x_fit, x_hold = snn_calibration.split(x, calibration_options)
    search = config.parser.threshold == "search"
    t = time.perf_counter()
    cb = (lambda n: progress("calibrate", n, len(x_fit))) if progress else None
    stats = collect_stats(cleaned, info.input_name, plan.stat_tensors, x_fit, config.parser.percentile,
                          config.batch_size, cb, histograms=search, absolute=plan.sites)
    lambdas = usable_lambdas(choose_lambdas(cleaned, info.input_name, stats, x_fit, config, plan.sites), stats)
    timings["calibrate"] = time.perf_counter() - t

    t = time.perf_counter()
    assign_scales(view, plan, lambdas)
    outputs = set(view.output_names)
    warnings = input_warnings + diagnose.layer_warnings(
        plan.layers, stats, any(l.stat_tensor in outputs for l in plan.layers))
    del view                 # its numpy copy of every weight, not needed from here on
    edited = apply_scales(cleaned, plan)
    if not needs_cleaned(info.model, plan):
        cleaned = None       # verification compares with the original alone: free this copy's weights
    collect()                # likewise
    timings["normalise"] = time.perf_counter() - t

    head = output_head(info.model)
    report = None
    if config.snn_calibration:
        t = time.perf_counter()
        # the readout is chosen by agreement with the ANN's decisions, on the task the output suggests
        task = (tasks.infer_task(info.output_shape or (info.classes or 1,), None, len(x_fit), head, config.task)
                if config.simulation.output == "auto" else None)
        if task is not None and task.kind == "regression":
            task = None       # no decisions to agree on: the membrane readout (signed), no delay
        edited, report = calibrate_snn(edited, info, plan, x_fit, x_hold, calibration_options, task)
        timings["snn_calibration"] = time.perf_counter() - t

    spiking = dataclasses.replace(config.spiking_options(), head=head)
    if report is not None and report.readout is not None:   # the choice goes into the Readout node only
        spiking = dataclasses.replace(spiking, readout=report.readout[0], readout_delay=report.readout[1])
    snn_model = annotate(to_spiking(edited, spiking), plan.layers, config.to_json(), info.sha256, __version__,
                         report.offsets if report else None, config.target_T, plan.factors)
    del edited
    collect()                # likewise (to_spiking's graph)
    # the file as it will be written, run as an ANN: what the bias calibration and the readout added
    # must leave it the rescaled original (SNN-only values are inputs the function bodies ignore)
    t = time.perf_counter()
    verification = verify(info.model, cleaned, snn_model, info.input_name, plan, x_fit, batch_size=config.batch_size)
    del cleaned
    timings["verify"] = time.perf_counter() - t
    network = lower_model(snn_model, check=False)    # (checked once, above)
    network.defaults = config.simulation_options()
    network.layer_scales = layer_scales(snn_model)   # as load() reads them: named as in the file
    timings["total"] = time.perf_counter() - t0
    return Conversion(snn_model, network, plan, stats, config, info.model, info.input_name, info.sample_shape, passes,
                      verification, report, timings, warnings)


def choose_lambdas(cleaned: onnx.ModelProto, input_name: str, stats: Dict[str, TensorStats], x: np.ndarray,
                   config: Config, sites=()) -> Lambdas:
    """λ per activation tensor: the seed's statistic, or the T-step search (``thresholds.py``) in
    two rounds — on the ANN's activations, then on the graph clipped at the first round's λ. The
    two-sided neurons' tensors (``sites``) are searched on |x| and not clipped in the second round
    (their neurons clip both signs; the clipped graph's Min would clip one)."""
    if config.parser.threshold != "search":
        return statistic_lambdas(stats, config.parser.robust_norm)
    T, v_init = config.target_T, config.simulation.v_init
    lambdas = search_thresholds({k: s.histogram for k, s in stats.items()}, T, v_init, stats)
    clipped = clipped_model(cleaned, {k: lam for k, (lam, _) in lambdas.items() if lam > 0 and k not in sites})
    per_channel = channel_tensors(GraphView(cleaned), stats) if config.parser.per_channel else ()
    hists = collect_histograms(clipped, input_name, list(stats), x, config.batch_size, per_channel, absolute=sites)
    return search_thresholds(hists, T, v_init, stats)


def channel_tensors(view: GraphView, tensors) -> List[str]:
    """The activations that may take one λ per channel: ReLU outputs with a channel axis that are
    not the graph output (argmax needs one scale for every class), and whose scale every layer
    downstream can absorb (``normalize.foldable_channel_scales``); a Clip's bound needs one λ."""
    outputs = set(view.output_names)
    candidates = [t for t in tensors if t not in outputs and t in view.producer and view.producer[t].op_type == "Relu"
            and len(view.shapes.get(t, ())) >= 2 and _channels_of_a_layer(view, view.producer[t].input[0])]
    return foldable_channel_scales(view, candidates)


def _channels_of_a_layer(view: GraphView, tensor: str) -> bool:
    """Is axis 1 of ``tensor`` the output channel axis of the weighted layer(s) it comes from? Not
    after a layout op (a token-wise dense layer's Transpose back: axis 1 are the tokens)."""
    node = view.producer.get(tensor)
    while node is not None and node.op_type not in ("Conv", "Gemm", "ConvTranspose", "Add"):
        rule = RULES.get(node.op_type)
        if rule is None or rule.scale != "preserve":
            return False
        node = view.producer.get(node.input[0])
    if node is not None and node.op_type == "Add":     # every branch of a residual Add
        return all(_channels_of_a_layer(view, t) for t in view.data_inputs(node))
    return node is not None


def calibrate_snn(edited: onnx.ModelProto, info, plan: Plan, x_fit: np.ndarray, x_hold: Optional[np.ndarray],
                  options: snn_calibration.CalibrationOptions, task: Optional[tasks.Task] = None):
    """Bias calibration on the fit images (``options.bias``) and, given a ``task``, the readout
    choice on the held-back ones by agreement with the ANN's decisions for it (classes, label
    decisions, class maps; ``snn_calibration.py``); returns the graph with the neurons' input
    offsets and what was done (the readout chosen: ``report.readout``)."""
    # one heap for all the calibration's simulations: each would otherwise give its freed memory back
    # to the system when it ends (malloc_trim: 0.14 s a time on ResNet-20), only for the next to fault it in
    with cpu_memory.keep_freed_memory():
        return _calibrate_snn(edited, info, plan, x_fit, x_hold, options, task)


def _calibrate_snn(edited, info, plan, x_fit, x_hold, options, task):
    T = options.T
    network = lower_model(edited, options.neurons, check=False)
    passes = snn_calibration.calibration_passes(network, x_fit, T, options)
    used = sum(len(p) for p in passes) if options.bias else 0
    x_read = None if x_hold is None else snn_calibration.readout_images(x_fit, used, x_hold)
    report = snn_calibration.CalibrationReport(T, used, 0 if x_read is None else len(x_read))
    if options.bias:
        for k, part in enumerate(passes):
            snn_calibration.calibrate_biases(network, edited, info.input_name, plan, part, T, options, report,
                                             weight=1.0 / (k + 1))
        edited = snn_calibration.store_offsets(edited, report.offsets)
        edited = snn_calibration.store_v_init(edited, report.v_init_maps)
    if task is not None:
        teacher = tasks.decisions(ann_outputs(info.model, info.input_name, x_read, options.batch_size), task,
                                  output_head(info.model))
        snn_calibration.choose_readout(network, x_read, teacher, T, options, report, task)
    return edited, report


def load(path: Union[str, os.PathLike, onnx.ModelProto], config: Optional[Config] = None) -> SpikingNetwork:
    """Rebuild the SNN from a ``*.snn.onnx`` file alone: the network is the file's nodes'; its
    simulation defaults (T, device, batch size, encoding, precision) come from ``config``, else from
    the config stored in the metadata. A config cannot change the network (its readout, say)."""
    info = load_model(path)
    meta = read_metadata(info.model)
    if KEY_CONFIG not in meta:
        raise Onnx2SnnError(f"{os.fspath(path) if not isinstance(path, onnx.ModelProto) else 'the model'} "
                            "is not an onnx2snn output (no onnx2snn.config metadata); convert it first")
    if config is None:
        stored = json.loads(meta[KEY_CONFIG])
        # Files written by 0.1 predate the max-pool rule: they gated by spike count.
        stored.get("simulation", {}).get("max_pool", {}).setdefault("rule", "gate")
        config = Config.from_dict(stored)
    network = lower_model(info.model, config.spiking_options())
    network.defaults = config.simulation_options()
    network.layer_scales = layer_scales(info.model)
    return network


def simulate(network: SpikingNetwork, x: np.ndarray, labels: Optional[np.ndarray] = None,
             T: Optional[int] = None, config: Optional[Config] = None, chunk: Optional[int] = None,
             record_rates: bool = False,
             progress: Optional[Callable[[int, Optional[int]], None]] = None,
             shard: Optional[tuple] = None, task: Optional[tasks.Task] = None) -> SimulationResult:
    """Simulate ``network`` on inputs ``x`` for ``T`` steps with ``config``'s simulation options
    (default: the network's, from its conversion or file); see ``SpikingNetwork.simulate``. The
    readout is the network's own (its Readout node)."""
    options = config.simulation_options() if config else getattr(network, "defaults", None) or Config().simulation_options()
    return network.simulate(x, T or options.T, labels, record_rates=record_rates, progress=progress, shard=shard,
                            task=task, **options.kwargs(chunk=chunk or options.chunk))


def ann_outputs(model: onnx.ModelProto, input_name: str, x: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """The (first) output of a model run by onnxruntime on ``x``, streamed in batches."""
    return run(model, input_name, x, [model.graph.output[0].name], batch_size)[0]


def ann_accuracy(model: onnx.ModelProto, input_name: str, x: np.ndarray, labels: np.ndarray,
                 batch_size: int = 100) -> float:
    """Accuracy of the original ANN with onnxruntime."""
    logits = ann_outputs(model, input_name, x, batch_size)
    return float(np.mean(logits.reshape(len(x), -1).argmax(1) == labels))
