"""NIR (the Neuromorphic Intermediate Representation, ``pip install nir``) out of and back into
the spiking graph.

``export_nir`` emits a NIR graph from a ``*.snn.onnx`` (the spiking graph, ``graph/spiking.py``):

=====================  ======================================================================
spiking graph          NIR
=====================  ======================================================================
Conv (1-D, 2-D)        Conv1d / Conv2d (symmetric padding; a missing bias is zeros)
Gemm                   Affine
IF, ClipIF             IF with r = 1, v_threshold, v_reset = 0 (or the reset value)
AveragePool, global    AvgPool2d (the global pooling as a kernel of the whole map)
average pooling
Flatten, Reshape to    Flatten over the per-sample dims (start_dim 0: NIR types have no batch)
1-D, Squeeze
Mul (synaptic factor)  Scale
Add                    no node: NIR sums the edges into a node
Relu on spikes         no node (the identity)
Readout                I (an integrator: the membrane readout) or IF (spike counts), then Output
=====================  ======================================================================

What NIR cannot state exactly goes into node metadata, which ``load_nir`` honours and other
readers may ignore: ``onnx2snn.reset`` ("subtract": v ← v − θ instead of NIR's v ← v_reset),
``onnx2snn.fires`` ("v >= threshold"; NIR fires on v > θ), ``onnx2snn.v_init`` (the initial
potential as a fraction of the threshold, a scalar or per neuron), and on the graph
``onnx2snn.readout_delay``. What NIR has no node for is refused with the node named — max pooling
of spikes, Concat, Transpose, Pad, ReduceSum, analog max pooling — unless ``approximate=True``,
which exports a spiking max pool as average pooling and lists every approximation in the graph's
``onnx2snn.approximations`` metadata (and the returned list).

``load_nir`` rebuilds the spiking graph from a NIR file (``I`` and ``IF`` as the readout,
several edges into a node as an Add) and lowers it like a ``*.snn.onnx``.
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple, Union

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import Onnx2SnnError
from .graph import external
from .graph.spiking import DOMAIN, fold_offsets, offset_input, to_spiking, v_init_input
from .graph.ops import NEURON_OPS, bias_of, conv_arguments, pool_arguments, reduce_axes
from .graph.view import GraphView

FLATTENING = ("Flatten", "Reshape", "Squeeze")
KEY_RESET, KEY_FIRES, KEY_V_INIT = "onnx2snn.reset", "onnx2snn.fires", "onnx2snn.v_init"
KEY_DELAY, KEY_APPROX, KEY_READOUT = "onnx2snn.readout_delay", "onnx2snn.approximations", "onnx2snn.readout"
KEY_NODE = "onnx2snn.node"               # the ONNX node a NIR node comes from


def _nir():
    try:
        import nir
    except ImportError:
        raise Onnx2SnnError("NIR export needs the nir package: pip install 'onnx2snn[nir]'") from None
    return nir


# --- export ----------------------------------------------------------------------------------------

def to_nir(model: onnx.ModelProto, approximate: bool = False, options=None):
    """The NIR graph of a spiking graph (a plain normalised graph is made spiking with ``options``,
    a ``SpikingOptions``). Returns ``(nir.NIRGraph, approximations)``."""
    nir = _nir()
    if not any(n.domain == DOMAIN for n in model.graph.node):
        model = to_spiking(model, options)
    view = GraphView(model)
    folded = fold_offsets(view)     # the neurons' input offsets, added to the biases ahead of them
    shape_of = view.sample_shape
    nodes: Dict[str, object] = {"input": nir.Input({"input": np.array(shape_of(view.input_name))})}
    sources: Dict[str, List[str]] = {view.input_name: ["input"]}    # tensor -> NIR nodes whose sum it is
    edges: List[Tuple[str, str]] = []
    approximations: List[str] = []
    readout_delay = 0

    def add(onnx_name: str, node, tensor_in: str, tensor_out: str) -> None:
        name = _nir_name(onnx_name, nodes)
        node.metadata[KEY_NODE] = onnx_name
        nodes[name] = node
        edges.extend((src, name) for src in sources[tensor_in])
        sources[tensor_out] = [name]

    for node in view.nodes:
        op, a = node.op_type, view.attrs(node)
        where = f"{node.name} ({op})"
        data = view.data_inputs(node)
        if op == "Constant":
            continue
        if op == "Conv":
            add(node.name, _conv(nir, node, view, where, folded.biases.get(node.name)), data[0], node.output[0])
        elif op == "Gemm":
            w = view.const(node.input[1]).astype(np.float32)
            b = folded.biases.get(node.name, _bias(view, node))
            add(node.name, nir.Affine(w, np.asarray(b, np.float32).reshape(-1)), data[0], node.output[0])
        elif op in ("IF", "ClipIF"):
            if offset_input(node) and node.name not in folded.neurons:
                raise Onnx2SnnError(f"{where}: its input offset (bias calibration) reaches no bias of a weighted layer "
                                    "unchanged, and NIR's IF has no input offset; convert with --no-bias-calibration")
            add(node.name, _neuron(nir, node, view, shape_of(node.output[0])), data[0], node.output[0])
        elif op in ("AveragePool", "GlobalAveragePool", "ReduceMean"):
            add(node.name, _avg_pool(nir, node, view, where), data[0], node.output[0])
            if op == "ReduceMean" and not a.get("keepdims", 1):
                flat = nir.Flatten({"input": np.array(shape_of(data[0])[:1] + (1, 1))}, start_dim=0)
                add(node.name + "/flatten", flat, node.output[0], node.output[0])
        elif op == "SpikeMaxPool":
            if not approximate:
                raise Onnx2SnnError(f"{where}: NIR has no max pooling of spikes; re-convert with --max-pool avg, "
                                    "or write average pooling instead with --nir-approximate (approximate=True)")
            kernel, strides, pads = a["kernel_shape"], a["strides"], a["pads"]
            nd = len(kernel)
            if nd != 2 or pads[:nd] != pads[nd:]:
                raise Onnx2SnnError(f"{where}: only 2-D pooling with symmetric pads maps to NIR's AvgPool2d")
            approximations.append(f"{node.name}: max pooling of spikes (rule {a['rule']}) written as average pooling")
            add(node.name, nir.AvgPool2d(np.array(kernel), np.array(strides), np.array(pads[:nd])), data[0],
                node.output[0])
        elif op in FLATTENING:
            out_shape = shape_of(node.output[0])
            if out_shape is None or len(out_shape) != 1:
                raise Onnx2SnnError(f"{where}: NIR's Flatten writes 1-D outputs; this one is {out_shape}")
            add(node.name, nir.Flatten({"input": np.array(shape_of(data[0]))}, start_dim=0), data[0], node.output[0])
        elif op == "Mul":
            factor = next(view.const(i) for i in node.input if i not in data)
            scale = np.broadcast_to(np.asarray(factor, np.float32), shape_of(node.output[0])).copy()
            add(node.name, nir.Scale(scale), data[0], node.output[0])
        elif op == "Add":
            sources[node.output[0]] = [s for i in data for s in sources[i]]   # NIR sums the edges
        elif op in NEURON_OPS:           # on spikes: the identity
            sources[node.output[0]] = sources[data[0]]
        elif op == "Readout":
            shape = shape_of(node.output[0])
            readout_delay = int(a.get("delay", 0))
            if a.get("mode") == "spikes":
                out = _neuron(nir, node, view, shape)
            else:
                out = nir.I(np.ones(shape, np.float32), metadata={KEY_READOUT: "membrane"})
            add("readout", out, data[0], node.output[0])
        else:
            raise Onnx2SnnError(f"{where}: NIR has no node for this op (NIR: Affine, Conv, IF, pooling, Flatten, "
                                "Scale; several edges into a node sum)")
    nodes["output"] = nir.Output({"output": np.array(shape_of(view.output_names[0]))})
    edges.extend((src, "output") for src in sources[view.output_names[0]])
    metadata = {"producer": "onnx2snn", KEY_DELAY: readout_delay, "input_name": view.input_name,
                "output_name": view.output_names[0]}
    if approximations:
        metadata[KEY_APPROX] = "; ".join(approximations)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata), approximations


def _nir_name(onnx_name: str, taken) -> str:
    """A NIR node name (NIR files are HDF5: no '/' in names) from an ONNX node's, without its λ."""
    from .graph.annotate import base_name
    name = base_name(onnx_name).replace("/", "_").replace(".", "_").strip("_") or "node"
    unique, k = name, 1
    while unique in taken or unique in ("input", "output"):
        k += 1
        unique = f"{name}_{k}"
    return unique


