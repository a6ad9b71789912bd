"""Lowering: a normalised ONNX graph -> a ``SpikingNetwork`` of torch modules.

Every node of the spiking graph (``graph/spiking.py``) becomes torch modules: ``IF`` nodes IF
neurons with the node's threshold, reset and initial potential, ``SpikeMaxPool`` its pooling
rule, ``Readout`` the output layer (membrane potential or spike counts, its delay), and the ANN ops
their torch equivalents. With ``ann=True`` the same graph is lowered with ReLUs instead of
neurons, which tests use to check every handler against onnxruntime.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import onnx
from torch import nn

from ..config import Config
from ..errors import Onnx2SnnError
from ..graph.view import GraphView
from ..graph.spiking import is_spiking, to_spiking
from ..snn.network import SpikingNetwork, Step
from . import ops  # noqa: F401  (registers the handlers)
from .registry import HANDLERS, unsupported_reason


class LowerContext:
    """What handlers see while lowering: the graph, the config (no handler reads it: the spiking
    graph's nodes carry every neuron and pooling parameter), and whether to build the ANN."""

    def __init__(self, view: GraphView, config: Optional[Config], ann: bool):
        self.view, self.config, self.ann = view, config, ann
        self.steps: List[Step] = []
        self.modules: List[nn.Module] = []
        self.elements = 0
        self.readout_delay: Optional[int] = None    # set by the Readout node

    def add(self, node: onnx.NodeProto, module: nn.Module, inputs: List[str], output: str) -> None:
        shape = self.view.sample_shape(node.output[0])
        self.steps.append(Step(node.name, node.op_type, list(inputs), output, shape))
        self.modules.append(module)
        self.elements += int(np.prod(shape)) if shape else 0


def unsupported_nodes(view: GraphView) -> List[str]:
    """One line per node that cannot be converted: name, op, reason."""
    problems = []
    ctx = LowerContext(view, None, ann=False)  # checks read the graph only
    for node in view.nodes:
        if node.op_type == "Constant":
            continue
        reason = unsupported_reason(node, ctx)
        if reason:
            problems.append(f"{node.name} ({node.op_type}): {reason}")
    return problems


def check_supported(view: GraphView, label: str = "the model") -> None:
    problems = unsupported_nodes(view)
    if len(view.output_names) != 1:
        problems.append(f"graph outputs {view.output_names}: onnx2snn converts models with one output")
    if problems:
        raise Onnx2SnnError(f"{label} has {len(problems)} node(s) onnx2snn cannot convert: " + "; ".join(problems))


def lower_model(model: onnx.ModelProto, config: Optional[Config] = None, ann: bool = False) -> SpikingNetwork:
    """The torch SNN of a spiking graph; a plain normalised graph is first made spiking with
    ``config``'s neuron, pooling and readout options (``graph/spiking.py``)."""
    config = config or Config()
    if not is_spiking(model):
        model = to_spiking(model, config)
    view = GraphView(model)
    check_supported(view)
    ctx = LowerContext(view, config, ann)
    for node in view.nodes:
        if node.op_type != "Constant":
            HANDLERS[node.op_type].lower(node, ctx)
    network = SpikingNetwork(ctx.steps, ctx.modules, view.input_name, view.output_names[0], ctx.elements, config)
    if ctx.readout_delay is not None:
        network.readout_delay = ctx.readout_delay
    return network
