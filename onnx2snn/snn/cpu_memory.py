"""Keep freed memory in the process while a CPU simulation runs (glibc only).

Each chunk of time steps allocates tensors of tens of MB (``[steps·B, C, H, W]`` spikes and
currents). glibc serves allocations that large with a fresh ``mmap`` and unmaps them when freed, so
every chunk the kernel zero-fills every page again: on the MNIST example at T=128 that page faulting
took as long as the simulation itself (14 million minor faults, a third of the run in the kernel).
PyTorch's CPU performance guide answers this with jemalloc or tcmalloc; this module does the same
in-process with glibc's own knobs: no ``mmap`` for large blocks and no trimming of the heap, so a
freed chunk's memory is reused by the next. The settings are put back (and the heap trimmed) when
the simulation ends. Elsewhere (macOS, musl) it does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4                 # mallopt parameters (malloc.h)
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536   # glibc's documented defaults
NO_TRIM = 2**31 - 1                                   # the largest int mallopt takes: 2 GiB

_lock = threading.Lock()
_depth = 0


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # pragma: no cover - no C library found by that name
        return None


_LIBC = _libc()


@contextlib.contextmanager
def keep_freed_memory():
    """Within the block, freed large blocks stay in the heap for reuse (nested uses are fine)."""
    global _depth
    if _LIBC is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _LIBC.mallopt(M_MMAP_MAX, 0)
            _LIBC.mallopt(M_TRIM_THRESHOLD, NO_TRIM)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _LIBC.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                _LIBC.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
                _LIBC.malloc_trim(0)   # give the heap back to the system
