"""Max pooling of spike trains.

Max-pooling binary spikes directly (``if_wta``) passes a spike whenever *any* input of the window
fires, so the output rate over-estimates the max of the input rates. The gate (Rueckauer et al.
2017, SpikingJelly's 2020 ann2snn) instead passes, in each window and at each step, the spike of
the input whose spike count so far is highest: its rate converges to the max of the input rates.

Count per input, updated before the gate looks at it (``s`` = this step's spikes):

    c[t] = c[t-1] + s[t]               (momentum None: accumulated count)
    c[t] = m·c[t-1] + s[t]             (momentum m in [0, 1]; m = 1 is the accumulated count,
                                        m < 1 is proportional to an exponential moving average)
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import cpu_kernel

MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def torch_pads(onnx_pads: Sequence[int]) -> list:
    """ONNX [x1_begin, x2_begin, ..., x1_end, x2_end] -> F.pad's (xn_begin, xn_end, ..., x1_begin, x1_end)."""
    n = len(onnx_pads) // 2
    out = []
    for i in reversed(range(n)):
        out += [onnx_pads[i], onnx_pads[i + n]]
    return out


class _SpikeMaxPool(nn.Module):
    """What both spiking max-pool rules share: the window (ONNX attributes) and state across chunks."""

    stateful = True

    def __init__(self, kernel_size: Sequence[int], stride: Sequence[int], pads: Sequence[int],
                 dilation: Sequence[int], ceil_mode: bool):
        """``pads``: ONNX order [x1_begin, ..., x1_end, ...]; asymmetric pads are applied explicitly."""
        super().__init__()
        nd = len(kernel_size)
        symmetric = list(pads[:nd]) == list(pads[nd:])
        self.explicit_pads = None if symmetric else torch_pads(pads)
        self.pool_args = dict(kernel_size=tuple(kernel_size), stride=tuple(stride),
                              padding=tuple(pads[:nd]) if symmetric else 0,
                              dilation=tuple(dilation), ceil_mode=bool(ceil_mode))
        self.pool = MAX_POOL[nd]
        self.reset()

    @property
    def fusable_window(self):
        """The window, where the IF neurons before this pooling may run it in their kernel (2-D,
        window = stride, no padding, dilation or ceil mode: ``IFNeuron.forward_pooled``); else None."""
        a = self.pool_args
        plain = (self.pool is F.max_pool2d and self.explicit_pads is None and not any(a["padding"])
                 and a["dilation"] == (1, 1) and not a["ceil_mode"])
        return a["kernel_size"] if plain and a["kernel_size"] == a["stride"] else None

    def _counts_like(self, v: torch.Tensor) -> torch.Tensor:
        """The per-input spike counts for a fused kernel: laid out as the neurons' potential ``v``
        (a state the torch path left in another layout is copied into this one)."""
        if self.count is None or self.count.stride() != v.stride():
            fresh = torch.zeros_like(v, dtype=torch.float32)   # keeps v's strides
            self.count = fresh if self.count is None else fresh.copy_(self.count)
        return self.count


class GatedMaxPool(_SpikeMaxPool):
    """Spike-count-gated max pooling over a chunk of steps: ``forward(s [n_steps, B, C, *spatial])``."""

    def __init__(self, kernel_size: Sequence[int], stride: Sequence[int], pads: Sequence[int],
                 dilation: Sequence[int], ceil_mode: bool, momentum: Optional[float] = None):
        self.momentum = momentum
        super().__init__(kernel_size, stride, pads, dilation, ceil_mode)

    def reset(self) -> None:
        self.count: Optional[torch.Tensor] = None

    def forward(self, s: torch.Tensor, n_steps: int, static: bool = False) -> torch.Tensor:
        if static:
            s = s.expand(n_steps, *s.shape)
        # Counts in float32 whatever the spikes' dtype: bf16 stops counting exactly at 256.
        prev = self.count if self.count is not None else torch.zeros_like(s[0], dtype=torch.float32)
        if self.momentum is None or self.momentum == 1:
            counts = prev + torch.cumsum(s, dim=0, dtype=torch.float32)  # all steps of the chunk at once
        else:
            counts = torch.empty_like(s, dtype=torch.float32)
            for t in range(n_steps):
                prev = self.momentum * prev + s[t]
                counts[t] = prev
        self.count = counts[-1].clone()  # not a view: the chunk's counts can be freed
        # Gate: per window, the index of the input with the highest count; take its spike.
        flat_counts = counts.flatten(0, 1)
        if self.explicit_pads is not None:  # padded positions never win and carry no spike
            flat_counts = F.pad(flat_counts, self.explicit_pads, value=float("-inf"))
            s = F.pad(s.flatten(0, 1), self.explicit_pads).view(n_steps, -1, *flat_counts.shape[1:])
        _, index = self.pool(flat_counts, **self.pool_args, return_indices=True)
        spikes = s.reshape(flat_counts.shape).flatten(2).gather(2, index.flatten(2)).view(index.shape)
        if s.dim() == 5 and s[0].is_contiguous(memory_format=torch.channels_last):
            spikes = spikes.contiguous(memory_format=torch.channels_last)  # keep the layout the convs want
        return spikes.view(n_steps, -1, *index.shape[1:])

    fused_rule = "gate"

    def fused_state(self, v: torch.Tensor):
        """(per-input counts, None) for a fused kernel (CUDA only), kept here as the torch path keeps them."""
        return self._counts_like(v), None

    def extra_repr(self) -> str:
        return f"{self.pool_args}, momentum={self.momentum}"


