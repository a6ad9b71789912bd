"""What an evaluation measures, beyond class labels (issue 21): the task, inferred from the label and
output shapes, and its metric — counted the same way for the ANN (here, in NumPy) and for the SNN
after every time step (``snn/network.py`` adds the same counts up in torch).

=================  ===================================  ======================  ==========================
task               labels ``y`` (per sample)            output (per sample)     metric after every step
=================  ===================================  ======================  ==========================
classification     an integer class                     (K,)                    accuracy (argmax)
multilabel         K values in {0, 1}                   (K,)                    mean label accuracy
segmentation       an (H, W) class map                  (C, H, W)               pixel accuracy, mean IoU
regression         the output's values (floats)         any                     relative L2 error
=================  ===================================  ======================  ==========================

Without labels (``--eval X.npy`` alone) the ANN's own decisions are the labels: the metric is then
the SNN's agreement with the ANN (its argmax, its label decisions, its class map), or, for an output
that makes no class decision (one feature or channel, or a dense map under a Sigmoid/Tanh head: an
autoencoder, a regression), the relative L2 error ‖ŷ − y‖/‖y‖ of the SNN's output estimate against
the ANN's output — lower is better, the one metric here that is. The SNN's estimate after step t is
its membrane readout averaged over the steps counted so far, times the output scale, with the
dropped head applied (``snn/network.py``). A multi-label
decision is "logit > 0" — the output before the Sigmoid head the conversion dropped (so "> 0.5"
after it) — which a membrane readout can state; spike counts cannot go below 0.

Counts are what add up over batches and ranks: correct decisions per step (classification,
multilabel), a per-step confusion matrix (segmentation) or per-step sums of squared error and of
squared targets (regression), turned into metrics by
``metrics_from_counts``. Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .config import TASKS
from .errors import Onnx2SnnError

HEADLINE = {"classification": "accuracy", "multilabel": "label_accuracy", "segmentation": "mean_iou",
            "regression": "relative_l2"}
BOUNDED = ("Sigmoid", "Tanh")      # heads that make an output a score per label, or a dense bounded map
# decision threshold on the original model's output, by the head the conversion dropped
HEAD_THRESHOLD = {"Sigmoid": 0.5}


@dataclass(frozen=True)
class Task:
    kind: str                       # one of TASKS
    output_shape: Tuple[int, ...]   # the model output's per-sample shape
    agreement: bool = False         # the labels are the ANN's own decisions (no labels given)

    @property
    def classes(self) -> int:
        return int(self.output_shape[0]) if self.output_shape else 1

    @property
    def metric(self) -> str:
        return HEADLINE[self.kind]

    @property
    def lower_is_better(self) -> bool:
        return self.kind == "regression"

    def describe(self) -> str:
        what = {"accuracy": "accuracy", "label_accuracy": "mean label accuracy", "mean_iou": "mean IoU",
                "relative_l2": "relative L2 error"}[self.metric]
        if self.agreement:
            return f"{what} against the ANN's output" if self.lower_is_better else f"{what} (agreement with the ANN)"
        return what


def infer_task(output_shape: Sequence[int], labels: Optional[np.ndarray], n: int, head: Optional[str] = None,
               override: Optional[str] = None, where: str = "the evaluation labels") -> Task:
    """The task of an evaluation from the shapes (``override``: --task). ``labels`` None: agreement
    with the ANN, on the task the output's shape and head suggest (a Sigmoid or Tanh head:
    multilabel; (K,) with K >= 2: classification; (C, ...) with C >= 2: segmentation; else —
    one feature or channel, a dense map under a Sigmoid/Tanh head — regression)."""
    out = tuple(int(d) for d in output_shape)
    if override is not None and override not in TASKS:
        raise Onnx2SnnError(f"--task {override!r}: expected one of {', '.join(TASKS)}")
    if labels is None:
        kind = override or _kind_of_output(out, head)
        return _checked(Task(kind, out, agreement=True), None, n, where)
    per_sample = tuple(labels.shape[1:])
    if override:
        kind = override
    elif per_sample == out and np.issubdtype(labels.dtype, np.floating) and (
            len(out) != 1 or not np.isin(np.unique(labels), (0, 1)).all()):
        kind = "regression"             # values, not 0/1 targets per label
    elif per_sample == () and len(labels) == n:
        kind = "classification"
    elif len(out) >= 2 and per_sample == out[1:]:
        kind = "segmentation"
    elif per_sample == out and len(out) == 1:
        kind = "multilabel"
    else:
        raise Onnx2SnnError(f"{where} have shape {tuple(labels.shape)}, which fits no task for a model output of "
                            f"per-sample shape {out}: expected ({n},) class labels, ({n}, {', '.join(map(str, out))}) "
                            f"0/1 labels (multi-label) or float targets (regression), or ({n}, H, W) class "
                            f"maps for a (C, H, W) output")
    return _checked(Task(kind, out), labels, n, where)


def _kind_of_output(out: Tuple[int, ...], head: Optional[str]) -> str:
    """The task an output's shape and head suggest, when no labels say."""
    if len(out) == 1 and head in BOUNDED:
        return "multilabel"
    if out and out[0] >= 2 and head not in BOUNDED:
        return "classification" if len(out) == 1 else "segmentation"
    return "regression"


