"""The graph passes that make a transformer block convertible (issue 22; ``passes.clean_graph`` runs them).

Exporters write a ViT with idioms no CNN has; these passes bring them to ops the op table knows:

* ``gelu_to_one_node``: GELU's Erf form, ``0.5·x·(1 + erf(x/√2))`` in any order of its Muls (both
  PyTorch exporters below opset 20), and its tanh form, become one ``Gelu`` node — the standard op from opset 20, below
  it a model-local function ``onnx2snn.ann.Gelu`` whose body is that Erf form, so onnxruntime and
  ``onnx.checker`` still take the graph. Run before the affine ops become BatchNormalization, which
  would otherwise take its Div and Add apart.
* ``layer_norm_to_one_node``: LayerNorm's decomposed form (the TorchScript exporter below opset 17)
  becomes one LayerNormalization node (below 17 a model-local ``onnx2snn.ann`` function again).
* ``batch_constant_concat`` (called by ``passes.fold_shape_subgraphs``, which evaluates it):
  a class token ``Concat([Expand(cls, (N, 1, d)), x], axis=1)`` is x padded with a zero token, plus a
  constant (the token in its place, zeros elsewhere) — folded into the position embedding's Add when
  that Add is all that reads it. A constant current, as the position embedding is.
* ``gather_through_transpose``: ``Gather(Transpose(qkv, (2, 0, 3, 1, 4)), i, axis=0)`` (timm's
  ``qkv.permute(2, 0, 3, 1, 4); q, k, v = qkv[0], qkv[1], qkv[2]``) moves the batch axis; it becomes
  a Gather along the axis that is selected, then a Transpose that keeps the batch first.
* ``spike_sites``: where the tensors of a transformer are carried by spikes. On the data input of
  every dense layer and on both operands of every MatMul of two activations, unless it is spikes
  already or the network's input, a ``LeakyRelu(alpha=1)`` — the identity in the ANN — marks two-sided
  IF neurons (``SignedIF`` with slope 1: +1 and −1 spikes at ±θ). It sits after the last op that is
  not a layout op, so that Q, K and V share the neurons on the QKV layer's output. Only in graphs
  with a transformer op (LayerNormalization, Gelu, Softmax or a MatMul of two activations): a CNN's
  analog tensors keep their meaning.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Optional

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import helper, numpy_helper

from .ops import LAYOUT, NEURON_OPS, RULES

ANN_DOMAIN = "onnx2snn.ann"        # model-local functions of the ANN graph (never in a written file)
SQRT_HALF = 2 ** -0.5
SQRT_2_OVER_PI = (2 / np.pi) ** 0.5
TRANSFORMER_OPS = ("LayerNormalization", "Gelu", "Softmax")
_fresh = itertools.count()


def _is_const(t) -> bool:
    return isinstance(t, gs.Constant)


def _scalar(t) -> Optional[float]:
    """The value of a constant that holds one number, else None."""
    if not _is_const(t):
        return None
    v = np.asarray(t.values)
    return float(v.reshape(-1)[0]) if v.size == 1 else None


def _only_reader(t, graph) -> Optional[gs.Node]:
    return t.outputs[0] if len(t.outputs) == 1 and t not in graph.outputs else None


def _detach(*nodes) -> None:
    for n in nodes:
        n.inputs.clear()
        n.outputs.clear()


# --- GELU -----------------------------------------------------------------------------------------

def _gelu_input(erf: gs.Node):
    """(x, the node computing x/√2) where the Erf reads x/√2 or x·(1/√2), else None."""
    t = erf.inputs[0]
    if not t.inputs:
        return None
    node = t.inputs[0]
    if node.op not in ("Div", "Mul") or len(node.inputs) != 2:
        return None
    for x, c in (node.inputs, node.inputs[::-1]):
        value = _scalar(c)
        if value is None or _is_const(x) or (node.op == "Div" and c is not node.inputs[1]):
            continue
        if np.isclose(value if node.op == "Mul" else 1 / value, SQRT_HALF, rtol=1e-5):
            return x, node
    return None


def _producer(t, op):
    node = t.inputs[0] if t.inputs else None
    return node if node is not None and node.op == op and len(node.inputs) == 2 else None


def _split_scalar(node):
    """(the scalar constant, the other input) of a binary node with one scalar constant input, or None."""
    for c, other in (node.inputs, node.inputs[::-1]):
        if _scalar(c) is not None and not _is_const(other):
            return _scalar(c), other
    return None


def _cube_of(t, x):
    """The nodes computing t = x³ (Pow(x, 3), or x·(x·x) in either order), or None."""
    node = t.inputs[0] if t.inputs else None
    if node is not None and node.op == "Pow" and node.inputs[0] is x and _scalar(node.inputs[1]) == 3.0:
        return [node]
    if node is None or node.op != "Mul":
        return None
    for a, b in (node.inputs, node.inputs[::-1]):
        square = _producer(b, "Mul")
        if a is x and square is not None and list(square.inputs) == [x, x]:
            return [node, square]
    return None


def _tanh_gelu_input(gate: gs.Node):
    """(x, the nodes computing √(2/π)·(x + 0.044715·x³)) where the Tanh reads that, else None."""
    outer = _producer(gate.inputs[0], "Mul")
    split = None if outer is None else _split_scalar(outer)
    if split is None or not np.isclose(split[0], SQRT_2_OVER_PI, rtol=1e-5):
        return None
    add = _producer(split[1], "Add")
    if add is None:
        return None
    for x, b in (add.inputs, add.inputs[::-1]):
        poly = _producer(b, "Mul")
        inner = None if poly is None else _split_scalar(poly)
        if inner is None or not np.isclose(inner[0], 0.044715, rtol=1e-4):
            continue
        cube = _cube_of(inner[1], x)
        if cube is not None:
            return x, [outer, add, poly, *cube]
    return None


def gelu_to_one_node(graph: gs.Graph) -> gs.Graph:
    """See the module docstring: the exact (Erf) form and the tanh form (``approximate="tanh"``:
    0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))), whatever the order of the final Muls."""
    opset = graph.opset
    for gate in [n for n in graph.nodes if n.op in ("Erf", "Tanh")]:
        if gate.op == "Erf":
            found = _gelu_input(gate)
            found = None if found is None else (found[0], [found[1]])
        else:
            found = _tanh_gelu_input(gate)
        if found is None:
            continue
        x, inner = found
        used = [*inner, gate]
        add = _only_reader(gate.outputs[0], graph)
        if add is None or add.op != "Add" or _scalar(next(i for i in add.inputs if i is not gate.outputs[0])) != 1.0:
            continue
        used.append(add)
        t, coefficient, has_x = add.outputs[0], 1.0, False      # t = coefficient · x^has_x · (1 + erf)
        while not (has_x and np.isclose(coefficient, 0.5, rtol=1e-6)):
            node = _only_reader(t, graph)
            if node is None or node.op != "Mul" or len(node.inputs) != 2:
                break
            other = node.inputs[1] if node.inputs[0] is t else node.inputs[0]
            if _scalar(other) is not None:
                coefficient *= _scalar(other)
            elif other is x and not has_x:
                has_x = True
            elif (not has_x and other.inputs and other.inputs[0].op == "Mul" and _only_reader(other, graph)
                  and x in other.inputs[0].inputs and _scalar(next(i for i in other.inputs[0].inputs if i is not x))):
                half = other.inputs[0]                            # (0.5·x)·(1 + erf)
                coefficient *= _scalar(next(i for i in half.inputs if i is not x))
                has_x = True
                used.append(half)
            else:
                break
            used.append(node)
            t = node.outputs[0]
        if not (has_x and np.isclose(coefficient, 0.5, rtol=1e-6)):
            continue
        if any(len(n.outputs[0].outputs) != 1 for n in used if n.outputs[0] is not t):
            continue                                              # a partial result read elsewhere
        out = t
        _detach(*used)
        approximate = "none" if gate.op == "Erf" else "tanh"
        domain = "" if opset >= 20 else ANN_DOMAIN
        graph.nodes.append(gs.Node("Gelu", f"{gate.name}/gelu", attrs={"approximate": approximate}, inputs=[x],
                                   outputs=[out], domain=domain))
    return graph


def gelu_form(model: onnx.ModelProto, nodes=None) -> str:
    """The one GELU form (``approximate``: "none" or "tanh") of a model's Gelu nodes below opset 20,
    where one model-local function stands for them all; both forms in one model are refused."""
    from ..errors import Onnx2SnnError
    nodes = model.graph.node if nodes is None else nodes
    forms = {next((helper.get_attribute_value(a).decode() for a in n.attribute if a.name == "approximate"), "none")
             for n in nodes if n.op_type in ("Gelu", "ExpectGelu")}
    if len(forms) > 1:
        raise Onnx2SnnError("the model mixes exact and tanh GELU below opset 20; export at opset 20 (the Gelu op), "
                            "or with one form")
    return forms.pop() if forms else "none"


def gelu_function(opset: int, approximate: str = "none") -> onnx.FunctionProto:
    """``onnx2snn.ann.Gelu``: GELU written in the ops of ``opset`` (Gelu is an op from 20)."""
    return helper.make_function(ANN_DOMAIN, "Gelu", ["X"], ["Y"], gelu_body("X", "Y", "", approximate),
                                [helper.make_opsetid("", opset)], attributes=["approximate"])


def gelu_body(x: str, y: str, prefix: str = "", approximate: str = "none") -> List[onnx.NodeProto]:
    """0.5·x·(1 + erf(x/√2)), or with ``approximate="tanh"`` 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
    as ONNX nodes (tensor constants: their type is float32 in any opset)."""
    def const(name, value):
        return helper.make_node("Constant", [], [prefix + name], value=numpy_helper.from_array(
            np.array(value, np.float32), prefix + name))
    p = prefix
    if approximate == "tanh":
        gate = [helper.make_node("Mul", [x, x], [p + "square"]), helper.make_node("Mul", [p + "square", x], [p + "cube"]),
                const("c", 0.044715), helper.make_node("Mul", [p + "cube", p + "c"], [p + "term"]),
                helper.make_node("Add", [x, p + "term"], [p + "poly"]), const("scale", SQRT_2_OVER_PI),
                helper.make_node("Mul", [p + "poly", p + "scale"], [p + "scaled"]),
                helper.make_node("Tanh", [p + "scaled"], [p + "erf"])]
    else:
        gate = [const("scale", SQRT_HALF), helper.make_node("Mul", [x, p + "scale"], [p + "scaled"]),
                helper.make_node("Erf", [p + "scaled"], [p + "erf"])]
    return [*gate, const("one", 1.0),
            helper.make_node("Add", [p + "erf", p + "one"], [p + "one_plus"]),
            helper.make_node("Mul", [x, p + "one_plus"], [p + "times_x"]), const("half", 0.5),
            helper.make_node("Mul", [p + "times_x", p + "half"], [y])]


def add_ann_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model-local functions the ANN graph's ``onnx2snn.ann`` nodes need (and their domain)."""
    used = {n.op_type for n in model.graph.node if n.domain == ANN_DOMAIN}
    if not used:
        return model
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    have = {f.name for f in model.functions if f.domain == ANN_DOMAIN}
    if "Gelu" in used - have:
        model.functions.append(gelu_function(opset, gelu_form(model)))
    if "LayerNormalization" in used - have:
        model.functions.append(helper.make_function(
            ANN_DOMAIN, "LayerNormalization", ["X", "Scale", "B"], ["Y"], layer_norm_body("X", "Scale", "B", "Y"),
            [helper.make_opsetid("", opset)], attributes=["axis", "epsilon"]))
    if not any(o.domain == ANN_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ANN_DOMAIN, 1))
    return model


