"""Graph clean-up with onnx-graphsurgeon: the edits that make a trained ANN ready to normalise.

Each pass takes and returns a ``gs.Graph``; ``clean_graph`` runs them in order and records the op
counts after each (Polygraphy-style), so the report can say what changed.

  fold constants -> drop Dropout/Identity -> drop the output head -> batch-size shape arithmetic
  -> Split to Slices -> MatMul+Add to Gemm -> canonicalise Gemm/Conv -> per-channel affine ops to BatchNorm
  -> merge BatchNorms -> absorb BatchNorm into Conv/Gemm -> remaining BatchNorm to a depthwise Conv
  [-> max pooling of the input current before the first neurons, with ``pool_currents``]

Per-channel affine ops (Mul/Add/Sub/Div by a constant, as input normalisation and standalone biases
are written) all become BatchNormalization (γ = scale, β = shift, mean 0, var 1, ε 0), so one
absorption rule folds them into the Conv/Gemm before them, and what is left is one kind of node:
a per-channel affine, lowered as a depthwise 1×1 Conv (or a diagonal Gemm) that normalisation
treats as any other weighted layer.
"""
from __future__ import annotations

import itertools
import logging
from collections import Counter
from typing import Dict, List, Tuple

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from . import external, transformer
from .ops import HEADS, NEURON_OPS, conv_transpose_channel
from .view import downstream_of

log = logging.getLogger(__name__)


def clean_graph(model: onnx.ModelProto, pool_currents: bool = False) -> Tuple[onnx.ModelProto, List[dict]]:
    """Run every clean-up pass; return the cleaned, shape-inferred model and a per-pass log.
    ``pool_currents`` adds ``pool_before_neurons`` (``Config.pools_currents``: constant-current input)."""
    global _fresh
    _fresh = itertools.count()  # constant names restart per call: converting twice writes identical bytes
    graph = gs.import_onnx(model)
    names = Counter(n.name for n in graph.nodes)
    for i, node in enumerate(graph.nodes):  # every node gets a unique name: reports and errors use it
        if not node.name or names[node.name] > 1:
            node.name = f"{node.op}_{i}"
    history = [{"pass": "input", "ops": _op_counts(graph)}]
    for name, fn in (("fold constants", fold_constants),
                     ("drop Dropout/Identity", drop_passthrough),
                     ("drop output head (Softmax, LogSoftmax, Sigmoid, Tanh)", drop_output_head),
                     ("batch-size shape arithmetic", batch_shape_reshape),
                     ("shape subgraphs to constants", fold_shape_subgraphs),
                     ("shapes inferred again where a fold left some unknown", reinfer_shapes),
                     ("Split to Slices", split_to_slices),
                     ("QKV split: Gather through the Transpose", transformer.gather_through_transpose),
                     ("GELU (Erf form) to one node", transformer.gelu_to_one_node),
                     ("LayerNorm (decomposed form) to one node", transformer.layer_norm_to_one_node),
                     ("PRelu with one slope to LeakyRelu", prelu_to_leaky_relu),
                     ("MatMul+Add to Gemm", matmul_add_to_gemm),
                     ("canonicalise Gemm/Conv", canonicalise_linear),
                     ("affine ops to BatchNormalization", affine_to_batchnorm),
                     ("merge consecutive BatchNormalization", merge_batchnorms),
                     ("absorb BatchNormalization", absorb_batchnorm),
                     ("remaining BatchNormalization to depthwise Conv", batchnorm_to_linear),
                     ("ReLU ahead of Transpose", relu_before_transpose),
                     ("cancel inverse Transposes", cancel_inverse_transposes),
                     ("two-sided neurons on a transformer's dense-layer and product inputs", transformer.spike_sites),
                     *([("max pooling of the constant current before the first neurons", pool_before_neurons)]
                       if pool_currents else [])):
        before = {n.name for n in graph.nodes}
        graph = fn(graph)
        graph.cleanup().toposort()
        removed = sorted(before - {n.name for n in graph.nodes})
        history.append({"pass": name, "ops": _op_counts(graph), "removed": removed})
        log.info("%s: %s", name, history[-1]["ops"])
    out = transformer.add_ann_functions(gs.export_onnx(graph))
    out.ir_version = model.ir_version
    try:
        out = external.infer_shapes(out, strict_mode=True)
    except Exception as e:  # a pass produced something inconsistent: a bug, not a user error
        raise RuntimeError(f"shape inference failed on the cleaned graph: {e}") from e
    return out, history


