"""Graph clean-up with onnx-graphsurgeon: the edits that make a trained ANN ready to normalise.

Each pass takes and returns a ``gs.Graph``; ``clean_graph`` runs them in order and records the op
counts after each (Polygraphy-style), so the report can say what changed.

  fold constants  ->  drop Dropout/Identity  ->  canonicalise Gemm/Conv  ->  absorb BatchNorm
"""
from __future__ import annotations

import itertools
import logging
from collections import Counter
from typing import Dict, List, Tuple

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..errors import Onnx2SnnError

log = logging.getLogger(__name__)


def clean_graph(model: onnx.ModelProto) -> Tuple[onnx.ModelProto, List[dict]]:
    """Run every clean-up pass; return the cleaned, shape-inferred model and a per-pass log."""
    graph = gs.import_onnx(model)
    names = Counter(n.name for n in graph.nodes)
    for i, node in enumerate(graph.nodes):  # every node gets a unique name: reports and errors use it
        if not node.name or names[node.name] > 1:
            node.name = f"{node.op}_{i}"
    history = [{"pass": "input", "ops": _op_counts(graph)}]
    for name, fn in (("fold constants", fold_constants),
                     ("drop Dropout/Identity", drop_passthrough),
                     ("canonicalise Gemm/Conv", canonicalise_linear),
                     ("absorb BatchNormalization", absorb_batchnorm)):
        graph = fn(graph)
        graph.cleanup().toposort()
        history.append({"pass": name, "ops": _op_counts(graph)})
        log.info("%s: %s", name, history[-1]["ops"])
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    try:
        out = onnx.shape_inference.infer_shapes(out, strict_mode=True)
    except Exception as e:  # a pass produced something inconsistent: a bug, not a user error
        raise RuntimeError(f"shape inference failed on the cleaned graph: {e}") from e
    return out, history


def _op_counts(graph: gs.Graph) -> Dict[str, int]:
    return dict(sorted(Counter(n.op for n in graph.nodes).items()))


# --- passes -----------------------------------------------------------------------------------

def fold_constants(graph: gs.Graph) -> gs.Graph:
    """Evaluate every constant subgraph (Identity-fed parameters, shape arithmetic) with onnxruntime."""
    graph.fold_constants()
    return graph


def drop_passthrough(graph: gs.Graph) -> gs.Graph:
    """Remove Identity and inference-mode Dropout, also where their output is a graph output."""
    for node in [n for n in graph.nodes if n.op in ("Identity", "Dropout")]:
        if node.op == "Dropout" and len(node.outputs) > 1 and node.outputs[1].outputs:
            continue  # its mask is used: leave it, lowering will name it
        src, dst = node.inputs[0], node.outputs[0]
        if dst in graph.outputs:
            if not src.inputs or src in graph.outputs:
                continue  # src is a graph input/constant or already an output: nothing to rewire
            # The producer of src writes the graph output directly, so its name is kept.
            producer = src.inputs[0]
            producer.outputs[producer.outputs.index(src)] = dst
            for consumer in list(src.outputs):
                if consumer is not node:
                    consumer.inputs[consumer.inputs.index(src)] = dst
        else:
            for consumer in list(dst.outputs):
                for i, t in enumerate(consumer.inputs):
                    if t is dst:
                        consumer.inputs[i] = src
        node.inputs.clear()
        node.outputs.clear()
    return graph


def canonicalise_linear(graph: gs.Graph) -> gs.Graph:
    """Bring every Gemm with constant weights to Y = X·Wᵀ + b (transB=1, alpha=beta=1, b of shape
    (N,)) and give every Conv with constant weights a bias, so later passes see one form."""
    for node in graph.nodes:
        if node.op == "Gemm" and _is_const(node.inputs[1]) and not node.attrs.get("transA", 0):
            w = node.inputs[1].values.astype(np.float32)
            w = w if node.attrs.get("transB", 0) else w.T
            w = w * np.float32(node.attrs.get("alpha", 1.0))
            n_out = w.shape[0]
            if len(node.inputs) > 2 and node.inputs[2] is not None and node.inputs[2].name:
                if not _is_const(node.inputs[2]):
                    continue
                c = node.inputs[2].values.astype(np.float32) * np.float32(node.attrs.get("beta", 1.0))
                if c.size not in (1, n_out):
                    continue  # a per-sample bias matrix: leave as is
                b = np.broadcast_to(c.reshape(-1), (n_out,)).copy()
            else:
                b = np.zeros(n_out, np.float32)
            _set_inputs(node, 1, [_const(node, "weight", w), _const(node, "bias", b)])
            node.attrs = {"transB": 1}
        elif node.op == "Conv" and _is_const(node.inputs[1]) and (len(node.inputs) < 3 or not node.inputs[2].name):
            n_out = node.inputs[1].values.shape[0]
            _set_inputs(node, 2, [_const(node, "bias", np.zeros(n_out, np.float32))])
    return graph


def absorb_batchnorm(graph: gs.Graph) -> gs.Graph:
    """Fold BatchNormalization into the Conv/Gemm that feeds it alone:
    W̄ = γ/σ·W, b̄ = γ/σ·(b − μ) + β with σ = sqrt(var + ε)."""
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        x = bn.inputs[0]
        if len(x.inputs) != 1 or len(x.outputs) != 1 or x in graph.outputs:
            continue
        producer = x.inputs[0]
        if producer.op not in ("Conv", "Gemm") or not all(_is_const(t) for t in producer.inputs[1:3]):
            continue
        if producer.op == "Gemm" and producer.attrs.get("transB") != 1:
            continue
        if len(bn.outputs) > 1 and any(t.outputs for t in bn.outputs[1:]):
            continue  # training-mode statistics are consumed
        if not all(_is_const(t) for t in bn.inputs[1:5]):
            continue
        gamma, beta, mean, var = (t.values.astype(np.float64) for t in bn.inputs[1:5])
        scale = gamma / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        w = producer.inputs[1].values.astype(np.float64)
        b = producer.inputs[2].values.astype(np.float64)
        if w.shape[0] != scale.shape[0]:
            continue
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = (b - mean) * scale + beta
        # New constants, never edited in place: an initializer may be shared with another node.
        producer.inputs[1] = _const(producer, "weight", w.astype(np.float32))
        producer.inputs[2] = _const(producer, "bias", b.astype(np.float32))
        producer.outputs[0] = bn.outputs[0]
        bn.inputs.clear()
        bn.outputs.clear()
    return graph


# --- helpers ---------------------------------------------------------------------------------

def _is_const(t) -> bool:
    return isinstance(t, gs.Constant)


def _set_inputs(node: gs.Node, start: int, tensors) -> None:
    """node.inputs[start:] = tensors (gs's synchronised lists do not take slice assignment)."""
    while len(node.inputs) > start:
        node.inputs.pop()
    node.inputs.extend(tensors)


_fresh = itertools.count()


def _const(node: gs.Node, role: str, values: np.ndarray) -> gs.Constant:
    """A fresh constant named after its node (never an edit in place: initializers can be shared)."""
    return gs.Constant(f"{node.name}.{role}.{next(_fresh)}", np.ascontiguousarray(values))
