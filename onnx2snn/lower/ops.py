"""Handlers: one small function per ONNX op family. See ``registry.py`` for the contract."""
from __future__ import annotations

import math
from functools import partial
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Onnx2SnnError
from ..graph.spiking import offset_input, v_init_input
from ..scales import channel_scale, compress
from ..snn.neurons import IFNeuron, MembraneReadout
from ..snn.pooling import MAX_POOL
from .modules import AveragePool2d, ConstantMul, Function, Padded, Passthrough, ReLU
from .registry import register

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _resolve_pads(node, view, kernel, strides, dilations):
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


def _needs_shape_for_auto_pad(node, ctx):
    auto = ctx.view.attrs(node).get("auto_pad", "NOTSET")
    if auto.startswith("SAME") and ctx.view.sample_shape(node.input[0]) is None:
        return f"auto_pad={auto} needs the input shape, which shape inference could not determine"
    return None


# --- weighted layers ----------------------------------------------------------------------------

def _check_conv(node, ctx):
    if ctx.view.const(node.input[1]) is None:
        return "Conv with non-constant weights"
    return _needs_shape_for_auto_pad(node, ctx)


@register("Conv", scale="weighted", check=_check_conv)
def lower_conv(node, ctx):
    a = ctx.view.attrs(node)
    w = ctx.view.const(node.input[1])
    b = ctx.bias(node)
    nd = w.ndim - 2
    kernel = list(w.shape[2:])
    strides = list(a.get("strides", [1] * nd))
    dilations = list(a.get("dilations", [1] * nd))
    pads = _resolve_pads(node, ctx.view, kernel, strides, dilations)
    group = a.get("group", 1)
    symmetric = pads[:nd] == pads[nd:]
    conv = _with_weights(_CONV[nd](w.shape[1] * group, w.shape[0], kernel, stride=strides, dilation=dilations,
                                   groups=group, padding=pads[:nd] if symmetric else 0, bias=b is not None,
                                   device="meta"), w, b)
    ctx.add(node, conv if symmetric else Padded(pads, conv), [node.input[0]], node.output[0])


def _with_weights(module: nn.Module, w: np.ndarray, b) -> nn.Module:
    """``module``, built on the meta device (no random initialisation of weights replaced at once:
    0.8 s for an ImageNet VGG), with the ONNX weights as its parameters. Not torch's skip_init:
    its move off the meta device imports torch.fx's symbolic shapes, 0.3 s of every CLI run."""
    module.weight = nn.Parameter(torch.from_numpy(np.array(w, np.float32)), requires_grad=False)
    if b is not None:
        module.bias = nn.Parameter(torch.from_numpy(np.array(b, np.float32)), requires_grad=False)
    return module


def _check_gemm(node, ctx):
    a = ctx.view.attrs(node)
    w = ctx.view.const(node.input[1])
    if w is None:
        return "Gemm with non-constant weights"
    if a.get("transA", 0):
        return "Gemm with transA=1"
    return None


@register("Gemm", scale="weighted", check=_check_gemm)
def lower_gemm(node, ctx):
    # Gemms are canonicalised by the graph passes to Y = X·Wᵀ + b.
    w = ctx.view.const(node.input[1]).astype(np.float32)
    b = ctx.bias(node)
    linear = _with_weights(nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device="meta"), w,
                           None if b is None else b.reshape(-1))
    ctx.add(node, linear, [node.input[0]], node.output[0])


# --- neurons (the spiking graph's IF nodes, graph/spiking.py) --------------------------------------

def _initializer(node, ctx, name: Optional[str], what: str) -> Optional[torch.Tensor]:
    if name is None:
        return None
    value = ctx.view.const(name)
    if value is None:
        raise Onnx2SnnError(f"{node.name} ({node.op_type}): its {what} initializer {name!r} is missing")
    return torch.from_numpy(np.array(value, np.float32))