def _op_counts(graph: gs.Graph) -> Dict[str, int]:
    return dict(sorted(Counter(n.op for n in graph.nodes).items()))


# --- passes -----------------------------------------------------------------------------------

def fold_constants(graph: gs.Graph) -> gs.Graph:
    """Evaluate every constant subgraph (Identity-fed parameters, shape arithmetic) with onnxruntime."""
    import onnxruntime
    onnxruntime.set_default_logger_severity(3)  # its optimiser's warnings are not the user's business
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


def drop_output_head(graph: gs.Graph) -> gs.Graph:
    """An elementwise monotone head producing the graph output (Softmax, LogSoftmax: the argmax;
    Sigmoid, Tanh: each label's decision, logit > 0) maps the logits without changing what they
    decide: drop it, the logits become the output (and keep their own name, which the original
    graph also has). The Readout node records the head (``graph/ops.py output_head``)."""
    for node in [n for n in graph.nodes if n.op in HEADS]:
        out = node.outputs[0]
        src = node.inputs[0]
        if out in graph.outputs and len(out.outputs) == 0 and src.inputs and src not in graph.outputs:
            graph.outputs[graph.outputs.index(out)] = src
            node.inputs.clear()
            node.outputs.clear()
    return graph


def batch_shape_reshape(graph: gs.Graph) -> gs.Graph:
    """``x.view(x.size(0), -1)`` exports as Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])),
    which constant folding cannot fold with a dynamic batch. Its first element is the batch size,
    i.e. ONNX Reshape's 0 ("copy this dimension"): replace the shape by the constant [0, ...]."""
    for node in [n for n in graph.nodes if n.op == "Reshape"]:
        shape = node.inputs[1]
        if _is_const(shape) or not shape.inputs or shape.inputs[0].op != "Concat":
            continue
        parts = shape.inputs[0].inputs
        if not parts or not _is_batch_size(parts[0]) or not all(_is_const(p) for p in parts[1:]):
            continue
        rest = [int(v) for p in parts[1:] for v in np.asarray(p.values).reshape(-1)]
        node.inputs[1] = gs.Constant(f"{node.name}.shape.{next(_fresh)}", np.array([0, *rest], np.int64))
    return graph


