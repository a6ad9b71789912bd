"""A fused IF update over a chunk of time steps for CUDA tensors, written in Triton.

One kernel launch runs every step of a chunk: each program keeps a block of membrane potentials in
registers, reads the input current of each step once and writes each spike once — two memory
passes per step, against about eight for the step-by-step torch ops. Used automatically when the
tensors are on a CUDA device and Triton imports; everything else (CPU, no Triton) takes the torch
path in ``neurons.py``, which computes the same thing.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

try:  # Triton ships with CUDA builds of torch; CPU-only machines simply do not use this file
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - depends on the install
    triton = None


def available(t: torch.Tensor) -> bool:
    """Use the kernel for this tensor? (Set ONNX2SNN_NO_TRITON=1 to force the torch path.)"""
    return triton is not None and t.is_cuda and not os.environ.get("ONNX2SNN_NO_TRITON")


if triton is not None:
    @triton.jit
    def _if_chunk_kernel(z_ptr, v_ptr, out_ptr, n, steps, z_step_stride, threshold, v_reset,
                         HARD_RESET: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        v = tl.load(v_ptr + offs, mask=mask, other=0.0)
        for t in range(steps):
            z = tl.load(z_ptr + t * z_step_stride + offs, mask=mask, other=0.0).to(tl.float32)
            v = v + z
            spike = v >= threshold
            if HARD_RESET:
                v = tl.where(spike, v_reset, v)
            else:
                v = v - tl.where(spike, threshold, 0.0)
            tl.store(out_ptr + t * n + offs, spike.to(out_ptr.dtype.element_ty), mask=mask)
        tl.store(v_ptr + offs, v, mask=mask)


def if_chunk(z: torch.Tensor, v: torch.Tensor, steps: int, static: bool, v_threshold: float,
             v_reset: Optional[float]) -> torch.Tensor:
    """Spikes ``[steps, *v.shape]`` (dtype of ``z``); updates ``v`` (float32) in place."""
    z = z.contiguous()
    n = v.numel()
    out = torch.empty((steps, *v.shape), dtype=z.dtype, device=z.device)
    block = 1024
    _if_chunk_kernel[(triton.cdiv(n, block),)](
        z, v, out, n, steps, 0 if static else n, float(v_threshold), float(v_reset or 0.0),
        HARD_RESET=v_reset is not None, BLOCK=block)
    return out