def _neuron(node, ctx):
    """IF neurons with the node's attributes; a per-neuron v_init from its second input, an input
    offset from its third (unless the lowering added it to a bias upstream: ``ctx.bias``)."""
    a = ctx.view.attrs(node)
    v_init_map = _initializer(node, ctx, v_init_input(node), "v_init")
    offset = None if node.name in ctx.folded.neurons else _initializer(node, ctx, offset_input(node), "offset")
    v_reset = None if a.get("reset", "subtract") == "subtract" else float(a.get("v_reset", 0.0))
    return IFNeuron(v_threshold=a.get("threshold", 1.0), v_reset=v_reset, v_init=a.get("v_init", 0.0),
                    v_init_map=v_init_map, input_offset=offset)


def _check_neuron(node, ctx):
    a = ctx.view.attrs(node)
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


@register("IF", scale="preserve", check=_check_neuron, keeps_spikes=True)
def lower_if(node, ctx):
    ctx.add(node, ReLU() if ctx.ann else _neuron(node, ctx), [node.input[0]], node.output[0])


@register("ClipIF", scale="preserve", check=_check_neuron, keeps_spikes=True)
def lower_clip_if(node, ctx):
    # IF neurons saturate at one spike per step, i.e. at 1 <= max: the upper bound comes free.
    hi = ctx.view.attrs(node)["max"]
    module = Function(partial(torch.clamp, min=0.0, max=hi), f"clamp 0..{hi}") if ctx.ann else _neuron(node, ctx)
    ctx.add(node, module, [node.input[0]], node.output[0])


@register("Relu", scale="preserve", keeps_spikes=True)
def lower_relu(node, ctx):
    # In a spiking graph a ReLU is left only where its input is spikes already: the identity.
    ctx.add(node, ReLU() if ctx.ann else Passthrough(), [node.input[0]], node.output[0])


def _check_readout(node, ctx):
    a = ctx.view.attrs(node)
    if a.get("mode", "membrane") not in ("membrane", "spikes"):
        return f"mode={a.get('mode')!r}: must be 'membrane' or 'spikes'"
    if a.get("delay", 0) < 0:
        return f"delay={a.get('delay')}: must be >= 0"
    return _check_neuron(node, ctx) if a.get("mode") == "spikes" else None


@register("Readout", scale="preserve", check=_check_readout)
def lower_readout(node, ctx):
    """The output layer: spike counts of IF neurons, or the membrane potential; ``delay`` first steps skipped."""
    a = ctx.view.attrs(node)
    if ctx.ann:
        module = Passthrough()
    else:
        module = _neuron(node, ctx) if a.get("mode") == "spikes" else MembraneReadout()
    ctx.readout_delay = int(a.get("delay", 0))
    ctx.add(node, module, [node.input[0]], node.output[0])


# --- pooling ------------------------------------------------------------------------------------

def pool_arguments(node, view):
    """kernel, strides, dilations, explicit pads (auto_pad resolved) and ceil_mode of a pooling node."""
    a = view.attrs(node)
    kernel = list(a["kernel_shape"])
    nd = len(kernel)
    strides = list(a.get("strides", [1] * nd))
    dilations = list(a.get("dilations", [1] * nd))
    pads = _resolve_pads(node, view, kernel, strides, dilations)
    return kernel, strides, dilations, pads, bool(a.get("ceil_mode", 0))


