"""A registry of small per-op handlers: ONNX op type -> how it scales and how it becomes torch.

Each handler is registered with ``@register(op, scale=...)``:

* ``scale="weighted"``: a layer whose initializers are rescaled, W <- W·λ_in/λ_out, b <- b/λ_out
  (Conv, Gemm);
* ``scale="preserve"``: output scale = input scale (ReLU, Clip, pooling: positively homogeneous,
  elementwise or per channel);
* ``scale="transform"``: the scale array moves as the tensor does (Flatten, Reshape, Transpose,
  Squeeze, Pad…): ``transform(node, view, scale)`` maps the input's scale, broadcast to its full
  per-sample shape, to the output's;
* ``scale="merge"``: Add and Concat: ``merge(node, view, scales, lam)`` gives the output's scale
  and the synaptic factors ``[(input index, factor)]`` its inputs need, from the inputs' scales
  and (Add) the λ measured at its ReLU, or None;
* ``scale="factor"``: Mul by a constant, which only normalisation itself inserts (synaptic factors).

``keeps_spikes=True``: where every data input is spikes, so is the output (reshapes, Concat, Pad,
max pooling); the spiking graph (``graph/spiking.py``) tracks spikes with it to know where IF
neurons and spiking max pools go.

``check(node, ctx)`` returns why a node cannot be converted (or None); ``lower(node, ctx)`` adds
the node's torch modules to the network being built. Every unsupported node of a graph is
collected before failing, so one error names them all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import onnx


@dataclass
class OpHandler:
    op: str
    scale: str                          # "weighted" | "preserve"
    lower: Callable                     # (node, ctx) -> None
    check: Optional[Callable] = None    # (node, ctx) -> reason or None
    transform: Optional[Callable] = None  # (node, view, scale) -> scale, for scale="transform"
    keeps_spikes: bool = False          # spikes in, spikes out
    merge: Optional[Callable] = None    # (node, view, scales, lam) -> (scale, factors), for scale="merge"


HANDLERS: Dict[str, OpHandler] = {}

# What to do about ops that are not handled; the error message quotes these.
ADVICE = {
    "Sigmoid": "not rate-codable with IF neurons; retrain with ReLU",
    "Tanh": "not rate-codable with IF neurons; retrain with ReLU",
    "LeakyRelu": "negative slope is not rate-codable with IF neurons; retrain with ReLU",
    "Elu": "not rate-codable with IF neurons; retrain with ReLU",
    "Selu": "not rate-codable with IF neurons; retrain with ReLU",
    "Gelu": "not rate-codable with IF neurons; retrain with ReLU",
    "HardSigmoid": "not rate-codable with IF neurons; retrain with ReLU",
    "BatchNormalization": "BatchNormalization whose input shape is unknown; export with static shapes",
    "PRelu": "negative slope is not rate-codable with IF neurons; retrain with ReLU",
    "Softmax": "Softmax is only supported at the graph output (where it is dropped)",
    "LogSoftmax": "LogSoftmax is only supported at the graph output (where it is dropped)",
    "MatMul": "MatMul is supported only as a dense layer: 2-D input times a constant 2-D weight",
}


def register(op: str, scale: str, check: Optional[Callable] = None, transform: Optional[Callable] = None,
             keeps_spikes: bool = False, merge: Optional[Callable] = None):
    """Register ``fn`` as the handler of ``op``; a second handler for one op is an error (as in
    onnx2torch), not a silent replacement."""
    def wrap(fn):
        if op in HANDLERS:
            raise ValueError(f"a handler for {op} is already registered ({HANDLERS[op].lower.__name__})")
        HANDLERS[op] = OpHandler(op, scale, fn, check, transform, keeps_spikes, merge)
        return fn
    return wrap


def unsupported_reason(node: onnx.NodeProto, ctx) -> Optional[str]:
    handler = HANDLERS.get(node.op_type)
    if handler is None:
        return ADVICE.get(node.op_type, "op not supported by onnx2snn yet")
    return handler.check(node, ctx) if handler.check else None
