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
    "Sigmoid": "not rate-codable with IF neurons; retrain with ReLU",
    "Tanh": "not rate-codable with IF neurons; retrain with ReLU",
    "LeakyRelu": "negative slope is not rate-codable with IF neurons; retrain with ReLU",
    "Elu": "not rate-codable with IF neurons; retrain with ReLU",
    "Selu": "not rate-codable with IF neurons; retrain with ReLU",
    "Gelu": "not rate-codable with IF neurons; retrain with ReLU",
    "HardSigmoid": "not rate-codable with IF neurons; retrain with ReLU",
    "BatchNormalization": "BatchNormalization whose input shape is unknown; export with static shapes",
    "PRelu": "negative slope is not rate-codable with IF neurons; retrain with ReLU",
    "Softmax": "Softmax is only supported at the graph output (where it is dropped)",
    "LogSoftmax": "LogSoftmax is only supported at the graph output (where it is dropped)",
    "MatMul": "MatMul is supported only as a dense layer: 2-D input times a constant 2-D weight",
}


def rule(op: str, scale: str, group: str, check: Optional[Callable] = None, transform: Optional[Callable] = None,
         merge: Optional[Callable] = None, keeps_spikes: bool = False, passes_offset: bool = False) -> None:
    """Add ``op``'s rule; a second rule for one op is an error (as in onnx2torch), not a silent replacement."""
    if op in RULES:
        raise ValueError(f"a rule for {op} is already registered")
    RULES[op] = OpRule(op, scale, group, check, transform, merge, keeps_spikes, passes_offset)


def ops_in(group: str) -> Tuple[str, ...]:
    return tuple(op for op, r in RULES.items() if r.group == group)


def unsupported_reason(node: onnx.NodeProto, view: GraphView) -> Optional[str]:
    r = RULES.get(node.op_type)
    if r is None:
        return ADVICE.get(node.op_type, "op not supported by onnx2snn yet")
    return r.check(node, view) if r.check else None


def unsupported_nodes(view: GraphView) -> List[str]:
    """One line per node that cannot be converted: name, op, reason."""
    return [f"{node.name} ({node.op_type}): {reason}" for node in view.nodes
            if node.op_type != "Constant" and (reason := unsupported_reason(node, view))]


def check_supported(view: GraphView, label: str = "the model") -> None:
    problems = unsupported_nodes(view)
    if len(view.output_names) != 1:
        problems.append(f"graph outputs {view.output_names}: onnx2snn converts models with one output")
    if problems:
        raise Onnx2SnnError(f"{label} has {len(problems)} node(s) onnx2snn cannot convert: " + "; ".join(problems))


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


rule("Conv", "weighted", "weighted", check=_check_conv)
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
    return _check_neuron(node, view) if a.get("mode") == "spikes" else None


def _check_clip(node, view):
    lo, hi, dynamic = clip_bounds(node, view)
    if dynamic:
        return "Clip with non-constant bounds"
    if lo is None or lo != 0:
        return f"Clip with min={lo} is not a ReLU (only min=0, e.g. ReLU6, is rate-codable)"
    return None


# In a spiking graph a ReLU or Clip is left only where its input is spikes already: the identity.
rule("Relu", "preserve", "neuron", keeps_spikes=True)
rule("Clip", "preserve", "neuron", check=_check_clip, keeps_spikes=True)
rule("IF", "preserve", "spiking", check=_check_neuron, keeps_spikes=True)
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
    if len(view.data_inputs(node)) != 2:
        return "Add of an activation and a constant that varies across positions (only per-channel constants fold)"
    return None


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
    if pads[0] or pads[rank] or pads[1] or pads[rank + 1]:
        return "Pad of the batch or channel axis"
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


# The groups the pipeline asks about in its loops, read off the table once.
NEURON_OPS = ops_in("neuron")              # the ANN ops that become IF neurons
SUBSAMPLING = ops_in("subsampling")        # average pooling, global or not, and ReduceMean
LAYOUT = ops_in("layout")                  # ops that only move values
