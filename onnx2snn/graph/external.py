"""Models above protobuf's 2 GiB limit: the one place that decides when a model is too big to be
handled as one serialised proto, and the file-based ways around it (ONNX external data).

Below the limit every function here does what the converter always did (serialise, check and infer
in memory, sessions from bytes, one ``.onnx`` file). Above it the model is written to a file whose
large initializers' raw data lies in ``<file>.data`` beside it, and the checker and onnxruntime read
that file (shape inference, which reads no weights, the file alone). The weights are never copied
whole: a "shell" copy of the model holds everything but them, and they are streamed to the data file
one tensor at a time (``onnx.save_model`` with ``save_as_external_data`` would instead strip them out
of the model it is given). Initializers with data in typed fields (``float_data``, …) stay inline:
exporters write large weights as ``raw_data``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from typing import List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import external_data_helper, helper

from ..errors import Onnx2SnnError, first_line

# Protobuf sizes messages with signed 32-bit integers: a proto above 2 GiB - 1 byte cannot be
# serialised or parsed (SerializeToString, onnxruntime sessions from bytes, onnx.checker and shape
# inference in memory all fail). Tests lower it to take the external-data paths with small models.
PROTO_LIMIT = 2**31 - 1
EXTERNAL_MIN = 1024   # bytes: smaller initializers stay inline (onnx.save's default threshold)
ALIGN = 4096          # data offsets on page boundaries, so that onnxruntime can memory-map the weights


def size(model: onnx.ModelProto) -> int:
    """``model.ByteSize()`` or a little more, found without serialising the model: protobuf's upb
    backend computes ByteSize by serialising (a full copy, seconds for GiBs) and raises EncodeError
    above the limit. Raw tensor data is counted from the tensor's shape, the rest part by part."""
    return _size(model)


def too_big(model: onnx.ModelProto) -> bool:
    """Does ``model`` exceed what protobuf can serialise (``PROTO_LIMIT``)?"""
    return size(model) > PROTO_LIMIT


def serialise(model: onnx.ModelProto) -> Optional[bytes]:
    """The model's bytes, or None above the limit. Callers that hash, check and infer the same
    model pass them on to ``digest``, ``check`` and ``infer_shapes``: each would serialise again
    (about a second per GiB)."""
    return None if too_big(model) else model.SerializeToString()


def digest(model: onnx.ModelProto, serialised: Optional[bytes] = None) -> str:
    """sha256 of the serialised model (``serialised``, when given, is its bytes); above the limit
    (it cannot be serialised) of the model without its large initializers' data, then of that data
    tensor by tensor. Deterministic."""
    if serialised is not None:
        return hashlib.sha256(serialised).hexdigest()
    if not too_big(model):
        return hashlib.sha256(model.SerializeToString()).hexdigest()
    shell, sources = _shell(model, "")
    h = hashlib.sha256(shell.SerializeToString())
    for t in sources:
        h.update(t.raw_data)   # one tensor's bytes at a time
    return h.hexdigest()


def load(path: str) -> onnx.ModelProto:
    """``onnx.load`` with any external data read from beside the file. A data file that is missing
    is named in a one-line error (onnx's own says the path "is not regular file")."""
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise Onnx2SnnError(f"{path!r} is not an ONNX model ({type(e).__name__}: {first_line(e)})") from None
    base = os.path.dirname(os.path.abspath(path))
    for t in model.graph.initializer:
        if external_data_helper.uses_external_data(t):
            location = next((e.value for e in t.external_data if e.key == "location"), "")
            if not os.path.isfile(os.path.join(base, location)):
                raise Onnx2SnnError(f"{path!r}: external data file {location!r} (initializer {t.name!r}) does not "
                                    "exist; it must lie beside the model")
    try:
        external_data_helper.load_external_data_for_model(model, base)
    except Exception as e:
        raise Onnx2SnnError(f"{path!r}: cannot read its external data ({first_line(e)})") from None
    return model