def fold_shape_subgraphs(graph: gs.Graph) -> gs.Graph:
    """Arguments computed from the input's shape — a Reshape target (tf2onnx's Keras Flatten:
    Shape → Slice → Concat(…, -1) → Cast → Reshape), the starts and ends of the Slices
    ``x.chunk(2, dim=1)`` exports (Shape → Gather → Add → Div → Mul → Slice), Resize sizes — are
    folded generally, not by pattern: every tensor computed from Shape nodes alone that an op of
    the network reads is evaluated by onnxruntime for two batch sizes. One that does not change is
    a constant; a Reshape target whose first entry is the batch size and the rest does not change
    becomes the constant [-1 (or 0), rest]. Anything else is left for the support check."""
    inputs = [t for t in graph.inputs if not _is_const(t)]
    if len(inputs) != 1 or inputs[0].shape is None or any(not isinstance(d, int) for d in inputs[0].shape[1:]):
        return graph
    derived = set()                    # tensors computed from Shape nodes (and constants) alone
    for node in graph.toposort().nodes:
        data = [t for t in node.inputs if not _is_const(t) and t.name]
        if node.op == "Shape" or (data and all(t.name in derived for t in data)):
            derived.update(t.name for t in node.outputs)
    boundary = {}                      # derived tensor -> the nodes outside the shape arithmetic that read it
    for node in graph.nodes:
        if node.outputs and node.outputs[0].name in derived:
            continue
        for t in node.inputs:
            if not _is_const(t) and t.name in derived:
                boundary.setdefault(t.name, []).append(node)
    if not boundary:
        return graph
    probe = graph.copy()
    tensors = probe.tensors()
    names = sorted(boundary)
    for n in names:       # an output without a type: its producer's data type (shapes are int64)
        producer = tensors[n].inputs[0] if tensors[n].inputs else None
        known = next((t.dtype for t in (producer.inputs if producer is not None else []) if t.dtype is not None), None)
        tensors[n].dtype = tensors[n].dtype or (known if producer is not None and producer.op == "Expand" else np.int64)
    probe.outputs = [tensors[n] for n in names]
    probe.cleanup()
    try:
        session = external.session_for(gs.export_onnx(probe), providers=["CPUExecutionProvider"])
        values = [session.run(None, {inputs[0].name: np.zeros((b, *inputs[0].shape[1:]), np.float32)})
                  for b in (1, 3)]
    except Exception as e:  # not evaluable on its own: leave it to the support check, which names the node
        log.info("shape subgraphs not folded: %s", str(e).splitlines()[0])
        return graph
    for name, one, three in zip(names, *values):
        one, three = np.asarray(one), np.asarray(three)
        for node in boundary[name]:
            if one.shape == three.shape and np.array_equal(one, three):
                value = one
            elif (node.op == "Concat" and one.ndim >= 2 and (one.shape[0], three.shape[0]) == (1, 3)
                  and one.shape[1:] == three.shape[1:] and all(np.array_equal(one[0], s) for s in three)):
                transformer.batch_constant_concat(graph, node, name, one)     # a class token: Pad + Add
                continue
            elif (node.op == "Reshape" and one.ndim == 1 and one.shape == three.shape and len(one)
                  and (one[0], three[0]) == (1, 3) and np.array_equal(one[1:], three[1:])):
                rest = [int(v) for v in one[1:]]
                value = np.array([0 if -1 in rest else -1, *rest], np.int64)
            else:
                continue
            index = next(i for i, t in enumerate(node.inputs) if t.name == name)
            node.inputs[index] = gs.Constant(f"{node.name}.{index}.{next(_fresh)}", np.asarray(value))
    return graph


def reinfer_shapes(graph: gs.Graph) -> gs.Graph:
    """Shape inference again where a tensor's shape is unknown: shapes downstream of a Reshape
    target that was folded just now (a ViT's patch flattening) were unknown when the model was
    loaded, and the passes after this one (dense layers of tokens) need them."""
    unknown = [t for t in graph.tensors().values()
               if not _is_const(t) and t.inputs and (t.shape is None or any(not isinstance(d, int) for d in t.shape[1:]))]
    if not unknown:
        return graph
    for t in unknown:                              # stale partial shapes would be kept otherwise
        t.shape = None
    try:
        return gs.import_onnx(external.infer_shapes(gs.export_onnx(graph)))
    except Exception as e:                         # leave it to the support check, which names the node
        log.info("shapes not inferred again: %s", str(e).splitlines()[0])
        return graph


def _is_batch_size(t) -> bool:
    """Is ``t`` dimension 0 of some tensor's Shape (through Unsqueeze/Squeeze/Cast)?"""
    while t.inputs and t.inputs[0].op in ("Unsqueeze", "Squeeze", "Cast"):
        t = t.inputs[0].inputs[0]
    if not t.inputs:
        return False
    node = t.inputs[0]
    if node.op == "Gather" and node.inputs[0].inputs and node.inputs[0].inputs[0].op == "Shape":
        return _is_const(node.inputs[1]) and np.asarray(node.inputs[1].values).reshape(-1).tolist() == [0]
    if node.op == "Slice" and node.inputs[0].inputs and node.inputs[0].inputs[0].op == "Shape":
        s, e = node.inputs[1:3]
        return (_is_const(s) and _is_const(e) and np.asarray(s.values).tolist() in ([0], 0)
                and np.asarray(e.values).tolist() in ([1], 1))
    if node.op == "Shape":
        return node.attrs.get("start", 0) == 0 and node.attrs.get("end", None) == 1
    return False


