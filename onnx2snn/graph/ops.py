"""What onnx2snn knows about each ONNX op, in one torch-free table: ``RULES[op_type]``.

Each ``OpRule`` says

* ``scale``, how normalisation treats the op:
  - ``"weighted"``: initializers rescaled, W <- W·λ_in/λ_out, b <- b/λ_out (Conv, Gemm);
  - ``"preserve"``: output scale = input scale (ReLU, Clip, pooling, the spiking nodes: positively
    homogeneous, elementwise or per channel);
  - ``"transform"``: the scale array moves as the tensor does (Flatten, Reshape, Transpose, Pad…):
    ``transform(node, view, scale)`` maps the input's scale, broadcast to its full per-sample
    shape, to the output's;
  - ``"merge"``: Add and Concat: ``merge(node, view, scales, lam)`` gives the output's scale and
    the synaptic factors ``[(input index, factor)]`` its inputs need, from the inputs' scales and
    (Add) the λ measured at its ReLU, or None;
  - ``"factor"``: Mul by a constant, which only normalisation itself inserts (synaptic factors);
* ``check(node, view)``: why a node cannot be converted, or None;
* ``keeps_spikes``: where every data input is spikes, so is the output (reshapes, Concat, Pad, max
  pooling); the spiking graph tracks spikes with it;
* ``passes_offset``: a per-channel constant added to the input arrives unchanged at the output
  (an Add, max pooling, average pooling that counts no pads): where a neuron's input offset may
  instead be a bias upstream (``passes_channel_offset``);
* ``group``: ``"weighted"``, ``"neuron"`` (the ANN ops that become IF neurons), ``"spiking"`` (the
  onnx2snn domain's nodes), ``"subsampling"`` (average pooling of spikes), ``"pooling"``,
  ``"merge"``, ``"layout"``, ``"reduce"``, ``"factor"`` — ``ops_in(group)`` lists them (``NEURON_OPS``, ``SUBSAMPLING`` and ``LAYOUT``, at the end, are
  the groups the pipeline asks about in its loops).

The attribute decoders (pads with auto_pad resolved, pooling arguments, Clip bounds, Reshape
targets, axes) live here too, so that normalisation, the spiking graph, the torch lowering
(``lower/``) and the NIR exporter read an attribute the same way. Every unsupported node of a
graph is collected before failing (``check_supported``), so one error names them all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import onnx

from ..errors import Onnx2SnnError
from .scales import channel_scale, compress
from .view import GraphView


@dataclass(frozen=True)
class OpRule:
    op: str
    scale: str                              # "weighted" | "preserve" | "transform" | "merge" | "factor"
    group: str
    check: Optional[Callable] = None        # (node, view) -> reason or None
    transform: Optional[Callable] = None    # (node, view, scale) -> scale, for scale="transform"
    merge: Optional[Callable] = None        # (node, view, scales, lam) -> (scale, factors), for scale="merge"
    keeps_spikes: bool = False              # spikes in, spikes out
    passes_offset: bool = False             # a per-channel input offset arrives unchanged at the output


RULES: Dict[str, OpRule] = {}

# What to do about ops that are not handled; the error message quotes these.
ADVICE = {
    "Sigmoid": "not rate-codable with IF neurons inside the network (at the graph output it is dropped and "
               "applies to the readout); retrain with ReLU",
    "Tanh": "not rate-codable with IF neurons inside the network (at the graph output it is dropped and "
            "applies to the readout); retrain with ReLU",
    "Elu": "not rate-codable with IF neurons; retrain with ReLU",
    "Selu": "not rate-codable with IF neurons; retrain with ReLU",
    "HardSigmoid": "not rate-codable with IF neurons; retrain with ReLU",
    "BatchNormalization": "BatchNormalization whose input shape is unknown; export with static shapes",
    "LogSoftmax": "LogSoftmax is only supported at the graph output (where it is dropped and applies to the readout)",
    "FastGelu": "the tanh form of GELU is not recognised yet; export with approximate='none'",
    "Split": "Split whose sizes are not constant or whose input shape is unknown; export with static shapes",
}


def rule(op: str, scale: str, group: str, check: Optional[Callable] = None, transform: Optional[Callable] = None,
         merge: Optional[Callable] = None, keeps_spikes: bool = False, passes_offset: bool = False) -> None:
    """Add ``op``'s rule; a second rule for one op is an error (as in onnx2torch), not a silent replacement."""
    if op in RULES:
        raise ValueError(f"a rule for {op} is already registered")
    RULES[op] = OpRule(op, scale, group, check, transform, merge, keeps_spikes, passes_offset)


# Elementwise monotone ops that may end a graph: the conversion drops them (graph/passes.py) and
# the SNN's readout stands for their input (the logits); the Readout node records which (``head``).
HEADS = ("Softmax", "LogSoftmax", "Sigmoid", "Tanh")


def output_head(model: onnx.ModelProto) -> Optional[str]:
    """The head op that writes the (first) graph output, through Identity/Dropout, or None."""
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer.get(model.graph.output[0].name)
    while node is not None and node.op_type in ("Identity", "Dropout"):
        node = producer.get(node.input[0])
    return node.op_type if node is not None and node.op_type in HEADS else None


def ops_in(group: str) -> Tuple[str, ...]:
    return tuple(op for op, r in RULES.items() if r.group == group)


def unsupported_reason(node: onnx.NodeProto, view: GraphView) -> Optional[str]:
    r = RULES.get(node.op_type)
    if r is None:
        return ADVICE.get(node.op_type, "op not supported by onnx2snn yet")
    return r.check(node, view) if r.check else None


SIGNED_ACTIVATIONS = ("LeakyRelu", "PRelu")     # ANN ops that convert only with signed neurons
SIGNED_NEURONS = ("SignedIF", "PReluIF")        # their spiking-graph nodes: spikes may be -1
SIGNED_ADVICE = ("a negative slope needs signed spikes (+1/-1, a threshold divided by the slope on the negative "
                 "side): convert with --signed-spikes (simulation.signed_spikes), or retrain with ReLU")


def unsupported_nodes(view: GraphView, signed: bool = True) -> List[Tuple[onnx.NodeProto, str]]:
    """Every node that cannot be converted, with the reason; ``signed``: whether signed neurons
    were asked for (LeakyRelu converts only then)."""
    return [(node, reason) for node in view.nodes
            if node.op_type != "Constant" and (reason := (SIGNED_ADVICE if node.op_type in SIGNED_ACTIVATIONS and not signed
                                                          and not is_spike_site(node) else unsupported_reason(node, view)))]


