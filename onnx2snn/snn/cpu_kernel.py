"""A fused IF update over a chunk of time steps for CPU tensors, compiled by Numba (the jitted code
is ``numba_kernels.py``; this module holds the torch-facing wrappers).

The torch path (``neurons.py``) needs three passes over memory per step (add the current, compare,
subtract the spikes), about 32 bytes per neuron and step. Here each thread keeps a block of
``BLOCK`` membrane potentials in its L1 cache while it runs every step of the chunk, so memory sees
one read of the current and one write of the spike per neuron and step (the constant input current
of the first layer stays in cache too); its effect on whole simulations is in docs/BENCHMARKS.md
("Simulation speed: notes (issue 11)"). Same arithmetic as the Triton
kernel: ``v + z``, ``v >= threshold``, ``v - threshold`` or ``v_reset`` — bit-identical spikes.

Each kernel can also count the spikes per neuron instead of (or besides) writing them: the bias
calibration needs only the rates of its trial runs, and then the spikes never reach memory. A second
kernel runs the pooling that alone reads a layer's spikes (average, or the running max of counts,
with non-overlapping windows) in the same pass, so that only the pooled values are written.

Currents and spikes may be float32 or bfloat16 (``--dtype bfloat16``: oneDNN's bfloat16
convolutions run 2–5× faster than float32 on CPUs with AVX512-BF16 or AMX); potentials are float32
either way, so the spikes are those of the torch path with the same currents, bit for bit.

Numba compiles the kernels on first use and caches the machine code beside ``numba_kernels.py``
(or in ``NUMBA_CACHE_DIR``), so later processes load them in a fraction of a second. Without Numba, or with
``ONNX2SNN_KERNELS=torch``, the torch path runs instead.
"""
from __future__ import annotations

import os

import numpy as np
import torch

_numba = None   # the module once imported; False when it cannot be


def _load():
    global _numba
    if _numba is None:
        try:
            # Numba's thread pool is sized when it is imported: as many threads as torch uses, so that
            # processes sharing the cores (torchrun sets one thread each) do not each spin up a pool of
            # all cores — measured: two processes on 2 cores simulated 2.8x slower with full pools.
            os.environ.setdefault("NUMBA_NUM_THREADS", str(torch.get_num_threads()))
            import numba
            from . import numba_kernels  # noqa: F401  (compiled or loaded from the cache on first call)
            _numba = numba
        except Exception:  # pragma: no cover - not installed, or no wheel for this Python
            _numba = False
    return _numba


def available(t: torch.Tensor) -> bool:
    """Can the kernel run on this tensor? float32 or bfloat16 on CPU, Numba importable, not
    switched off."""
    return (t.device.type == "cpu" and t.dtype in (torch.float32, torch.bfloat16)
            and os.environ.get("ONNX2SNN_KERNELS", "").lower() != "torch" and bool(_load()))


def _flat(t: torch.Tensor, n: int) -> np.ndarray:
    """The dense memory of ``t`` as a 1-D array of ``n`` elements, in memory order (no copy);
    bfloat16 as its bits, uint16."""
    flat = torch.as_strided(t, (n,), (1,))
    if t.dtype == torch.bfloat16:
        return flat.view(torch.int16).numpy().view(np.uint16)
    return flat.numpy()


_NOTHING = np.zeros(0, np.float32)   # stands in for ``out`` or ``counts`` when not asked for


def if_chunk(z: torch.Tensor, v: torch.Tensor, out, n_steps: int, static: bool, v_threshold: float, v_reset,
             counts=None, shift=None) -> None:
    """Writes the spikes into ``out`` (None: not at all) and adds them up per neuron into ``counts``
    (None: no counting); updates ``v`` in place (layouts as ``kernels.usable`` requires). ``shift``:
    a float32 tensor laid out as ``v`` added to every step's current (float32 currents only)."""
    n = v.numel()
    _threads()   # one thread budget for the process
    zf = _flat(z, n if static else n_steps * n)
    vf = _flat(v, n)
    of = _NOTHING if out is None else _flat(out, n_steps * n)
    cf = _NOTHING if counts is None else _flat(counts, n)
    from .numba_kernels import if_kernel
    sf = None if shift is None else _flat(shift, n)
    if_kernel(zf, vf, of, cf, sf, n_steps, 0 if static else n, np.float32(v_threshold),
              np.float32(0.0 if v_reset is None else v_reset), v_reset is not None, out is not None,
              counts is not None)


def pool_layout(v: torch.Tensor):
    """(P, Q) of the [B, P, H, W, Q] view ``if_pool_kernel`` reads a 4-D ``v`` as — NHWC: (1, C),
    NCHW: (C, 1) — or None for any other layout."""
    if v.dim() != 4:
        return None
    if v.is_contiguous(memory_format=torch.channels_last):
        return 1, v.shape[1]
    if v.is_contiguous():
        return v.shape[1], 1
    return None


def pooled_format(v: torch.Tensor):
    """The memory format of a pooled step laid out as ``v`` (``pool_layout``): NHWC or NCHW."""
    return torch.channels_last if pool_layout(v)[0] == 1 else torch.contiguous_format


def pooled_buffer(v: torch.Tensor, window, rows: int, dtype: torch.dtype) -> torch.Tensor:
    """An empty [rows·B, C, H // kh, W // kw] tensor, each step laid out as ``v``: the fused
    kernels' output (CPU and CUDA) and the running max's state."""
    (kh, kw), (b, c, h, w) = window, v.shape
    return torch.empty((rows * b, c, h // kh, w // kw), dtype=dtype, device=v.device, memory_format=pooled_format(v))


def _threads():
    numba = _numba
    if numba.get_num_threads() != torch.get_num_threads():
        numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def if_pool_chunk(z: torch.Tensor, v: torch.Tensor, n_steps: int, static: bool, v_threshold: float, v_reset,
                  kernel, count: bool = False, running=None, shift=None):
    """The IF update of ``if_chunk`` followed by pooling with window = stride = ``kernel``: average
    pooling, or with ``running=(counts, pooled)`` (per-neuron spike counts laid out as ``v``, the
    running max per window laid out as one pooled step; both updated in place) the running max of
    spike counts. Returns (the pooled spikes [n_steps, B, C, H // kh, W // kw], each step laid out
    as ``v`` (the caller checked ``pool_layout``); with ``count``, the number of spikes, else None).
    The spikes themselves are never stored. ``shift`` as in ``if_chunk``."""
    _threads()
    (kh, kw), (b, c, h, w) = kernel, v.shape
    p, q = pool_layout(v)
    out = pooled_buffer(v, kernel, n_steps, z.dtype)   # in the currents' dtype
    n = v.numel()
    totals = np.zeros(b * p * (h // kh) if count else 0, np.float64)   # spikes per block (rows of one window row)
    common = (n_steps, 0 if static else n, np.array([b * p, h, w, q], np.int64), kh, kw, np.float32(v_threshold),
              np.float32(0.0 if v_reset is None else v_reset), v_reset is not None, count)
    counts, pooled = (_NOTHING, None) if running is None else (_flat(running[0], n), _flat(running[1], running[1].numel()))
    from .numba_kernels import if_pool_kernel
    if_pool_kernel(_flat(z, n if static else n_steps * n), _flat(v, n), _flat(out, out.numel()), counts, pooled,
                        totals, None if shift is None else _flat(shift, n), *common)
    return out.view(n_steps, b, *out.shape[1:]), (float(totals.sum()) if count else None)