def matmul_add_to_gemm(graph: gs.Graph) -> gs.Graph:
    """MatMul(X (N,K), W const (K,M)) [+ Add(const (M,) or (1,M))], as tf2onnx and the dynamo exporter
    write dense layers, becomes Gemm(X, Wᵀ, b, transB=1). On an N-D X (N, …, K) — a token-wise dense
    layer: ``nn.Linear`` on (N, L, C), MLP-Mixer's token and channel MLPs — it becomes a 1×…×1 Conv
    between two Transposes (features to the channel axis and back): one weighted layer with one
    scale per output feature, that normalisation, the spiking graph and the runtime know already."""
    for node in [n for n in graph.nodes if n.op == "MatMul"]:
        x, w = node.inputs
        if not _is_const(w) or w.values.ndim != 2 or x.shape is None:
            continue
        if 3 <= len(x.shape) <= 5:
            _token_wise_dense(graph, node, x, w)
            continue
        if len(x.shape) != 2:
            continue
        out, bias = _take_bias_add(graph, node.outputs[0], w.values.shape[1])
        gemm = gs.Node("Gemm", node.name, attrs={"transB": 1},
                       inputs=[x, _const(node, "weight", np.ascontiguousarray(w.values.T.astype(np.float32))),
                               _const(node, "bias", bias)], outputs=[out])
        node.inputs.clear()
        node.outputs.clear()
        graph.nodes.append(gemm)
    return graph


def _take_bias_add(graph: gs.Graph, out: gs.Variable, size: int):
    """(the dense layer's output, its bias): where the only reader of the MatMul's ``out`` is an Add
    of a constant of ``size`` values (one per feature of the last axis) or one value, that Add is
    removed and its output and bias returned; else ``out`` and zeros."""
    add = out.outputs[0] if len(out.outputs) == 1 and out not in graph.outputs else None
    if add is None or add.op != "Add":
        return out, np.zeros(size, np.float32)
    other = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
    values = np.asarray(other.values, np.float32) if _is_const(other) else None
    if values is None or values.size not in (1, size) or (values.size == size and values.shape[-1] != size):
        return out, np.zeros(size, np.float32)
    result = add.outputs[0]
    add.inputs.clear()
    add.outputs.clear()
    return result, np.broadcast_to(values.reshape(-1), (size,)).copy()


def _token_wise_dense(graph: gs.Graph, node: gs.Node, x, w) -> None:
    rank = len(x.shape)
    k, m = w.values.shape
    out, bias = _take_bias_add(graph, node.outputs[0], m)
    forward = [0, rank - 1] + list(range(1, rank - 1))           # (N, …, K) -> (N, K, …)
    back = [0] + list(range(2, rank)) + [1]                       # (N, M, …) -> (N, …, M)
    moved = gs.Variable(f"{node.name}/features_first", dtype=np.float32)
    conv_out = gs.Variable(f"{node.name}/conv_output", dtype=np.float32)
    weight = np.ascontiguousarray(w.values.T.astype(np.float32)).reshape(m, k, *([1] * (rank - 2)))
    graph.nodes += [
        gs.Node("Transpose", f"{node.name}/to_channels", attrs={"perm": forward}, inputs=[x], outputs=[moved]),
        gs.Node("Conv", node.name, attrs={"kernel_shape": [1] * (rank - 2)},
                inputs=[moved, _const(node, "weight", weight),
                        _const(node, "bias", bias)],
                outputs=[conv_out]),
        gs.Node("Transpose", f"{node.name}/to_tokens", attrs={"perm": back}, inputs=[conv_out], outputs=[out])]
    node.inputs.clear()
    node.outputs.clear()


