"""A fused IF update over a chunk of time steps: Triton on CUDA (this file), Numba on CPU (``cpu_kernel.py``).

One kernel launch runs every step of a chunk: each program keeps a block of membrane potentials in
registers, reads the input current of each step once and writes each spike once — two memory
passes per step, against about eight for the step-by-step torch ops. Used automatically when the
tensors are on a CUDA device and Triton imports, and the Numba kernel on CPU; everything else (no
Triton, no Numba, float16 on CPU) takes the torch path in ``neurons.py``, which computes the
same thing. ``ONNX2SNN_KERNELS=torch`` (or the older
``ONNX2SNN_NO_TRITON=1``, CUDA only) forces the torch path.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from . import cpu_kernel

try:  # Triton ships with CUDA builds of torch; CPU-only machines simply do not use this file
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - depends on the install
    triton = None


BLOCK = 1024  # neurons per Triton program: a common size for elementwise kernels (4 warps × 256 lanes)


def available(t: torch.Tensor) -> bool:
    """Can a fused kernel run on this tensor's device?"""
    if t.device.type == "cpu":
        return cpu_kernel.available(t)
    return (triton is not None and t.is_cuda and not os.environ.get("ONNX2SNN_NO_TRITON")
            and os.environ.get("ONNX2SNN_KERNELS", "").lower() != "torch")


def dense(t: torch.Tensor) -> bool:
    """No gaps, no overlaps: the elements fill one block of memory (any dimension order)."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda p: p[1]):
        if size > 1 and stride != expected:
            return False
        expected *= size
    return True


def usable(z: torch.Tensor, v: torch.Tensor, static: bool) -> bool:
    """The kernel indexes memory flat: the currents of each step must be laid out as ``v`` is,
    one step after the other."""
    if not available(z) or v.dtype != torch.float32 or not dense(v):
        return False
    if static:
        return z.stride() == v.stride()
    return z.stride()[1:] == v.stride() and z.stride(0) == v.numel()


if triton is not None:
    @triton.jit
    def _if_chunk_kernel(z_ptr, v_ptr, out_ptr, n, n_steps, z_step_stride, threshold, v_reset,
                         HARD_RESET: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        v = tl.load(v_ptr + offs, mask=mask, other=0.0)
        for t in range(n_steps):
            z = tl.load(z_ptr + t * z_step_stride + offs, mask=mask, other=0.0).to(tl.float32)
            v = v + z
            spike = v >= threshold
            if HARD_RESET:
                v = tl.where(spike, v_reset, v)
            else:
                v = v - tl.where(spike, threshold, 0.0)
            tl.store(out_ptr + t * n + offs, spike.to(out_ptr.dtype.element_ty), mask=mask)
        tl.store(v_ptr + offs, v, mask=mask)


def if_chunk(z: torch.Tensor, v: torch.Tensor, out: Optional[torch.Tensor], n_steps: int, static: bool,
             v_threshold: float, v_reset: Optional[float], counts: Optional[torch.Tensor] = None) -> None:
    """Writes the spikes into ``out`` (laid out as ``usable`` requires; None: not kept) and adds them
    per neuron into ``counts`` (laid out as ``v``; None: not counted); updates ``v`` in place."""
    if z.device.type == "cpu":
        return cpu_kernel.if_chunk(z, v, out, n_steps, static, v_threshold, v_reset, counts)
    n = v.numel()
    spikes = out if out is not None else torch.empty(n_steps * n, dtype=z.dtype, device=z.device).as_strided(
        (n_steps, *v.shape), (n, *v.stride()))
    block = BLOCK
    _if_chunk_kernel[(triton.cdiv(n, block),)](
        z, v, spikes, n, n_steps, 0 if static else n, float(v_threshold), float(v_reset or 0.0),
        HARD_RESET=v_reset is not None, BLOCK=block)
    if counts is not None:
        counts += spikes.sum(dim=0, dtype=torch.float32)