def _check_avg_pool(node, ctx):
    reason = _needs_shape_for_auto_pad(node, ctx)
    if reason:
        return reason
    kernel, strides, dilations, pads, _ = pool_arguments(node, ctx.view)
    nd = len(kernel)
    if any(d != 1 for d in dilations):
        return "AveragePool with dilations"
    if pads[:nd] != pads[nd:] and not ctx.view.attrs(node).get("count_include_pad", 0):
        return "AveragePool with asymmetric pads and count_include_pad=0"
    if any(p > k // 2 for p, k in zip(pads, kernel + kernel)):
        return "AveragePool with pads larger than half the kernel"
    return None


def _avg_pool_module(node, ctx, kernel, strides, pads, ceil_mode, count_include_pad):
    nd = len(kernel)
    shape = ctx.view.sample_shape(node.input[0])
    if nd == 2 and not any(pads) and not ceil_mode and shape:
        return AveragePool2d(shape[0], kernel, strides)
    if pads[:nd] == pads[nd:]:
        fn = partial(_AVG[nd], kernel_size=kernel, stride=strides, padding=pads[:nd], ceil_mode=ceil_mode,
                     count_include_pad=count_include_pad)
        return Function(fn, f"avg_pool kernel={kernel} stride={strides} pads={pads}")
    fn = partial(_AVG[nd], kernel_size=kernel, stride=strides, ceil_mode=ceil_mode)
    return Padded(pads, Function(fn, f"avg_pool kernel={kernel} stride={strides}"))


@register("AveragePool", scale="preserve", check=_check_avg_pool)
def lower_avg_pool(node, ctx):
    kernel, strides, _, pads, ceil_mode = pool_arguments(node, ctx.view)
    include = bool(ctx.view.attrs(node).get("count_include_pad", 0))
    # Average pooling of spikes subsamples rates; IF neurons after it are a node of their own.
    ctx.add(node, _avg_pool_module(node, ctx, kernel, strides, pads, ceil_mode, include), [node.input[0]],
            node.output[0])


@register("GlobalAveragePool", scale="preserve")
def lower_global_avg_pool(node, ctx):
    fn = lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
    ctx.add(node, Function(fn, "global average pool"), [node.input[0]], node.output[0])


def _check_max_pool(node, ctx):
    reason = _needs_shape_for_auto_pad(node, ctx)
    if reason:
        return reason
    if len(node.output) > 1 and node.output[1] and ctx.view.consumers.get(node.output[1]):
        return "MaxPool whose indices output is used"
    kernel, _, _, pads, _ = pool_arguments(node, ctx.view)
    nd = len(kernel)
    if pads[:nd] == pads[nd:] and any(p > k // 2 for p, k in zip(pads, kernel + kernel)):
        return "MaxPool with pads larger than half the kernel"
    return None


def _max_pool_module(node, ctx):
    kernel, strides, dilations, pads, ceil_mode = pool_arguments(node, ctx.view)
    nd = len(kernel)
    symmetric = pads[:nd] == pads[nd:]
    fn = partial(MAX_POOL[nd], kernel_size=kernel, stride=strides, padding=pads[:nd] if symmetric else 0,
                 dilation=dilations, ceil_mode=ceil_mode)
    module = Function(fn, f"max_pool kernel={kernel} stride={strides} pads={pads}")
    return module if symmetric else Padded(pads, module, value=float("-inf"))  # padded positions never win


@register("MaxPool", scale="preserve", check=_check_max_pool, keeps_spikes=True)
def lower_max_pool(node, ctx):
    # Max pooling of currents (or of spikes, when the spiking graph asks for it as SpikeMaxPool rule "wta").
    ctx.add(node, _max_pool_module(node, ctx), [node.input[0]], node.output[0])


def _check_spike_max_pool(node, ctx):
    a = ctx.view.attrs(node)
    if a.get("rule") not in ("max", "gate", "wta", "avg"):
        return f"rule={a.get('rule')!r}: must be one of max, gate, wta, avg"
    return _check_max_pool(node, ctx)


@register("SpikeMaxPool", scale="preserve", check=_check_spike_max_pool, keeps_spikes=True)
def lower_spike_max_pool(node, ctx):
    from ..snn.pooling import GatedMaxPool, RunningMaxPool
    rule = ctx.view.attrs(node)["rule"]
    kernel, strides, dilations, pads, ceil_mode = pool_arguments(node, ctx.view)
    if ctx.ann or rule == "wta":
        module = _max_pool_module(node, ctx)
    elif rule == "avg":
        module = _avg_pool_module(node, ctx, kernel, strides, pads, ceil_mode, False)
    elif rule == "max":
        module = RunningMaxPool(kernel, strides, pads, dilations, ceil_mode)
    else:
        module = GatedMaxPool(kernel, strides, pads, dilations, ceil_mode, ctx.view.attrs(node).get("momentum"))
    ctx.add(node, module, [node.input[0]], node.output[0])


# --- reshapes -----------------------------------------------------------------------------------

def _check_flatten(node, ctx):
    rank = len(ctx.view.shapes.get(node.input[0], ())) or None
    axis = ctx.view.attrs(node).get("axis", 1)
    if axis < 0 and rank:
        axis += rank
    if axis != 1:
        return f"Flatten with axis={axis} mixes the batch dimension with others (only axis=1)"
    return None


@register("Flatten", scale="transform", keeps_spikes=True, check=_check_flatten, transform=lambda node, view, scale: scale.reshape(-1))
def lower_flatten(node, ctx):
    ctx.add(node, Function(lambda x: x.flatten(1), "flatten"), [node.input[0]], node.output[0])


def _reshape_target(node, ctx):
    """The per-sample target shape of a Reshape that keeps the batch dimension, else None."""
    shape = ctx.view.const(node.input[1])
    in_shape = ctx.view.sample_shape(node.input[0])
    if shape is None or in_shape is None or shape.ndim != 1 or len(shape) < 1:
        return None
    shape = [int(s) for s in shape]
    if shape[0] not in (0, -1) or (shape[0] == -1 and -1 in shape[1:]):
        return None
    target = [in_shape[i] if s == 0 and i < len(in_shape) else s for i, s in enumerate(shape[1:])]
    if int(np.prod([d for d in target if d != -1])) <= 0:
        return None
    return target


def _check_reshape(node, ctx):
    if _reshape_target(node, ctx) is None:
        return ("Reshape whose target shape is not constant or does not keep the batch dimension "
                "first (expected (0 or -1, ...))")
    return None


def _reshape_scale(node, view, scale):
    return scale.reshape(view.sample_shape(node.output[0]))


@register("Reshape", scale="transform", keeps_spikes=True, check=_check_reshape, transform=_reshape_scale)
def lower_reshape(node, ctx):
    target = _reshape_target(node, ctx)
    ctx.add(node, Function(lambda x: x.reshape(x.shape[0], *target), f"reshape to (B, {target})"),
            [node.input[0]], node.output[0])


# --- activations with a bound -------------------------------------------------------------------

def clip_bounds(node, view):
    """(min, max, whether a bound is not constant) of a Clip, from attributes or (opset >= 11) inputs."""
    a = view.attrs(node)
    if len(node.input) > 1 or not a:  # opset >= 11: min and max are inputs
        lo = view.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        hi = view.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        dynamic = any(n and view.const(n) is None for n in list(node.input)[1:])
        return (None if lo is None else float(lo)), (None if hi is None else float(hi)), dynamic
    return a.get("min"), a.get("max"), False


def _check_clip(node, ctx):
    lo, hi, dynamic = clip_bounds(node, ctx.view)
    if dynamic:
        return "Clip with non-constant bounds"
    if lo is None or lo != 0:
        return f"Clip with min={lo} is not a ReLU (only min=0, e.g. ReLU6, is rate-codable)"
    return None


@register("Clip", scale="preserve", check=_check_clip, keeps_spikes=True)
def lower_clip(node, ctx):
    # In a spiking graph a Clip is left only where its input is spikes (in [0, 1]): the identity.
    _, hi, _ = clip_bounds(node, ctx.view)
    module = Function(partial(torch.clamp, min=0.0, max=hi), f"clamp 0..{hi}") if ctx.ann else Passthrough()
    ctx.add(node, module, [node.input[0]], node.output[0])


# --- merges -------------------------------------------------------------------------------------

def _check_add(node, ctx):
    if len(ctx.view.data_inputs(node)) != 2:
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


@register("Add", scale="merge", check=_check_add, merge=_add_scales)
def lower_add(node, ctx):
    # Sum of input currents (or spikes weighted by their synaptic factors): analog, not spikes.
    ctx.add(node, Function(torch.add, "add"), list(node.input), node.output[0])


def _check_mul(node, ctx):
    data = ctx.view.data_inputs(node)
    if len(data) != 1:
        return "Mul of two activations is not rate-codable"
    const = next(ctx.view.const(i) for i in node.input if i not in data)
    shape = ctx.view.sample_shape(data[0])
    if shape is None or const.ndim > len(shape) or any(d not in (1, s) for d, s in zip(const.shape[::-1], shape[::-1])):
        return "Mul by a constant that does not broadcast per sample"
    return None


@register("Mul", scale="factor", check=_check_mul)
def lower_mul(node, ctx):
    data = ctx.view.data_inputs(node)[0]
    const = np.array(next(ctx.view.const(i) for i in node.input if i != data), np.float32)
    ctx.add(node, ConstantMul(const), [data], node.output[0])


def _check_concat(node, ctx):
    if ctx.view.positive_axis(node) == 0:
        return "Concat along the batch axis"
    if len(ctx.view.data_inputs(node)) != len(node.input):
        return "Concat with a constant input"
    return None


def _concat_scales(node, view, scales, lam):
    """No common scale needed: the inputs' scales side by side (the next layer takes them per
    input channel)."""
    axis = view.positive_axis(node) - 1
    parts = [np.broadcast_to(s, view.sample_shape(t)) for t, s in zip(view.data_inputs(node), scales)]
    return compress(np.concatenate(parts, axis=axis)), []


@register("Concat", scale="merge", check=_check_concat, keeps_spikes=True, merge=_concat_scales)
def lower_concat(node, ctx):
    axis = ctx.view.positive_axis(node)
    ctx.add(node, Function(lambda *xs: torch.cat(xs, dim=axis), f"concat axis={axis}"), list(node.input),
            node.output[0])


# --- layout ops (the scale array moves with the data) -------------------------------------------

def _transpose_perm(node, ctx):
    rank = len(ctx.view.shapes[node.input[0]])
    return list(ctx.view.attrs(node).get("perm", list(reversed(range(rank)))))


def _check_transpose(node, ctx):
    if _transpose_perm(node, ctx)[0] != 0:
        return "Transpose that moves the batch axis"
    return None


def _transpose_scale(node, view, scale):
    perm = list(view.attrs(node).get("perm", list(reversed(range(scale.ndim + 1)))))
    return scale.transpose([p - 1 for p in perm[1:]])


@register("Transpose", scale="transform", keeps_spikes=True, check=_check_transpose, transform=_transpose_scale)
def lower_transpose(node, ctx):
    perm = _transpose_perm(node, ctx)
    ctx.add(node, Function(lambda x: x.permute(*perm), f"permute {perm}"), [node.input[0]], node.output[0])


def _squeeze_axes(node, ctx):
    axes = ctx.view.const(node.input[1]) if len(node.input) > 1 and node.input[1] else ctx.view.attrs(node).get("axes")
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]


def _check_squeeze(node, ctx):
    if len(node.input) > 1 and node.input[1] and ctx.view.const(node.input[1]) is None:
        return f"{node.op_type} with non-constant axes"
    if ctx.view.sample_shape(node.output[0]) is None:
        return f"{node.op_type} whose output shape is unknown"
    rank = len(ctx.view.shapes[node.output[0] if node.op_type == "Unsqueeze" else node.input[0]])
    axes = _squeeze_axes(node, ctx) or []
    if any((a + rank if a < 0 else a) == 0 for a in axes) or (node.op_type == "Squeeze" and not axes):
        return f"{node.op_type} of the batch axis"
    return None


def _lower_to_shape(node, ctx):
    """Reshape to the (shape-inferred) per-sample output shape: right for Squeeze/Unsqueeze."""
    target = ctx.view.sample_shape(node.output[0])
    ctx.add(node, Function(lambda x: x.reshape(x.shape[0], *target), f"reshape to (B, {target})"),
            [node.input[0]], node.output[0])


register("Squeeze", scale="transform", keeps_spikes=True, check=_check_squeeze, transform=_reshape_scale)(_lower_to_shape)
register("Unsqueeze", scale="transform", keeps_spikes=True, check=_check_squeeze, transform=_reshape_scale)(_lower_to_shape)


def _pad_args(node, view):
    a = view.attrs(node)
    mode = a.get("mode", "constant")
    pads = view.const(node.input[1]) if len(node.input) > 1 else np.array(a.get("pads", []))
    value = view.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.array(a.get("value", 0.0))
    return mode, pads, value


def _check_pad(node, ctx):
    mode, pads, value = _pad_args(node, ctx.view)
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
    _, pads, _ = _pad_args(node, view)
    rank = len(pads) // 2
    begin, end = [int(p) for p in pads[1:rank]], [int(p) for p in pads[rank + 1:]]
    scale = np.pad(scale, [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)], mode="edge")
    return scale[tuple(slice(max(-b, 0), n - max(-e, 0)) for b, e, n in zip(begin, end, scale.shape))]


