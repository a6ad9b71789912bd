"""A fused IF update over a chunk of time steps for CPU tensors, compiled by Numba.

The torch path (``neurons.py``) needs three passes over memory per step (add the current, compare,
subtract the spikes), about 32 bytes per neuron and step. Here each thread keeps a block of
``BLOCK`` membrane potentials in its L1 cache while it runs every step of the chunk, so memory sees
one read of the current and one write of the spike per neuron and step (the constant input current
of the first layer stays in cache too); its effect on whole simulations is in docs/BENCHMARKS.md
("Simulation speed: notes (issue 11)"). Same arithmetic as the Triton
kernel: ``v + z``, ``v >= threshold``, ``v - threshold`` or ``v_reset`` — bit-identical spikes.

Each kernel can also count the spikes per neuron instead of (or besides) writing them: the bias
calibration needs only the rates of its trial runs, and then the spikes never reach memory. Two more
kernels run the pooling that alone reads a layer's spikes (average, or the running max of counts,
with non-overlapping windows) in the same pass, so that only the pooled values are written.

Currents and spikes may be float32 or bfloat16 (``--dtype bfloat16``: oneDNN's bfloat16
convolutions run 2–5× faster than float32 on CPUs with AVX512-BF16 or AMX); potentials are float32
either way, so the spikes are those of the torch path with the same currents, bit for bit.

Numba compiles the kernel on first use and caches the machine code beside this file (or in
``NUMBA_CACHE_DIR``), so later processes load them in milliseconds. Without Numba, or with
``ONNX2SNN_KERNELS=torch``, the torch path runs instead.
"""
from __future__ import annotations

import os

import numpy as np
import torch

BLOCK = 4096   # membrane potentials per block: 16 KiB of float32, half of a 32 KiB L1 data cache

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
            _numba = numba
            _compile(numba)
        except Exception:  # pragma: no cover - not installed, or no wheel for this Python
            _numba = False
    return _numba


_kernels = {}