def relu_before_transpose(graph: gs.Graph) -> gs.Graph:
    """Relu(Transpose(x)) -> Transpose(Relu(x)) where the Transpose feeds only the Relu: the same
    values, and the neurons then see the layer's output with its channels on axis 1 — a token-wise
    dense layer's features (its 1×1 Conv's output channels) — so that they can take one λ per
    channel there, as a convolution's neurons do (api.channel_tensors)."""
    for relu in [n for n in graph.nodes if n.op == "Relu"]:
        t = relu.inputs[0].inputs[0] if relu.inputs[0].inputs else None
        if t is None or t.op != "Transpose" or len(t.outputs[0].outputs) != 1 or t.outputs[0] in graph.outputs:
            continue
        x, y = t.inputs[0], relu.outputs[0]
        rectified = gs.Variable(f"{relu.name}/channels_first", dtype=np.float32)
        relu.inputs[0], relu.outputs[0] = x, rectified
        t.inputs[0], t.outputs[0] = rectified, y
    return graph


def cancel_inverse_transposes(graph: gs.Graph) -> gs.Graph:
    """Transpose(Transpose(x, p), q) with q∘p the identity, the first read by the second only, is x:
    two token-wise dense layers in a row (a Mixer's token MLP after its channel MLP) keep their
    features on axis 1 between them."""
    for second in [n for n in graph.nodes if n.op == "Transpose"]:
        first = second.inputs[0].inputs[0] if second.inputs and second.inputs[0].inputs else None
        if first is None or first.op != "Transpose" or len(first.outputs[0].outputs) != 1 or \
                first.outputs[0] in graph.outputs:
            continue
        p, q = first.attrs.get("perm"), second.attrs.get("perm")
        if p is None or q is None or [p[i] for i in q] != list(range(len(p))):
            continue
        x, y = first.inputs[0], second.outputs[0]
        if y in graph.outputs:
            continue              # (the graph output keeps its name: leave this pair)
        for consumer in list(y.outputs):
            for i, t in enumerate(list(consumer.inputs)):
                if t is y:
                    consumer.inputs[i] = x
        second.outputs.clear()
        first.outputs.clear()
    return graph


def prelu_to_leaky_relu(graph: gs.Graph) -> gs.Graph:
    """A PRelu whose learned slope is one constant (``nn.PReLU()``'s default) is a LeakyRelu with that
    slope, which signed neurons convert (--signed-spikes). A slope per channel stays: PReluIF neurons."""
    for node in [n for n in graph.nodes if n.op == "PRelu"]:
        slope = node.inputs[1]
        if not _is_const(slope) or np.unique(np.asarray(slope.values)).size != 1:
            continue
        node.op, node.attrs = "LeakyRelu", {"alpha": float(np.asarray(slope.values).reshape(-1)[0])}
        node.inputs.pop()
    return graph