def save(model: onnx.ModelProto, path: str) -> Optional[str]:
    """Write ``model`` to ``path`` so that it appears complete or not at all (temporary files, then
    renames). Above the limit the large initializers' data goes to ``<path>.data`` beside it, renamed
    into place first: the model never names a data file that is not yet complete. Returns the data
    file's path, or None."""
    tmp, data = path + ".tmp", path + ".data"
    try:
        if not too_big(model):
            onnx.save_model(model, tmp)
            written = None
        else:
            shell, sources = _shell(model, os.path.basename(data))
            _write_data(shell, sources, data + ".tmp")
            onnx.save_model(shell, tmp)
            os.replace(data + ".tmp", data)
            written = data
        os.replace(tmp, path)
    except BaseException:
        for p in (tmp, data + ".tmp"):
            with contextlib.suppress(OSError):
                os.remove(p)
        raise
    return written


def check(model: onnx.ModelProto, serialised: Optional[bytes] = None) -> None:
    """``onnx.checker.check_model`` (of ``serialised``, the model's bytes, when given); above the
    limit on a file with external data."""
    if serialised is not None or not too_big(model):
        onnx.checker.check_model(model if serialised is None else serialised)
        return
    with tempfile.TemporaryDirectory(prefix="onnx2snn-", ignore_cleanup_errors=True) as tmp:
        path = os.path.join(tmp, "model.onnx")
        save(model, path)
        onnx.checker.check_model(path)   # with the folder: it checks the data file too


def infer_shapes(model: onnx.ModelProto, serialised: Optional[bytes] = None, **kw) -> onnx.ModelProto:
    """``onnx.shape_inference.infer_shapes(model, **kw)``: a new model. Above the limit
    ``infer_shapes_path`` runs on a file of the model without its large initializers' data (onnx
    infers from their shapes and never reads external data), and ``model`` itself, given the
    inferred graph around its weights, is returned: a copy would double the memory. So callers pass
    a model of their own and use the result. On failure ``model`` is unchanged. ``serialised``: the
    model's bytes, when the caller has them."""
    if serialised is not None or not too_big(model):
        return onnx.shape_inference.infer_shapes(model if serialised is None else serialised, **kw)
    with tempfile.TemporaryDirectory(prefix="onnx2snn-", ignore_cleanup_errors=True) as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save_model(_shell(model, "model.onnx.data")[0], path)
        onnx.shape_inference.infer_shapes_path(path, path + ".inferred", **kw)
        inferred = onnx.load(path + ".inferred", load_external_data=False)
    for msg, new, keep in ((model, inferred, "graph"), (model.graph, inferred.graph, "initializer")):
        for field in msg.DESCRIPTOR.fields:
            if field.name != keep:
                msg.ClearField(field.name)
        _copy(new, skip=keep, into=msg)
    return model


def session_for(model: onnx.ModelProto, options=None, providers: Sequence[str] = ("CPUExecutionProvider",),
                outputs: Sequence[onnx.ValueInfoProto] = (), serialised: Optional[bytes] = None):
    """An onnxruntime session for ``model`` with ``outputs`` appended to its graph outputs (the
    model is not modified): from bytes (``serialised``, when given and no outputs are added), or
    above the limit from a file with external data in a temporary folder (removed once the session
    holds the weights)."""
    import onnxruntime as ort
    if serialised is not None and not outputs:
        return ort.InferenceSession(serialised, options, providers=list(providers))
    if not too_big(model):
        m = model
        if outputs:
            m = onnx.ModelProto()
            m.CopyFrom(model)
            m.graph.output.extend(outputs)
        return ort.InferenceSession(m.SerializeToString(), options, providers=list(providers))
    with tempfile.TemporaryDirectory(prefix="onnx2snn-", ignore_cleanup_errors=True) as tmp:
        path = os.path.join(tmp, "model.onnx")
        shell, sources = _shell(model, "model.onnx.data")
        shell.graph.output.extend(outputs)
        _write_data(shell, sources, path + ".data")
        onnx.save_model(shell, path)
        return ort.InferenceSession(path, options, providers=list(providers))


