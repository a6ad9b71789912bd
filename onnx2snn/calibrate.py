"""Activation statistics with onnxruntime, streamed over the calibration array.

One session runs a copy of the graph in which every tensor that needs statistics is an extra
output. Batches are read from the (memory-mapped) array one at a time. Per tensor we keep the max
and, for the p-th percentile, only the largest K values seen so far, where K is the number of
values at or above the percentile's lower interpolation rank — so the result equals
``np.percentile(all_values, p)`` (linear interpolation) exactly, while memory is (1 − p/100) of
the activations (0.1 % at p = 99.9) rather than all of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from .graph import external
from .thresholds import StreamingHistogram


@dataclass
class TensorStats:
    max: float
    percentile: float
    p: float
    count: int
    histogram: Optional[StreamingHistogram] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"max": self.max, "percentile": self.percentile, "p": self.p, "count": self.count}


class StreamingPercentile:
    """Exact ``np.percentile(values, p)`` over values given in batches, keeping only the top K."""

    def __init__(self, total: int, p: float):
        self.total, self.p = int(total), float(p)
        self.rank = (self.total - 1) * self.p / 100.0           # np.percentile's 'linear' position
        self.k = self.total - int(math.floor(self.rank))        # values from the lower rank upwards
        self.top = np.empty(0, np.float32)
        self.seen = 0
        self.max = -math.inf

    def update(self, values: np.ndarray) -> None:
        values = values.reshape(-1)
        self.seen += values.size
        if values.size:
            self.max = max(self.max, float(values.max()))
        if self.top.size == self.k:
            # a value at or below the K-th largest so far cannot change the top K's values: one
            # comparison pass instead of a partition of the whole batch (0.46 of MNIST's 0.64 s)
            values = values[values > self.top.min()]
        if values.size > self.k:
            values = np.partition(values, values.size - self.k)[-self.k:]
        merged = np.concatenate([self.top, values.astype(np.float32, copy=False)])
        if merged.size > self.k:
            merged = np.partition(merged, merged.size - self.k)[-self.k:]
        self.top = merged

    def result(self) -> float:
        if self.seen != self.total:
            raise RuntimeError(f"saw {self.seen} values, expected {self.total}")
        top = np.sort(self.top)
        lo = int(math.floor(self.rank)) - (self.total - self.k)  # index of the lower rank in `top`
        frac = self.rank - math.floor(self.rank)
        if lo + 1 < top.size:
            return float(top[lo] + frac * (top[lo + 1] - top[lo]))
        return float(top[lo])


def session(model: onnx.ModelProto, extra_outputs: Sequence[str] = ()) -> ort.InferenceSession:
    """An onnxruntime CPU session with graph optimisation off, exposing ``extra_outputs`` (built from
    a file with external data above protobuf's 2 GiB: ``graph/external.py``)."""
    existing = {o.name for o in model.graph.output}
    infos = {vi.name: vi for vi in model.graph.value_info}
    outputs = [infos.get(name) or onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
               for name in extra_outputs if name not in existing]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return external.session_for(model, opts, ["CPUExecutionProvider"], outputs)


def collect_stats(model: onnx.ModelProto, input_name: str, tensors: Sequence[str], x: np.ndarray,
                  p: float = 99.9, batch_size: int = 100,
                  progress: Optional[Callable[[int], None]] = None,
                  histograms: bool = False, absolute: Sequence[str] = ()) -> Dict[str, TensorStats]:
    """Max and p-th percentile of every tensor in ``tensors`` over all samples of ``x`` (and, with
    ``histograms``, a histogram of each for the threshold search); of |values| for the tensors in
    ``absolute`` (two-sided neurons: their threshold bounds both signs)."""
    tensors = list(dict.fromkeys(tensors))
    absolute = set(absolute)
    trackers: Dict[str, StreamingPercentile] = {}
    hists = {name: StreamingHistogram() for name in tensors} if histograms else {}
    n = len(x)
    for batch, values in stream_batches(model, input_name, tensors, x, batch_size):
        for name, v in zip(tensors, values):
            v = np.abs(v) if name in absolute else v
            if name not in trackers:  # per-sample size is known from the first batch
                trackers[name] = StreamingPercentile(n * (v.size // len(batch)), p)
            trackers[name].update(v)
            if histograms:
                hists[name].update(v)
        if progress:
            progress(len(batch))
    return {name: TensorStats(t.max, t.result(), p, t.total, hists.get(name)) for name, t in trackers.items()}


def collect_histograms(model: onnx.ModelProto, input_name: str, tensors: Sequence[str], x: np.ndarray,
                       batch_size: int = 100, per_channel: Sequence[str] = (),
                       absolute: Sequence[str] = ()) -> Dict[str, StreamingHistogram]:
    """A histogram of every tensor in ``tensors`` over all samples of ``x`` (one per channel for
    those in ``per_channel``; of |values| for those in ``absolute``)."""
    absolute = set(absolute)
    from .thresholds import ChannelHistograms
    tensors = list(dict.fromkeys(tensors))
    hists = {name: ChannelHistograms() if name in per_channel else StreamingHistogram() for name in tensors}
    for _, values in stream_batches(model, input_name, tensors, x, batch_size):
        for name, v in zip(tensors, values):
            hists[name].update(np.abs(v) if name in absolute else v)
    return hists


def stream_batches(model: onnx.ModelProto, input_name: str, tensors: List[str], x: np.ndarray, batch_size: int):
    """(batch, values of ``tensors``) for each batch of ``x``, read from the array one at a time."""
    sess = session(model, tensors)
    for start in range(0, len(x), batch_size):
        batch = np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32)
        yield batch, sess.run(tensors, {input_name: batch})


def run(model: onnx.ModelProto, input_name: str, x: np.ndarray, outputs: Sequence[str],
        batch_size: int = 100) -> List[np.ndarray]:
    """Run ``model`` over ``x`` in batches; return the requested tensors concatenated."""
    parts: List[List[np.ndarray]] = [[] for _ in outputs]
    for _, values in stream_batches(model, input_name, list(outputs), x, batch_size):
        for i, v in enumerate(values):
            parts[i].append(v)
    return [np.concatenate(p) for p in parts]
