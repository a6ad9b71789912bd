"""Scale arrays (normalize.py): a tensor of the edited graph is the original divided by its scale,
an array broadcastable to the tensor's per-sample shape, kept as small as it can be."""
from __future__ import annotations

import numpy as np


def compress(s: np.ndarray) -> np.ndarray:
    """Shrink every axis along which ``s`` is constant to length 1."""
    for axis in range(s.ndim):
        if s.shape[axis] > 1 and np.all(s == np.take(s, [0], axis=axis)):
            s = np.take(s, [0], axis=axis)
    return s


def channel_scale(value, rank: int) -> np.ndarray:
    """A scale for a tensor of per-sample rank ``rank``: one value, or one per channel (axis 0)."""
    if not np.ndim(value):
        return uniform(float(value), rank)
    v = np.asarray(value, np.float64)
    return v.reshape(len(v), *([1] * (rank - 1)))


def uniform(value: float, rank: int) -> np.ndarray:
    """One scale for every element of a tensor of per-sample rank ``rank``."""
    return np.full((1,) * rank, float(value))
