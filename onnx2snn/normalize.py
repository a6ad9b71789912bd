"""Data-based normalisation: rescale each weighted layer so its ReLU output is at most 1.

For a weighted layer (Conv, Gemm) with input at scale λ_in and output activation statistic λ_out
(max, or p-th percentile with robust normalisation):

    W <- W · λ_in / λ_out,    b <- b / λ_out

ReLU networks are positively homogeneous, so the rescaled graph computes exactly the original
activations divided by λ_out at every normalised layer (``verify.py`` checks this). Which tensor
gives a layer's λ_out: the output of the first ReLU reached through scale-preserving ops
(pooling, reshapes), or the graph output for the output layer; otherwise the layer keeps its
input's scale (λ_out = λ_in).
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .calibrate import TensorStats
from .graph.view import GraphView
from .lower.registry import HANDLERS


@dataclass
class LayerScale:
    node: str                   # the weighted node
    op: str
    input: str                  # its data input
    output: str                 # its output tensor
    stat_tensor: Optional[str]  # tensor whose statistic sets λ_out (None: inherits λ_in)
    lambda_in: float = 1.0
    lambda_out: float = 1.0
    statistic: str = ""         # e.g. "p99.9 of relu3_out" or "inherited"

    def to_dict(self) -> dict:
        return asdict(self)


def plan_layers(view: GraphView) -> List[LayerScale]:
    """The weighted layers in topological order, each with the tensor that will set its scale."""
    layers = []
    for node in view.nodes:
        handler = HANDLERS.get(node.op_type)
        if handler is None or handler.scale != "weighted":
            continue
        layers.append(LayerScale(node.name, node.op_type, view.data_inputs(node)[0], node.output[0],
                                 _stat_tensor(view, node.output[0])))
    return layers


def _stat_tensor(view: GraphView, tensor: str) -> Optional[str]:
    while True:
        if tensor in view.output_names:
            return tensor
        consumers = view.consumers.get(tensor, [])
        if len(consumers) != 1:
            return None
        (node,) = consumers
        if node.op_type == "Relu":
            return node.output[0]
        handler = HANDLERS.get(node.op_type)
        if handler is None or handler.scale != "preserve":
            return None
        tensor = node.output[0]


def assign_scales(view: GraphView, layers: List[LayerScale], stats: Dict[str, TensorStats],
                  robust: bool) -> List[LayerScale]:
    """Fill in λ_in and λ_out, propagating scales through the graph in topological order."""
    by_node = {l.node: l for l in layers}
    scale = {view.input_name: 1.0}
    for node in view.nodes:
        data = view.data_inputs(node)
        lam_in = scale.get(data[0], 1.0) if data else 1.0
        layer = by_node.get(node.name)
        if layer is None:
            for out in node.output:
                scale[out] = lam_in
            continue
        layer.lambda_in = lam_in
        if layer.stat_tensor is None:
            layer.lambda_out, layer.statistic = lam_in, "inherited"
        else:
            s = stats[layer.stat_tensor]
            lam, kind = (s.percentile, f"p{s.p:g}") if robust else (s.max, "max")
            if not lam > 0:  # a layer that never fired on the calibration data
                lam, kind = (s.max, "max") if s.max > 0 else (1.0, "none (all activations <= 0)")
            layer.lambda_out, layer.statistic = float(lam), f"{kind} of {layer.stat_tensor}"
        scale[node.output[0]] = layer.lambda_out
    return layers


_fresh = itertools.count()


def apply_scales(model: onnx.ModelProto, layers: List[LayerScale]) -> onnx.ModelProto:
    """A copy of ``model`` with each weighted layer's initializers rescaled (new initializers:
    the originals may be shared)."""
    graph = gs.import_onnx(model)
    nodes = {n.name: n for n in graph.nodes}
    for layer in layers:
        node = nodes[layer.node]
        w = node.inputs[1].values.astype(np.float64) * (layer.lambda_in / layer.lambda_out)
        node.inputs[1] = gs.Constant(f"{node.name}.weight.snn{next(_fresh)}", w.astype(np.float32))
        if len(node.inputs) > 2 and isinstance(node.inputs[2], gs.Constant):
            b = node.inputs[2].values.astype(np.float64) / layer.lambda_out
            node.inputs[2] = gs.Constant(f"{node.name}.bias.snn{next(_fresh)}", b.astype(np.float32))
    graph.cleanup()
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    return onnx.shape_inference.infer_shapes(out)
