"""Make the spiking graph legible where users audit it, in Netron:

* each rescaled node is named with its scale (``/0/Conv λ 2.57``), described in a few lines (what
  was done, from which statistic) and carries short metadata keys (``lambda_in``, ``lambda``,
  ``statistic``: Netron cuts longer keys); an IF node with an input offset (the bias
  calibration's) says so, with the key ``offset``;
* a tensor named after a node that no longer produces it (a Conv writing an absorbed
  BatchNormalization's ``/1/BatchNormalization_output_0``) is named after its producer; other
  names stay, so tensors still match the original model's;
* the model's metadata holds the version, the config, the source's hash, the output scale and
  the layer table as one short entry per layer (Netron cuts a value after 2000 characters).

Annotations are written on the exported ``ModelProto`` (onnx-graphsurgeon drops node doc strings
and metadata on export). ``normalize.layer_scales`` reads the scales back from the nodes.
"""
from __future__ import annotations

import json
import re
from typing import Dict, List, Optional

import numpy as np
import onnx

from .spiking import KEY_ENCODING

KEY_VERSION = "onnx2snn.version"
KEY_CONFIG = "onnx2snn.config"
KEY_SOURCE = "source_sha256"
KEY_OUTPUT_SCALE = "output_scale"
LAYER_KEY = "layer {:03d}"
LAMBDA_MARK = " λ "      # rescaled nodes are named "<name> λ <lambda>"
# Node metadata keys (at most 16 characters: Netron cuts longer keys).
NODE_LAMBDA_IN, NODE_LAMBDA, NODE_STATISTIC, NODE_OFFSET = "lambda_in", "lambda", "statistic", "offset"
# Model metadata that the spiking graph wrote and annotation keeps (graph/spiking.py KEY_ENCODING).
KEPT_KEYS = (KEY_ENCODING,)
# Keys of files written by onnx2snn 0.1 and 0.2, still read.
OLD_KEY_LAYERS, OLD_KEY_OUTPUT_SCALE = "onnx2snn.layers", "onnx2snn.output_scale"