# --- LayerNorm's decomposed form (opsets below 17) ---------------------------------------------------

def _reduce_last_axis(node, graph) -> bool:
    """A ReduceMean over the last axis only, keepdims (axes from the attribute, or the input from 18)."""
    if node.op != "ReduceMean" or not node.attrs.get("keepdims", 1):
        return False
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and _is_const(node.inputs[1]):
        axes = np.asarray(node.inputs[1].values).reshape(-1).tolist()
    rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
    return axes is not None and len(axes) == 1 and (axes[0] == -1 or (rank is not None and axes[0] == rank - 1))


def _reader(t, op, graph, exclude=()):
    return next((n for n in t.outputs if n.op == op and n not in exclude), None) if t not in graph.outputs else None


def layer_norm_to_one_node(graph: gs.Graph) -> gs.Graph:
    """``(x − mean(x))/sqrt(mean((x − mean(x))²) + ε)·γ + β`` over the last axis — LayerNorm as the
    TorchScript exporter writes it below opset 17 (ReduceMean, Sub, Pow 2, ReduceMean, Add ε, Sqrt, Div,
    Mul γ, Add β) — becomes one LayerNormalization node: the op from opset 17, below it a model-local
    function ``onnx2snn.ann.LayerNormalization`` whose body is that chain (from opset 12, which its
    Constant of ε needs). The intermediate tensors must be read by the chain only."""
    if graph.opset < 12:
        return graph
    for mean in [n for n in graph.nodes if n.op == "ReduceMean"]:
        if not mean.outputs or not _reduce_last_axis(mean, graph):
            continue
        x = mean.inputs[0]
        sub = _only_reader(mean.outputs[0], graph)
        if sub is None or sub.op != "Sub" or list(sub.inputs) != [x, mean.outputs[0]]:
            continue
        d = sub.outputs[0]
        square = next((n for n in d.outputs if n.op == "Pow" and _scalar(n.inputs[1]) == 2.0) or
                      (n for n in d.outputs if n.op == "Mul" and list(n.inputs) == [d, d]), None)
        div = _reader(d, "Div", graph)
        if square is None or div is None or len(d.outputs) != 2 or div.inputs[0] is not d:
            continue
        var = _only_reader(square.outputs[0], graph)
        if var is None or not _reduce_last_axis(var, graph):
            continue
        add = _only_reader(var.outputs[0], graph)
        eps = None if add is None or add.op != "Add" else _scalar(next((i for i in add.inputs if i is not var.outputs[0]), None))
        sqrt = _only_reader(add.outputs[0], graph) if eps is not None else None
        if sqrt is None or sqrt.op != "Sqrt" or _only_reader(sqrt.outputs[0], graph) is not div:
            continue
        used, out = [mean, sub, square, var, add, sqrt, div], div.outputs[0]
        width = x.shape[-1] if x.shape is not None and isinstance(x.shape[-1], int) else None
        if width is None:
            continue
        gamma, beta = np.ones(width, np.float32), np.zeros(width, np.float32)
        for op in ("Mul", "Add"):
            node = _only_reader(out, graph)
            other = None if node is None or node.op != op else next(i for i in node.inputs if i is not out)
            if other is None or not _is_const(other) or np.asarray(other.values).size not in (1, width) or (
                    np.asarray(other.values).ndim and np.asarray(other.values).shape[-1] != np.asarray(other.values).size):
                break
            value = np.broadcast_to(np.asarray(other.values, np.float32).reshape(-1), (width,))
            gamma, beta = (gamma * value, beta * value) if op == "Mul" else (gamma, beta + value)
            used.append(node)
            out = node.outputs[0]
        _detach(*used)
        graph.nodes.append(gs.Node(
            "LayerNormalization", f"{mean.name}/layer_norm", attrs={"axis": -1, "epsilon": float(eps)},
            inputs=[x, gs.Constant(f"{mean.name}.scale.{next(_fresh)}", np.ascontiguousarray(gamma)),
                    gs.Constant(f"{mean.name}.bias.{next(_fresh)}", np.ascontiguousarray(beta))],
            outputs=[out], domain="" if graph.opset >= 17 else ANN_DOMAIN))
    return graph


