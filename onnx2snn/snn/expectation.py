"""Expectation compensation: a transformer's analog ops (LayerNorm, GELU, softmax, the product of two
spiking tensors) in a rate-coded SNN (ECMT: Huang et al., ACM MM 2024, arXiv 2502.21193).

With S_t the sum of an op's input currents over steps 1..t and m_t = S_t/t their running mean, the
op emits at step t

    y_t = t·f(m_t) − (t−1)·f(m_{t−1}),   so that   y_1 + … + y_t = t·f(m_t):

whatever integrates y (the next IF neurons, the residual stream, the readout) has received f of the
mean of the op's inputs so far, as if the ANN op had run on the rates. f runs every step on that
running mean — analog, counted as MACs — and never on the ANN's own activations. On an input that is
the same at every step (the constant current before the first neurons) it is f itself.

Over a chunk of n steps the module is vectorised: the running sums are a cumsum, f runs once on the
n steps folded into the batch, and the compensation is a difference along time — so the result is
the same whatever the chunk (tests/test_transformers.py checks it).
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch
from torch import nn


class ExpectationCompensation(nn.Module):
    """``fn`` (of ``arity`` tensors, batch first) on the running means of its inputs, compensated.
    State per batch of samples: the inputs' running sums, t·f(m_t) of the last step, the step count."""

    stateful = True
    expectation = True      # the runner passes every input, [n_steps, B, ...] (``network.py``)

    def __init__(self, fn: Callable, description: str, arity: int = 1, macs_per_output: float = 0.0):
        super().__init__()
        self.fn, self.description, self.arity = fn, description, arity
        # the ANN op's cost per output element, in MACs (the energy estimate: ``synops.py``)
        self.macs_per_output = float(macs_per_output)
        self.reset()

    def reset(self) -> None:
        self.sums: Optional[List[torch.Tensor]] = None
        self.previous: Optional[torch.Tensor] = None      # t·f(m_t) of the last step
        self.t = 0

    def constant(self, *xs: torch.Tensor) -> torch.Tensor:
        """The output for inputs that are the same at every step: f of them, every step."""
        return self.fn(*xs)

    def forward(self, *zs: torch.Tensor, n_steps: int) -> torch.Tensor:
        """``zs``: each input's currents of ``n_steps`` steps, [n_steps, B, ...]; returns y, [n_steps, B, ...]."""
        sums = [torch.cumsum(z.float(), 0) for z in zs]
        if self.sums is not None:
            sums = [s + prev for s, prev in zip(sums, self.sums)]
        steps = torch.arange(self.t + 1, self.t + n_steps + 1, device=zs[0].device, dtype=torch.float32)
        means = [(s / steps.view(-1, *[1] * (s.dim() - 1))).to(z.dtype).flatten(0, 1) for s, z in zip(sums, zs)]
        value = self.fn(*means).float()                               # f(m_t), [n_steps·B, ...]
        value = value.view(n_steps, -1, *value.shape[1:])
        value = value * steps.view(-1, *[1] * (value.dim() - 1))      # t·f(m_t)
        out = torch.empty_like(value)
        out[1:] = value[1:] - value[:-1]
        out[0] = value[0] if self.previous is None else value[0] - self.previous
        self.sums, self.previous, self.t = [s[-1] for s in sums], value[-1], self.t + n_steps
        return out.to(zs[0].dtype)

    def extra_repr(self) -> str:
        return f"{self.description} on running means (expectation compensation)"
