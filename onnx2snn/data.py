"""Load and check calibration (``.npy``) and labelled evaluation (``.npz`` with x, y) arrays.

Arrays are memory-mapped where the format allows, so their length costs no memory; the checks
stream over them in blocks.
"""
from __future__ import annotations

import os
import zipfile
from typing import Optional, Tuple

import numpy as np

from .errors import Onnx2SnnError, first_line
from .paths import require_file

_BLOCK = 4096  # samples per block when streaming checks


def load_calibration(path: str, sample_shape: Tuple[int, ...]) -> np.ndarray:
    """Memory-map a ``.npy`` calibration array and check it against the model's input shape."""
    require_file(path, "calibration file")
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        raise Onnx2SnnError(f"{path!r} is not a NumPy .npy array ({first_line(e)})") from None
    if not isinstance(x, np.ndarray):
        raise Onnx2SnnError(f"{path!r} is a .npz archive; the calibration data must be one .npy array")
    check_inputs(x, sample_shape, f"calibration array {path!r}")
    return x


def load_labelled(path, sample_shape: Tuple[int, ...], classes: Optional[int] = None
                  ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Evaluation data: ``x`` (inputs) and ``y`` (labels: one per sample, or per label or pixel;
    ``tasks.infer_task`` checks them against the model's output) from an ``.npz``, a folder
    holding ``x.npy`` and ``y.npy``, a pair of ``.npy`` paths, or one ``.npy`` of inputs alone
    (``y`` None: the evaluation is agreement with the ANN). ``.npy`` inputs are memory-mapped
    (streamed per batch: any size runs in bounded memory); an ``.npz`` is read by NumPy's zip
    reader, which loads each array it is asked for. ``classes``: class labels must lie in
    [0, classes)."""
    if isinstance(path, (list, tuple)):
        if len(path) == 2:
            return _load_npy_pair(path[0], path[1], sample_shape, classes)
        path = path[0]
    if str(path).endswith(".npy"):
        require_file(path, "evaluation file")
        try:
            x = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:
            raise Onnx2SnnError(f"{path!r} is not a NumPy .npy array ({first_line(e)})") from None
        check_inputs(x, sample_shape, f"evaluation array {path!r}")
        return x, None
    if os.path.isdir(path):
        return _load_npy_pair(os.path.join(path, "x.npy"), os.path.join(path, "y.npy"), sample_shape, classes)
    require_file(path, "evaluation file")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:
        raise Onnx2SnnError(f"{path!r} is not a NumPy .npz archive ({first_line(e)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise Onnx2SnnError(f"{path!r} is a single array; evaluation data must be an .npz with arrays x and y")
    missing = [k for k in ("x", "y") if k not in archive.files]
    if missing:
        raise Onnx2SnnError(f"evaluation file {path!r} lacks array(s) {', '.join(missing)} "
                            f"(has: {', '.join(archive.files) or 'none'})")
    try:
        x, y = archive["x"], archive["y"]
    except (zipfile.BadZipFile, ValueError) as e:
        raise Onnx2SnnError(f"evaluation file {path!r} cannot be read: {first_line(e)}") from None
    check_inputs(x, sample_shape, f"evaluation array {path!r}[x]")
    return x, _check_labels(y, len(x), classes, path)


def _load_npy_pair(x_path: str, y_path: str, sample_shape, classes) -> Tuple[np.ndarray, np.ndarray]:
    arrays = []
    for p in (x_path, y_path):
        require_file(p, "evaluation file")
        try:
            arrays.append(np.load(p, mmap_mode="r", allow_pickle=False))
        except Exception as e:
            raise Onnx2SnnError(f"{p!r} is not a NumPy .npy array ({first_line(e)})") from None
        if not isinstance(arrays[-1], np.ndarray):
            raise Onnx2SnnError(f"{p!r} is an .npz archive; give .npy files (or one .npz with x and y)")
    x, y = arrays
    check_inputs(x, sample_shape, f"evaluation array {x_path!r}")
    return x, _check_labels(np.asarray(y), len(x), classes, y_path)


def _check_labels(y: np.ndarray, n: int, classes: Optional[int], path: str) -> np.ndarray:
    """Labels one per sample, numbers; class labels (1-D) also integers in range. Multi-label
    targets and class maps are checked against the model's output by ``tasks.infer_task``."""
    if y.ndim == 0 or len(y) != n or not (np.issubdtype(y.dtype, np.integer) or
                                          (y.ndim > 1 and np.issubdtype(y.dtype, np.number))):
        raise Onnx2SnnError(f"evaluation file {path!r}: y must be integer labels of shape ({n},) (or ({n}, K) "
                            f"0/1 targets, ({n}, H, W) class maps); got {y.dtype} {tuple(y.shape)}")
    if y.ndim > 1:
        return np.asarray(y)
    if len(y) and (int(y.min()) < 0 or (classes is not None and int(y.max()) >= classes)):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise Onnx2SnnError(f"evaluation file {path!r}: label {bad} is outside the model's classes "
                            f"[0, {classes if classes is not None else 'K'})")
    return y.astype(np.int64)


def check_inputs(x: np.ndarray, sample_shape: Tuple[int, ...], label: str) -> None:
    """Shape (N, *sample_shape), float32, non-empty, finite: each problem a one-line error."""
    expected = "(N, " + ", ".join(map(str, sample_shape)) + ")"
    if x.ndim != len(sample_shape) + 1 or tuple(x.shape[1:]) != tuple(sample_shape):
        raise Onnx2SnnError(f"{label} has shape {tuple(x.shape)}; the model expects {expected}")
    if x.dtype != np.float32:
        raise Onnx2SnnError(f"{label} has dtype {x.dtype}; expected float32 (convert with x.astype(np.float32))")
    if len(x) == 0:
        raise Onnx2SnnError(f"{label} is empty; expected at least one sample of shape {expected}")
    for start in range(0, len(x), _BLOCK):
        block = np.asarray(x[start:start + _BLOCK])
        if not np.isfinite(block).all():
            bad = start + int(np.argmax(~np.isfinite(block).reshape(len(block), -1).all(axis=1)))
            raise Onnx2SnnError(f"{label} contains NaN or infinite values (first in sample {bad})")