def layer_norm_body(x: str, scale: str, bias: str, y: str, prefix: str = "") -> List[onnx.NodeProto]:
    """LayerNormalization over the last axis as ops of opsets 12..16 (ReduceMean's axes an attribute;
    ε the calling node's ``epsilon``)."""
    p = prefix
    eps = helper.make_node("Constant", [], [p + "eps"])
    ref = onnx.AttributeProto()
    ref.name, ref.ref_attr_name, ref.type = "value_float", "epsilon", onnx.AttributeProto.FLOAT
    eps.attribute.append(ref)
    return [helper.make_node("ReduceMean", [x], [p + "mean"], axes=[-1]),
            helper.make_node("Sub", [x, p + "mean"], [p + "centred"]),
            helper.make_node("Mul", [p + "centred", p + "centred"], [p + "squared"]),
            helper.make_node("ReduceMean", [p + "squared"], [p + "variance"], axes=[-1]), eps,
            helper.make_node("Add", [p + "variance", p + "eps"], [p + "shifted"]),
            helper.make_node("Sqrt", [p + "shifted"], [p + "std"]),
            helper.make_node("Div", [p + "centred", p + "std"], [p + "normalised"]),
            helper.make_node("Mul", [p + "normalised", scale], [p + "scaled"]),
            helper.make_node("Add", [p + "scaled", bias], [y])]


