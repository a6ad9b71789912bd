"""The fused IF kernels, by device: Triton on CUDA (``triton_kernels.py``), Numba on CPU (``cpu_kernel.py``).

One kernel launch runs every step of a chunk: each program keeps a block of membrane potentials in
registers (or L1), reads the input current of each step once and writes each spike once — two memory
passes per step, against about eight for the step-by-step torch ops. Where a pooling with
non-overlapping windows is all that reads a layer's spikes, the pooling runs in the same kernel
(``if_pool_chunk``: average pooling and the running max of counts on both devices, the seed's gate
on CUDA). Used automatically when the tensors are on a CUDA device and Triton imports, and on CPU
when Numba does; everything else (no Triton, no Numba, float16 on CPU) takes the torch path in
``neurons.py`` and ``pooling.py``, which computes the same thing. ``ONNX2SNN_KERNELS=torch`` (or the
older ``ONNX2SNN_NO_TRITON=1``, CUDA only) forces the torch path.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from . import cpu_kernel

_triton = None   # the triton_kernels module once imported (only for CUDA tensors); False when it cannot be
CPU_POOL_RULES = ("average", "running max")
CUDA_POOL_RULES = ("average", "running max", "gate")


def _triton_kernels():
    global _triton
    if _triton is None:
        try:  # Triton ships with CUDA builds of torch; CPU-only runs never import it
            from . import triton_kernels
            _triton = triton_kernels
        except Exception:  # pragma: no cover - depends on the install
            _triton = False
    return _triton


def available(t: torch.Tensor) -> bool:
    """Can a fused kernel run on this tensor's device?"""
    if t.device.type == "cpu":
        return cpu_kernel.available(t)
    return (t.is_cuda and not os.environ.get("ONNX2SNN_NO_TRITON")
            and os.environ.get("ONNX2SNN_KERNELS", "").lower() != "torch" and bool(_triton_kernels()))


def dense(t: torch.Tensor) -> bool:
    """No gaps, no overlaps: the elements fill one block of memory (any dimension order)."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda p: p[1]):
        if size > 1 and stride != expected:
            return False
        expected *= size
    return True


def name(t: torch.Tensor) -> str:
    """The fused kernels that run on this tensor's device (for listings)."""
    return "Numba kernel" if t.device.type == "cpu" else "Triton kernel"


def usable(z: torch.Tensor, v: torch.Tensor, static: bool) -> bool:
    """The kernel indexes memory flat: the currents of each step must be laid out as ``v`` is,
    one step after the other."""
    if not available(z) or v.dtype != torch.float32 or not dense(v):
        return False
    if static:
        return z.stride() == v.stride()
    return z.stride()[1:] == v.stride() and z.stride(0) == v.numel()


def shifts_in_kernel(z: torch.Tensor) -> bool:
    """Can the kernels add a per-neuron shift to the currents themselves (the CPU kernels, float32
    currents)? Elsewhere the caller adds it to the currents first."""
    return z.device.type == "cpu" and z.dtype == torch.float32


def if_chunk(z: torch.Tensor, v: torch.Tensor, out: Optional[torch.Tensor], n_steps: int, static: bool,
             v_threshold: float, v_reset: Optional[float], counts: Optional[torch.Tensor] = None,
             shift: Optional[torch.Tensor] = None) -> None:
    """Writes the spikes into ``out`` (laid out as ``usable`` requires; None: not kept) and adds them
    per neuron into ``counts`` (laid out as ``v``; None: not counted); updates ``v`` in place.
    ``shift`` (laid out as ``v``; only where ``shifts_in_kernel``) is added to each step's current."""
    if z.device.type == "cpu":
        return cpu_kernel.if_chunk(z, v, out, n_steps, static, v_threshold, v_reset, counts, shift)
    n = v.numel()
    spikes = out if out is not None else torch.empty(n_steps * n, dtype=z.dtype, device=z.device).as_strided(
        (n_steps, *v.shape), (n, *v.stride()))
    _triton_kernels().if_chunk(z, v, spikes, n_steps, static, v_threshold, v_reset)
    if counts is not None:
        counts += spikes.sum(dim=0, dtype=torch.float32)


def can_pool(z: torch.Tensor, v: torch.Tensor, static: bool, window, rule: str) -> bool:
    """Can ``if_pool_chunk`` run the neurons with potential ``v`` and the pooling ``rule`` over
    ``window`` (= stride) on these currents? On CUDA the windows must tile H and W."""
    if v.dim() != 4 or cpu_kernel.pool_layout(v) is None or not usable(z, v, static):
        return False
    (kh, kw), (h, w) = window, v.shape[2:]
    if v.device.type == "cpu":
        return rule in CPU_POOL_RULES and h >= kh and w >= kw
    return rule in CUDA_POOL_RULES and h % kh == 0 and w % kw == 0 and h >= kh and w >= kw


def if_pool_chunk(z: torch.Tensor, v: torch.Tensor, n_steps: int, static: bool, v_threshold: float,
                  v_reset: Optional[float], window, rule: str, state=(None, None), momentum: Optional[float] = None,
                  count: bool = False, shift: Optional[torch.Tensor] = None):
    """The neurons then the pooling (``can_pool`` said yes): returns (the pooled spikes
    [n_steps, B, C, H // kh, W // kw], each step laid out as ``v``; with ``count`` the number of
    spikes, else None). ``state``: (per-neuron counts, per-window running max) of the max-pooling
    rules, updated in place. ``shift`` as in ``if_chunk``."""
    if z.device.type == "cpu":
        return cpu_kernel.if_pool_chunk(z, v, n_steps, static, v_threshold, v_reset, window, count,
                                        state if rule == "running max" else None, shift)
    counts, best = state
    return _triton_kernels().if_pool_chunk(z, v, n_steps, static, v_threshold, v_reset, window,
                                           cpu_kernel.pool_layout(v), rule, counts, best, momentum, count)
