"""Lowerings: one small function per ONNX op family, ``(node, ctx) -> None``, adding the node's
torch modules to the network being built. What an op means (its scale rule, its checks, its
attributes) is in ``graph/ops.py``; here is only how it runs in torch."""
from __future__ import annotations

from functools import partial
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Onnx2SnnError
from ..graph.ops import (SELECTIONS, clip_bounds, layer_norm_axis, prelu_slope, conv_arguments, conv_transpose_arguments,
                         pad_arguments, pool_arguments, reduce_axes, reshape_target, resize_linear_maps, resize_mode,
                         softmax_axis, transpose_perm)
from ..graph.spiking import offset_input, v_init_input
from ..snn.expectation import ExpectationCompensation
from ..snn.neurons import IFNeuron, MembraneReadout, SignedIFNeuron
from ..snn.pooling import MAX_POOL, GatedMaxPool, RunningMaxPool, torch_pads
from .modules import AveragePool2d, AxisMaps, ChannelPRelu, ConstantAdd, ConstantMul, CroppedConvTranspose, Function, Padded, Passthrough, ReLU, Select
from .registry import lowers

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


# --- weighted layers ----------------------------------------------------------------------------

@lowers("Conv")
def lower_conv(node, ctx):
    w = ctx.view.const(node.input[1])
    b = ctx.bias(node)
    kernel, strides, dilations, pads, group = conv_arguments(node, ctx.view)
    nd = len(kernel)
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


_CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


@lowers("ConvTranspose")
def lower_conv_transpose(node, ctx):
    w = ctx.view.const(node.input[1])      # (C_in, C_out/group, k…)
    b = ctx.bias(node)
    kernel, strides, dilations, pads, output_padding, group = conv_transpose_arguments(node, ctx.view)
    nd = len(kernel)
    native = pads[:nd] == pads[nd:] and all(p < max(s, d) for p, s, d in zip(output_padding, strides, dilations))

    def build(padding, extra, bias):
        return _with_weights(_CONV_TRANSPOSE[nd](w.shape[0], w.shape[1] * group, kernel, stride=strides,
                                                 padding=padding, output_padding=extra, groups=group,
                                                 dilation=dilations, bias=bias is not None, device="meta"), w, bias)
    if native:
        module = build(pads[:nd], output_padding, b)
    else:   # the full output, then ONNX's crop at each end (output_padding extends the end)
        crop = torch_pads([-p for p in pads[:nd]] + [e - p for e, p in zip(output_padding, pads[nd:])])
        module = CroppedConvTranspose(build([0] * nd, [0] * nd, None), crop, b)
    ctx.add(node, module, [node.input[0]], node.output[0])


@lowers("Gemm")
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


def _neuron(node, ctx, kind=IFNeuron, **extra):
    """IF neurons (``kind``) with the node's attributes; a per-neuron v_init from its second input,
    an input offset from its third (unless the lowering added it to a bias upstream: ``ctx.bias``)."""
    a = ctx.view.attrs(node)
    v_init_map = _initializer(node, ctx, v_init_input(node), "v_init")
    offset = None if node.name in ctx.folded.neurons else _initializer(node, ctx, offset_input(node), "offset")
    v_reset = None if a.get("reset", "subtract") == "subtract" else float(a.get("v_reset", 0.0))
    return kind(v_threshold=a.get("threshold", 1.0), v_reset=v_reset, v_init=a.get("v_init", 0.0),
                v_init_map=v_init_map, input_offset=offset, **extra)


@lowers("IF")
def lower_if(node, ctx):
    ctx.add(node, ReLU() if ctx.ann else _neuron(node, ctx), [node.input[0]], node.output[0])


@lowers("SignedIF")
def lower_signed_if(node, ctx):
    a = ctx.view.attrs(node)
    if ctx.ann:
        module = Function(partial(F.leaky_relu, negative_slope=a["alpha"]), f"leaky_relu {a['alpha']}")
    else:
        module = _neuron(node, ctx, SignedIFNeuron, alpha=a["alpha"])
    ctx.add(node, module, [node.input[0]], node.output[0])


@lowers("PReluIF")
def lower_prelu_if(node, ctx):
    slope = torch.from_numpy(np.ascontiguousarray(prelu_slope(node, ctx.view)))
    module = ChannelPRelu(slope) if ctx.ann else _neuron(node, ctx, SignedIFNeuron, slope_map=slope)
    ctx.add(node, module, [node.input[0]], node.output[0])


@lowers("PRelu")
def lower_prelu(node, ctx):
    # Left in a spiking graph only where its input is spikes already (as LeakyRelu).
    ctx.add(node, ChannelPRelu(torch.from_numpy(np.ascontiguousarray(prelu_slope(node, ctx.view)))),
            [node.input[0]], node.output[0])


@lowers("LeakyRelu")
def lower_leaky_relu(node, ctx):
    # Left in a spiking graph only where its input is spikes already: +1 -> 1, -1 -> -alpha (per step).
    alpha = float(ctx.view.attrs(node).get("alpha", 0.01))
    ctx.add(node, Function(partial(F.leaky_relu, negative_slope=alpha), f"leaky_relu {alpha}"), [node.input[0]],
            node.output[0])


