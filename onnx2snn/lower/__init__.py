"""Lowering: a normalised ONNX graph -> a ``SpikingNetwork`` of torch modules.

ReLUs become IF neurons (threshold 1: the normalisation put every activation's scale at 1),
pooling becomes its spiking form (see ``ops.py``), and the graph output gets an output layer: IF
neurons whose spike counts decide the class, or a membrane-potential readout. With ``ann=True``
the same graph is lowered with ReLUs instead of neurons, which tests use to check every handler
against onnxruntime.
"""
from __future__ import annotations

from typing import List, Optional, Set

import numpy as np
import onnx
import torch
from torch import nn

from ..config import Config
from ..errors import Onnx2SnnError
from ..graph.view import GraphView
from ..graph.annotate import KEY_V_INIT
from ..snn.network import SpikingNetwork, Step
from ..snn.neurons import IFNeuron, MembraneReadout
from . import ops  # noqa: F401  (registers the handlers)
from .modules import ReLU
from .registry import HANDLERS, unsupported_reason


class LowerContext:
    def __init__(self, view: GraphView, config: Config, ann: bool):
        self.view, self.config, self.ann = view, config, ann
        self.steps: List[Step] = []
        self.modules: List[nn.Module] = []
        self.spike_tensors: Set[str] = set()
        self.elements = 0

    def is_spike(self, tensor: str) -> bool:
        return tensor in self.spike_tensors

    def neuron(self, node: Optional[onnx.NodeProto] = None) -> nn.Module:
        """IF neurons (ReLUs for ``ann``); a per-neuron v_init where ``node`` names one (potential
        calibration)."""
        if self.ann:
            return ReLU()
        sim = self.config.simulation
        reset = sim.reset_to_zero
        v_reset = None if reset is None or reset is False else (0.0 if reset is True else float(reset))
        v_init_map = None
        if node is not None:
            name = next((p.value for p in node.metadata_props if p.key == KEY_V_INIT), None)
            if name is not None:
                v_init_map = self.view.const(name)
                if v_init_map is None:
                    raise Onnx2SnnError(f"{node.name} ({node.op_type}): its v_init initializer {name!r} is missing")
                v_init_map = torch.from_numpy(np.array(v_init_map, np.float32))
        return IFNeuron(v_threshold=1.0, v_reset=v_reset, v_init=sim.v_init, v_init_map=v_init_map)

    def add(self, node: onnx.NodeProto, module: nn.Module, inputs: List[str], output: str,
            spikes: bool = False, suffix: str = "") -> None:
        name = node.name + ("/" + suffix if suffix else "")
        shape = self.view.sample_shape(node.output[0])
        self.steps.append(Step(name, node.op_type, list(inputs), output, shape))
        self.modules.append(module)
        if spikes and not self.ann:
            self.spike_tensors.add(output)
        self.elements += int(np.prod(shape)) if shape else 0


def unsupported_nodes(view: GraphView) -> List[str]:
    """One line per node that cannot be converted: name, op, reason."""
    problems = []
    ctx = LowerContext(view, Config(), ann=False)  # checks read the graph only
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
    config = config or Config()
    view = GraphView(model)
    check_supported(view)
    ctx = LowerContext(view, config, ann)
    for node in view.nodes:
        if node.op_type != "Constant":
            HANDLERS[node.op_type].lower(node, ctx)
    out = view.output_names[0]
    if not ann and not ctx.is_spike(out):
        # The output layer: IF neurons counting spikes, or the membrane potential.
        readout = ctx.neuron() if config.simulation.output == "spikes" else MembraneReadout()
        ctx.steps.append(Step("output", "Readout", [out], out + "/readout", view.sample_shape(out)))
        ctx.modules.append(readout)
        out = out + "/readout"
    return SpikingNetwork(ctx.steps, ctx.modules, view.input_name, out, ctx.elements, config)
