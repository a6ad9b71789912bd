"""Integrate-and-fire neurons (NIR names: ``v_threshold``, ``v_reset``).

Dynamics per time step t, input current z[t]:

    v[t] = v[t-1] + z[t]
    s[t] = 1 if v[t] >= v_threshold else 0
    v[t] = v[t] - s[t]·v_threshold          (reset by subtraction, v_reset is None)
    v[t] = s[t]·v_reset + (1 - s[t])·v[t]   (reset to a value)

With reset by subtraction and constant input z, the rate after T steps is
z/θ − (v[T] − v[0])/(Tθ), so |rate − clip(z/θ, 0, 1)| ≤ 1/T.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from . import kernels

EXACT_FLOAT32_SUM = 2**24   # float32 holds every integer up to here exactly


def if_step(v: torch.Tensor, z: torch.Tensor, v_threshold: float,
            v_reset: Optional[float]) -> Tuple[torch.Tensor, torch.Tensor]:
    """One IF update: returns (spikes, new membrane potential). Pure: no state."""
    v = v + z
    spike = (v >= v_threshold).to(v.dtype)
    if v_reset is None:
        v = v - spike * v_threshold
    else:
        v = torch.where(spike.bool(), torch.full_like(v, v_reset), v)
    return spike, v


class IFNeuron(nn.Module):
    """A layer of IF neurons. State (membrane potential, spike count) lives here until ``reset()``.

    ``forward(z, n_steps)`` takes the currents of a chunk of ``n_steps`` time steps, shaped
    ``[n_steps, B, ...]``, or one ``[B, ...]`` current that is the same at every step (constant-current
    input: computed once upstream), and returns the spikes ``[n_steps, B, ...]``.
    """

    stateful = True

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = None, v_init: float = 0.0,
                 v_init_map: Optional[torch.Tensor] = None, input_offset: Optional[torch.Tensor] = None):
        """``v_init``: the initial potential as a fraction of the threshold; ``v_init_map``: one per
        neuron (the per-sample shape, e.g. (C, H, W)) instead, from potential calibration;
        ``input_offset``: a current added to every step's input, one value per channel (the bias
        calibration's correction, where the lowering could not add it to a bias upstream)."""
        super().__init__()
        self.v_threshold, self.v_reset, self.v_init = float(v_threshold), v_reset, float(v_init)
        self.register_buffer("v_init_map", None if v_init_map is None else torch.as_tensor(v_init_map, dtype=torch.float32))
        self.register_buffer("input_offset", None if input_offset is None else
                             torch.as_tensor(input_offset, dtype=torch.float32).reshape(-1))
        self.count_spikes = False   # the runner turns it on when firing rates are asked for
        # A per-channel shift of the input current (float32, one value per channel) on top of the
        # offset, set only while the bias calibration tries shifts (snn_calibration.py).
        self.input_shift: Optional[torch.Tensor] = None
        self.path = "not run yet"   # the code path of the last chunk: Numba / Triton kernel, or torch loop
        self.reset()
        self.reset_stats()

    def reset(self) -> None:
        """Forget the membrane potential (before each new batch of samples)."""
        self.v: Optional[torch.Tensor] = None

    def reset_stats(self) -> None:
        """Zero the spike counters (before each simulation)."""
        self.spike_count = 0.0      # total spikes (a tensor once counting starts)
        self.neuron_steps = 0       # neurons × samples × steps counted

    def _start(self, z: torch.Tensor, static: bool) -> None:
        """The initial potential, before the first step of a batch."""
        if self.v is not None:
            return
        step0 = z if static else z[0]
        # float32 whatever the currents' dtype (the potential accumulates), same layout as z
        if self.v_init_map is None:
            self.v = torch.full_like(step0, self.v_init * self.v_threshold, dtype=torch.float32)
        else:
            self.v = torch.empty_like(step0, dtype=torch.float32)
            self.v.copy_((self.v_init_map.float() * self.v_threshold).expand_as(step0))

    def total_shift(self) -> Optional[torch.Tensor]:
        """The per-channel current added to every step's input: the offset plus any trial shift."""
        # (getattr: a neuron pickled by an older version has neither)
        offset, trial = getattr(self, "input_offset", None), getattr(self, "input_shift", None)
        if offset is None or trial is None:
            return trial if offset is None else offset
        return offset + trial.to(offset.device)

    def _shifted(self, z: torch.Tensor, static: bool):
        """(currents, shift map): with an input offset or trial shift, either the shift as a
        per-neuron map laid out as ``v`` for the kernel to add to every step's current (the CPU
        kernels, float32: no shifted copy of the currents is stored), or the currents with it added
        (same values)."""
        self._start(z, static)
        shift = self.total_shift()
        if shift is None:
            return z, None
        shift = shift.to(device=z.device, dtype=z.dtype)
        view = [1, -1] + [1] * (self.v.dim() - 2)            # channels: dim 1 of one step [B, C, ...]
        if kernels.shifts_in_kernel(z) and kernels.usable(z, self.v, static):
            return z, torch.empty_like(self.v).copy_(shift.view(view).expand_as(self.v))
        # laid out as z (empty_like keeps a dense tensor's strides), so that the kernels still apply
        return torch.add(z, shift.view(view if static else [1] + view), out=torch.empty_like(z)), None

    def forward(self, z: torch.Tensor, n_steps: int, static: bool = False) -> torch.Tensor:
        z, shift = self._shifted(z, static)
        # The spikes: one dense buffer, each step laid out like v (so NHWC stays NHWC).
        n = self.v.numel()
        out = torch.empty(n_steps * n, dtype=z.dtype, device=z.device).as_strided((n_steps, *self.v.shape),
                                                                                (n, *self.v.stride()))
        self._advance(z, n_steps, static, out, None, shift)
        if self.count_spikes:
            # Exact integer counts (summed across ranks in any order give the same total): a float32 sum
            # of 0/1 values is exact below 2^24 elements and runs ~14x faster on CPU than float64.
            exact = torch.float32 if out.numel() <= EXACT_FLOAT32_SUM else torch.float64
            self.spike_count = self.spike_count + out.sum(dtype=exact).double()  # a tensor: no sync per chunk
            self.neuron_steps += out.numel()
        return out

    def can_pool(self, z: torch.Tensor, static: bool, pool: nn.Module) -> bool:
        """Can ``forward_pooled`` fuse ``pool`` for these currents? (Sets up the initial potential
        where a batch starts, as ``forward`` would.)"""
        window = getattr(pool, "fusable_window", None)
        if window is None:
            return False
        self._start(z, static)
        return kernels.can_pool(z, self.v, static, window, pool.fused_rule)

    def forward_pooled(self, z: torch.Tensor, n_steps: int, static: bool, pool: nn.Module) -> Optional[torch.Tensor]:
        """``forward`` followed by the pooling module ``pool`` — average pooling, the running max of
        spike counts or (CUDA) the seed's gate, with non-overlapping windows (its ``fusable_window``)
        — in one kernel that never stores the spikes; None where that kernel cannot run (another
        dtype, a layout it does not read, no Numba or Triton): then the caller pools ``forward``'s
        spikes. The runner takes this path when the pooling is all that reads the spikes."""
        if not self.can_pool(z, static, pool):
            return None
        z, shift = self._shifted(z, static)
        v = self.v
        self.path = kernels.name(z) + ", fused with the pooling after it"
        pooled, fired = kernels.if_pool_chunk(z, v, n_steps, static, self.v_threshold, self.v_reset,
                                              pool.fusable_window, pool.fused_rule, pool.fused_state(v),
                                              getattr(pool, "momentum", None), self.count_spikes, shift)
        if fired is not None:   # exact: whole numbers, each block's sum far below 2^53
            self.spike_count = self.spike_count + torch.as_tensor(fired, dtype=torch.float64)
            self.neuron_steps += n_steps * v.numel()
        return pooled

    def count(self, z: torch.Tensor, n_steps: int, static: bool = False) -> torch.Tensor:
        """Like ``forward``, but returns only each neuron's number of spikes over the ``n_steps``
        (float32, shaped and laid out like one step): with a fused kernel the spikes never reach
        memory. The bias calibration's trial runs need nothing more."""
        z, shift = self._shifted(z, static)
        counts = torch.zeros_like(self.v)
        self._advance(z, n_steps, static, None, counts, shift)
        return counts

    def _advance(self, z, n_steps, static, out, counts, shift=None) -> None:
        """One chunk of steps: the fused kernel where it can run on these currents, else the torch
        loop; ``path`` records which (``print(network)`` shows it)."""
        if kernels.usable(z, self.v, static):
            self.path = kernels.name(z)
            kernels.if_chunk(z, self.v, out, n_steps, static, self.v_threshold, self.v_reset, counts, shift)
        else:   # (``_shifted`` added any shift to z where the kernel does not run)
            self.path = "torch loop"
            self._loop(z, out, counts, n_steps, static)

    def _loop(self, z: torch.Tensor, out, counts, n_steps: int, static: bool) -> None:
        """``if_step`` for each step, with in-place ops (no allocation per step)."""
        v = self.v
        spikes = torch.empty_like(v, dtype=z.dtype) if out is None else None
        for t in range(n_steps):
            v.add_(z if static else z[t])
            if out is not None:
                spikes = out[t]
            torch.ge(v, self.v_threshold, out=spikes)  # straight into the float output: no bool copy
            if self.v_reset is None:
                v.sub_(spikes, alpha=self.v_threshold)
            else:  # v <- v_reset where it spiked (exactly the value, as the fused kernels write it)
                v.masked_fill_(spikes.bool(), self.v_reset)
            if counts is not None:
                counts.add_(spikes)

    def extra_repr(self) -> str:
        reset = "subtract" if self.v_reset is None else f"to {self.v_reset}"
        v_init = f"per neuron {tuple(self.v_init_map.shape)}" if self.v_init_map is not None else self.v_init
        offset = getattr(self, "input_offset", None)
        return f"v_threshold={self.v_threshold}, reset={reset}, v_init={v_init}" + (
            "" if offset is None else f", input offset per channel ({offset.numel()})")


