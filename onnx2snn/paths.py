"""Input files and the names derived from them; light enough for the CLI to use before the heavy imports."""
from __future__ import annotations

import os


def require_file(path: str, what: str) -> None:
    """Raise the one-line error for an input file that is not there (``what``: "model file", …)."""
    from .errors import Onnx2SnnError
    if not os.path.isfile(path):
        raise Onnx2SnnError(f"{what} {path!r} does not exist")


def model_stem(path: str) -> str:
    """``dir/model.onnx`` -> ``model``: the base of the output folder's and files' names."""
    name = os.path.basename(os.fspath(path))
    return name[:-5] if name.endswith(".onnx") else name