# --- class token ------------------------------------------------------------------------------------

def batch_constant_concat(graph: gs.Graph, concat: gs.Node, name: str, value: np.ndarray) -> bool:
    """Rewrite ``concat``, one of whose inputs (``name``) is the same constant for every sample (a
    class token expanded to the batch size: ``value`` is it for batch 1), as Pad + Add of a
    constant; False where that does not apply (one data input beside constants, known shapes)."""
    data = [t for t in concat.inputs if t.name != name and not _is_const(t)]
    if len(data) != 1:
        return False
    if data[0].shape is None or any(not isinstance(d, int) for d in data[0].shape[1:]):
        data[0].shape = _inferred_shape(graph, data[0].name)      # (a Reshape target just folded)
        data[0].dtype = data[0].dtype or np.float32
        if data[0].shape is None or any(not isinstance(d, int) for d in data[0].shape[1:]):
            return False
    expanded = next(t for t in concat.inputs if t.name == name)
    _concat_to_pad(graph, concat, expanded, np.asarray(value, np.float32))
    return True


def _inferred_shape(graph: gs.Graph, name: str):
    """The shape ONNX shape inference gives tensor ``name`` of the graph as it is now, or None."""
    try:
        model = onnx.shape_inference.infer_shapes(gs.export_onnx(graph.copy()))
    except Exception:
        return None
    info = next((v for v in model.graph.value_info if v.name == name), None)
    if info is None:
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]