@lowers("ClipIF")
def lower_clip_if(node, ctx):
    # IF neurons saturate at one spike per step, i.e. at 1 <= max: the upper bound comes free.
    hi = ctx.view.attrs(node)["max"]
    module = Function(partial(torch.clamp, min=0.0, max=hi), f"clamp 0..{hi}") if ctx.ann else _neuron(node, ctx)
    ctx.add(node, module, [node.input[0]], node.output[0])


@lowers("Relu")
def lower_relu(node, ctx):
    # In a spiking graph a ReLU is left only where its input is spikes already: the identity.
    ctx.add(node, ReLU() if ctx.ann else Passthrough(), [node.input[0]], node.output[0])


@lowers("Clip")
def lower_clip(node, ctx):
    # In a spiking graph a Clip is left only where its input is spikes (in [0, 1]): the identity.
    _, hi, _ = clip_bounds(node, ctx.view)
    module = Function(partial(torch.clamp, min=0.0, max=hi), f"clamp 0..{hi}") if ctx.ann else Passthrough()
    ctx.add(node, module, [node.input[0]], node.output[0])


@lowers("Readout")
def lower_readout(node, ctx):
    """The output layer: spike counts of IF neurons, or the membrane potential; ``delay`` first steps skipped."""
    a = ctx.view.attrs(node)
    if ctx.ann:
        module = Passthrough()
    else:
        module = _neuron(node, ctx) if a.get("mode") == "spikes" else MembraneReadout()
    ctx.readout_delay = int(a.get("delay", 0))
    ctx.output_head = a.get("head") or None
    ctx.add(node, module, [node.input[0]], node.output[0])


# --- pooling ------------------------------------------------------------------------------------

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


@lowers("AveragePool")
def lower_avg_pool(node, ctx):
    kernel, strides, _, pads, ceil_mode = pool_arguments(node, ctx.view)
    include = bool(ctx.view.attrs(node).get("count_include_pad", 0))
    ctx.add(node, _avg_pool_module(node, ctx, kernel, strides, pads, ceil_mode, include), [node.input[0]],
            node.output[0])


@lowers("GlobalAveragePool")
def lower_global_avg_pool(node, ctx):
    fn = lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
    ctx.add(node, Function(fn, "global average pool"), [node.input[0]], node.output[0])


def _max_pool_module(node, ctx):
    kernel, strides, dilations, pads, ceil_mode = pool_arguments(node, ctx.view)
    nd = len(kernel)
    symmetric = pads[:nd] == pads[nd:]
    fn = partial(MAX_POOL[nd], kernel_size=kernel, stride=strides, padding=pads[:nd] if symmetric else 0,
                 dilation=dilations, ceil_mode=ceil_mode)
    module = Function(fn, f"max_pool kernel={kernel} stride={strides} pads={pads}")
    return module if symmetric else Padded(pads, module, value=float("-inf"))  # padded positions never win


@lowers("MaxPool")
def lower_max_pool(node, ctx):
    ctx.add(node, _max_pool_module(node, ctx), [node.input[0]], node.output[0])


@lowers("SpikeMaxPool")
def lower_spike_max_pool(node, ctx):
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


# --- merges -------------------------------------------------------------------------------------

@lowers("Add")
def lower_add(node, ctx):
    data = ctx.view.data_inputs(node)
    if len(data) == 1:          # a constant current (a position embedding), rescaled: every step
        const = np.array(next(ctx.view.const(i) for i in node.input if i != data[0]), np.float32)
        ctx.add(node, ConstantAdd(const), data, node.output[0])
        return
    ctx.add(node, Function(torch.add, "add"), list(node.input), node.output[0])


@lowers("Mul")
def lower_mul(node, ctx):
    data = ctx.view.data_inputs(node)[0]
    const = np.array(next(ctx.view.const(i) for i in node.input if i != data), np.float32)
    ctx.add(node, ConstantMul(const), [data], node.output[0])


@lowers("Concat")
def lower_concat(node, ctx):
    axis = ctx.view.positive_axis(node)
    ctx.add(node, Function(lambda *xs: torch.cat(xs, dim=axis), f"concat axis={axis}"), list(node.input),
            node.output[0])


# --- layout ops ---------------------------------------------------------------------------------

@lowers("Flatten")
def lower_flatten(node, ctx):
    ctx.add(node, Function(lambda x: x.flatten(1), "flatten"), [node.input[0]], node.output[0])


@lowers("Reshape")
def lower_reshape(node, ctx):
    target = reshape_target(node, ctx.view)
    ctx.add(node, Function(lambda x: x.reshape(x.shape[0], *target), f"reshape to (B, {target})"),
            [node.input[0]], node.output[0])


@lowers("Transpose")
def lower_transpose(node, ctx):
    perm = transpose_perm(node, ctx.view)
    ctx.add(node, Function(lambda x: x.permute(*perm), f"permute {perm}"), [node.input[0]], node.output[0])