def _shell(model: onnx.ModelProto, location: str) -> Tuple[onnx.ModelProto, List[onnx.TensorProto]]:
    """A copy of ``model`` in which each raw-data initializer of at least ``EXTERNAL_MIN`` bytes is an
    external-data reference to ``location`` (offsets set by ``_write_data``), and those initializers
    of ``model``, in order. Their data is not copied."""
    shell = _copy(model, skip="graph")
    shell.graph.CopyFrom(_copy(model.graph, skip="initializer"))
    sources = []
    for t in model.graph.initializer:
        if t.HasField("raw_data") and _raw_bytes(t) >= EXTERNAL_MIN:
            ref = shell.graph.initializer.add()
            ref.CopyFrom(_copy(t, skip="raw_data"))
            ref.data_location = onnx.TensorProto.EXTERNAL
            ref.external_data.add(key="location", value=location)
            sources.append(t)
        else:
            shell.graph.initializer.append(t)
    return shell, sources


def _write_data(shell: onnx.ModelProto, sources: List[onnx.TensorProto], data_path: str) -> None:
    """Write ``sources``' raw data to ``data_path``, one tensor at a time, and record each one's
    offset and length in its reference in ``shell``."""
    refs = [t for t in shell.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    with open(data_path, "wb") as f:
        for ref, t in zip(refs, sources):
            offset = -(-f.tell() // ALIGN) * ALIGN
            f.seek(offset)
            data = t.raw_data
            f.write(data)
            ref.external_data.add(key="offset", value=str(offset))
            ref.external_data.add(key="length", value=str(len(data)))


def _copy(msg, skip: str, into=None):
    """A copy of ``msg`` without its field ``skip`` (or its fields set in ``into``), made field by
    field: copying the whole message would copy what is skipped, the weights."""
    out = type(msg)() if into is None else into
    # the descriptor's fields, not ListFields(): that would read the skipped field too, which for
    # raw_data is a copy of the weights (0.3 s per pass over an ImageNet VGG's 550 MB)
    for field in msg.DESCRIPTOR.fields:
        if field.name == skip:
            continue
        if _repeated(field):
            values = getattr(msg, field.name)
            if len(values):
                getattr(out, field.name).extend(values)
        elif msg.HasField(field.name):
            value = getattr(msg, field.name)
            if field.type == field.TYPE_MESSAGE:
                getattr(out, field.name).CopyFrom(value)
            else:
                setattr(out, field.name, value)
    return out


def _size(msg) -> int:
    if isinstance(msg, onnx.TensorProto) and msg.HasField("raw_data"):
        return _raw_bytes(msg) + 6 + _copy(msg, skip="raw_data").ByteSize()   # 6: the field's tag and length
    if not isinstance(msg, (onnx.ModelProto, onnx.GraphProto)):
        return msg.ByteSize()
    total = 0
    for field, value in msg.ListFields():   # a model's or graph's fields: no raw data among them
        for v in (value if _repeated(field) else [value]):
            # 12 bytes bound a field's tag with its length (or a varint's value)
            total += 12 + (_size(v) if field.type == field.TYPE_MESSAGE else
                           len(v.encode()) if isinstance(v, str) else len(v) if isinstance(v, bytes) else 0)
    return total


def _raw_bytes(t: onnx.TensorProto) -> int:
    """The length of ``t.raw_data``, from its shape and type (reading the field would copy it)."""
    try:
        itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize   # 4-bit types: 1, an upper bound
    except Exception:   # an unknown type: measure the field itself
        return len(t.raw_data)
    return int(np.prod(t.dims, dtype=np.int64)) * itemsize


def _repeated(field) -> bool:
    # protobuf ≥ 5.28 has is_repeated (and ≥ 7 no label); older ones only label
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
