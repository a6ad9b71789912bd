"""Lowering: a spiking graph -> a ``SpikingNetwork`` of torch modules.

Every node of the spiking graph (``graph/spiking.py``) becomes torch modules: ``IF`` nodes IF
neurons with the node's threshold, reset, initial potential and input offset, ``SpikeMaxPool`` its
pooling rule, ``Readout`` the output layer (membrane potential or spike counts, its delay), and the
ANN ops their torch equivalents. With ``ann=True`` the same graph is lowered with ReLUs instead of
neurons, which tests use to check every lowering against onnxruntime. What each op means is
``graph/ops.py``'s; this package only builds torch modules.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import onnx
from torch import nn

from ..graph.annotate import output_scale
from ..graph.ops import bias_of, check_supported
from ..graph.spiking import FoldedOffsets, fold_offsets, input_encoding, is_spiking, to_spiking
from ..options import SpikingOptions
from ..graph.view import GraphView
from ..snn.network import SpikingNetwork, Step
from . import ops  # noqa: F401  (registers the lowerings)
from .modules import ConstantMul, ScaledAdd
from .registry import LOWERINGS


class LowerContext:
    """What lowerings see while lowering: the graph, whether to build the ANN, and the biases with
    the neurons' input offsets folded in."""

    def __init__(self, view: GraphView, ann: bool):
        self.view, self.ann = view, ann
        self.steps: List[Step] = []
        self.modules: List[nn.Module] = []
        self.elements = 0
        self.readout_delay: Optional[int] = None    # set by the Readout node
        self.output_head: Optional[str] = None      # likewise: the head the conversion dropped
        # The neurons' input offsets, added to the biases ahead of them where exact (not in the
        # ANN: its function bodies ignore the offsets)
        self.folded = FoldedOffsets() if ann else fold_offsets(view)

    def bias(self, node: onnx.NodeProto) -> Optional[np.ndarray]:
        """A Conv's or Gemm's bias, with any input offsets folded into it."""
        return self.folded.biases.get(node.name, bias_of(node, self.view))

    def add(self, node: onnx.NodeProto, module: nn.Module, inputs: List[str], output: str) -> None:
        shape = self.view.sample_shape(node.output[0])
        self.steps.append(Step(node.name, node.op_type, list(inputs), output, shape))
        self.modules.append(module)
        self.elements += int(np.prod(shape)) if shape else 0


def lower_model(model: onnx.ModelProto, options: Optional[SpikingOptions] = None, ann: bool = False,
                check: bool = True) -> SpikingNetwork:
    """The torch SNN of a spiking graph; a plain normalised graph is first made spiking with
    ``options`` (neurons, pooling, readout: ``graph/spiking.py``), which a spiking graph does not
    need. ``check=False``: the caller checked the graph's support already (a conversion checks once)."""
    if not is_spiking(model):
        model = to_spiking(model, options)
    view = GraphView(model)
    if check:
        check_supported(view)
    ctx = LowerContext(view, ann)
    for node in view.nodes:
        if node.op_type != "Constant":
            LOWERINGS[node.op_type](node, ctx)
    steps, modules = fuse_scaled_adds(ctx.steps, ctx.modules, view.output_names[0])
    network = SpikingNetwork(steps, modules, view.input_name, view.output_names[0], ctx.elements,
                             ctx.readout_delay or 0, input_encoding(model))
    network.output_scale, network.output_head = output_scale(model), ctx.output_head
    return network


def fuse_scaled_adds(steps: List[Step], modules: List[nn.Module], output: str):
    """Each Add fed by a synaptic-factor Mul that nothing else reads becomes one ``ScaledAdd``
    (a + b·c): one pass over memory instead of two, on every residual block of a ResNet. The
    listing keeps the Add's name; the Mul's step disappears (its factor is in the Add's module)."""
    readers = {}
    for step in steps:
        for name in step.inputs:
            readers[name] = readers.get(name, 0) + 1
    producer = {step.output: i for i, step in enumerate(steps)}
    fused, steps, modules = set(), list(steps), list(modules)
    for i, (step, module) in enumerate(zip(steps, modules)):
        if step.op != "Add" or len(step.inputs) != 2 or step.inputs[0] == step.inputs[1]:
            continue
        for k in (1, 0):
            j = producer.get(step.inputs[k])
            if (j is not None and isinstance(modules[j], ConstantMul) and readers[steps[j].output] == 1
                    and steps[j].output != output):
                other = step.inputs[1 - k]
                steps[i] = Step(step.name, step.op, [other, steps[j].inputs[0]], step.output, step.shape)
                modules[i] = ScaledAdd(modules[j].const)
                fused.add(j)
                break
    keep = [i for i in range(len(steps)) if i not in fused]
    return [steps[i] for i in keep], [modules[i] for i in keep]
