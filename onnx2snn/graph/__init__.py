"""The ONNX side of the pipeline: load and validate, clean with onnx-graphsurgeon, annotate."""
from .load import load_model, ModelInfo
from .passes import clean_graph

__all__ = ["load_model", "ModelInfo", "clean_graph"]
