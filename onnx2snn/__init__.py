"""onnx2snn: convert a trained ReLU network exported to ONNX into a rate-coded spiking network."""
__version__ = "0.2.0"

from .config import Config  # noqa: E402
from .errors import Onnx2SnnError, VerificationError  # noqa: E402
from .api import Conversion, convert, load, simulate, ann_accuracy  # noqa: E402

__all__ = ["Config", "Onnx2SnnError", "VerificationError", "Conversion", "convert", "load", "simulate",
           "ann_accuracy", "__version__"]
