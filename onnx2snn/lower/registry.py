"""A registry of small per-op handlers: ONNX op type -> how it scales and how it becomes torch.

Each handler is registered with ``@register(op, scale=...)``:

* ``scale="weighted"``: a layer whose initializers are rescaled, W <- W·λ_in/λ_out, b <- b/λ_out
  (Conv, Gemm);
* ``scale="preserve"``: output scale = input scale (ReLU, pooling, reshapes: positively
  homogeneous ops).

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
    "BatchNormalization": "only BatchNormalization directly after a Conv/Gemm is absorbed",
}


def register(op: str, scale: str, check: Optional[Callable] = None):
    def wrap(fn):
        HANDLERS[op] = OpHandler(op, scale, fn, check)
        return fn
    return wrap


def unsupported_reason(node: onnx.NodeProto, ctx) -> Optional[str]:
    handler = HANDLERS.get(node.op_type)
    if handler is None:
        return ADVICE.get(node.op_type, "op not supported by onnx2snn yet")
    return handler.check(node, ctx) if handler.check else None