class RunningMaxPool(_SpikeMaxPool):
    """Max pooling of spike trains by the running max of spike counts (lateral inhibition, exact).

    Per window, the output count after step t is the largest input count after step t:

        C[t] = max_window c[t],   out[t] = C[t] − C[t−1]  ∈ {0, 1}

    (a max of counts rises by at most one per step), so the output rate is exactly the max of the
    input rates at every step, where the gate's can lag behind when the leading input changes.
    ``forward(s [n_steps, B, C, *spatial])``, like ``GatedMaxPool``."""

    def reset(self) -> None:
        self.count: Optional[torch.Tensor] = None      # input counts so far
        self.pooled: Optional[torch.Tensor] = None     # their running max per window

    def forward(self, s: torch.Tensor, n_steps: int, static: bool = False) -> torch.Tensor:
        if static:
            s = s.expand(n_steps, *s.shape)
        prev = self.count if self.count is not None else torch.zeros_like(s[0], dtype=torch.float32)
        counts = prev + torch.cumsum(s, dim=0, dtype=torch.float32)   # float32: exact up to 2^24 steps
        self.count = counts[-1].clone()
        flat = counts.flatten(0, 1)
        if self.explicit_pads is not None:  # padded positions count nothing
            flat = F.pad(flat, self.explicit_pads)
        pooled = self.pool(flat, **self.pool_args)
        pooled = pooled.view(n_steps, -1, *pooled.shape[1:])
        before = self.pooled if self.pooled is not None else torch.zeros_like(pooled[0])
        self.pooled = pooled[-1].clone()
        out = torch.diff(pooled, dim=0, prepend=before.unsqueeze(0)).to(s.dtype)
        if s.dim() == 5 and s[0].is_contiguous(memory_format=torch.channels_last):
            out = out.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(out.shape)
        return out

    fused_rule = "running max"

    def fused_state(self, v: torch.Tensor):
        """(input counts, running max per window) for a fused kernel, laid out as the neurons'
        potential ``v`` and as one pooled step of it; kept here, as the torch path keeps them."""
        if self.pooled is None or not self.pooled.is_contiguous(memory_format=cpu_kernel.pooled_format(v)):
            fresh = cpu_kernel.pooled_buffer(v, self.fusable_window, 1, torch.float32).zero_()
            self.pooled = fresh if self.pooled is None else fresh.copy_(self.pooled)
        return self._counts_like(v), self.pooled

    def extra_repr(self) -> str:
        return f"{self.pool_args}, rule=running max of counts"


class AveragePool2d(nn.Module):
    """2-D average pooling without padding as a depthwise convolution with weights 1/(kh·kw): on
    CPU, oneDNN ran it about twice as fast as ``avg_pool2d`` on NHWC spikes of the MNIST example's
    first pooling (a one-off microbenchmark during issue 11, not kept). Exact for power-of-two
    windows; within one rounding of the division otherwise."""

    def __init__(self, channels: int, kernel: Sequence[int], stride: Sequence[int]):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        weight = torch.full((channels, 1, *self.kernel), 1.0 / (self.kernel[0] * self.kernel[1]))
        self.register_buffer("weight", weight, persistent=False)   # a fixed operator, not a parameter

    fused_rule = "average"

    @property
    def fusable_window(self):
        """The window, where the runner may fuse this pooling into the IF neurons before it
        (non-overlapping: window = stride; ``IFNeuron.forward_pooled``); else None."""
        return self.kernel if self.kernel == self.stride else None

    def fused_state(self, v: torch.Tensor):
        return None, None   # stateless

    def forward(self, x):
        return F.conv2d(x, self.weight.to(x.dtype), stride=self.stride, groups=self.weight.shape[0])

    def extra_repr(self) -> str:
        return f"avg_pool kernel={list(self.kernel)} stride={list(self.stride)} (depthwise convolution)"