def _concat_to_pad(graph, concat, expanded, token) -> None:
    x = next(t for t in concat.inputs if t is not expanded and not _is_const(t))
    rank = len(x.shape)
    axis = concat.attrs["axis"] % rank
    parts = []                          # per input: its constant per-sample block (zeros for x)
    for t in concat.inputs:
        if t is expanded:
            parts.append(token)
        elif t is x:
            parts.append(np.zeros((1, *x.shape[1:]), np.float32))
        else:
            v = np.asarray(t.values, np.float32)
            parts.append(v.reshape((1,) * (rank - v.ndim) + v.shape))
    constant = np.concatenate(parts, axis=axis)
    index = list(concat.inputs).index(x)
    before = sum(p.shape[axis] for p in parts[:index])
    after = sum(p.shape[axis] for p in parts[index + 1:])
    pads = [0] * (2 * rank)
    pads[axis], pads[rank + axis] = before, after
    padded = gs.Variable(f"{concat.name}/padded", dtype=np.float32)
    name = concat.name
    if graph.opset >= 11:
        pad = gs.Node("Pad", f"{name}/pad", inputs=[x, gs.Constant(f"{name}.pads.{next(_fresh)}", np.array(pads, np.int64))],
                      outputs=[padded])
    else:
        pad = gs.Node("Pad", f"{name}/pad", attrs={"pads": pads}, inputs=[x], outputs=[padded])
    out = concat.outputs[0]
    add = _only_reader(out, graph)
    other = None if add is None or add.op != "Add" else next((i for i in add.inputs if i is not out), None)
    _detach(concat)
    if other is not None and _is_const(other):      # the position embedding's Add takes the token too
        pos = np.asarray(other.values, np.float32)
        merged = (pos + constant).astype(np.float32)
        add.inputs[list(add.inputs).index(other)] = gs.Constant(f"{add.name}.with_token.{next(_fresh)}", merged)
        add.inputs[list(add.inputs).index(out) if out in add.inputs else 0] = padded
        graph.nodes.append(pad)
        return
    graph.nodes += [pad, gs.Node("Add", f"{name}/constant", inputs=[
        padded, gs.Constant(f"{name}.constant.{next(_fresh)}", constant)], outputs=[out])]