def _compile(numba):
    from numba.core import types
    from numba.extending import intrinsic, overload

    # bfloat16 currents and spikes travel as their bits (numpy has no bfloat16: a uint16 array);
    # ``load`` widens an element to float32 (exact), ``store`` narrows a float32 to the array's
    # type, rounding to nearest even as torch does (pooled outputs; 2×2 averages are exact), and
    # ``store_spike`` writes 0 or 1 (no rounding: the general one kept the loop from vectorising,
    # 3.6× slower, measured on ResNet-20's first layers).
    @intrinsic
    def _as_float32(typingctx, bits):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(types.float32))
        return types.float32(types.uint32), codegen

    @intrinsic
    def _as_uint32(typingctx, value):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(types.uint32))
        return types.uint32(types.float32), codegen

    def load(a, i):  # pragma: no cover - replaced by the overload below inside kernels
        raise NotImplementedError

    def store(a, i, x):  # pragma: no cover - likewise
        raise NotImplementedError

    @overload(load, inline="always")
    def _load(a, i):
        if a.dtype == types.uint16:
            return lambda a, i: _as_float32(np.uint32(a[i]) << np.uint32(16))
        return lambda a, i: a[i]

    def store_spike(a, i, fired):  # pragma: no cover - likewise
        raise NotImplementedError

    @overload(store_spike, inline="always")
    def _store_spike(a, i, fired):   # 0 or 1 needs no rounding: bfloat16 1.0 is 0x3F80
        if a.dtype == types.uint16:
            def bits(a, i, fired):
                a[i] = np.uint16(0x3F80) * np.uint16(fired)
            return bits

        def value(a, i, fired):
            a[i] = np.float32(fired)
        return value

    @overload(store, inline="always")
    def _store(a, i, x):
        if a.dtype == types.uint16:
            def narrow(a, i, x):
                bits = _as_uint32(x)
                a[i] = np.uint16((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
            return narrow

        def keep(a, i, x):
            a[i] = x
        return keep

    # ``hard``: reset to ``v_reset`` (else subtract the threshold); ``write``: store each step's
    # spikes in ``out``; ``count``: add them to ``counts`` (per neuron). The flags are the same for
    # every neuron, so LLVM takes the branches out of the inner loop.
    @numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
    def if_kernel(z, v, out, counts, n_steps, z_step, threshold, v_reset, hard, write, count):
        n = v.shape[0]
        for b in numba.prange((n + BLOCK - 1) // BLOCK):
            lo, hi = b * BLOCK, min(b * BLOCK + BLOCK, n)
            vb, cb = v[lo:hi], counts[lo:hi]
            for t in range(n_steps):
                zb = z[t * z_step + lo:t * z_step + hi]
                ob = out[t * n + lo:t * n + hi]
                for i in range(hi - lo):
                    x = vb[i] + load(zb, i)
                    spike = np.float32(x >= threshold)
                    if write:
                        store_spike(ob, i, x >= threshold)
                    if count:
                        cb[i] += spike
                    if hard:
                        vb[i] = v_reset if x >= threshold else x
                    else:
                        vb[i] = x - spike * threshold

    _kernels["if"] = if_kernel

    @numba.njit(inline="always")
    def if_row(v, z, spikes, counts, threshold, v_reset, hard, keep_counts):
        """One row of ``if_kernel``'s update: its spikes (0/1) into ``spikes``, added to ``counts``
        where ``keep_counts``; returns how many fired (an integer sum vectorises, a float one not)."""
        fired = 0
        for i in range(v.shape[0]):
            x = v[i] + load(z, i)
            spike = np.float32(x >= threshold)
            spikes[i] = spike
            if keep_counts:
                counts[i] += spike
            fired += x >= threshold
            if hard:
                v[i] = v_reset if x >= threshold else x
            else:
                v[i] = x - spike * threshold
        return fired

    # The IF update fused with the pooling that alone reads its spikes, windows = strides, no
    # padding: average pooling, or (``running_max``) the running max of spike counts of
    # ``pooling.RunningMaxPool`` — per neuron its count so far (``count``), per window the largest
    # of them after the last step (``pooled``), each step's output how much that max rose (0 or 1).
    # The spikes stay in cache; only the pooled values reach memory. Memory is viewed as
    # [B·P, H, W, Q] (NHWC: P=1, Q=C; NCHW: P=C, Q=1); a block is one image's rows of one output
    # row, all columns and Q. Rows and columns past the last whole window are updated and counted
    # but pooled into nothing, as the floor-mode poolings drop them.
    @numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
    def if_pool_kernel(z, v, out, count, pooled, totals, n_steps, z_step, shape, kh, kw, threshold, v_reset,
                       hard, total, running_max):
        n_bp, height, width, q_size = shape[0], shape[1], shape[2], shape[3]
        out_h, out_w, row_len = height // kh, width // kw, width * q_size
        out_row = out_w * q_size
        out_step = n_bp * out_h * out_row
        scale = np.float32(1.0 / (kh * kw))
        for blk in numba.prange(n_bp * out_h):
            bp, oy = blk // out_h, blk % out_h
            y_end = (oy + 1) * kh if oy < out_h - 1 else height
            acc = np.empty(out_row, np.float32)          # per window: the spike sum, or the largest count
            spikes = np.empty(row_len, np.float32)       # one row's spikes of this step, in cache
            for t in range(n_steps):
                acc[:] = 0                               # counts are never negative
                for y in range(oy * kh, y_end):
                    lo = (bp * height + y) * row_len
                    fired = if_row(v[lo:lo + row_len], z[t * z_step + lo:t * z_step + lo + row_len], spikes,
                                   count[lo:lo + row_len], threshold, v_reset, hard, running_max)
                    if total:
                        totals[blk] += fired
                    if y < (oy + 1) * kh:                # rows past the last whole window pool into nothing
                        for ox in range(out_w):
                            for dx in range(kw):
                                src = (ox * kw + dx) * q_size
                                for q in range(q_size):
                                    if running_max:
                                        acc[ox * q_size + q] = max(acc[ox * q_size + q], count[lo + src + q])
                                    else:
                                        acc[ox * q_size + q] += spikes[src + q]
                pb = (bp * out_h + oy) * out_row
                base = t * out_step + pb
                for j in range(out_row):
                    if running_max:
                        store(out, base + j, acc[j] - pooled[pb + j])
                        pooled[pb + j] = acc[j]
                    else:
                        store(out, base + j, acc[j] * scale)

    _kernels["if_pool"] = if_pool_kernel


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
             counts=None) -> None:
    """Writes the spikes into ``out`` (None: not at all) and adds them up per neuron into ``counts``
    (None: no counting); updates ``v`` in place (layouts as ``kernels.usable`` requires)."""
    n = v.numel()
    _threads()   # one thread budget for the process
    zf = _flat(z, n if static else n_steps * n)
    vf = _flat(v, n)
    of = _NOTHING if out is None else _flat(out, n_steps * n)
    cf = _NOTHING if counts is None else _flat(counts, n)
    _kernels["if"](zf, vf, of, cf, n_steps, 0 if static else n, np.float32(v_threshold),
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


def _threads():
    numba = _numba
    if numba.get_num_threads() != torch.get_num_threads():
        numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def if_pool_chunk(z: torch.Tensor, v: torch.Tensor, n_steps: int, static: bool, v_threshold: float, v_reset,
                  kernel, count: bool = False, running=None):
    """The IF update of ``if_chunk`` followed by pooling with window = stride = ``kernel``: average
    pooling, or with ``running=(counts, pooled)`` (per-neuron spike counts laid out as ``v``, the
    running max per window laid out as one pooled step; both updated in place) the running max of
    spike counts. Returns (the pooled spikes [n_steps, B, C, H // kh, W // kw], each step laid out
    as ``v`` (the caller checked ``pool_layout``); with ``count``, the number of spikes, else None).
    The spikes themselves are never stored."""
    _threads()
    (kh, kw), (b, c, h, w) = kernel, v.shape
    p, q = pool_layout(v)
    fmt = torch.channels_last if p == 1 else torch.contiguous_format
    out = torch.empty((n_steps * b, c, h // kh, w // kw), dtype=z.dtype, memory_format=fmt)   # as the currents
    n = v.numel()
    totals = np.zeros(b * p * (h // kh) if count else 0, np.float64)   # spikes per block (rows of one window row)
    common = (n_steps, 0 if static else n, np.array([b * p, h, w, q], np.int64), kh, kw, np.float32(v_threshold),
              np.float32(0.0 if v_reset is None else v_reset), v_reset is not None, count)
    counts, pooled = (_NOTHING, _NOTHING) if running is None else (_flat(running[0], n), _flat(running[1], running[1].numel()))
    _kernels["if_pool"](_flat(z, n if static else n_steps * n), _flat(v, n), _flat(out, out.numel()), counts, pooled,
                        totals, *common, running is not None)
    return out.view(n_steps, b, *out.shape[1:]), (float(totals.sum()) if count else None)
