"""The CUDA kernels, in Triton: imported by ``kernels.py`` only when a CUDA tensor needs them (Triton
ships with CUDA builds of torch; importing it costs a CPU-only run about 0.25 s for nothing).

* ``if_chunk``: the IF update over a chunk of steps, each program a block of potentials kept in
  registers: one read of the current and one write of the spike per neuron and step.
* ``if_pool_chunk``: the same update fused with the pooling that alone reads the spikes, for
  non-overlapping windows that tile the layer (H and W multiples of the window): average pooling,
  the running max of spike counts (``pooling.RunningMaxPool``, the default rule) or the seed's gate
  (``pooling.GatedMaxPool``: per window the spike of the input with the highest count, the first
  such in window order, as ``max_pool2d``'s indices pick it). Each program holds a block of output
  positions with their whole windows — potentials, counts and the running max in registers — over
  the chunk, and writes only the pooled output: the spikes, their counts' cumulative sums and the
  window argmax never reach memory.

Same arithmetic as the torch path: ``v + z``, ``v >= threshold``, ``v - threshold`` or ``v_reset``
in float32, counts as ``c + s`` (or ``m·c + s``) in float32 — bit-identical spikes and outputs.
With ``TRITON_INTERPRET=1`` Triton runs these kernels on CPU tensors (numpy), which is how the
tests check them on a machine without a GPU.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from .cpu_kernel import pooled_buffer

BLOCK = 1024      # neurons per program of the plain kernel: 4 warps × 256 lanes
POOL_BLOCK = 256  # output positions per program of the fused kernel (× the window's inputs each)
RULES = {"average": 0, "running max": 1, "gate": 2}


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


@triton.jit
def _if_pool_kernel(z_ptr, v_ptr, out_ptr, count_ptr, best_ptr, totals_ptr,
                    n_out, n_steps, z_step_stride, height, width, q_size, out_h, out_w,
                    threshold, v_reset, momentum, scale,
                    HARD_RESET: tl.constexpr, RULE: tl.constexpr, COUNT: tl.constexpr,
                    KH: tl.constexpr, KW: tl.constexpr, KK: tl.constexpr, BLOCK: tl.constexpr):
    # Memory as [B·P, H, W, Q] (NHWC: P=1, Q=C; NCHW: P=C, Q=1); output o = ((bp·out_h + oy)·out_w
    # + ox)·Q + q of one step; its window's inputs along the second axis (KK: KH·KW padded to a
    # power of two, the padding masked off: it never spikes and never wins).
    pid = tl.program_id(0)
    o = pid * BLOCK + tl.arange(0, BLOCK)
    valid = o < n_out
    q = o % q_size
    ox = (o // q_size) % out_w
    oy = (o // (q_size * out_w)) % out_h
    bp = o // (q_size * out_w * out_h)
    k = tl.arange(0, KK)
    row = oy[:, None] * KH + (k // KW)[None, :]
    col = ox[:, None] * KW + (k % KW)[None, :]
    offs = ((bp[:, None] * height + row) * width + col) * q_size + q[:, None]
    mask = valid[:, None] & (k < KH * KW)[None, :]
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)
    if RULE != 0:
        c = tl.load(count_ptr + offs, mask=mask, other=0.0)
    if RULE == 1:
        best = tl.load(best_ptr + o, mask=valid, other=0.0)
    fired = tl.zeros([BLOCK, KK], dtype=tl.int32)
    for t in range(n_steps):
        z = tl.load(z_ptr + t * z_step_stride + offs, mask=mask, other=0.0).to(tl.float32)
        v = v + z
        spike = (v >= threshold) & mask
        if HARD_RESET:
            v = tl.where(spike, v_reset, v)
        else:
            v = v - tl.where(spike, threshold, 0.0)
        s = spike.to(tl.float32)
        if COUNT:
            fired += spike.to(tl.int32)
        if RULE == 0:        # average pooling
            res = tl.sum(s, axis=1) * scale
        elif RULE == 1:      # running max of counts: how much the window's largest count rose
            c = c + s
            new = tl.max(c, axis=1)   # counts are never negative, the masked padding stays 0
            res = new - best
            best = new
        else:                # gate: the spike of the input with the highest count (first in window order)
            c = c * momentum + s
            winner = tl.argmax(tl.where(mask, c, float("-inf")), axis=1, tie_break_left=True)
            res = tl.sum(tl.where(k[None, :] == winner[:, None], s, 0.0), axis=1)
        tl.store(out_ptr + t * n_out + o, res.to(out_ptr.dtype.element_ty), mask=valid)
    tl.store(v_ptr + offs, v, mask=mask)
    if RULE != 0:
        tl.store(count_ptr + offs, c, mask=mask)
    if RULE == 1:
        tl.store(best_ptr + o, best, mask=valid)
    if COUNT:
        tl.store(totals_ptr + pid, tl.sum(tl.sum(fired, axis=1), axis=0).to(tl.float32))


def if_chunk(z: torch.Tensor, v: torch.Tensor, out: torch.Tensor, n_steps: int, static: bool,
             v_threshold: float, v_reset: Optional[float]) -> None:
    """The spikes of ``n_steps`` steps into ``out`` (laid out as ``kernels.usable`` requires); ``v``
    updated in place."""
    n = v.numel()
    _if_chunk_kernel[(triton.cdiv(n, BLOCK),)](
        z, v, out, n, n_steps, 0 if static else n, float(v_threshold), float(v_reset or 0.0),
        HARD_RESET=v_reset is not None, BLOCK=BLOCK)


def if_pool_chunk(z: torch.Tensor, v: torch.Tensor, n_steps: int, static: bool, v_threshold: float,
                  v_reset: Optional[float], kernel: Tuple[int, int], layout: Tuple[int, int], rule: str,
                  counts: Optional[torch.Tensor] = None, best: Optional[torch.Tensor] = None,
                  momentum: Optional[float] = None, count: bool = False):
    """IF neurons then the pooling ``rule`` over windows = strides = ``kernel`` that tile ``v``'s
    H and W; ``layout``: (P, Q) of the [B·P, H, W, Q] view (``cpu_kernel.pool_layout``). ``counts``
    (per neuron, laid out as ``v``) and ``best`` (per window) are the rules' state, updated in
    place. Returns (pooled [n_steps, B, C, H/kh, W/kw], each step laid out as ``v``; the number of
    spikes with ``count``, else None)."""
    (kh, kw), (b, c, h, w), (_, q) = kernel, v.shape, layout
    out = pooled_buffer(v, kernel, n_steps, z.dtype)
    n_out = b * c * (h // kh) * (w // kw)
    grid = triton.cdiv(n_out, POOL_BLOCK)
    totals = torch.zeros(grid if count else 1, dtype=torch.float32, device=z.device)
    dummy = v   # a pointer the kernel never touches where its rule keeps no such state
    _if_pool_kernel[(grid,)](
        z, v, out, dummy if counts is None else counts, dummy if best is None else best, totals,
        n_out, n_steps, 0 if static else v.numel(), h, w, q, h // kh, w // kw,
        float(v_threshold), float(v_reset or 0.0), float(1.0 if momentum is None else momentum),
        1.0 / (kh * kw), HARD_RESET=v_reset is not None, RULE=RULES[rule], COUNT=count,
        KH=kh, KW=kw, KK=triton.next_power_of_2(kh * kw), BLOCK=POOL_BLOCK,
        enable_fp_fusion=False)   # m·c + s rounded twice, as torch computes it (no FMA)
    # the spike total stays a tensor on the device: no synchronisation per chunk
    return out.view(n_steps, b, *out.shape[1:]), (totals.sum(dtype=torch.float64) if count else None)