def split_to_slices(graph: gs.Graph) -> gs.Graph:
    """A Split with constant sizes (an input from opset 13, an attribute before; equal parts by
    default or ``num_outputs``, opset 18) becomes one Slice per output, so that every node later
    passes, normalisation and the lowering see has one output. A Split whose input shape is
    unknown stays (and is refused, naming it)."""
    for node in [n for n in graph.nodes if n.op == "Split"]:
        x = node.inputs[0]
        axis = node.attrs.get("axis", 0)
        if x.shape is None or not -len(x.shape) <= axis < len(x.shape):
            continue
        axis = axis + len(x.shape) if axis < 0 else axis
        size = x.shape[axis]
        if len(node.inputs) > 1 and node.inputs[1] is not None and node.inputs[1].name:
            if not _is_const(node.inputs[1]):
                continue
            parts = [int(v) for v in node.inputs[1].values.reshape(-1)]
        elif "split" in node.attrs:
            parts = [int(v) for v in node.attrs["split"]]
        elif isinstance(size, int):
            n = len(node.outputs)
            chunk = -(-size // n)                      # the last part is smaller (opset 18)
            parts = [min(chunk, size - k * chunk) for k in range(n)]
        else:
            continue
        if len(parts) != len(node.outputs) or (isinstance(size, int) and sum(parts) != size):
            continue
        start = 0
        for k, (part, out) in enumerate(zip(parts, node.outputs)):
            name = f"{node.name}/slice{k}"
            if graph.opset < 10:              # Slice took attributes before opset 10
                graph.nodes.append(gs.Node("Slice", name, attrs={"starts": [start], "ends": [start + part],
                                                                 "axes": [axis]}, inputs=[x], outputs=[out]))
            else:
                consts = [_const(node, f"{role}{k}", np.array([v], np.int64))
                          for role, v in (("starts", start), ("ends", start + part), ("axes", axis))]
                graph.nodes.append(gs.Node("Slice", name, inputs=[x, *consts], outputs=[out]))
            start += part
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
        elif (node.op in ("Conv", "ConvTranspose") and _is_const(node.inputs[1])
              and (len(node.inputs) < 3 or not node.inputs[2].name)):
            n_out = _out_channels(node)
            _set_inputs(node, 2, [_const(node, "bias", np.zeros(n_out, np.float32))])
    return graph


def _out_channels(node: gs.Node) -> int:
    w = node.inputs[1].values
    return w.shape[1] * node.attrs.get("group", 1) if node.op == "ConvTranspose" else w.shape[0]


def _scale_outputs(node: gs.Node, w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """W scaled per output channel: axis 0 of a Conv's or Gemm's W; a ConvTranspose's W is
    (C_in, C_out/group, …), output channel (input channel's group)·C_out/group + j."""
    if node.op != "ConvTranspose":
        return w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    index = conv_transpose_channel(w.shape, node.attrs.get("group", 1))
    return w * scale[index].reshape(*index.shape, *([1] * (w.ndim - 2)))


def absorb_batchnorm(graph: gs.Graph) -> gs.Graph:
    """Fold BatchNormalization into the Conv/Gemm that feeds it alone:
    W̄ = γ/σ·W, b̄ = γ/σ·(b − μ) + β with σ = sqrt(var + ε). Repeated BN→BN chains were merged
    before, so one sweep suffices."""
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        x = bn.inputs[0]
        if len(x.inputs) != 1 or len(x.outputs) != 1 or x in graph.outputs:
            continue
        producer = x.inputs[0]
        if producer.op not in ("Conv", "Gemm", "ConvTranspose") or not all(_is_const(t) for t in producer.inputs[1:3]):
            continue
        if producer.op == "Gemm" and producer.attrs.get("transB") != 1:
            continue
        if len(bn.outputs) > 1 and any(t.outputs for t in bn.outputs[1:]):
            continue  # training-mode statistics are consumed
        if not all(_is_const(t) for t in bn.inputs[1:5]):
            continue
        scale, shift = _bn_affine(bn)
        w = producer.inputs[1].values.astype(np.float64)
        b = producer.inputs[2].values.astype(np.float64)
        if _out_channels(producer) != scale.shape[0]:
            continue
        w = _scale_outputs(producer, w, scale)
        b = b * scale + shift
        # New constants, never edited in place: an initializer may be shared with another node.
        producer.inputs[1] = _const(producer, "weight", w.astype(np.float32))
        producer.inputs[2] = _const(producer, "bias", b.astype(np.float32))
        producer.outputs[0] = bn.outputs[0]
        bn.inputs.clear()
        bn.outputs.clear()
    return graph


def affine_to_batchnorm(graph: gs.Graph) -> gs.Graph:
    """x·c, c·x, x+c, c+x, x−c, c−x, x/c with a constant c that is the same for every position of a
    channel (axis 1) become BatchNormalization(γ, β, mean=0, var=1, ε=0)."""
    for node in [n for n in graph.nodes if n.op in ("Mul", "Add", "Sub", "Div")]:
        a, b = node.inputs
        if _is_const(a) == _is_const(b) or (node.op == "Div" and _is_const(a)):
            continue
        x, c = (b, a) if _is_const(a) else (a, b)
        if _scales_a_product(node, x):
            if node.op == "Div":        # x / c as x · (1/c): one kind of scale factor
                node.op = "Mul"
                node.inputs[1] = _const(node, "factor", np.asarray(1.0 / np.asarray(c.values, np.float64), np.float32))
            continue
        if x.shape is None or len(x.shape) < 2 or not isinstance(x.shape[1], int):
            continue
        channel = _per_channel(np.asarray(c.values, np.float64), x.shape)
        if channel is None:
            continue
        ones = np.ones_like(channel)
        gamma, beta = {"Mul": (channel, 0 * ones), "Add": (ones, channel), "Div": (1 / channel, 0 * ones),
                       "Sub": (-ones, channel) if _is_const(a) else (ones, -channel)}[node.op]
        params = [_const(node, role, v.astype(np.float32)) for role, v in
                  (("gamma", gamma), ("beta", beta), ("mean", 0 * ones), ("var", ones))]
        bn = gs.Node("BatchNormalization", node.name, attrs={"epsilon": 0.0}, inputs=[x, *params],
                     outputs=list(node.outputs))
        node.inputs.clear()
        node.outputs.clear()
        graph.nodes.append(bn)
    return graph


def _scales_a_product(node: gs.Node, x) -> bool:
    """Is ``node`` a Mul/Div of one number on the output (or an input) of a MatMul of two
    activations (attention's 1/√d)? It stays a Mul: a scale factor, not a per-channel affine of
    whatever axis 1 happens to be (the heads)."""
    if node.op not in ("Mul", "Div") or np.asarray(next(t for t in node.inputs if t is not x).values).size != 1:
        return False
    matmuls = [n for n in (x.inputs[:1] + list(node.outputs[0].outputs)) if n.op == "MatMul"]
    return any(not any(_is_const(t) for t in m.inputs) for m in matmuls)


def _per_channel(c: np.ndarray, shape) -> "np.ndarray | None":
    """The per-channel vector of constant ``c`` broadcast against a tensor of ``shape`` (N, C, ...),
    or None if ``c`` varies along another axis (or broadcasting fails)."""
    rank = len(shape)
    if c.ndim > rank:
        return None
    c = c.reshape((1,) * (rank - c.ndim) + c.shape)
    if c.shape[0] != 1 or any(d not in (1, s) for d, s in zip(c.shape[1:], shape[1:])):
        return None
    if any(d != 1 for d in c.shape[2:]):
        return None
    return np.broadcast_to(c.reshape(-1), (shape[1],)).astype(np.float64)


def merge_batchnorms(graph: gs.Graph) -> gs.Graph:
    """BN₁ followed by BN₂ alone (e.g. x − mean, then / std) becomes one BN."""
    for bn2 in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        x = bn2.inputs[0]
        if len(x.inputs) != 1 or x.inputs[0].op != "BatchNormalization" or len(x.outputs) != 1 or x in graph.outputs:
            continue
        bn1 = x.inputs[0]
        if not all(_is_const(t) for t in bn1.inputs[1:5] + bn2.inputs[1:5]):
            continue
        a1, c1 = _bn_affine(bn1)
        a2, c2 = _bn_affine(bn2)
        ones = np.ones_like(a1)
        params = [_const(bn1, role, v.astype(np.float32)) for role, v in
                  (("gamma", a1 * a2), ("beta", c1 * a2 + c2), ("mean", 0 * ones), ("var", ones))]
        merged = gs.Node("BatchNormalization", bn1.name, attrs={"epsilon": 0.0}, inputs=[bn1.inputs[0], *params],
                         outputs=list(bn2.outputs))
        for n in (bn1, bn2):
            n.inputs.clear()
            n.outputs.clear()
        graph.nodes.append(merged)
        graph.toposort()
    return graph


def _bn_affine(bn: gs.Node):
    """BatchNormalization as y = a·x + c (per channel)."""
    gamma, beta, mean, var = (t.values.astype(np.float64) for t in bn.inputs[1:5])
    a = gamma / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
    return a, beta - mean * a


def batchnorm_to_linear(graph: gs.Graph) -> gs.Graph:
    """A BatchNormalization that no Conv/Gemm could absorb (after a Concat, at the input, …) is a
    per-channel affine: a depthwise Conv with 1×…×1 kernels (rank ≥ 3) or a diagonal Gemm (rank 2)."""
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        x = bn.inputs[0]
        if x.shape is None or len(x.shape) < 2 or not all(_is_const(t) for t in bn.inputs[1:5]):
            continue
        if len(bn.outputs) > 1 and any(t.outputs for t in bn.outputs[1:]):
            continue
        a, c = _bn_affine(bn)
        rank = len(x.shape)
        if rank == 2:
            node = gs.Node("Gemm", bn.name, attrs={"transB": 1},
                           inputs=[x, _const(bn, "weight", np.diag(a).astype(np.float32)),
                                   _const(bn, "bias", c.astype(np.float32))], outputs=[bn.outputs[0]])
        else:
            w = a.reshape((-1, 1) + (1,) * (rank - 2)).astype(np.float32)
            node = gs.Node("Conv", bn.name, attrs={"group": int(a.size), "kernel_shape": [1] * (rank - 2)},
                           inputs=[x, _const(bn, "weight", w), _const(bn, "bias", c.astype(np.float32))],
                           outputs=[bn.outputs[0]])
        bn.inputs.clear()
        bn.outputs.clear()
        graph.nodes.append(node)
    return graph


def pool_before_neurons(graph: gs.Graph) -> gs.Graph:
    """ReLU → MaxPool becomes MaxPool → ReLU where the ReLU's input does not depend on any neuron.

    Max and ReLU (or Clip) are both monotone, so they commute: the ANN computes exactly the same
    values. In the SNN that input is the constant input current (``Config.pools_currents``), and the
    neurons now stand for the pooled values the next layer receives: their threshold is searched and
    their bias calibrated on those, instead of on every position of which the pooling keeps one in
    k², and there are k² times fewer of them. Measured on the MNIST ResNet fixture: +0.4 points at
    T=32, but −1.6 / −1.15 at T=8 / 16, so it is an option (``simulation.max_pool.before_neuron``).
    (With constant input, running-max pooling of the neurons' spikes would pass on the same spikes
    as the window's strongest neuron; what changes is what the neurons are fitted to.)
    The pooled current is named ``<relu output>_pooled``; the ReLU writes the MaxPool's old output,
    whose values are unchanged."""
    depends_on_neurons = downstream_of(((n.op, [t.name for t in n.inputs], [t.name for t in n.outputs])
                                        for n in graph.nodes), NEURON_OPS)
    for relu in [n for n in graph.nodes if n.op in NEURON_OPS]:
        r = relu.outputs[0]
        if r in graph.outputs or len(r.outputs) != 1 or relu.inputs[0].name in depends_on_neurons:
            continue
        pool = r.outputs[0]
        if pool.op != "MaxPool" or pool.inputs[0] is not r or len(pool.outputs) != 1:
            continue  # a MaxPool whose indices are used stays where it is
        pooled = gs.Variable(f"{r.name}_pooled", dtype=r.dtype)
        out = pool.outputs[0]
        current = relu.inputs[0]
        pool.inputs[0], pool.outputs[0] = current, pooled
        relu.inputs[0], relu.outputs[0] = pooled, out
        log.info("%s: max pooling of %s before the neurons %s", pool.name, current.name, relu.name)
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