def _checked(task: Task, labels: Optional[np.ndarray], n: int, where: str) -> Task:
    out = task.output_shape
    if task.kind == "segmentation" and len(out) < 2:
        raise Onnx2SnnError(f"segmentation needs a (C, H, W) model output; this one is per sample {out}")
    if task.kind in ("classification", "multilabel") and len(out) != 1:
        raise Onnx2SnnError(f"{task.kind} needs a (K,) model output; this one is per sample {out}")
    if labels is None:
        return task
    expected = {"classification": (n,), "multilabel": (n, *out), "segmentation": (n, *out[1:]),
                "regression": (n, *out)}[task.kind]
    if tuple(labels.shape) != expected:
        raise Onnx2SnnError(f"{where} have shape {tuple(labels.shape)}; {task.kind} of this model expects {expected}")
    if task.kind == "regression":
        if not np.issubdtype(labels.dtype, np.number) or not np.isfinite(labels).all():
            raise Onnx2SnnError(f"{where}: regression targets must be finite numbers")
    elif task.kind == "multilabel":
        if not np.isin(np.unique(np.asarray(labels)), (0, 1)).all():
            raise Onnx2SnnError(f"{where}: multi-label targets must be 0 or 1")
    else:
        if not np.issubdtype(labels.dtype, np.integer):
            raise Onnx2SnnError(f"{where} must be integer class labels; got {labels.dtype}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= task.classes):
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise Onnx2SnnError(f"{where}: label {bad} is outside the model's classes [0, {task.classes})")
    return task


def decisions(outputs: np.ndarray, task: Task, head: Optional[str] = None) -> np.ndarray:
    """The decisions an output array (N, ...) makes: class per sample, 0/1 per label, class per
    pixel. ``head``: the op the original output ends with (Sigmoid: "> 0.5", else "> 0")."""
    outputs = np.asarray(outputs).reshape(len(outputs), *task.output_shape)
    if task.kind == "regression":
        return outputs.astype(np.float64)       # the values are the "decisions"
    if task.kind == "multilabel":
        return (outputs > HEAD_THRESHOLD.get(head, 0.0)).astype(np.int64)
    return outputs.argmax(1)


def counts(predicted: np.ndarray, labels: np.ndarray, task: Task) -> np.ndarray:
    """What adds up over batches: correct decisions (classification, multilabel), or the C×C
    confusion matrix (rows: label, columns: prediction) of a segmentation, or [Σ squared error,
    Σ squared target] of a regression."""
    if task.kind == "regression":
        y = np.asarray(labels, np.float64).reshape(predicted.shape)
        return np.array([np.sum((predicted - y) ** 2), np.sum(y ** 2)])
    if task.kind == "segmentation":
        c = task.classes
        return np.bincount((labels.reshape(-1) * c + predicted.reshape(-1)).astype(np.int64),
                           minlength=c * c).reshape(c, c)
    return np.asarray(np.sum(predicted == labels), np.int64)


def metrics_from_counts(total: np.ndarray, n: int, task: Task) -> Dict[str, np.ndarray]:
    """The task's metrics from summed counts (any leading axes, e.g. one per time step)."""
    total = np.asarray(total)
    if task.kind == "classification":
        return {"accuracy": total / max(1, n)}
    if task.kind == "multilabel":
        return {"label_accuracy": total / max(1, n * task.classes)}
    if task.kind == "regression":
        return {"relative_l2": np.sqrt(total[..., 0] / np.maximum(total[..., 1], np.finfo(np.float64).tiny))}
    diag = np.diagonal(total, axis1=-2, axis2=-1).astype(np.float64)
    union = total.sum(-1) + total.sum(-2) - diag
    present = union > 0
    iou = np.where(present, diag / np.maximum(union, 1), 0.0)
    return {"mean_iou": iou.sum(-1) / np.maximum(present.sum(-1), 1),
            "pixel_accuracy": diag.sum(-1) / np.maximum(total.sum((-2, -1)), 1)}


def score(outputs: np.ndarray, labels: np.ndarray, task: Task, head: Optional[str] = None) -> Dict[str, float]:
    """The metrics of one output array (the ANN's) against labels."""
    return {k: float(v) for k, v in
            metrics_from_counts(counts(decisions(outputs, task, head), labels, task), len(outputs), task).items()}