# --- the QKV split ----------------------------------------------------------------------------------

def gather_through_transpose(graph: gs.Graph) -> gs.Graph:
    """See the module docstring: every reader of the Transpose must be such a Gather (one index)."""
    for tr in [n for n in graph.nodes if n.op == "Transpose"]:
        perm = list(tr.attrs.get("perm", []))
        out = tr.outputs[0]
        if not perm or perm[0] == 0 or out in graph.outputs or not out.outputs:
            continue
        gathers = list(out.outputs)
        if not all(g.op == "Gather" and g.attrs.get("axis", 0) == 0 and _is_const(g.inputs[1])
                   and np.asarray(g.inputs[1].values).ndim == 0 for g in gathers):
            continue
        selected = perm[0]
        rest = [p - (p > selected) for p in perm[1:]]
        if rest[0] != 0:
            continue                    # the batch axis would still move
        x = tr.inputs[0]
        for g in gathers:
            picked = gs.Variable(f"{g.name}/picked", dtype=np.float32)
            result = g.outputs[0]
            g.inputs[0] = x
            g.attrs["axis"] = selected
            g.outputs[0] = picked
            graph.nodes.append(gs.Node("Transpose", f"{g.name}/transpose", attrs={"perm": rest},
                                       inputs=[picked], outputs=[result]))
        _detach(tr)
    return graph


# --- where spikes carry the tensors -------------------------------------------------------------------

def _two_activation_matmul(node) -> bool:
    return node.op == "MatMul" and len(node.inputs) == 2 and not any(_is_const(t) for t in node.inputs)


def has_transformer_ops(graph: gs.Graph) -> bool:
    return any(n.op in TRANSFORMER_OPS or _two_activation_matmul(n) for n in graph.nodes)


def is_spike_site(node) -> bool:
    """A ``LeakyRelu(alpha=1)`` (onnx.NodeProto or gs.Node): the two-sided neurons ``spike_sites``
    puts on a transformer's tensors."""
    op = node.op_type if isinstance(node, onnx.NodeProto) else node.op
    if op != "LeakyRelu":
        return False
    if isinstance(node, onnx.NodeProto):
        alpha = next((a.f for a in node.attribute if a.name == "alpha"), 0.01)
    else:
        alpha = node.attrs.get("alpha", 0.01)
    return float(alpha) == 1.0


def spike_sites(graph: gs.Graph) -> gs.Graph:
    """See the module docstring."""
    if not has_transformer_ops(graph):
        return graph
    inputs = set(id(t) for t in graph.inputs)
    sites: Dict[int, gs.Variable] = {}               # analog tensor -> the spikes standing for it
    for node in list(graph.nodes):
        weighted = RULES.get(node.op) is not None and RULES[node.op].group == "weighted" and \
            node.op != "LayerNormalization"
        if not (weighted or _two_activation_matmul(node)):
            continue
        for index in ([0] if weighted else [0, 1]):
            reader, t = node, node.inputs[index]
            while t.inputs and t.inputs[0].op in LAYOUT and len(t.outputs) >= 1:
                reader, t = t.inputs[0], t.inputs[0].inputs[0]
            if id(t) in inputs or _is_const(t) or not t.inputs or t.inputs[0].op in NEURON_OPS:
                continue
            if id(t) not in sites:
                spikes = gs.Variable(f"{t.name}/spikes", dtype=np.float32)
                graph.nodes.append(gs.Node("LeakyRelu", f"{t.inputs[0].name}/spikes", attrs={"alpha": 1.0},
                                           inputs=[t], outputs=[spikes]))
                sites[id(t)] = spikes
            reader.inputs[[i for i, u in enumerate(reader.inputs) if u is t][0]] = sites[id(t)]
    return graph