@lowers("Squeeze", "Unsqueeze")
def lower_to_shape(node, ctx):
    """Reshape to the (shape-inferred) per-sample output shape: right for Squeeze/Unsqueeze."""
    target = ctx.view.sample_shape(node.output[0])
    ctx.add(node, Function(lambda x: x.reshape(x.shape[0], *target), f"reshape to (B, {target})"),
            [node.input[0]], node.output[0])


@lowers("Pad")
def lower_pad(node, ctx):
    _, pads, _ = pad_arguments(node, ctx.view)
    rank = len(pads) // 2
    per_sample = [int(p) for p in list(pads[1:rank]) + list(pads[rank + 1:])]     # (the batch axis: never)
    ctx.add(node, Function(partial(F.pad, pad=torch_pads(per_sample)), f"pad {per_sample}"), [node.input[0]],
            node.output[0])


@lowers(*SELECTIONS)
def lower_selection(node, ctx):
    if node.op_type in ("Resize", "Upsample") and resize_mode(node, ctx.view) == "linear":
        ctx.add(node, AxisMaps(resize_linear_maps(node, ctx.view)), [node.input[0]], node.output[0])
        return
    selection = SELECTIONS[node.op_type](node, ctx.view)
    ctx.add(node, Select(selection.axes, selection.shape), [node.input[0]], node.output[0])


# --- reductions ---------------------------------------------------------------------------------

@lowers("ReduceMean", "ReduceSum")
def lower_reduce(node, ctx):
    axes, _ = reduce_axes(node, ctx.view)
    keep = bool(ctx.view.attrs(node).get("keepdims", 1))
    reduce = "mean" if node.op_type == "ReduceMean" else "sum"
    fn = partial(getattr(torch, reduce), dim=axes, keepdim=keep)
    ctx.add(node, Function(fn, f"{reduce} over axes {axes}"), [node.input[0]], node.output[0])


# --- transformer ops: analog, on running means in the SNN (snn/expectation.py) ----------------------------

# The ANN op's cost per output element in MACs, for the energy estimate (snn/synops.py): LayerNorm's
# mean, variance, normalisation and affine ≈ 5; GELU's erf polynomial ≈ 8; softmax's exp, sum and
# divide ≈ 5 (a convention, stated in the report); a MatMul's contracted length is added below.
ANALOG_MACS = {"LayerNormalization": 5.0, "Gelu": 8.0, "Softmax": 5.0}


def _analog(node, ctx, fn, description, arity=1, macs=0.0):
    """The op as it runs in the ANN (``ctx.ann``, or an ANN op left in a spiking graph), else on the
    running means of its input currents (an Expect* node)."""
    if ctx.ann or node.domain != "onnx2snn":
        module = Function(fn, description)
    else:
        module = ExpectationCompensation(fn, description, arity, macs)
    ctx.add(node, module, ctx.view.data_inputs(node), node.output[0])


@lowers("LayerNormalization", "ExpectLayerNorm")
def lower_layer_norm(node, ctx):
    axis = layer_norm_axis(node, ctx.view)
    shape = tuple(ctx.view.shapes[node.input[0]][axis:])
    weight = torch.from_numpy(np.array(np.broadcast_to(ctx.view.const(node.input[1]), shape), np.float32))
    bias = ctx.view.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    bias = None if bias is None else torch.from_numpy(np.array(np.broadcast_to(bias, shape), np.float32))
    eps = float(ctx.view.attrs(node).get("epsilon", 1e-5))
    fn = _LayerNorm(shape, weight, bias, eps)
    _analog(node, ctx, fn, f"layer_norm over {shape} eps={eps:g}", 1, ANALOG_MACS["LayerNormalization"])


class _LayerNorm(nn.Module):
    """F.layer_norm with ONNX's scale and bias as buffers (they follow .to(device, dtype))."""

    def __init__(self, shape, weight, bias, eps):
        super().__init__()
        self.shape, self.eps = shape, eps
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, x):
        return F.layer_norm(x, self.shape, self.weight.to(x.dtype),
                            None if self.bias is None else self.bias.to(x.dtype), self.eps)


@lowers("Gelu", "ExpectGelu")
def lower_gelu(node, ctx):
    approximate = ctx.view.attrs(node).get("approximate", "none")
    _analog(node, ctx, partial(F.gelu, approximate=approximate), f"gelu ({approximate})", 1, ANALOG_MACS["Gelu"])


@lowers("Softmax", "ExpectSoftmax")
def lower_softmax(node, ctx):
    axis = softmax_axis(node, ctx.view)
    _analog(node, ctx, partial(torch.softmax, dim=axis), f"softmax axis={axis}", 1, ANALOG_MACS["Softmax"])


@lowers("MatMul", "ExpectMatMul")
def lower_matmul(node, ctx):
    contracted = ctx.view.shapes[ctx.view.data_inputs(node)[0]][-1]
    _analog(node, ctx, torch.matmul, f"matmul (contracting {contracted})", 2, float(contracted))
