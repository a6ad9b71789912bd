"""A read-only view of a (cleaned, shape-inferred) ONNX graph: constants, shapes, attributes,
producers and consumers, for the planning and lowering code."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np
import onnx
from onnx import numpy_helper

class GraphView:
    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.nodes = list(g.node)
        self.opset = onnx_opset(model)
        self.constants: Dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in self.nodes:  # Constant nodes left by exporters count as initializers
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.constants[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.input_name = next(i.name for i in g.input if i.name not in self.constants)
        self.output_names = [o.name for o in g.output]
        self.shapes: Dict[str, Tuple] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            if vi.type.tensor_type.HasField("shape"):
                self.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                             for d in vi.type.tensor_type.shape.dim)
        self.producer: Dict[str, onnx.NodeProto] = {o: n for n in self.nodes for o in n.output}
        self.consumers: Dict[str, List[onnx.NodeProto]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def attrs(self, node: onnx.NodeProto) -> dict:
        """Attribute values; strings (stored as bytes) decoded."""
        values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}

    def positive_axis(self, node: onnx.NodeProto, default: int = 0) -> int:
        """The node's ``axis`` attribute counted from the front of its output's rank."""
        axis = self.attrs(node).get("axis", default)
        return axis + len(self.shapes[node.output[0]]) if axis < 0 else axis

    def const(self, name: str) -> Optional[np.ndarray]:
        return self.constants.get(name)

    def sample_shape(self, name: str) -> Optional[Tuple]:
        """Shape without the batch dimension, if fully known."""
        shape = self.shapes.get(name)
        if shape is None or any(d is None for d in shape[1:]):
            return None
        return tuple(shape[1:])

    def data_inputs(self, node: onnx.NodeProto) -> List[str]:
        """The node's non-constant inputs."""
        return [i for i in node.input if i and i not in self.constants]


def onnx_opset(model: onnx.ModelProto, default: Optional[int] = 13) -> Optional[int]:
    """The model's default-domain opset (``default`` where it declares none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default)


def downstream_of(nodes: Iterable[Tuple[str, Sequence[str], Sequence[str]]], ops: Sequence[str]) -> Set[str]:
    """The tensors computed from the output of a node whose op is in ``ops``, those outputs included
    (e.g. everything that depends on a neuron, where the constant input current ends). ``nodes``:
    (op, input names, output names) in topological order, so that ONNX and graphsurgeon graphs
    both fit."""
    found: Set[str] = set()
    for op, inputs, outputs in nodes:
        if op in ops or any(i in found for i in inputs):
            found.update(outputs)
    return found
