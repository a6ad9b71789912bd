"""Check with onnxruntime that the written spiking graph, run as an ANN, is the original up to the
known scales (its function bodies are the ANN ops; ``graph/spiking.py``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import onnx

from .calibrate import stream_batches
from .errors import VerificationError
from .normalize import Plan

# Rescaling is exact in real numbers; float32 rounding through a deep graph stays well below this.
TOLERANCE = 1e-4
# Samples compared: enough to reach every unit of every layer, few enough to take a second.
SAMPLES = 256


@dataclass
class Verification:
    """What ``verify`` compared, on how many calibration images."""
    errors: Dict[str, float]        # relative error per normalised tensor, in graph order
    samples: int
    agreement: float                # share of the images where the graph output's argmax is the original's

    def summary(self) -> str:
        return (f"{len(self.errors)} rescaled tensors x lambda match the original within {TOLERANCE:g} "
                f"(max relative error {max(self.errors.values(), default=0):.2g}) and its argmax agrees on "
                f"{round(self.agreement * self.samples)} of {self.samples} calibration images")


def needs_cleaned(original: onnx.ModelProto, plan: Plan) -> bool:
    """Does the verification need the cleaned graph (a normalised tensor the original lacks)?"""
    names = _tensor_names(original)
    return any(t not in names for t in plan.stat_tensors)


def verify(original: onnx.ModelProto, cleaned: Optional[onnx.ModelProto], written: onnx.ModelProto,
           input_name: str, plan: Plan, x: np.ndarray, max_samples: int = SAMPLES,
           batch_size: int = 100) -> Verification:
    """Relative error max|written·λ − original| / max|original| per normalised tensor, and the
    argmax agreement of the graph outputs; raises ``VerificationError`` naming every tensor above
    ``TOLERANCE``, the first first. ``written``: the spiking graph as saved (or any normalised graph).

    Tensors are compared against the original model where it has them (every ReLU output and the
    graph output keep their names through the passes), else against ``cleaned`` (needed only then:
    ``needs_cleaned``). The graphs run side by side one batch at a time and only the two maxima are
    kept per tensor, so memory is that of one batch's activations (an ImageNet VGG holds about
    50 MB of them per image)."""
    x = x[:max_samples]
    owner = {name: tensor for name, tensor in plan.merge_stats.items() if tensor}
    owner = {t: f"{n} (Add)" for n, t in owner.items()}
    owner.update({l.stat_tensor: f"{l.node} ({l.op})" for l in plan.layers if l.stat_tensor})
    names = plan.stat_tensors
    # the graph outputs: the same tensor, or the written one a trailing Softmax short (argmax alike)
    output, written_output = original.graph.output[0].name, written.graph.output[0].name
    original_names = _tensor_names(original)
    from_original = [t for t in names if t in original_names]
    from_original += [output] * (output not in from_original)
    from_cleaned = [t for t in names if t not in original_names]
    if from_cleaned and cleaned is None:
        raise ValueError(f"verify needs the cleaned graph for {from_cleaned[0]!r}")
    streams = [(tensors, stream_batches(model, input_name, tensors, x, batch_size))
               for model, tensors in ((original, from_original), (cleaned, from_cleaned),
                                      (written, names + [written_output] * (written_output not in names)))
               if tensors]
    scales = {t: np.asarray(plan.scales[t], np.float32)[None] for t in names}
    worst = dict.fromkeys(names, 0.0)    # max |written·λ − reference| so far
    peak = dict.fromkeys(names, 0.0)     # max |reference| so far
    agree = 0
    for batches in zip(*(stream for _, stream in streams)):
        values = [dict(zip(tensors, batch_values)) for (tensors, _), (_, batch_values) in zip(streams, batches)]
        got, reference = values[-1], {k: v for part in values[:-1] for k, v in part.items()}
        n = len(got[written_output])
        agree += int(np.sum(got[written_output].reshape(n, -1).argmax(1) == reference[output].reshape(n, -1).argmax(1)))
        for tensor in names:
            ref = reference[tensor]
            # np.maximum, not max(): a NaN must stay (and fail the check), not lose the comparison
            worst[tensor] = float(np.maximum(worst[tensor], np.max(np.abs(got[tensor] * scales[tensor] - ref))))
            peak[tensor] = float(np.maximum(peak[tensor], np.max(np.abs(ref))))
    errors, failed = {}, []
    for tensor in names:
        err = worst[tensor] / max(peak[tensor], 1e-12)
        errors[tensor] = err
        if not err <= TOLERANCE:
            failed.append(f"layer {owner[tensor]}, tensor {tensor!r}: relative error {err:.3g} "
                          f"(×λ={float(np.max(scales[tensor])):.6g})")
    if failed:
        raise VerificationError(f"verification failed at {len(failed)} of {len(names)} normalised tensors (tolerance "
                                f"{TOLERANCE:g} between the written graph run as an ANN and the original): "
                                + "; ".join(failed))
    return Verification(errors, len(x), agree / max(len(x), 1))


def _tensor_names(model: onnx.ModelProto) -> set:
    names = {i.name for i in model.graph.input}
    for n in model.graph.node:
        names.update(n.output)
    return names
