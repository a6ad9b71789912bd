"""The Numba code of ``cpu_kernel.py`` (which imports this module only when a CPU kernel is first
needed, after sizing Numba's thread pool). Module-level functions: Numba caches their machine code
beside this file (a jitted closure that calls another was compiled afresh by every process: 2 s).
"""
import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic, overload

BLOCK = 4096   # membrane potentials per block of ``if_kernel``: 16 KiB of float32, half of a 32 KiB L1 data cache


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
# every neuron, so LLVM takes the branches out of the inner loop. ``shift`` (None, or per neuron,
# laid out as ``v``) is added to each step's current — the bias calibration's trial shifts, without
# a shifted copy of the currents; None is a type of its own to Numba, which compiles the branch
# away (a runtime flag there kept the fused kernel's loop from vectorising: 3.4× slower).
@numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def if_kernel(z, v, out, counts, shift, n_steps, z_step, threshold, v_reset, hard, write, count):
    n = v.shape[0]
    for b in numba.prange((n + BLOCK - 1) // BLOCK):
        lo, hi = b * BLOCK, min(b * BLOCK + BLOCK, n)
        vb, cb = v[lo:hi], counts[lo:hi]
        sb = vb if shift is None else shift[lo:hi]   # (vb: a stand-in of the same type, never read)
        for t in range(n_steps):
            zb = z[t * z_step + lo:t * z_step + hi]
            ob = out[t * n + lo:t * n + hi]
            for i in range(hi - lo):
                zi = load(zb, i)
                if shift is not None:   # z + shift, rounded as torch rounds it, then added to v
                    zi = zi + sb[i]
                x = vb[i] + zi
                spike = np.float32(x >= threshold)
                if write:
                    store_spike(ob, i, x >= threshold)
                if count:
                    cb[i] += spike
                if hard:
                    vb[i] = v_reset if x >= threshold else x
                else:
                    vb[i] = x - spike * threshold


@numba.njit(inline="always")
def if_row(v, z, shift, row_shift, spikes, counts, threshold, v_reset, hard, keep_counts):
    """One row of ``if_kernel``'s update: its spikes (0/1) into ``spikes``, added to ``counts``
    unless ``keep_counts`` is None; ``row_shift`` added to the currents unless ``shift`` is None (then
    it is a stand-in, never read); returns how many fired (an integer sum vectorises, a float one
    not). The None tests are compiled away."""
    fired = 0
    for i in range(v.shape[0]):
        zi = load(z, i)
        if shift is not None:
            zi = zi + row_shift[i]
        x = v[i] + zi
        spike = np.float32(x >= threshold)
        spikes[i] = spike
        if keep_counts is not None:
            counts[i] += spike
        fired += x >= threshold
        if hard:
            v[i] = v_reset if x >= threshold else x
        else:
            v[i] = x - spike * threshold
    return fired


# The IF update fused with the pooling that alone reads its spikes, windows = strides, no
# padding: average pooling (``pooled`` None: compiled as a kernel of its own, a runtime flag kept
# the bfloat16 loops from vectorising, 3× slower), or the running max of spike counts of
# ``pooling.RunningMaxPool`` — per neuron its count so far (``count``), per window the largest
# of them after the last step (``pooled``), each step's output how much that max rose (0 or 1).
# The spikes stay in cache; only the pooled values reach memory. Memory is viewed as
# [B·P, H, W, Q] (NHWC: P=1, Q=C; NCHW: P=C, Q=1); a block is one image's rows of one output
# row, all columns and Q. Rows and columns past the last whole window are updated and counted
# but pooled into nothing, as the floor-mode poolings drop them.
@numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def if_pool_kernel(z, v, out, count, pooled, totals, shift, n_steps, z_step, shape, kh, kw, threshold, v_reset,
                   hard, total):
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
                vr, cr = v[lo:lo + row_len], count[lo:lo + row_len]
                fired = if_row(vr, z[t * z_step + lo:t * z_step + lo + row_len], shift,
                               vr if shift is None else shift[lo:lo + row_len], spikes, cr,
                               threshold, v_reset, hard, pooled)
                if total:
                    totals[blk] += fired
                if y < (oy + 1) * kh:                # rows past the last whole window pool into nothing
                    for ox in range(out_w):
                        for dx in range(kw):
                            src = (ox * kw + dx) * q_size
                            for q in range(q_size):
                                if pooled is not None:
                                    acc[ox * q_size + q] = max(acc[ox * q_size + q], cr[src + q])
                                else:
                                    acc[ox * q_size + q] += spikes[src + q]
            pb = (bp * out_h + oy) * out_row
            base = t * out_step + pb
            for j in range(out_row):
                if pooled is not None:
                    store(out, base + j, acc[j] - pooled[pb + j])
                    pooled[pb + j] = acc[j]
                else:
                    store(out, base + j, acc[j] * scale)
