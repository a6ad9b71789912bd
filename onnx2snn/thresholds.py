"""Thresholds chosen for the target T: each layer's λ minimises the error between its ANN activation
and the rate a T-step IF neuron can express.

An IF neuron with threshold θ = λ, initial potential v₀·θ and reset by subtraction, driven for T steps
by a constant current a, fires ``clip(floor(a·T/λ + v₀), 0, T)`` times; read as a rate times λ it
expresses

    q_T(a; λ) = (λ/T) · clip(floor(a·T/λ + v₀), 0, T)

A large λ (the max) wastes resolution on rare outliers; a small one clips too much. The fixed
percentile of the seed ignores T; here λ = argmin Σ (a − q_T(a; λ))² over the calibration
activations (Li et al., ICML 2021, searched the same objective). The sum is evaluated on a streaming
histogram of each activation (``StreamingHistogram``: bins merge pairwise when the range doubles, so
memory is fixed and the binning exact), for a grid of candidate λ up to the max.

The search runs in two rounds: the first on the ANN's activations, the second on a copy of the graph
in which every searched activation is clipped at its first-round λ, as the SNN clips it (``clipped_model``), so each
layer's λ sees what its converted upstream layers deliver.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Tuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph.view import onnx_opset

BINS = 8192        # histogram resolution: well below the quantisation step θ/T for T ≤ 1024 at typical λ/max
CHANNEL_BINS = 2048  # per channel (per-channel thresholds): memory C × 2048 counts per layer
CANDIDATES = 256   # λ grid: max·k/256, k = 1…256


class StreamingHistogram:
    """Counts of the non-negative values seen, in ``BINS`` equal bins over [0, range).

    Negative values count as 0 (an IF neuron does not fire for them, and neither does the ReLU). When
    a value reaches the range, the range doubles and pairs of bins merge: no value is ever re-binned
    approximately, and memory does not depend on how many values were seen."""

    def __init__(self, bins: int = BINS):
        self.counts = np.zeros(bins, np.int64)
        self.range = 0.0
        self.max = 0.0

    def update(self, values: np.ndarray) -> None:
        v = np.maximum(values.reshape(-1), 0)
        if not v.size:
            return
        top = float(v.max())
        self.max = max(self.max, top)
        if self.range == 0.0:
            self.range = _power_of_two_above(top) if top > 0 else 0.0
        while top >= self.range > 0:
            self.counts = self.counts.reshape(-1, 2).sum(1)
            self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
            self.range *= 2
        if self.range == 0.0:  # all zeros so far
            self.counts[0] += v.size
            return
        index = np.minimum((v * (len(self.counts) / self.range)).astype(np.int64), len(self.counts) - 1)
        self.counts += np.bincount(index, minlength=len(self.counts))

    def centers(self) -> np.ndarray:
        width = self.range / len(self.counts) if self.range else 0.0
        return (np.arange(len(self.counts)) + 0.5) * width


class ChannelHistograms:
    """One ``StreamingHistogram`` per channel (axis 1 of ``(N, C, ...)`` values), for per-channel
    thresholds; fewer bins each, so that a 512-channel layer stays small."""

    def __init__(self, bins: int = CHANNEL_BINS):
        self.bins = bins
        self.channels: List[StreamingHistogram] = []

    def update(self, values: np.ndarray) -> None:
        per_channel = np.moveaxis(values, 1, 0).reshape(values.shape[1], -1)
        if not self.channels:
            self.channels = [StreamingHistogram(self.bins) for _ in range(len(per_channel))]
        for hist, v in zip(self.channels, per_channel):
            hist.update(v)

    @property
    def max(self) -> float:
        return max((h.max for h in self.channels), default=0.0)


def _power_of_two_above(x: float) -> float:
    return 2.0 ** (math.floor(math.log2(x)) + 1)


def quantised(a: np.ndarray, lam: float, T: int, v_init: float) -> np.ndarray:
    """q_T(a; λ): what T steps of an IF neuron with threshold λ express for a constant input a."""
    return (lam / T) * np.clip(np.floor(a * (T / lam) + v_init), 0, T)


def quantisation_error(hist: StreamingHistogram, lams: np.ndarray, T: int, v_init: float) -> np.ndarray:
    """Σ count·(a − q_T(a; λ))² over the histogram, for each candidate λ (mean per value)."""
    used = np.nonzero(hist.counts)[0]
    a, n = hist.centers()[used], hist.counts[used].astype(np.float64)
    errors = np.empty(len(lams))
    for i, lam in enumerate(lams):
        errors[i] = np.dot(n, (a - quantised(a, lam, T, v_init)) ** 2)
    return errors / max(n.sum(), 1.0)


def search_threshold(hist: StreamingHistogram, T: int, v_init: float) -> float:
    """The candidate λ (a grid up to the max) with the smallest T-step quantisation error."""
    if hist.max <= 0:
        return 0.0
    lams = hist.max * np.arange(1, CANDIDATES + 1) / CANDIDATES
    errors = quantisation_error(hist, lams, T, v_init)
    return float(lams[int(np.argmin(errors))])  # argmin: the smallest λ among equals


def clipped_model(model: onnx.ModelProto, lambdas: Dict[str, float]) -> onnx.ModelProto:
    """A copy of ``model`` in which each activation tensor of ``lambdas`` (a ReLU/Clip output, not a
    graph output) is clipped at its λ, as the SNN's neurons clip it: ``t ← Min(t, λ)``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    graph_outputs = {o.name for o in g.output}
    opset = onnx_opset(out)
    nodes = []
    for node in g.node:
        nodes.append(node)
        for name in node.output:
            if name in lambdas and name not in graph_outputs:
                raw = name + "/unclipped"  # consumers keep reading ``name``, now the clip's output
                node.output[list(node.output).index(name)] = raw
                lam = name + "/lambda"
                g.initializer.append(numpy_helper.from_array(np.array(lambdas[name], np.float32), lam))
                if out.ir_version < 4:     # IR 3: every initializer is also a graph input
                    g.input.append(helper.make_tensor_value_info(lam, onnx.TensorProto.FLOAT, []))
                if opset >= 8:
                    nodes.append(helper.make_node("Min", [raw, lam], [name], name=name + "/clip"))
                else:                      # Min broadcasts from opset 8; Sub and Relu do at 7: t - relu(t - λ)
                    over, excess = name + "/over", name + "/excess"
                    nodes += [helper.make_node("Sub", [raw, lam], [over], name=name + "/clip_over"),
                              helper.make_node("Relu", [over], [excess], name=name + "/clip_excess"),
                              helper.make_node("Sub", [raw, excess], [name], name=name + "/clip")]
    del g.node[:]
    g.node.extend(nodes)
    return out


def search_thresholds(hists: Dict[str, StreamingHistogram], T: int, v_init: float,
                      tensors: Iterable[str]) -> Dict[str, Tuple[float, str]]:
    """λ (an array of one per channel for ``ChannelHistograms``) and where it came from, per tensor."""
    out = {}
    for t in tensors:
        h = hists[t]
        if isinstance(h, ChannelHistograms):
            out[t] = (np.array([search_threshold(c, T, v_init) for c in h.channels]), f"T={T} per-channel search of {t}")
        else:
            out[t] = (search_threshold(h, T, v_init), f"T={T} search of {t}")
    return out
