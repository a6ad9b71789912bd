"""Stateless torch modules the lowering builds that torch.nn lacks in the needed form."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..snn.pooling import AveragePool2d, torch_pads  # noqa: F401  (AveragePool2d: built by the lowering)


class Padded(nn.Module):
    """Explicit (possibly asymmetric) padding with ``value`` before a module that pads nothing itself."""

    def __init__(self, pads: Sequence[int], inner: nn.Module, value: float = 0.0):
        super().__init__()
        self.pads, self.inner, self.value = torch_pads(pads), inner, value

    def forward(self, x):
        return self.inner(F.pad(x, self.pads, value=self.value))


class Function(nn.Module):
    """Wraps a stateless function of the input (reshapes, pooling with ONNX arguments)."""

    def __init__(self, fn: Callable, description: str = ""):
        super().__init__()
        self.fn, self.description = fn, description

    def forward(self, *xs):
        return self.fn(*xs)

    def extra_repr(self) -> str:
        return self.description


class ConstantMul(nn.Module):
    """x · c for a constant c (a synaptic factor); c is a buffer, so it follows .to(device, dtype)."""

    def __init__(self, const):
        super().__init__()
        self.register_buffer("const", torch.as_tensor(const))

    def forward(self, x):
        return x * self.const

    def extra_repr(self) -> str:
        return f"constant of shape {tuple(self.const.shape)}"


class ScaledAdd(nn.Module):
    """a + b · c in one pass (``torch.addcmul``): an Add whose second input is a synaptic-factor Mul
    that nothing else reads, fused at lowering (``lower.fuse_scaled_adds``)."""

    def __init__(self, const):
        super().__init__()
        self.register_buffer("const", torch.as_tensor(const))

    def forward(self, a, b):
        return torch.addcmul(a, b, self.const)

    def extra_repr(self) -> str:
        return f"a + b · constant of shape {tuple(self.const.shape)}"


class Passthrough(nn.Module):
    """Identity (ReLU of spikes that are already non-negative)."""

    def forward(self, x):
        return x


class ReLU(nn.ReLU):
    """The analog stand-in for IF neurons when a graph is lowered as an ANN (``ann=True``)."""
