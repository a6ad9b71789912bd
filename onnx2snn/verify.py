"""Check with onnxruntime that the normalised graph is the original one up to the known scales."""
from __future__ import annotations

from typing import Dict

import numpy as np
import onnx

from .calibrate import run
from .errors import VerificationError
from .normalize import Plan

# Rescaling is exact in real numbers; float32 rounding through a deep graph stays well below this.
TOLERANCE = 1e-4
# Samples compared: enough to reach every unit of every layer, few enough to take a second.
SAMPLES = 256


def verify(original: onnx.ModelProto, cleaned: onnx.ModelProto, edited: onnx.ModelProto, input_name: str,
           plan: Plan, x: np.ndarray, max_samples: int = SAMPLES) -> Dict[str, float]:
    """Relative error max|edited·λ − original| / max|original| per normalised tensor, in graph
    order; raises ``VerificationError`` naming every tensor above ``TOLERANCE``, the first first.

    Tensors are compared against the original model where it has them (every ReLU output and the
    graph output keep their names through the passes), else against the cleaned graph."""
    x = np.asarray(x[:max_samples])
    owner = {name: tensor for name, tensor in plan.merge_stats.items() if tensor}
    owner = {t: f"{n} (Add)" for n, t in owner.items()}
    owner.update({l.stat_tensor: f"{l.node} ({l.op})" for l in plan.layers if l.stat_tensor})
    names = plan.stat_tensors
    original_names = _tensor_names(original)
    from_original = [t for t in names if t in original_names]
    from_cleaned = [t for t in names if t not in original_names]
    reference = dict(zip(from_original, run(original, input_name, x, from_original))) if from_original else {}
    if from_cleaned:
        reference.update(zip(from_cleaned, run(cleaned, input_name, x, from_cleaned)))
    got = dict(zip(names, run(edited, input_name, x, names)))
    errors, failed = {}, []
    for tensor in names:
        ref = reference[tensor]
        scale = plan.scales[tensor]
        err = float(np.max(np.abs(got[tensor].astype(np.float64) * scale[None] - ref)) /
                    max(float(np.max(np.abs(ref))), 1e-12))
        errors[tensor] = err
        if not err <= TOLERANCE:
            failed.append(f"layer {owner[tensor]}, tensor {tensor!r}: relative error {err:.3g} "
                          f"(×λ={float(np.max(scale)):.6g})")
    if failed:
        raise VerificationError(f"verification failed at {len(failed)} of {len(names)} normalised tensors (tolerance "
                                f"{TOLERANCE:g} between the normalised graph and the original): " + "; ".join(failed))
    return errors


def _tensor_names(model: onnx.ModelProto) -> set:
    names = {i.name for i in model.graph.input}
    for n in model.graph.node:
        names.update(n.output)
    return names
