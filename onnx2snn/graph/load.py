"""Load an ONNX model and check it is one the converter can take: valid, one float input."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
import onnx
from onnx import numpy_helper

from . import external
from .view import onnx_opset
from ..errors import Onnx2SnnError, first_line
from ..paths import model_stem, require_file

log = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    model: onnx.ModelProto          # shape-inferred copy; the caller's model is never modified
    input_name: str
    sample_shape: Tuple[int, ...]   # input shape without the batch dimension
    output_names: Tuple[str, ...]
    sha256: str                     # of the serialised source model (above 2 GiB: external.digest)
    name: str                       # for output file names

    @property
    def output_shape(self) -> Optional[Tuple[int, ...]]:
        """The per-sample shape of the (first) output, if known: (K,) for a classifier, (C, H, W) for
        a segmentation network."""
        out = next(o for o in self.model.graph.output if o.name == self.output_names[0])
        dims = out.type.tensor_type.shape.dim[1:]
        if not out.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims):
            return None
        return tuple(int(d.dim_value) for d in dims)

    @property
    def classes(self) -> Optional[int]:
        """Elements of one sample of the (first) output: the classes of a classifier, if known."""
        out = next(o for o in self.model.graph.output if o.name == self.output_names[0])
        dims = out.type.tensor_type.shape.dim[1:]
        if not dims or any(not d.HasField("dim_value") for d in dims):
            return None
        return int(np.prod([d.dim_value for d in dims]))


def load_model(source: Union[str, os.PathLike, onnx.ModelProto, "ModelInfo"]) -> ModelInfo:
    """Load (path or ModelProto), run ``onnx.checker`` and shape inference, check the input; a
    ``ModelInfo`` (loaded already) is returned as it is."""
    if isinstance(source, ModelInfo):
        return source
    if isinstance(source, onnx.ModelProto):
        model, name, label = onnx.ModelProto(), (source.graph.name or "model"), "the model"
        model.CopyFrom(source)
    else:
        path = os.fspath(source)
        label = repr(path)
        require_file(path, "model file")
        model = external.load(path)   # with its external data, if any; one-line errors
        if not model.graph.node:
            raise Onnx2SnnError(f"{path!r} is not an ONNX model (no graph nodes found)")
        name = model_stem(path)
    serialised = external.serialise(model)   # once, for the hash, the checker, shape inference, onnxruntime
    sha = external.digest(model, serialised)

    try:
        external.check(model, serialised)
    except onnx.checker.ValidationError as e:
        raise Onnx2SnnError(f"{label} fails onnx.checker: {first_line(e)}") from None
    try:
        model = external.infer_shapes(model, serialised, strict_mode=True)
    except Exception as e:
        # Some exporters (seen: jax2onnx) annotate intermediate tensors with wrong shapes. Those
        # annotations are hints, not semantics: drop them and infer again.
        del model.graph.value_info[:]
        serialised = None   # its bytes carry the wrong annotations, which onnxruntime would warn about
        try:
            model = external.infer_shapes(model, strict_mode=True)
            log.info("%s: dropped the exporter's intermediate shape annotations (%s)", label, first_line(e))
        except Exception:
            raise Onnx2SnnError(f"{label}: ONNX shape inference failed: {first_line(e)}") from None

    _check_finite_weights(model, label)
    _check_runtime_can_run(model, label, serialised)
    del serialised
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise Onnx2SnnError(f"{label} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                            "onnx2snn converts models with exactly one input")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if tt.elem_type != onnx.TensorProto.FLOAT:
        raise Onnx2SnnError(f"{label}: input {inp.name!r} has type "
                            f"{onnx.TensorProto.DataType.Name(tt.elem_type)}; expected FLOAT (float32)")
    if not tt.HasField("shape") or len(tt.shape.dim) < 2:
        raise Onnx2SnnError(f"{label}: input {inp.name!r} must have a known shape (batch, ...) of rank >= 2")
    dims = tt.shape.dim
    if dims[0].HasField("dim_value"):
        # A fixed batch size (often 1 from a trace) would stop batched calibration and simulation:
        # make it dynamic in our copy; shape inference below says if the graph depends on it.
        _make_batch_dynamic(model, inp.name)
        try:
            model = external.infer_shapes(model, strict_mode=True)
        except Exception as e:
            raise Onnx2SnnError(f"{label}: input {inp.name!r} has a fixed batch size {dims[0].dim_value} that the "
                                f"graph depends on ({first_line(e)}); export with a dynamic batch dimension") from None
        dims = next(i for i in model.graph.input if i.name == inp.name).type.tensor_type.shape.dim
    sample = []
    for i, d in enumerate(dims[1:], start=1):
        if not d.HasField("dim_value"):
            raise Onnx2SnnError(f"{label}: input {inp.name!r} dimension {i} is dynamic ({d.dim_param or '?'}); "
                                "only the batch dimension may be")
        sample.append(d.dim_value)
    outputs = tuple(o.name for o in model.graph.output)
    return ModelInfo(model, inp.name, tuple(sample), outputs, sha, name)


def _check_finite_weights(model: onnx.ModelProto, label: str) -> None:
    """NaN or infinite weights would only show as a failed verification later: name them now."""
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, node)
    tensors = [(t.name, t) for t in model.graph.initializer]
    tensors += [(n.output[0], a.t) for n in model.graph.node if n.op_type == "Constant"
                for a in n.attribute if a.name == "value"]
    for name, tensor in tensors:
        if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                                    onnx.TensorProto.BFLOAT16):
            continue
        values = numpy_helper.to_array(tensor)
        if not np.isfinite(values).all():
            node = consumers.get(name)
            where = f" (input of {node.name or '?'} ({node.op_type}))" if node is not None else ""
            raise Onnx2SnnError(f"{label}: weight {name!r}{where} contains "
                                f"{int(np.sum(~np.isfinite(values)))} NaN or infinite value(s)")


def _check_runtime_can_run(model: onnx.ModelProto, label: str, serialised: Optional[bytes] = None) -> None:
    """The installed onnxruntime must run the model (statistics and verification need it): an opset
    newer than it knows is named here, with both versions, not found mid-calibration."""
    import onnxruntime as ort
    opset = onnx_opset(model, None)
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        external.session_for(model, options, ["CPUExecutionProvider"], serialised=serialised)
    except Exception as e:
        raise Onnx2SnnError(f"{label} (opset {opset}, IR {model.ir_version}) cannot be run by the installed "
                            f"onnxruntime {ort.__version__}: {first_line(e)}") from None


def _make_batch_dynamic(model: onnx.ModelProto, input_name: str) -> None:
    """Set the first dimension of the input and of every output to a symbolic 'N'."""
    del model.graph.value_info[:]  # inferred again from the dynamic input
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name == input_name or vi in model.graph.output:
            shape = vi.type.tensor_type.shape
            if len(shape.dim):
                shape.dim[0].Clear()
                shape.dim[0].dim_param = "N"

