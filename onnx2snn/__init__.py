"""onnx2snn: convert a trained ReLU network exported to ONNX into a rate-coded spiking network."""
__version__ = "0.3.0"

from .config import Config  # noqa: E402
from .errors import Onnx2SnnError, VerificationError  # noqa: E402

__all__ = ["Config", "Onnx2SnnError", "VerificationError", "Conversion", "convert", "load", "simulate",
           "ann_accuracy", "export_nir", "load_nir", "__version__"]
_API = {"Conversion", "convert", "load", "simulate", "ann_accuracy"}
_NIR = {"export_nir", "load_nir"}


def __getattr__(name):
    """The API pulls in onnx, onnxruntime and torch (seconds): imported on first use, so that
    ``onnx2snn --help`` and option errors answer at once."""
    import importlib
    if name in _API:
        return getattr(importlib.import_module(".api", __name__), name)
    if name in _NIR:
        return getattr(importlib.import_module(".nir_io", __name__), name)
    try:  # a subpackage not imported yet, e.g. onnx2snn.graph
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