def _bias(view, node) -> np.ndarray:
    """A Conv's or Gemm's bias (zeros where it has none)."""
    b = bias_of(node, view)
    return np.zeros(view.const(node.input[1]).shape[0]) if b is None else b


def _conv(nir, node, view, where, bias=None):
    w = view.const(node.input[1]).astype(np.float32)
    nd = w.ndim - 2
    b = _bias(view, node) if bias is None else bias
    _, strides, dilations, pads, group = conv_arguments(node, view)
    if pads[:nd] != pads[nd:]:
        raise Onnx2SnnError(f"{where}: asymmetric padding {pads} has no NIR form")
    spatial = view.sample_shape(node.input[0])[1:]
    b = np.asarray(b, np.float32)
    if nd == 2:
        return nir.Conv2d(tuple(spatial) if group == 1 else None, w, tuple(strides), tuple(pads[:2]),
                          tuple(dilations), group, b)
    if nd == 1:
        return nir.Conv1d(int(spatial[0]) if group == 1 else None, w, strides[0], pads[0], dilations[0], group, b)
    raise Onnx2SnnError(f"{where}: NIR has 1-D and 2-D convolutions only")


def _neuron(nir, node, view, shape):
    a = view.attrs(node)
    ones = np.ones(shape, np.float32)
    reset = a.get("reset", "subtract")
    v_reset = ones * float(a.get("v_reset", 0.0))
    name = v_init_input(node)
    v_init = view.const(name).astype(np.float32) if name else float(a.get("v_init", 0.0))
    metadata = {KEY_RESET: reset, KEY_FIRES: "v >= threshold", KEY_V_INIT: v_init}
    if node.op_type == "Readout":
        metadata[KEY_READOUT] = "spikes"
    return nir.IF(ones, ones * float(a.get("threshold", 1.0)), v_reset, metadata=metadata)


