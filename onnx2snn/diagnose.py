"""Warnings for input that converts but deserves a word of why the SNN may disappoint: calibration
data that does not look like real inputs, layers that never activate on it, scales that jump by
orders of magnitude, an output that no weighted layer writes. Each is one line; the CLI prints them
as ``warning: …`` and report.json lists them."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from .calibrate import TensorStats

JUMP = 100.0        # λ of a layer this many times its input's (or less by as much): suspicious
BLOCK = 4096


def calibration_warnings(x: np.ndarray) -> List[str]:
    """All zeros, or every sample the same: statistics from it say nothing about real inputs."""
    lo, hi, first, same = np.inf, -np.inf, np.asarray(x[:1]), True
    for start in range(0, len(x), BLOCK):
        block = np.asarray(x[start:start + BLOCK])
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        same = same and bool(np.all(block == first))
    if lo == hi == 0:
        return ["the calibration array is all zeros: every scale will be a guess; give real training inputs"]
    if same and len(x) > 1:
        return [f"all {len(x)} calibration samples are identical: the scales fit one input, not the data"]
    if lo == hi:
        return [f"the calibration array is constant ({lo:g}): give real training inputs"]
    return []


def layer_warnings(layers, stats: Dict[str, TensorStats], output_from_weighted: bool) -> List[str]:
    """Dead layers, λ jumps between consecutive layers, an output not written by a weighted layer."""
    out = []
    for l in layers:
        s = stats.get(l.stat_tensor) if l.stat_tensor else None
        if s is not None and s.max <= 0:
            out.append(f"{l.node} ({l.op}): its activation {l.stat_tensor!r} is never positive on the calibration "
                       "data (a dead layer: its neurons will not fire); check the calibration data's scale")
        lam_in = max(l.lambda_in) if isinstance(l.lambda_in, list) else l.lambda_in
        lam = max(l.lambda_out) if isinstance(l.lambda_out, list) else l.lambda_out
        if lam_in > 0 and lam > 0 and not (1 / JUMP <= lam / lam_in <= JUMP):
            out.append(f"{l.node} ({l.op}): λ {lam:.3g} is {lam / lam_in:.3g}× its input's "
                       f"{lam_in:.3g}; calibration data on another scale than the training data (e.g. 0-255 for "
                       "0-1) often causes this")
    if not output_from_weighted:
        out.append("the graph output is not written by a weighted layer (Conv/Gemm) through scale-preserving ops; "
                   "its readout reads the spikes or pooled spikes as they come")
    return out
