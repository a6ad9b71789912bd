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


class CroppedConvTranspose(nn.Module):
    """A transposed convolution with ONNX's asymmetric pads (which torch's symmetric ``padding``
    cannot state): the full output of ``inner`` (no padding, no bias), extended by output_padding
    and cropped by the pads (``F.pad`` with negative widths), then the bias."""

    def __init__(self, inner: nn.Module, crop: Sequence[int], bias):
        super().__init__()
        self.inner, self.crop = inner, list(crop)
        self.bias = None if bias is None else nn.Parameter(torch.tensor(bias, dtype=torch.float32),
                                                           requires_grad=False)

    def forward(self, x):
        y = F.pad(self.inner(x), self.crop)
        return y if self.bias is None else y + self.bias.view(1, -1, *([1] * (y.dim() - 2)))

    def extra_repr(self) -> str:
        return f"crop/extend {self.crop}"


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


class ConstantAdd(nn.Module):
    """x + c for a constant c that may vary across positions (a position embedding), added to the
    current of every step; c is a buffer."""

    def __init__(self, const):
        super().__init__()
        self.register_buffer("const", torch.as_tensor(const))

    def forward(self, x):
        return x + self.const

    def extra_repr(self) -> str:
        return f"constant of shape {tuple(self.const.shape)}"


class ChannelPRelu(nn.Module):
    """PReLU with a constant slope per channel (a buffer, shaped to broadcast over one sample)."""

    def __init__(self, slope):
        super().__init__()
        self.register_buffer("slope", torch.as_tensor(slope))

    def forward(self, x):
        return torch.where(x >= 0, x, x * self.slope)

    def extra_repr(self) -> str:
        return f"slope per channel ({self.slope.numel()})"


class ScaledAdd(nn.Module):
    """a + b · c in one pass (``torch.addcmul``): an Add whose second input is a synaptic-factor Mul
    that nothing else reads, fused at lowering (``lower.fuse_scaled_adds``)."""

    def __init__(self, const):
        super().__init__()
        self.register_buffer("const", torch.as_tensor(const))
        self._spread = None   # (key, the constant spread over one sample's shape in NHWC)

    def forward(self, a, b):
        const = self.const
        if a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last) and const.dim() < 4:
            # A per-channel constant broadcast against NHWC tensors sends bfloat16 addcmul down a
            # slow strided loop on CPU (1.45 ms against 0.14 ms for ResNet-20's [100, 16, 32, 32],
            # one-off microbenchmark): the same values laid out NHWC over one sample run fast in
            # every dtype. Same arithmetic, element by element.
            key = (tuple(a.shape[1:]), a.dtype, a.device)
            if self._spread is None or self._spread[0] != key:
                spread = const.to(a.dtype).expand(1, *a.shape[1:]).contiguous(memory_format=torch.channels_last)
                self._spread = (key, spread)
            const = self._spread[1]
        return torch.addcmul(a, b, const)

    def extra_repr(self) -> str:
        return f"a + b · constant of shape {tuple(self.const.shape)}"


class Passthrough(nn.Module):
    """Identity (ReLU of spikes that are already non-negative)."""

    def forward(self, x):
        return x


class ReLU(nn.ReLU):
    """The analog stand-in for IF neurons when a graph is lowered as an ANN (``ann=True``)."""


class Select(nn.Module):
    """The values at constant indices along axes (Slice, Gather, nearest Resize: ``graph/ops.py``
    ``Selection``): ``index_select`` per axis, or a view (``narrow``) where the indices are one
    contiguous run; then a reshape where a Gather changes the rank. Spikes stay spikes."""

    def __init__(self, axes, shape=None):
        super().__init__()
        self.axes = []
        for k, (axis, index) in enumerate(axes):
            index = torch.as_tensor(index, dtype=torch.long)
            run = len(index) > 0 and bool(torch.all(index[1:] - index[:-1] == 1))
            self.register_buffer(f"index{k}", index)
            self.axes.append((axis + 1, int(index[0]) if run else None, len(index)))   # +1: the batch axis
        self.shape = shape

    def forward(self, x):
        for k, (axis, start, length) in enumerate(self.axes):
            x = x.narrow(axis, start, length) if start is not None else x.index_select(axis, getattr(self, f"index{k}"))
        return x if self.shape is None else x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        parts = [f"axis {a}: {'%d..%d' % (s, s + n - 1) if s is not None else '%d indices' % n}"
                 for a, s, n in self.axes]
        return ", ".join(parts) + (f", reshape to (B, {self.shape})" if self.shape is not None else "")


class AxisMaps(nn.Module):
    """A fixed linear map along each of some axes (a linear Resize: one interpolation matrix per
    resized axis, ``graph/ops.py resize_linear_maps``): ``x`` with that axis last, times Mᵀ."""

    def __init__(self, maps):
        super().__init__()
        self.axes = [axis + 1 for axis, _ in maps]      # +1: the batch axis
        for k, (_, m) in enumerate(maps):
            self.register_buffer(f"map{k}", torch.tensor(m, dtype=torch.float32))

    def forward(self, x):
        for k, axis in enumerate(self.axes):
            m = getattr(self, f"map{k}").to(x.dtype)
            x = torch.movedim(torch.movedim(x, axis, -1) @ m.t(), -1, axis)
        return x.contiguous()

    def extra_repr(self) -> str:
        return ", ".join(f"axis {a}: {tuple(getattr(self, f'map{k}').shape[::-1])}" for k, a in enumerate(self.axes))