def annotate(model: onnx.ModelProto, layers: List, config_json: str, source_sha256: str,
             version: str, offsets: Optional[Dict[str, np.ndarray]] = None, target_T: Optional[int] = None,
             factors: Optional[List] = None) -> onnx.ModelProto:
    """``model``: the spiking graph; ``layers``: the plan's ``LayerScale`` per weighted node;
    ``offsets``: per neuron tensor, the bias calibration's input offset (normalised units);
    ``factors``: the plan's synaptic factors (Add node, input index, value)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_name = {l.node: l for l in layers}
    output_scale = next((l.lambda_out for l in layers if l.stat_tensor in {o.name for o in out.graph.output}), 1.0)
    tensors = _rename_tensors(out.graph)
    rows = []
    for node in out.graph.node:
        layer = by_name.get(node.name)
        if layer is None:
            continue
        statistic = _renamed(layer.statistic, tensors)
        node.doc_string = "\n".join(
            [f"onnx2snn rescaled this {layer.op} for IF neurons with threshold 1:",
             "  W <- W * lambda_in / lambda,  b <- b / lambda",
             f"  lambda_in = {format_scale(layer.lambda_in)} (the scale of its input)",
             f"  lambda = {format_scale(layer.lambda_out)} ({statistic})"])
        del node.metadata_props[:]
        pre = json.dumps(layer.lambda_in) if isinstance(layer.lambda_in, list) else f"{layer.lambda_in:.9g}"
        lam = json.dumps(layer.lambda_out) if isinstance(layer.lambda_out, list) else f"{layer.lambda_out:.9g}"
        for k, v in [(NODE_LAMBDA_IN, pre), (NODE_LAMBDA, lam), (NODE_STATISTIC, statistic)]:
            node.metadata_props.add(key=k, value=v)
        node.name = f"{node.name}{LAMBDA_MARK}{_short(layer.lambda_out)}"
        rows.append(f"{node.name}: {layer.op}, lambda_in {format_scale(layer.lambda_in)}, {statistic}")
    offsets = {tensors.get(t, t): v for t, v in (offsets or {}).items()}
    factor_nodes = {f"{add}/factor{index}": value for add, index, value in (factors or [])}
    for node in out.graph.node:
        if node.domain == "onnx2snn" and node.op_type in ("IF", "ClipIF") and not node.doc_string:
            offset = offsets.get(node.output[0])
            node.doc_string = "\n".join([
                f"IF neurons in place of the {'Clip' if node.op_type == 'ClipIF' else 'ReLU'} of the same name.",
                "threshold 1 stands for the scale lambda of the layer that drives them;",
                "their spike rate over T steps approximates the ANN activation / lambda."]
                + ([f"Input offset (bias calibration for T={target_T}): the SNN's mean rate",
                    "error per channel, added to the input current every step;",
                    f"mean |offset| {np.mean(np.abs(offset)):.3g}, max {np.max(np.abs(offset)):.3g}.",
                    "SNN only: the ANN body ignores it."] if offset is not None else []))
            if offset is not None:
                node.metadata_props.add(key=NODE_OFFSET, value=f"mean |offset| {np.mean(np.abs(offset)):.3g} at T={target_T}")
        elif node.name in factor_nodes:
            value = np.asarray(factor_nodes[node.name])
            text = f"{float(value.reshape(-1)[0]):.4g}" if value.size == 1 else f"per channel {value.min():.4g}-{value.max():.4g}"
            node.doc_string = "\n".join([
                "Synaptic factor inserted by onnx2snn: this input of the Add arrives at scale lambda_in,",
                "the Add's output is at scale lambda, so the input's spikes are weighted by",
                f"lambda_in / lambda = {text} (spikes stay binary; the factor is a synaptic weight)."])
            del node.metadata_props[:]
            node.metadata_props.add(key="factor", value=text)
    meta = {KEY_VERSION: version, KEY_CONFIG: config_json, KEY_SOURCE: source_sha256,
            KEY_OUTPUT_SCALE: f"{output_scale:.9g}"}
    meta.update({LAYER_KEY.format(i + 1): row for i, row in enumerate(rows)})
    kept = {p.key: p.value for p in out.metadata_props if p.key in KEPT_KEYS}
    meta.update(kept)
    del out.metadata_props[:]
    for k, v in meta.items():
        out.metadata_props.add(key=k, value=v)
    out.producer_name, out.producer_version = "onnx2snn", version
    out.doc_string = "\n".join([
        f"Rate-coded spiking network written by onnx2snn {version}.",
        "Every ReLU is an onnx2snn.IF node (integrate-and-fire neurons, threshold 1); max pooling of spikes "
        "is onnx2snn.SpikeMaxPool; onnx2snn.Readout reads the class out. Their function bodies are the ANN's "
        "ops, so onnxruntime runs this file as the rescaled ANN (same argmax as the original; verified on the "
        "file as written). What only the SNN uses - input offsets from the bias calibration, initial "
        "potentials - are inputs of the IF nodes that the bodies ignore.",
        f"Each rescaled layer (named '... λ <lambda>') has W <- W*lambda_in/lambda, b <- b/lambda; "
        f"{len(rows)} layers are listed in the metadata 'layer NNN'.",
        f"The outputs are the original's divided by {output_scale:.6g} (output_scale)."])
    return out


def _rename_tensors(graph: onnx.GraphProto) -> Dict[str, str]:
    """Tensors named after a node that no longer writes them (``<node>_output_<i>``, the exporters'
    pattern: a Conv writing an absorbed BatchNormalization's output) get their producer's name;
    every other name stays, so tensors still match the original model's by name. Returns old -> new."""
    keep = {i.name for i in graph.input} | {o.name for o in graph.output} | {i.name for i in graph.initializer}
    taken = {n for node in graph.node for n in node.output} | keep
    renames: Dict[str, str] = {}
    for node in graph.node:
        for i, name in enumerate(node.output):
            match = _EXPORTER_NAME.match(name or "")
            if not match or name in keep or match.group(1) == node.name:
                continue
            new = f"{node.name}_output_{i}"
            if new not in taken:
                taken.add(new)
                renames[name] = new
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for vi in graph.value_info:
        vi.name = renames.get(vi.name, vi.name)
    return renames


_EXPORTER_NAME = re.compile(r"^(.*)_output_\d+$")


def _renamed(text: str, tensors: Dict[str, str]) -> str:
    """A statistic's description ('T=32 search of <tensor>') with the tensor's new name."""
    head, sep, tensor = text.rpartition(" of ")
    return f"{head}{sep}{tensors.get(tensor, tensor)}" if sep else text


def _short(value) -> str:
    """λ for a node name: '3.56', or '0.8-3.6' per channel."""
    if isinstance(value, list):
        return f"{min(value):.2g}-{max(value):.2g}"
    return f"{value:.3g}"


def base_name(node_name: str) -> str:
    """A rescaled node's name without the ' λ <lambda>' that annotate() appends."""
    return node_name.split(LAMBDA_MARK)[0]


def format_scale(value) -> str:
    """A scalar, or 'per channel min–max' for a vector of scales."""
    if isinstance(value, list):
        return f"per channel {min(value):.4g}-{max(value):.4g}"
    return f"{value:.4g}"


def read_metadata(model: onnx.ModelProto) -> dict:
    return {p.key: p.value for p in model.metadata_props}


def output_scale(model: onnx.ModelProto) -> float:
    """The factor from the file's output (its readout, per step) to the original's: λ of the output layer."""
    meta = read_metadata(model)
    return float(meta.get(KEY_OUTPUT_SCALE, meta.get(OLD_KEY_OUTPUT_SCALE, 1.0)))