def is_spike_site(node) -> bool:
    """A ``LeakyRelu(alpha=1)`` — the identity in the ANN — where ``graph/transformer.py spike_sites``
    put two-sided IF neurons on a transformer's tensor (an onnx.NodeProto or a gs.Node). Such
    neurons need no --signed-spikes: they are the transformer path's only kind."""
    if isinstance(node, onnx.NodeProto):
        if node.op_type != "LeakyRelu":
            return False
        alpha = next((a.f for a in node.attribute if a.name == "alpha"), 0.01)
    else:
        if node.op != "LeakyRelu":
            return False
        alpha = node.attrs.get("alpha", 0.01)
    return float(alpha) == 1.0


NAMED_PER_REASON = 3      # nodes named per reason in the error; the rest are counted


def describe_unsupported(problems: List[Tuple[onnx.NodeProto, str]]) -> str:
    """The unsupported nodes grouped by reason, in graph order: one node as ``name (Op): reason``;
    several as ``reason: 16 nodes, name (Op), name (Op), name (Op), …`` — a Mixer's 34 refused
    nodes read as a few phrases, not 4 000 characters."""
    groups: Dict[str, List[onnx.NodeProto]] = {}
    for node, reason in problems:
        groups.setdefault(reason, []).append(node)
    parts = []
    for reason, nodes in groups.items():
        if len(nodes) == 1:
            parts.append(f"{nodes[0].name} ({nodes[0].op_type}): {reason}")
            continue
        named = ", ".join(f"{n.name} ({n.op_type})" for n in nodes[:NAMED_PER_REASON])
        parts.append(f"{reason}: {len(nodes)} nodes, {named}" + (", …" if len(nodes) > NAMED_PER_REASON else ""))
    return "; ".join(parts)


def check_supported(view: GraphView, label: str = "the model", signed: bool = True) -> None:
    problems = unsupported_nodes(view, signed)
    text = describe_unsupported(problems)
    if len(view.output_names) != 1:
        text = "; ".join(filter(None, [text, f"graph outputs {view.output_names}: onnx2snn converts models "
                                             "with one output"]))
    if text:
        raise Onnx2SnnError(f"{label} has {len(problems)} node(s) onnx2snn cannot convert: {text}")


def passes_channel_offset(node: onnx.NodeProto, view: GraphView) -> bool:
    """Does a per-channel constant added to ``node``'s input arrive unchanged at its output? (An
    average pooling that counts padded zeros would dilute it at the borders.)"""
    r = RULES.get(node.op_type)
    if r is None or not r.passes_offset:
        return False
    if node.op_type == "AveragePool":
        a = view.attrs(node)
        padded = any(a.get("pads", ())) or a.get("auto_pad", "NOTSET") not in ("NOTSET", "", "VALID")
        return not (padded and a.get("count_include_pad", 0))
    return True


# --- attribute decoding ---------------------------------------------------------------------------

def resolve_pads(node, view: GraphView, kernel, strides, dilations) -> List[int]:
    """Explicit ONNX pads, with auto_pad SAME_UPPER/SAME_LOWER/VALID resolved from the input shape."""
    a = view.attrs(node)
    nd = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        return list(a.get("pads", [0] * (2 * nd)))
    if auto == "VALID":
        return [0] * (2 * nd)
    shape = view.sample_shape(node.input[0])
    begin, end = [], []
    for i in range(nd):
        size = shape[1 + i]
        out = math.ceil(size / strides[i])
        total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin + end


def conv_arguments(node, view: GraphView):
    """kernel, strides, dilations, explicit pads (auto_pad resolved) and group of a Conv."""
    a = view.attrs(node)
    kernel = list(view.const(node.input[1]).shape[2:])
    nd = len(kernel)
    strides = list(a.get("strides", [1] * nd))
    dilations = list(a.get("dilations", [1] * nd))
    return kernel, strides, dilations, resolve_pads(node, view, kernel, strides, dilations), int(a.get("group", 1))