@register("Pad", scale="transform", keeps_spikes=True, check=_check_pad, transform=_pad_scale)
def lower_pad(node, ctx):
    from ..snn.pooling import torch_pads
    _, pads, _ = _pad_args(node, ctx.view)
    rank = len(pads) // 2
    spatial = [int(p) for p in list(pads[2:rank]) + list(pads[rank + 2:])]
    ctx.add(node, Function(partial(F.pad, pad=torch_pads(spatial)), f"pad {spatial}"), [node.input[0]],
            node.output[0])


def _reduce_axes(node, view):
    a = view.attrs(node)
    axes = view.const(node.input[1]) if len(node.input) > 1 and node.input[1] else a.get("axes")
    rank = len(view.shapes[node.input[0]])
    if axes is None:
        return None, rank
    return sorted(int(x) + rank if int(x) < 0 else int(x) for x in np.asarray(axes).reshape(-1)), rank


def _check_reduce(node, ctx):
    axes, rank = _reduce_axes(node, ctx.view)
    if axes is None or 0 in axes:
        return f"{node.op_type} over the batch axis"
    if ctx.view.attrs(node).get("noop_with_empty_axes", 0):
        return f"{node.op_type} with noop_with_empty_axes"
    return None


def _reduce_scale(node, view, scale):
    """A mean or sum is scale-preserving when the scale is the same along the reduced axes."""
    axes, _ = _reduce_axes(node, view)
    reduced = tuple(x - 1 for x in axes)
    if not np.all(scale.max(axis=reduced, keepdims=True) == scale.min(axis=reduced, keepdims=True)):
        from ..errors import Onnx2SnnError
        raise Onnx2SnnError(f"{node.name} ({node.op_type}) reduces over inputs normalised at different scales")
    keep = view.attrs(node).get("keepdims", 1)
    return scale.max(axis=reduced, keepdims=bool(keep))


def _lower_reduce(node, ctx, reduce: str):
    axes, _ = _reduce_axes(node, ctx.view)
    keep = bool(ctx.view.attrs(node).get("keepdims", 1))
    fn = partial(getattr(torch, reduce), dim=axes, keepdim=keep)
    ctx.add(node, Function(fn, f"{reduce} over axes {axes}"), [node.input[0]], node.output[0])


@register("ReduceMean", scale="transform", check=_check_reduce, transform=_reduce_scale)
def lower_reduce_mean(node, ctx):
    # A mean of spikes is a subsampling of rates (IF neurons after it are a node of their own).
    _lower_reduce(node, ctx, "mean")


@register("ReduceSum", scale="transform", check=_check_reduce, transform=_reduce_scale)
def lower_reduce_sum(node, ctx):
    # A sum of spikes is no rate in [0, 1]: it stays an input current for the next layer.
    _lower_reduce(node, ctx, "sum")