def _avg_pool(nir, node, view, where):
    a, op = view.attrs(node), node.op_type
    shape = view.sample_shape(node.input[0])
    if op == "AveragePool":
        kernel, strides, _, pads, ceil_mode = pool_arguments(node, view)
        nd = len(kernel)
        if nd != 2 or pads[:nd] != pads[nd:] or ceil_mode or (any(pads) and not a.get("count_include_pad", 0)):
            raise Onnx2SnnError(f"{where}: only 2-D average pooling with symmetric zero-counting pads and "
                                "ceil_mode=0 maps to NIR's AvgPool2d")
        return nir.AvgPool2d(np.array(kernel), np.array(strides), np.array(pads[:2]))
    if op == "ReduceMean":
        axes, rank = reduce_axes(node, view)
        if axes != [2, 3] or rank != 4:
            raise Onnx2SnnError(f"{where}: only a mean over the two spatial axes maps to NIR's AvgPool2d")
    if shape is None or len(shape) != 3:
        raise Onnx2SnnError(f"{where}: global pooling needs a known (C, H, W) input for NIR's AvgPool2d")
    return nir.AvgPool2d(np.array(shape[1:]), np.array(shape[1:]), np.array([0, 0]))


def check_exportable(model: onnx.ModelProto, options, approximate: bool = False, pool_currents: bool = False,
                     signed: bool = False, label: str = "the model") -> None:
    """Refuse before any calibration work what ``export_nir`` would refuse after it: the spiking
    graph of the cleaned, not yet rescaled ``model`` (``options``: SpikingOptions) has the nodes the
    converted one will have, and NIR can state them or not alike."""
    from .graph import clean_graph
    from .graph.ops import check_supported
    from .graph.spiking import to_spiking
    from .graph.view import GraphView
    cleaned, _ = clean_graph(model, pool_currents=pool_currents)
    check_supported(GraphView(cleaned), label, signed)      # (what the conversion refuses, it refuses first)
    to_nir(to_spiking(cleaned, options), approximate)


