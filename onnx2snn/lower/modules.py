"""Stateless torch modules the lowering builds that torch.nn lacks in the needed form."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def torch_pads(onnx_pads: Sequence[int]) -> list:
    """ONNX [x1_begin, x2_begin, ..., x1_end, x2_end] -> F.pad's (xn_begin, xn_end, ..., x1_begin, x1_end)."""
    n = len(onnx_pads) // 2
    out = []
    for i in reversed(range(n)):
        out += [onnx_pads[i], onnx_pads[i + n]]
    return out


class Padded(nn.Module):
    """Explicit (possibly asymmetric) zero padding before a module that pads nothing itself."""

    def __init__(self, pads: Sequence[int], inner: nn.Module):
        super().__init__()
        self.pads, self.inner = torch_pads(pads), inner

    def forward(self, x):
        return self.inner(F.pad(x, self.pads))


class Function(nn.Module):
    """Wraps a stateless function of the input (reshapes, pooling with ONNX arguments)."""

    def __init__(self, fn: Callable, description: str = ""):
        super().__init__()
        self.fn, self.description = fn, description

    def forward(self, *xs):
        return self.fn(*xs)

    def extra_repr(self) -> str:
        return self.description


class Passthrough(nn.Module):
    """Identity (ReLU of spikes that are already non-negative)."""

    def forward(self, x):
        return x


class ReLU(nn.ReLU):
    """The analog stand-in for IF neurons when a graph is lowered as an ANN (``ann=True``)."""