def conv_transpose_arguments(node, view: GraphView):
    """kernel, strides, dilations, explicit pads (begin + end), output_padding and group of a
    ConvTranspose, with ``output_shape`` and auto_pad resolved as the ONNX spec does: the total
    padding is stride·(in − 1) + output_padding + (k − 1)·dilation + 1 − out, split evenly (the odd
    one at the end for SAME_UPPER, at the start otherwise: SAME_LOWER or an output_shape)."""
    a = view.attrs(node)
    kernel = list(view.const(node.input[1]).shape[2:])
    nd = len(kernel)
    strides = list(a.get("strides", [1] * nd))
    dilations = list(a.get("dilations", [1] * nd))
    output_padding = list(a.get("output_padding", [0] * nd))
    auto = a.get("auto_pad", "NOTSET")
    pads = list(a.get("pads", [0] * (2 * nd)))
    if "output_shape" in a or auto in ("SAME_UPPER", "SAME_LOWER"):
        size = view.sample_shape(node.input[0])[1:]
        out = list(a["output_shape"])[-nd:] if "output_shape" in a else [s * st for s, st in zip(size, strides)]
        total = [st * (s - 1) + op + (k - 1) * d + 1 - o
                 for s, st, op, k, d, o in zip(size, strides, output_padding, kernel, dilations, out)]
        upper = auto == "SAME_UPPER"          # the odd one at the end; otherwise at the start (the spec)
        pads = [t // 2 if upper else t - t // 2 for t in total] + [t - t // 2 if upper else t // 2 for t in total]
    elif auto == "VALID":
        pads = [0] * (2 * nd)
    return kernel, strides, dilations, pads, output_padding, int(a.get("group", 1))


def out_channels(node, view: GraphView) -> int:
    """Output channels (features) of a weighted layer: Conv W (C_out, C_in/g, …), canonical Gemm
    W (out, in), ConvTranspose W (C_in, C_out/g, …)."""
    w = view.const(node.input[1])
    return int(w.shape[1] * view.attrs(node).get("group", 1)) if node.op_type == "ConvTranspose" else int(w.shape[0])


def conv_transpose_channel(w_shape, groups: int) -> np.ndarray:
    """For a ConvTranspose's W (C_in, C_out/group, …): the output channel of each W[i, j], i.e.
    (group of input channel i)·C_out/group + j, shaped (C_in, C_out/group)."""
    cin, cout_g = w_shape[:2]
    return (np.arange(cin)[:, None] // (cin // groups)) * cout_g + np.arange(cout_g)[None, :]


def bias_of(node, view: GraphView) -> Optional[np.ndarray]:
    """A Conv's or Gemm's bias initializer, if it has one."""
    return view.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None


def pool_arguments(node, view: GraphView):
    """kernel, strides, dilations, explicit pads (auto_pad resolved) and ceil_mode of a pooling node."""
    a = view.attrs(node)
    kernel = list(a["kernel_shape"])
    nd = len(kernel)
    strides = list(a.get("strides", [1] * nd))
    dilations = list(a.get("dilations", [1] * nd))
    pads = resolve_pads(node, view, kernel, strides, dilations)
    return kernel, strides, dilations, pads, bool(a.get("ceil_mode", 0))


def clip_bounds(node, view: GraphView):
    """(min, max, whether a bound is not constant) of a Clip, from attributes or (opset >= 11) inputs."""
    a = view.attrs(node)
    if len(node.input) > 1 or not a:  # opset >= 11: min and max are inputs
        lo = view.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        hi = view.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        dynamic = any(n and view.const(n) is None for n in list(node.input)[1:])
        return (None if lo is None else float(lo)), (None if hi is None else float(hi)), dynamic
    return a.get("min"), a.get("max"), False


def reshape_target(node, view: GraphView) -> Optional[List[int]]:
    """The per-sample target shape of a Reshape that keeps the batch dimension, else None."""
    shape = view.const(node.input[1])
    in_shape = view.sample_shape(node.input[0])
    if shape is None or in_shape is None or shape.ndim != 1 or len(shape) < 1:
        return None
    shape = [int(s) for s in shape]
    if shape[0] not in (0, -1) or (shape[0] == -1 and -1 in shape[1:]):
        return None
    target = [in_shape[i] if s == 0 and i < len(in_shape) else s for i, s in enumerate(shape[1:])]
    if int(np.prod([d for d in target if d != -1])) <= 0:
        return None
    return target


def transpose_perm(node, view: GraphView) -> List[int]:
    rank = len(view.shapes[node.input[0]])
    return list(view.attrs(node).get("perm", list(reversed(range(rank)))))


def squeeze_axes(node, view: GraphView) -> Optional[List[int]]:
    axes = view.const(node.input[1]) if len(node.input) > 1 and node.input[1] else view.attrs(node).get("axes")
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]


def pad_arguments(node, view: GraphView):
    """(mode, pads, value) of a Pad, from attributes or (opset >= 11) inputs."""
    a = view.attrs(node)
    mode = a.get("mode", "constant")
    pads = view.const(node.input[1]) if len(node.input) > 1 else np.array(a.get("pads", []))
    value = view.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.array(a.get("value", 0.0))
    return mode, pads, value


def reduce_axes(node, view: GraphView):
    """(sorted non-negative axes or None, input rank) of a Reduce* node."""
    a = view.attrs(node)
    axes = view.const(node.input[1]) if len(node.input) > 1 and node.input[1] else a.get("axes")
    rank = len(view.shapes[node.input[0]])
    if axes is None:
        return None, rank
    return sorted(int(x) + rank if int(x) < 0 else int(x) for x in np.asarray(axes).reshape(-1)), rank


# --- weighted layers ------------------------------------------------------------------------------

def _needs_shape_for_auto_pad(node, view):
    auto = view.attrs(node).get("auto_pad", "NOTSET")
    if auto.startswith("SAME") and view.sample_shape(node.input[0]) is None:
        return f"auto_pad={auto} needs the input shape, which shape inference could not determine"
    return None


def _check_conv(node, view):
    if view.const(node.input[1]) is None:
        return "Conv with non-constant weights"
    return _needs_shape_for_auto_pad(node, view)


def _check_gemm(node, view):
    if view.const(node.input[1]) is None:
        return "Gemm with non-constant weights"
    if view.attrs(node).get("transA", 0):
        return "Gemm with transA=1"
    return None


def _check_conv_transpose(node, view):
    if view.const(node.input[1]) is None:
        return "ConvTranspose with non-constant weights"
    a = view.attrs(node)
    if ("output_shape" in a or a.get("auto_pad", "NOTSET").startswith("SAME")) and view.sample_shape(node.input[0]) is None:
        return "ConvTranspose with output_shape or auto_pad=SAME needs the input shape, which is unknown"
    _, _, _, pads, output_padding, _ = conv_transpose_arguments(node, view)
    if any(p < 0 for p in pads):
        return f"ConvTranspose whose output_shape needs negative pads {pads}"
    if len(view.const(node.input[1]).shape) not in (3, 4, 5):
        return "ConvTranspose with a kernel of rank other than 1, 2 or 3"
    return None


rule("Conv", "weighted", "weighted", check=_check_conv)
rule("ConvTranspose", "weighted", "weighted", check=_check_conv_transpose)   # W (C_in, C_out/group, k…)
rule("Gemm", "weighted", "weighted", check=_check_gemm)   # canonicalised by the passes to Y = X·Wᵀ + b


# --- neurons, and the spiking graph's nodes (graph/spiking.py) -------------------------------------

def _check_neuron(node, view):
    a = view.attrs(node)
    threshold, v_init = a.get("threshold", 1.0), a.get("v_init", 0.0)
    if not (math.isfinite(threshold) and threshold > 0):
        return f"threshold={threshold}: must be a finite number > 0"
    if not math.isfinite(v_init):
        return f"v_init={v_init}: must be finite"
    if a.get("reset", "subtract") not in ("subtract", "value"):
        return f"reset={a.get('reset')!r}: must be 'subtract' or 'value'"
    if a.get("reset") == "value" and not (math.isfinite(a.get("v_reset", 0.0)) and a.get("v_reset", 0.0) < threshold):
        return f"v_reset={a.get('v_reset')}: must be finite and below the threshold"
    return None


def _check_readout(node, view):
    a = view.attrs(node)
    if a.get("mode", "membrane") not in ("membrane", "spikes"):
        return f"mode={a.get('mode')!r}: must be 'membrane' or 'spikes'"
    if a.get("delay", 0) < 0:
        return f"delay={a.get('delay')}: must be >= 0"
    if a.get("head", "") not in ("",) + HEADS:
        return f"head={a.get('head')!r}: must be one of {', '.join(HEADS)}"
    return _check_neuron(node, view) if a.get("mode") == "spikes" else None


def _check_clip(node, view):
    lo, hi, dynamic = clip_bounds(node, view)
    if dynamic:
        return "Clip with non-constant bounds"
    if lo is None or lo != 0:
        return f"Clip with min={lo} is not a ReLU (only min=0, e.g. ReLU6, is rate-codable)"
    return None


def _check_slope(node, view):
    alpha = view.attrs(node).get("alpha", 0.01)
    if not (math.isfinite(alpha) and alpha > 0):
        return f"alpha={alpha}: signed neurons need a finite slope > 0 (their negative threshold is θ/alpha)"
    return None


def _check_signed_if(node, view):
    return _check_slope(node, view) or _check_neuron(node, view)


def prelu_slope(node, view) -> Optional[np.ndarray]:
    """A PRelu's (or PReluIF's) constant slope, shaped (C, 1, ...) to broadcast over one sample, or
    None. (Its last input: PRelu(X, slope), PReluIF(X, v_init_map, offset, slope).)"""
    slope = view.const(node.input[-1]) if len(node.input) > 1 else None
    shape = view.sample_shape(node.input[0])
    while slope is not None and slope.ndim > 1 and slope.shape[0] == 1 and shape and slope.ndim > len(shape):
        slope = slope[0]                                    # a leading batch axis of 1
    if slope is None or shape is None or slope.ndim > len(shape):
        return None
    full = np.ones(len(shape), dtype=int)
    full[len(shape) - slope.ndim:] = slope.shape
    if any(d != 1 for i, d in enumerate(full) if i != 0) or full[0] not in (1, shape[0]):
        return None                 # a slope that varies along a spatial axis is not per channel
    return np.broadcast_to(slope.reshape(full), (shape[0], *[1] * (len(shape) - 1))).astype(np.float32)


def _check_prelu(node, view):
    slope = prelu_slope(node, view)
    if slope is None:
        return ("PRelu needs a constant slope, one per channel (axis 1) or one for all, and a known input "
                "shape")
    if not (np.isfinite(slope).all() and (slope > 0).all()):
        return (f"slope {float(slope.min()):g}..{float(slope.max()):g}: signed neurons need finite slopes > 0 "
                "(their negative threshold is θ/slope)")
    return None


def _check_prelu_if(node, view):
    return _check_prelu(node, view) or _check_neuron(node, view)


# In a spiking graph a ReLU or Clip is left only where its input is spikes already: the identity.
rule("Relu", "preserve", "neuron", keeps_spikes=True)
rule("Clip", "preserve", "neuron", check=_check_clip, keeps_spikes=True)
# LeakyReLU is positively homogeneous too: normalisation treats it as a ReLU; its neurons are signed
# (``SignedIF``, under --signed-spikes). On spikes already it stays: +1 -> 1, -1 -> -alpha.
rule("LeakyRelu", "preserve", "neuron", check=_check_slope, keeps_spikes=True)
rule("IF", "preserve", "spiking", check=_check_neuron, keeps_spikes=True)
rule("SignedIF", "preserve", "spiking", check=_check_signed_if, keeps_spikes=True)
# PReLU, a slope per channel: positively homogeneous per channel, so per-channel scales pass too;
# ``PReluIF`` neurons, a negative threshold per channel.
rule("PRelu", "preserve", "neuron", check=_check_prelu, keeps_spikes=True)
rule("PReluIF", "preserve", "spiking", check=_check_prelu_if, keeps_spikes=True)
rule("ClipIF", "preserve", "spiking", check=_check_neuron, keeps_spikes=True)
rule("Readout", "preserve", "spiking", check=_check_readout)


# --- pooling --------------------------------------------------------------------------------------

def _check_avg_pool(node, view):
    reason = _needs_shape_for_auto_pad(node, view)
    if reason:
        return reason
    kernel, strides, dilations, pads, _ = pool_arguments(node, view)
    nd = len(kernel)
    if any(d != 1 for d in dilations):
        return "AveragePool with dilations"
    if pads[:nd] != pads[nd:] and not view.attrs(node).get("count_include_pad", 0):
        return "AveragePool with asymmetric pads and count_include_pad=0"
    if any(p > k // 2 for p, k in zip(pads, kernel + kernel)):
        return "AveragePool with pads larger than half the kernel"
    return None


def _check_max_pool(node, view):
    reason = _needs_shape_for_auto_pad(node, view)
    if reason:
        return reason
    if len(node.output) > 1 and node.output[1] and view.consumers.get(node.output[1]):
        return "MaxPool whose indices output is used"
    kernel, _, _, pads, _ = pool_arguments(node, view)
    nd = len(kernel)
    if pads[:nd] == pads[nd:] and any(p > k // 2 for p, k in zip(pads, kernel + kernel)):
        return "MaxPool with pads larger than half the kernel"
    return None


def _check_spike_max_pool(node, view):
    if view.attrs(node).get("rule") not in ("max", "gate", "wta", "avg"):
        return f"rule={view.attrs(node).get('rule')!r}: must be one of max, gate, wta, avg"
    return _check_max_pool(node, view)


# Average pooling of spikes subsamples rates (IF neurons after it are a node of their own).
rule("AveragePool", "preserve", "subsampling", check=_check_avg_pool, passes_offset=True)
rule("GlobalAveragePool", "preserve", "subsampling", passes_offset=True)
# Max pooling of currents (or of spikes, when the spiking graph asks for it as SpikeMaxPool rule "wta").
rule("MaxPool", "preserve", "pooling", check=_check_max_pool, keeps_spikes=True, passes_offset=True)
rule("SpikeMaxPool", "preserve", "spiking", check=_check_spike_max_pool, keeps_spikes=True)


# --- merges ---------------------------------------------------------------------------------------

def _check_add(node, view):
    data = view.data_inputs(node)
    if len(data) == 2:
        return None
    if len(data) != 1:
        return "Add of constants only"
    # an activation plus a constant that varies across positions (a position embedding; per-channel
    # constants fold into a bias before this): a constant current, rescaled by the Add's scale
    const = next(view.const(i) for i in node.input if i not in data)
    shape = view.sample_shape(data[0])
    if shape is None or not _broadcasts_per_sample(const.shape, shape):
        return f"Add of a constant of shape {tuple(const.shape)} that does not broadcast over one sample"
    return None


def _broadcasts_per_sample(const_shape, sample_shape) -> bool:
    """Does a constant broadcast onto ``(N, *sample_shape)`` without changing its shape (and with
    one value for the whole batch)?"""
    full = (1, *sample_shape)
    if len(const_shape) > len(full):
        return False
    return all(d in (1, s) for d, s in zip(const_shape[::-1], full[::-1])) and (
        len(const_shape) < len(full) or const_shape[0] == 1)


def constant_add_inputs(node, view) -> List[int]:
    """The inputs of an Add that are constants (a position embedding beside an activation)."""
    data = view.data_inputs(node)
    return [i for i, name in enumerate(node.input) if name not in data] if len(data) == 1 else []


def _add_scales(node, view, scales, lam):
    """Every input arrives at the Add's scale: λ of the ReLU after it (else its first input's);
    an input at another scale gets the synaptic factor s_in/λ (a Mul: spikes stay binary)."""
    data = view.data_inputs(node)
    rank = len(view.sample_shape(node.output[0]))
    target = channel_scale(lam, rank) if lam is not None else compress(scales[0])
    factors = []
    for t, s in zip(data, scales):
        shape = view.sample_shape(t)
        if not np.allclose(np.broadcast_to(s, shape), np.broadcast_to(target, shape), rtol=1e-7, atol=0):
            factors.append((list(node.input).index(t), compress(s / target)))
    return target, factors


def _check_mul(node, view):
    data = view.data_inputs(node)
    if len(data) != 1:
        return "Mul of two activations is not rate-codable"
    const = next(view.const(i) for i in node.input if i not in data)
    shape = view.sample_shape(data[0])
    if shape is None or const.ndim > len(shape) or any(d not in (1, s) for d, s in zip(const.shape[::-1], shape[::-1])):
        return "Mul by a constant that does not broadcast per sample"
    return None


def _check_concat(node, view):
    if view.positive_axis(node) == 0:
        return "Concat along the batch axis"
    if len(view.data_inputs(node)) != len(node.input):
        return "Concat with a constant input"
    return None


def _concat_scales(node, view, scales, lam):
    """No common scale needed: the inputs' scales side by side (the next layer takes them per
    input channel)."""
    axis = view.positive_axis(node) - 1
    parts = [np.broadcast_to(s, view.sample_shape(t)) for t, s in zip(view.data_inputs(node), scales)]
    return compress(np.concatenate(parts, axis=axis)), []


# Sum of input currents (or spikes weighted by their synaptic factors): analog, not spikes.
rule("Add", "merge", "merge", check=_check_add, merge=_add_scales, passes_offset=True)
rule("Concat", "merge", "merge", check=_check_concat, merge=_concat_scales, keeps_spikes=True)
rule("Mul", "factor", "factor", check=_check_mul)


# --- layout ops (the scale array moves with the data) ---------------------------------------------

def _check_flatten(node, view):
    rank = len(view.shapes.get(node.input[0], ())) or None
    axis = view.attrs(node).get("axis", 1)
    if axis < 0 and rank:
        axis += rank
    if axis != 1:
        return f"Flatten with axis={axis} mixes the batch dimension with others (only axis=1)"
    return None


def _check_reshape(node, view):
    if reshape_target(node, view) is None:
        return ("Reshape whose target shape is not constant or does not keep the batch dimension "
                "first (expected (0 or -1, ...))")
    return None


def _to_output_shape(node, view, scale):
    return scale.reshape(view.sample_shape(node.output[0]))


def _check_transpose(node, view):
    if transpose_perm(node, view)[0] != 0:
        return "Transpose that moves the batch axis"
    return None


def _transpose_scale(node, view, scale):
    perm = list(view.attrs(node).get("perm", list(reversed(range(scale.ndim + 1)))))
    return scale.transpose([p - 1 for p in perm[1:]])


def _check_squeeze(node, view):
    if len(node.input) > 1 and node.input[1] and view.const(node.input[1]) is None:
        return f"{node.op_type} with non-constant axes"
    if view.sample_shape(node.output[0]) is None:
        return f"{node.op_type} whose output shape is unknown"
    rank = len(view.shapes[node.output[0] if node.op_type == "Unsqueeze" else node.input[0]])
    axes = squeeze_axes(node, view) or []
    if any((a + rank if a < 0 else a) == 0 for a in axes) or (node.op_type == "Squeeze" and not axes):
        return f"{node.op_type} of the batch axis"
    return None


def _check_pad(node, view):
    mode, pads, value = pad_arguments(node, view)
    if len(node.input) > 3 and node.input[3]:
        return "Pad with axes input"
    if pads is None or value is None:
        return "Pad with non-constant pads or value"
    if mode != "constant" or float(value) != 0:
        return f"Pad mode={mode} value={float(value)}: only zero padding keeps rates proportional"
    rank = len(pads) // 2
    if pads[0] or pads[rank]:
        return "Pad of the batch axis"
    return None


def _pad_scale(node, view, scale):
    """Padded positions are zeros, at any scale: extend the edge values; crop for negative pads."""
    _, pads, _ = pad_arguments(node, view)
    rank = len(pads) // 2
    begin, end = [int(p) for p in pads[1:rank]], [int(p) for p in pads[rank + 1:]]
    scale = np.pad(scale, [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)], mode="edge")
    return scale[tuple(slice(max(-b, 0), n - max(-e, 0)) for b, e, n in zip(begin, end, scale.shape))]


rule("Flatten", "transform", "layout", check=_check_flatten, transform=lambda node, view, scale: scale.reshape(-1),
     keeps_spikes=True)
rule("Reshape", "transform", "layout", check=_check_reshape, transform=_to_output_shape, keeps_spikes=True)
rule("Transpose", "transform", "layout", check=_check_transpose, transform=_transpose_scale, keeps_spikes=True)
rule("Squeeze", "transform", "layout", check=_check_squeeze, transform=_to_output_shape, keeps_spikes=True)
rule("Unsqueeze", "transform", "layout", check=_check_squeeze, transform=_to_output_shape, keeps_spikes=True)
rule("Pad", "transform", "layout", check=_check_pad, transform=_pad_scale, keeps_spikes=True)


# --- selections (Slice, Gather, nearest Resize: every output value is one input value) -----------------
#
# Each is decoded to one index array per per-sample axis (``Selection``): the output takes, along each
# axis, the input's entries at those indices. Spikes stay spikes, the scale array is selected alike,
# and the lowering runs ``index_select`` per axis (graph order: rank-changing Gathers reshape after).

INT64_MAX = 2 ** 63 - 1


@dataclass(frozen=True)
class Selection:
    axes: Tuple[Tuple[int, np.ndarray], ...]     # (per-sample axis, int64 indices), in order
    shape: Optional[Tuple[int, ...]] = None      # the per-sample output shape, where a Gather changes the rank

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The selection applied to a per-sample array (a scale, broadcast to the input's shape)."""
        for axis, index in self.axes:
            array = np.take(array, index, axis=axis)
        return array if self.shape is None else array.reshape(self.shape)


def _onnx_range(start: int, end: int, step: int, dim: int) -> np.ndarray:
    """The indices ONNX Slice takes along one axis of size ``dim`` (negative bounds from the end,
    then clamped: [0, dim] for a positive step, [-1, dim - 1] for a negative one)."""
    start, end = (start + dim if start < 0 else start), (end + dim if end < 0 else end)
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return np.arange(start, end, step, dtype=np.int64)


def _slice_inputs(node, view):
    """(starts, ends, axes, steps) of a Slice, from inputs (opset >= 10) or attributes; None where
    one is not constant."""
    if len(node.input) == 1:
        a = view.attrs(node)
        starts = list(a.get("starts", []))
        return starts, list(a.get("ends", [])), list(a.get("axes", range(len(starts)))), [1] * len(starts)
    values = [view.const(n) if n else None for n in node.input[1:5]]
    if any(n and v is None for n, v in zip(node.input[1:5], values)):
        return None
    values += [None] * (4 - len(values))
    starts, ends, axes, steps = values
    starts, ends = [int(v) for v in starts], [int(v) for v in ends]
    axes = list(range(len(starts))) if axes is None else [int(v) for v in axes]
    steps = [1] * len(starts) if steps is None else [int(v) for v in steps]
    return starts, ends, axes, steps


def slice_selection(node, view: GraphView) -> Selection:
    starts, ends, axes, steps = _slice_inputs(node, view)
    shape = view.shapes[node.input[0]]
    rank = len(shape)
    out = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = axis + rank if axis < 0 else axis
        index = _onnx_range(start, end, step, shape[axis])
        if not (step == 1 and len(index) == shape[axis]):        # the whole axis: nothing to select
            out.append((axis - 1, index))
    return Selection(tuple(out))


def _check_slice(node, view):
    args = _slice_inputs(node, view)
    if args is None:
        return "Slice with non-constant starts, ends, axes or steps"
    shape = view.shapes.get(node.input[0])
    if shape is None:
        return "Slice whose input shape is unknown"
    starts, ends, axes, steps = args
    rank = len(shape)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            if start == 0 and step == 1 and end >= INT64_MAX // 2:
                continue
            return "Slice of the batch axis"
        if shape[axis] is None:
            return f"Slice along axis {axis}, whose size is unknown"
        if step == 0:
            return "Slice with step 0"
    return None


def gather_selection(node, view: GraphView) -> Selection:
    axis = _gather_axis(node, view)
    indices = np.asarray(view.const(node.input[1]), np.int64)
    size = view.shapes[node.input[0]][axis]
    flat = np.where(indices.reshape(-1) < 0, indices.reshape(-1) + size, indices.reshape(-1))
    shape = view.sample_shape(node.output[0])
    return Selection(((axis - 1, flat),), None if indices.ndim == 1 else tuple(shape))


def _gather_axis(node, view) -> int:
    axis = view.attrs(node).get("axis", 0)
    return axis + len(view.shapes[node.input[0]]) if axis < 0 else axis


def _check_gather(node, view):
    if view.const(node.input[1]) is None or view.const(node.input[0]) is not None:
        return "Gather with non-constant indices (only the selection of constant positions is rate-codable)"
    shape = view.shapes.get(node.input[0])
    if shape is None or view.sample_shape(node.output[0]) is None:
        return "Gather whose input or output shape is unknown"
    axis = _gather_axis(node, view)
    if axis == 0:
        return "Gather along the batch axis"
    indices = view.const(node.input[1])
    if shape[axis] is None or np.any(indices >= shape[axis]) or np.any(indices < -shape[axis]):
        return f"Gather with indices outside axis {axis}"
    return None


RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize_arguments(node, view):
    """(mode, coordinate transformation, nearest mode, output size per axis or None, scale per axis
    or None) of a Resize (opset 11+: X, roi, scales, sizes; opset 10: X, scales) or Upsample
    (opset 7-9). Opset 10's Resize and Upsample take the asymmetric transformation and floor."""
    a = view.attrs(node)
    mode = a.get("mode", "nearest")
    shape = view.shapes.get(node.input[0])
    inputs = list(node.input) + [""] * 4
    legacy = node.op_type == "Upsample" or len(node.input) == 2
    if legacy:
        coordinates, nearest = "asymmetric", "floor"
        scales = view.const(inputs[1]) if inputs[1] else (np.asarray(a["scales"]) if "scales" in a else None)
        sizes = None
    else:
        coordinates = a.get("coordinate_transformation_mode", "half_pixel")
        nearest = a.get("nearest_mode", "round_prefer_floor")
        scales = view.const(inputs[2]) if inputs[2] else None
        sizes = view.const(inputs[3]) if inputs[3] else None
    if sizes is not None and sizes.size:
        return mode, coordinates, nearest, [int(v) for v in sizes], None
    if scales is None or not scales.size or shape is None or any(d is None for d in shape[1:]):
        return mode, coordinates, nearest, None, None
    scales = [float(v) for v in np.asarray(scales).reshape(-1)]
    sizes = [shape[0]] + [int(math.floor(d * sc)) for d, sc in zip(shape[1:], scales[1:])]
    return mode, coordinates, nearest, sizes, scales


def _source_coordinates(size_in: int, size_out: int, scale, coordinates: str) -> np.ndarray:
    """Where in the input each output index of one axis samples (ONNX Resize), in float32 as
    onnxruntime computes it (4 / 1.6 is 2.5 there, a tie, and 2.4999… in float64)."""
    i = np.arange(size_out, dtype=np.float32)
    scale, half = np.float32(scale), np.float32(0.5)
    if coordinates == "half_pixel":
        return (i + half) / scale - half
    if coordinates == "pytorch_half_pixel":
        return (i + half) / scale - half if size_out > 1 else np.zeros_like(i)
    if coordinates == "asymmetric":
        return i / scale
    if coordinates == "align_corners":
        return i * np.float32(size_in - 1) / np.float32(size_out - 1) if size_out > 1 else np.zeros_like(i)
    return (i + half) / scale                 # tf_half_pixel_for_nn


def _linear_matrix(size_in: int, size_out: int, scale, coordinates: str) -> np.ndarray:
    """(size_out, size_in): each output the linear interpolation of its two input neighbours
    (coordinates clamped to the input, as onnxruntime does); rows sum to 1."""
    x = np.clip(_source_coordinates(size_in, size_out, scale, coordinates), 0, size_in - 1)
    low = np.floor(x).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    w_high = (x - low).astype(np.float32)
    m = np.zeros((size_out, size_in), np.float32)
    np.add.at(m, (np.arange(size_out), low), 1 - w_high)
    np.add.at(m, (np.arange(size_out), high), w_high)
    return m


def resize_linear_maps(node, view: GraphView) -> List[Tuple[int, np.ndarray]]:
    """A linear (bilinear, trilinear) Resize as one interpolation matrix per resized per-sample axis."""
    _, coordinates, _, sizes, scales = _resize_arguments(node, view)
    shape = view.shapes[node.input[0]]
    out = []
    for axis in range(1, len(shape)):
        if sizes[axis] == shape[axis] and (not scales or scales[axis] == 1):
            continue
        scale = scales[axis] if scales else np.float32(sizes[axis]) / np.float32(shape[axis])
        out.append((axis - 1, _linear_matrix(shape[axis], sizes[axis], scale, coordinates)))
    return out


def resize_mode(node, view: GraphView) -> str:
    return view.attrs(node).get("mode", "nearest")


def keeps_spikes(node, view: GraphView) -> bool:
    """Is the output spikes wherever every data input is? The op's rule says, but for a linear
    Resize (a weighted average of spikes, like average pooling: analog)."""
    r = RULES.get(node.op_type)
    if r is None or not r.keeps_spikes:
        return False
    return not (node.op_type in ("Resize", "Upsample") and resize_mode(node, view) == "linear")


def _nearest_indices(size_in: int, size_out: int, scale: float, coordinates: str, nearest: str) -> np.ndarray:
    """The input index each output index of one axis takes under ONNX nearest Resize."""
    x = _source_coordinates(size_in, size_out, scale, coordinates)
    frac = x - np.floor(x)
    if nearest == "floor":
        k = np.floor(x)
    elif nearest == "ceil":
        k = np.ceil(x)
    elif nearest == "round_prefer_ceil":
        k = np.where(frac == 0.5, np.ceil(x), np.round(x))
    else:                                     # round_prefer_floor
        k = np.where(frac == 0.5, np.floor(x), np.round(x))
    return np.clip(k, 0, size_in - 1).astype(np.int64)


def resize_selection(node, view: GraphView) -> Selection:
    _, coordinates, nearest, sizes, scales = _resize_arguments(node, view)
    shape = view.shapes[node.input[0]]
    out = []
    for axis in range(1, len(shape)):
        if sizes[axis] == shape[axis]:
            continue
        scale = scales[axis] if scales else np.float32(sizes[axis]) / np.float32(shape[axis])
        out.append((axis - 1, _nearest_indices(shape[axis], sizes[axis], scale, coordinates, nearest)))
    return Selection(tuple(out))


def _check_resize(node, view):
    mode, coordinates, nearest, sizes, scales = _resize_arguments(node, view)
    a = view.attrs(node)
    if mode not in ("nearest", "linear"):
        return (f"{node.op_type} mode={mode}: only nearest (which moves spikes) and linear (a fixed positive "
                "linear map) convert; export with mode='nearest' or 'bilinear'")
    if coordinates not in RESIZE_COORDINATES:
        return f"{node.op_type} coordinate_transformation_mode={coordinates} is not supported"
    if mode == "linear" and a.get("exclude_outside", 0):
        return f"{node.op_type} with exclude_outside is not supported"
    if nearest not in NEAREST_MODES:
        return f"{node.op_type} nearest_mode={nearest} is not supported"
    for key in ("axes", "antialias", "keep_aspect_ratio_policy"):
        if key in a and not (key == "antialias" and a[key] == 0):
            return f"{node.op_type} with the {key} attribute is not supported"
    if sizes is None:
        return f"{node.op_type} whose scales or sizes are not constant, or whose input shape is unknown"
    shape = view.shapes[node.input[0]]
    if len(sizes) != len(shape):
        return f"{node.op_type} with {len(sizes)} sizes or scales for a rank-{len(shape)} input"
    if (scales and scales[0] != 1) or (not scales and sizes[0] != shape[0]):
        return f"{node.op_type} of the batch axis"
    if any(s <= 0 for s in sizes[1:]):
        return f"{node.op_type} to an empty output"
    return None


def _selection_scale(selection: Callable):
    return lambda node, view, scale: selection(node, view).apply(scale)


def _resize_scale(node, view, scale):
    """Nearest: the scale selected as the values are. Linear: each output a convex combination of
    inputs along the resized axes, so its scale is theirs where it is the same along those axes."""
    if resize_mode(node, view) != "linear":
        return resize_selection(node, view).apply(scale)
    for axis, _ in resize_linear_maps(node, view):
        top = scale.max(axis=axis, keepdims=True)
        if not np.all(top == scale.min(axis=axis, keepdims=True)):
            raise Onnx2SnnError(f"{node.name} ({node.op_type}): linear resizing of an input normalised at different "
                                f"scales along axis {axis + 1}")
        scale = top
    return np.broadcast_to(scale, view.sample_shape(node.output[0]))


rule("Slice", "transform", "layout", check=_check_slice, transform=_selection_scale(slice_selection),
     keeps_spikes=True)
rule("Gather", "transform", "layout", check=_check_gather, transform=_selection_scale(gather_selection),
     keeps_spikes=True)

# A nearest Resize moves spikes (a selection); a linear one is a fixed positive linear map of them —
# a synapse, analog like average pooling (``keeps_spikes`` below), that the next layer takes.
rule("Resize", "transform", "layout", check=_check_resize, transform=_resize_scale, keeps_spikes=True)
rule("Upsample", "transform", "layout", check=_check_resize, transform=_resize_scale, keeps_spikes=True)
SELECTIONS = {"Slice": slice_selection, "Gather": gather_selection, "Resize": resize_selection,
              "Upsample": resize_selection}


# --- reductions -----------------------------------------------------------------------------------

def _check_reduce(node, view):
    axes, rank = reduce_axes(node, view)
    if axes is None or 0 in axes:
        return f"{node.op_type} over the batch axis"
    if view.attrs(node).get("noop_with_empty_axes", 0):
        return f"{node.op_type} with noop_with_empty_axes"
    return None


def _reduce_scale(node, view, scale):
    """A mean or sum is scale-preserving when the scale is the same along the reduced axes."""
    axes, _ = reduce_axes(node, view)
    reduced = tuple(x - 1 for x in axes)
    if not np.all(scale.max(axis=reduced, keepdims=True) == scale.min(axis=reduced, keepdims=True)):
        raise Onnx2SnnError(f"{node.name} ({node.op_type}) reduces over inputs normalised at different scales")
    return scale.max(axis=reduced, keepdims=bool(view.attrs(node).get("keepdims", 1)))


# A mean of spikes is a subsampling of rates; a sum of spikes is no rate in [0, 1]: it stays an
# input current for the next layer.
rule("ReduceMean", "transform", "subsampling", check=_check_reduce, transform=_reduce_scale)
rule("ReduceSum", "transform", "reduce", check=_check_reduce, transform=_reduce_scale)


# --- transformer ops (graph/transformer.py brings the exporters' forms to these) ----------------------
#
# Each is analog: in the SNN it runs on the running mean of its input currents with expectation
# compensation (ECMT, Huang et al. 2024: ``snn/expectation.py``), as the spiking graph's Expect* node.

def layer_norm_axis(node, view: GraphView) -> int:
    a = view.attrs(node)
    axis = a.get("axis", -1)
    return axis + len(view.shapes[node.input[0]]) if axis < 0 else axis


def _check_layer_norm(node, view):
    if view.sample_shape(node.input[0]) is None:
        return f"{node.op_type} whose input shape is unknown"
    if layer_norm_axis(node, view) == 0:
        return f"{node.op_type} over the batch axis"
    if view.opset < 17 and layer_norm_axis(node, view) != len(view.shapes[node.input[0]]) - 1:
        return f"{node.op_type} below opset 17 over more than the last axis"
    if view.const(node.input[1]) is None or (len(node.input) > 2 and node.input[2] and view.const(node.input[2]) is None):
        return f"{node.op_type} with a non-constant scale or bias"
    if len(node.output) > 1 and any(view.consumers.get(o) for o in node.output[1:] if o):
        return f"{node.op_type} whose mean or inverse standard deviation output is used"
    return None


def _check_gelu(node, view):
    if view.attrs(node).get("approximate", "none") not in ("none", "tanh"):
        return f"approximate={view.attrs(node).get('approximate')!r}: must be 'none' or 'tanh'"
    return None


def softmax_axis(node, view: GraphView) -> int:
    rank = len(view.shapes[node.input[0]])
    axis = view.attrs(node).get("axis", -1 if view.opset >= 13 else 1)
    return axis + rank if axis < 0 else axis


def _check_softmax(node, view):
    shape = view.shapes.get(node.input[0])
    if shape is None:
        return f"{node.op_type} whose input shape is unknown"
    axis = softmax_axis(node, view)
    if axis == 0:
        return f"{node.op_type} over the batch axis"
    if view.opset < 13 and axis != len(shape) - 1:
        return f"{node.op_type} (opset {view.opset}) over axes {axis}.. flattened; export at opset 13 or later"
    return None


def _check_two_activation_matmul(node, view):
    data = view.data_inputs(node)
    if len(data) != 2:
        return ("MatMul is supported as a dense layer (an activation times a constant 2-D weight) or as the "
                "product of two activations")
    a, b = (view.shapes.get(t) for t in data)
    if a is None or b is None or len(a) < 3 or len(a) != len(b):
        return "MatMul of two activations whose shapes are unknown or of different ranks (batch first in both)"
    return None


def _product_scales(node, view, scales, lam):
    """(A/λ_a)·(B/λ_b) = A·B/(λ_a·λ_b): exact where each scale is one number (a scale varying along
    the contracted axis would not factor out)."""
    a, b = (compress(s) for s in scales)
    if a.size != 1 or b.size != 1:
        raise Onnx2SnnError(f"{node.name} ({node.op_type}): a product of activations normalised per channel")
    rank = len(view.sample_shape(node.output[0]))
    return np.full((1,) * rank, float(a.reshape(-1)[0]) * float(b.reshape(-1)[0])), []


# LayerNormalization is a weighted layer: LN(x)/λ_out = LN(x/λ_in; γ/λ_out, β/λ_out, ε/λ_in²) for one
# input scale λ_in (normalize.apply_scales rewrites γ, β and ε). GELU and softmax are not homogeneous:
# their input is brought back to original units (a Mul by its scale) and their output is at scale 1.
rule("LayerNormalization", "weighted", "weighted", check=_check_layer_norm)
rule("Gelu", "unit", "analog", check=_check_gelu)
rule("Softmax", "unit", "analog", check=_check_softmax)
rule("MatMul", "merge", "analog", check=_check_two_activation_matmul, merge=_product_scales)
# Their spiking-graph nodes (graph/spiking.py): the same op on the running mean of its input currents.
EXPECTATION = {"LayerNormalization": "ExpectLayerNorm", "Gelu": "ExpectGelu", "Softmax": "ExpectSoftmax",
               "MatMul": "ExpectMatMul"}
rule("ExpectLayerNorm", "weighted", "spiking", check=_check_layer_norm)
rule("ExpectGelu", "unit", "spiking", check=_check_gelu)
rule("ExpectSoftmax", "unit", "spiking", check=_check_softmax)
rule("ExpectMatMul", "merge", "spiking", check=_check_two_activation_matmul, merge=_product_scales)


# The groups the pipeline asks about in its loops, read off the table once.
NEURON_OPS = ops_in("neuron")              # the ANN ops that become IF neurons
SUBSAMPLING = ops_in("subsampling")        # average pooling, global or not, and ReduceMean
LAYOUT = ops_in("layout")                  # ops that only move values