def export_nir(model: Union[str, os.PathLike, onnx.ModelProto], path: str, approximate: bool = False) -> List[str]:
    """Write ``path`` (a NIR file, HDF5) from a ``*.snn.onnx`` or a ``Conversion``'s ``snn_model``;
    written to a temporary file, then renamed. Returns the approximations made (empty unless
    ``approximate``)."""
    from .graph import load_model
    nir = _nir()
    info = load_model(model)
    graph, approximations = to_nir(info.model, approximate)
    tmp = os.fspath(path) + ".tmp"
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return approximations


# --- import ----------------------------------------------------------------------------------------

def from_nir(graph) -> onnx.ModelProto:
    """The spiking graph (ONNX, onnx2snn domain) of a NIR graph written by ``export_nir`` (or any NIR
    graph of the same node types: Affine, Linear, Conv1d/2d, IF, AvgPool2d, SumPool2d, Flatten,
    Scale, I as the membrane readout)."""
    nir = _nir()
    from .graph.spiking import _add_functions
    order = _topological(graph)
    inits: List[onnx.TensorProto] = []
    nodes: List[onnx.NodeProto] = []
    incoming: Dict[str, List[str]] = {}
    for src, dst in graph.edges:
        incoming.setdefault(dst, []).append(src)
    input_name = graph.metadata.get("input_name", "input")
    output_name = graph.metadata.get("output_name", "output")
    tensor = {}

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def input_of(name):
        srcs = [tensor[s] for s in incoming.get(name, [])]
        if not srcs:
            raise Onnx2SnnError(f"NIR node {name!r} has no input edge")
        total = srcs[0]
        for k, s in enumerate(srcs[1:]):          # several edges into a node: their sum
            out = f"{name}/sum{k}"
            nodes.append(helper.make_node("Add", [total, s], [out], name=f"{name}/add{k}"))
            total = out
        return total

    input_node = next(n for n in order if isinstance(graph.nodes[n], nir.Input))
    in_shape = [int(d) for d in graph.nodes[input_node].input_type["input"]]
    tensor[input_node] = input_name
    for name in order:
        node = graph.nodes[name]
        kind = type(node).__name__
        if kind in ("Input", "Output"):
            continue
        x, out = input_of(name), name + "_output_0"
        tensor[name] = out
        if kind in ("Affine", "Linear"):
            w = np.asarray(node.weight, np.float32)
            b = np.asarray(node.bias, np.float32) if kind == "Affine" else np.zeros(w.shape[0], np.float32)
            nodes.append(helper.make_node("Gemm", [x, const(name + ".weight", w), const(name + ".bias", b)], [out],
                                          name=name, transB=1))
        elif kind in ("Conv1d", "Conv2d"):
            w = np.asarray(node.weight, np.float32)
            nd = w.ndim - 2
            pads = [int(p) for p in np.broadcast_to(np.asarray(node.padding), (nd,))]
            nodes.append(helper.make_node(
                "Conv", [x, const(name + ".weight", w), const(name + ".bias", node.bias)], [out], name=name,
                kernel_shape=list(w.shape[2:]), strides=[int(s) for s in np.broadcast_to(node.stride, (nd,))],
                dilations=[int(d) for d in np.broadcast_to(node.dilation, (nd,))], pads=pads + pads,
                group=int(node.groups)))
        elif kind == "IF":
            nodes.append(_if_from_nir(name, node, x, out, const, "Readout" if
                                      node.metadata.get(KEY_READOUT) == "spikes" else "IF", graph))
        elif kind == "I":
            nodes.append(helper.make_node("Readout", [x], [out], name=name, domain=DOMAIN, mode="membrane",
                                          delay=int(graph.metadata.get(KEY_DELAY, 0))))
        elif kind in ("AvgPool2d", "SumPool2d"):
            k = [int(v) for v in node.kernel_size]
            p = [int(v) for v in np.broadcast_to(node.padding, (2,))]
            pooled = out if kind == "AvgPool2d" else out + "_mean"
            nodes.append(helper.make_node("AveragePool", [x], [pooled], name=name, kernel_shape=k,
                                          strides=[int(v) for v in node.stride], pads=p + p, count_include_pad=1))
            if kind == "SumPool2d":
                nodes.append(helper.make_node("Mul", [pooled, const(name + ".area", float(np.prod(k)))], [out],
                                              name=name + "/sum"))
        elif kind == "Flatten":
            nodes.append(helper.make_node("Flatten", [x], [out], name=name, axis=1))
        elif kind == "Scale":
            nodes.append(helper.make_node("Mul", [x, const(name + ".scale", node.scale)], [out], name=name))
        else:
            raise Onnx2SnnError(f"NIR node {name!r} ({kind}): onnx2snn reads Affine, Linear, Conv1d/2d, IF, I, "
                                "AvgPool2d, SumPool2d, Flatten and Scale")
    output_node = next(n for n in order if isinstance(graph.nodes[n], nir.Output))
    final = input_of(output_node)
    for node in nodes:                           # the last node writes the graph output itself
        node.output[:] = [output_name if o == final else o for o in node.output]
    out_shape = [int(d) for d in graph.nodes[output_node].output_type["output"]]
    g = helper.make_graph(nodes, "nir", [helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, ["N"] + in_shape)],
                          [helper.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, ["N"] + out_shape)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    _add_functions(model)
    return external.infer_shapes(model)