class SignedIFNeuron(IFNeuron):
    """Signed IF neurons standing for LeakyReLU(alpha) or PReLU (a slope per channel), with Spiking-YOLO's imbalanced threshold
    (Kim et al., AAAI 2020): +1 spikes at threshold θ, −1 spikes at θ/alpha. Each sign has its own
    membrane potential — v integrates z and fires +1 at θ, v_neg integrates −z and fires −1 at
    θ/alpha, both reset by subtraction (or set to ``v_reset``·their threshold) and both start at
    v_init of their threshold — so each side is an IF neuron and converges as a ReLU's does: a
    constant input z gives rate z/θ, or alpha·z/θ of −1 spikes. (One membrane for both signs, as in
    Spiking-YOLO, drifts towards +1 spikes under a fluctuating input: on the leaky_relu_cnn test
    pattern, 8 images, 400 steps, seed config, its rates missed LeakyReLU by up to 0.24 — measured
    once before it was replaced — these by up to 0.019, in the second layer.) The
    plain torch loop (no fused kernel); spike counts count |spikes|."""

    def __init__(self, alpha: float = 0.01, slope_map: Optional[torch.Tensor] = None, **kwargs):
        """``alpha``: the negative slope; ``slope_map``: one slope per channel instead (a PRelu's,
        shaped to broadcast over one sample, e.g. (C, 1, 1))."""
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.register_buffer("slope_map", None if slope_map is None else
                             torch.as_tensor(slope_map, dtype=torch.float32))

    def negative_threshold(self):
        """θ/alpha: a number, or a tensor that broadcasts over one step's [B, C, ...] (per channel)."""
        if self.slope_map is None:
            return self.v_threshold / self.alpha
        return self.v_threshold / self.slope_map

    def reset(self) -> None:
        super().reset()
        self.v_neg: Optional[torch.Tensor] = None

    def forward(self, z: torch.Tensor, n_steps: int, static: bool = False) -> torch.Tensor:
        z, _ = self._shifted(z, static)      # no kernel: a shift comes back added to z
        out = torch.empty((n_steps, *self.v.shape), dtype=z.dtype, device=z.device)
        self._signed_loop(z, out, None, n_steps, static)
        if self.count_spikes:
            self.spike_count = self.spike_count + out.abs().sum(dtype=torch.float64)
            self.neuron_steps += out.numel()
        return out

    def can_pool(self, z, static, pool) -> bool:
        return False

    def count(self, z: torch.Tensor, n_steps: int, static: bool = False) -> torch.Tensor:
        z, _ = self._shifted(z, static)
        counts = torch.zeros_like(self.v)
        self._signed_loop(z, None, counts, n_steps, static)
        return counts

    def _signed_loop(self, z, out, counts, n_steps: int, static: bool) -> None:
        self.path = "torch loop (signed neurons have no fused kernel)"
        v, theta, negative = self.v, self.v_threshold, self.negative_threshold()
        if self.v_neg is None:
            self.v_neg = v * (negative / theta)          # v_init of its own threshold (or the per-neuron map)
        per_channel = torch.is_tensor(negative)
        if per_channel:
            negative = negative.to(device=v.device, dtype=v.dtype)
            negative_reset = None if self.v_reset is None else (self.v_reset * negative).expand_as(v)
        w = self.v_neg
        for t in range(n_steps):
            current = z if static else z[t]
            v.add_(current)
            w.sub_(current)
            up, down = v >= theta, w >= negative
            if self.v_reset is None:
                v.sub_(up.to(v.dtype) * theta)
                w.sub_(down.to(v.dtype) * negative)
            else:
                v.masked_fill_(up, self.v_reset * theta)
                if per_channel:
                    torch.where(down, negative_reset, w, out=w)
                else:
                    w.masked_fill_(down, self.v_reset * negative)
            spikes = up.to(z.dtype) - down.to(z.dtype)
            if out is not None:
                out[t] = spikes
            if counts is not None:
                counts.add_(spikes)

    def extra_repr(self) -> str:
        if self.slope_map is not None:
            s = self.slope_map
            return (f"slope per channel ({s.numel()}: {float(s.min()):g}..{float(s.max()):g}; negative threshold "
                    f"threshold/slope), " + super().extra_repr())
        return f"alpha={self.alpha:g} (negative threshold {self.v_threshold / self.alpha:g}), " + super().extra_repr()


class MembraneReadout(nn.Module):
    """Output layer read as membrane potential: the accumulated input current, no spikes."""

    stateful = True

    def reset(self) -> None:
        pass

    def forward(self, z: torch.Tensor, n_steps: int, static: bool = False) -> torch.Tensor:
        return z.expand(n_steps, *z.shape) if static else z
