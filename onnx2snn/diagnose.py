"""Warnings for input that converts but deserves a word of why the SNN may disappoint: calibration
data that does not look like real inputs, layers that never activate on it, scales that jump by
orders of magnitude, an output that no weighted layer writes. Each is one line; the CLI prints them
as ``warning: …`` and report.json lists them."""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .calibrate import TensorStats
from .errors import Onnx2SnnError

JUMP = 100.0        # λ of a layer this many times its input's (or less by as much): suspicious
BLOCK = 4096


def calibration_warnings(x: np.ndarray, label: str = "the calibration array") -> List[str]:
    """Every sample the same: statistics from it fit one input, not the data. All zeros, or one
    value everywhere, cannot be calibrated from at all: refused."""
    lo, hi, first, same = np.inf, -np.inf, np.asarray(x[:1]), True
    for start in range(0, len(x), BLOCK):
        block = np.asarray(x[start:start + BLOCK])
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        same = same and bool(np.all(block == first))
    if lo == hi:
        what = "all zeros" if lo == 0 else f"the constant {lo:g} everywhere"
        raise Onnx2SnnError(f"{label} is {what}: no scale can be calibrated from it; give real training inputs, "
                            "preprocessed as the model expects")
    if same and len(x) > 1:
        return [f"all {len(x)} calibration samples are identical: the scales fit one input, not the data"]
    return []


REFUSE_FACTOR = 20.0     # calibration and evaluation inputs this many times apart in range: not one distribution
WARN_FACTOR = 3.0


def channel_ranges(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel (axis 1; one for 1-D samples): min, max and mean over the array, in blocks."""
    lo = hi = total = None
    count = 0
    for start in range(0, len(x), BLOCK):
        block = np.asarray(x[start:start + BLOCK], np.float64)
        flat = np.moveaxis(block, 1, 0).reshape(block.shape[1], -1) if block.ndim > 2 else block.reshape(1, -1)
        b_lo, b_hi, b_sum = flat.min(1), flat.max(1), flat.sum(1)
        lo = b_lo if lo is None else np.minimum(lo, b_lo)
        hi = b_hi if hi is None else np.maximum(hi, b_hi)
        total = b_sum if total is None else total + b_sum
        count += flat.shape[1]
    return lo, hi, total / max(count, 1)


def compare_inputs(calibration: np.ndarray, evaluation: np.ndarray, calibration_label: str,
                   evaluation_label: str) -> List[str]:
    """Calibration inputs must describe the inputs the SNN will see: per channel, their magnitudes
    (largest |value|) REFUSE_FACTOR or more apart are refused (0-255 against 0-1, a stray 1e30),
    WARN_FACTOR or more warned about, as are means further apart than half the evaluation range."""
    c_lo, c_hi, c_mean = channel_ranges(calibration)
    if c_lo.min() == c_hi.max():
        return []           # one value everywhere: the conversion refuses it as such (calibration_warnings)
    e_lo, e_hi, e_mean = channel_ranges(evaluation)
    c_mag, e_mag = np.maximum(abs(c_lo), abs(c_hi)), np.maximum(abs(e_lo), abs(e_hi))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where((c_mag == 0) & (e_mag == 0), 1.0, np.maximum(c_mag / e_mag, e_mag / c_mag))
    k = int(np.argmax(factor))
    where = f" (channel {k})" if len(factor) > 1 else ""
    text = (f"the calibration inputs {calibration_label} span [{c_lo[k]:.4g}, {c_hi[k]:.4g}]{where} but the "
            f"evaluation inputs {evaluation_label} [{e_lo[k]:.4g}, {e_hi[k]:.4g}]: {factor[k]:.3g}× apart")
    if factor[k] >= REFUSE_FACTOR:
        raise Onnx2SnnError(text + "; they cannot come from one distribution: preprocess both as the model was "
                            "trained (e.g. both 0-1)")
    if factor[k] >= WARN_FACTOR:
        return [text + "; the scales fit the calibration data, not the evaluation data"]
    shift = np.abs(c_mean - e_mean) > 0.5 * np.maximum(e_hi - e_lo, np.finfo(np.float64).tiny)
    if shift.any():
        k = int(np.argmax(shift))
        where = f" (channel {k})" if len(shift) > 1 else ""
        return [f"the calibration inputs' mean {c_mean[k]:.4g}{where} is more than half the evaluation range from "
                f"the evaluation inputs' {e_mean[k]:.4g}: preprocessed alike?"]
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


def label_warnings(output_features: int, labels: np.ndarray) -> List[str]:
    """Class labels that use at most half of the output's features: is the output the logits (a
    graph cut at a Flatten of 32 features, evaluated on labels 0-9, converts and reads 0 %)?"""
    used = int(np.max(labels)) + 1 if len(labels) else 0
    if used and 2 * used <= output_features:
        return [f"the model's output has {output_features} features but the labels use classes 0-{used - 1} only: is "
                "the output the class logits? (evaluating on a subset of the classes reads like this too)"]
    return []


def normalisation_warnings(model, x: np.ndarray) -> List[str]:
    """A model that normalises its own input ((x - mean) / std inside the graph) says what its inputs
    look like: calibration inputs whose per-channel mean is REFUSE_FACTOR or more times off the
    mean the model subtracts were preprocessed for another scale (0-255 against 0-1). Only the
    Sub/Add of a constant right at the input is read (a warning: the check has no evaluation data)."""
    from onnx import numpy_helper
    g = model.graph        # (read from the proto: no copy of every weight, as a GraphView would make)
    inits = {i.name: i for i in g.initializer}
    constants = {n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute
                 and n.attribute[0].name == "value"}
    input_name = next(i.name for i in g.input if i.name not in inits)
    node = next((n for n in g.node if n.op_type in ("Sub", "Add") and len(n.input) == 2 and n.input[0] == input_name
                 and (n.input[1] in inits or n.input[1] in constants)), None)
    if node is None:
        return []
    const = numpy_helper.to_array(inits.get(node.input[1]) or constants[node.input[1]]).astype(np.float64)
    expected = (const if node.op_type == "Sub" else -const).reshape(-1)
    _, _, mean = channel_ranges(x)
    if expected.size not in (1, mean.size):
        return []
    expected = np.broadcast_to(expected, mean.shape)
    a, b = np.abs(mean), np.abs(expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where((a > 0) & (b > 0), np.maximum(a / b, b / a), 1.0)
    k = int(np.argmax(factor))
    if factor[k] < REFUSE_FACTOR:
        return []
    where = f" (channel {k})" if mean.size > 1 else ""
    return [f"the model subtracts a mean of {expected[k]:.4g}{where} from its input ({node.name}) but the calibration "
            f"inputs' mean is {mean[k]:.4g}: {factor[k]:.3g}× apart; calibration data on another scale than the model "
            "expects (e.g. 0-1 for 0-255)?"]