def _if_from_nir(name, node, x, out, const, op, graph):
    meta = node.metadata or {}
    threshold = np.asarray(node.v_threshold, np.float32)
    v_reset = np.asarray(node.v_reset, np.float32)
    if not (np.all(threshold == threshold.flat[0]) and np.all(v_reset == v_reset.flat[0])
            and np.all(np.asarray(node.r) == 1)):
        raise Onnx2SnnError(f"NIR node {name!r} (IF): onnx2snn reads IF neurons with one threshold, one reset "
                            "value and r = 1 per layer")
    attrs = {"threshold": float(threshold.flat[0])}
    if meta.get(KEY_RESET, "value") == "subtract":
        attrs["reset"] = "subtract"
    else:
        attrs.update(reset="value", v_reset=float(v_reset.flat[0]))
    v_init = meta.get(KEY_V_INIT, 0.0)
    inputs = [x]
    if np.ndim(v_init) > 0:
        inputs.append(const(name + ".v_init", v_init))
        attrs["v_init"] = 0.0
    else:
        attrs["v_init"] = float(v_init)
    if op == "Readout":
        attrs.update(mode="spikes", delay=int(graph.metadata.get(KEY_DELAY, 0)))
        inputs = [x]   # the readout's neurons start at the scalar v_init
    return helper.make_node(op, inputs, [out], name=name, domain=DOMAIN, **attrs)


def _topological(graph) -> List[str]:
    incoming: Dict[str, set] = {n: set() for n in graph.nodes}
    for src, dst in graph.edges:
        incoming[dst].add(src)
    order, ready = [], [n for n, srcs in incoming.items() if not srcs]
    while ready:
        n = ready.pop(0)
        order.append(n)
        for src, dst in graph.edges:
            if src == n:
                incoming[dst].discard(n)
                if not incoming[dst] and dst not in order and dst not in ready:
                    ready.append(dst)
    if len(order) != len(graph.nodes):
        raise Onnx2SnnError("the NIR graph has a cycle (recurrent connections): onnx2snn reads feed-forward graphs")
    return order


def load_nir(path: Union[str, os.PathLike], config=None):
    """The ``SpikingNetwork`` of a NIR file written by ``export_nir`` (the same SNN as the
    ``*.snn.onnx`` it came from); ``config`` (a ``Config``) sets its simulation defaults."""
    from .lower import lower_model
    nir = _nir()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise Onnx2SnnError(f"{path}: no such NIR file")
    try:
        graph = nir.read(path)
    except Exception as e:  # h5py/nir raise many kinds on a bad file
        raise Onnx2SnnError(f"{path}: not a readable NIR file ({type(e).__name__}: {e})") from None
    network = lower_model(from_nir(graph))
    if config is not None:
        network.defaults = config.simulation_options()
    return network
