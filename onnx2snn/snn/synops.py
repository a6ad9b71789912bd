"""Synaptic operations: what the SNN computes per inference, against the ANN's multiply-accumulates.

In an SNN a weighted layer works only when an input event arrives: each event at an input
element costs one accumulate (AC) per synapse that leaves it (its fan-out). So a layer's SNN
operations per inference are

    ACs = Σ over input elements of  events(element) · fan-out(element)

where ``events`` is the layer's input summed over the T steps: spike counts. Where average
pooling comes first, pooling and the layer are one linear map whose synapses each spike drives:
the pooled counts are multiplied by the pooling's area (input / output elements: the kernel area
of non-overlapping pooling, H·W of global pooling; overlapping pooling is undercounted). The sum is
exact otherwise, borders and strides included: the layer itself run with every weight set to 1
on the event counts, summed. A layer whose input
is the constant input current (the first layer, with constant-current encoding) is computed once
per inference: multiply-accumulates (MACs), counted once. The ANN's MACs per inference are the same
layer with all-ones weights on an all-ones input.

A transformer's analog ops (LayerNorm, GELU, softmax, the product of two spiking tensors:
``expectation.py``) run every step on rate estimates, not on events: they are counted as MACs, the
ANN op's cost per output element (a stated convention: ``lower/ops.py ANALOG_MACS``; a product's is
its contracted length) plus 2 for the compensation, times the output elements and the steps — so the
report says per layer "event-driven" (ACs), "analog on rate estimates" or "constant input" (MACs).

Energy, as commonly reported in this field: 0.9 pJ per 32-bit floating-point addition (an AC) and
4.6 pJ per multiply-accumulate (3.7 pJ multiply + 0.9 pJ add) at 45 nm, from M. Horowitz,
"Computing's energy problem (and what we can do about it)", ISSCC 2014. These are arithmetic only
(no memory access, no neuron update) — an estimate for comparison, not a chip measurement.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..graph.ops import LAYOUT, SUBSAMPLING
from .kernels import dense

ENERGY_AC_PJ = 0.9
ENERGY_MAC_PJ = 4.6
ENERGY_SOURCE = "Horowitz, ISSCC 2014, 45 nm, 32-bit float: 0.9 pJ per add (AC), 4.6 pJ per multiply-add (MAC)"

_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
_CONV_TRANSPOSE = {nn.ConvTranspose1d: F.conv_transpose1d, nn.ConvTranspose2d: F.conv_transpose2d,
                   nn.ConvTranspose3d: F.conv_transpose3d}


def weighted_layer(module: nn.Module) -> Optional[nn.Module]:
    """The Conv/ConvTranspose/Linear inside ``module`` (plain, or wrapped for explicit padding or
    cropping), else None."""
    inner = getattr(module, "inner", module)
    return inner if isinstance(inner, (nn.Linear, *_CONV, *_CONV_TRANSPOSE)) else None


def connections(module: nn.Module, counts: torch.Tensor) -> float:
    """Σ counts(element) · fan-out(element): ``module`` run with all-ones weights, no bias, on the
    per-sample ``counts``, summed (``module`` as ``weighted_layer`` accepts, padding included)."""
    layer = weighted_layer(module)
    x = counts.unsqueeze(0).float()
    if getattr(module, "pads", None) is not None:   # explicit (asymmetric) zero padding first
        x = F.pad(x, module.pads, value=0.0)
    ones = torch.ones_like(layer.weight, dtype=torch.float32)
    if isinstance(layer, nn.Linear):
        return float((x @ ones.t()).sum())
    if type(layer) in _CONV_TRANSPOSE:
        y = _CONV_TRANSPOSE[type(layer)](x, ones, None, layer.stride, layer.padding, layer.output_padding,
                                         layer.groups, layer.dilation)
        if getattr(module, "crop", None) is not None:  # synapses onto cropped outputs do not exist
            y = F.pad(y, module.crop)
        return float(y.sum())
    conv = _CONV[type(layer)]
    return float(conv(x, ones, None, layer.stride, layer.padding, layer.dilation, layer.groups).sum())


class EventCounter:
    """Sums the input of every weighted layer over steps and samples during a simulation."""

    def __init__(self, signed=()):
        self.events: Dict[int, torch.Tensor] = {}   # step index -> per-sample input summed over steps and samples
        self.signed = set(signed)    # layers that may take −1 spikes (after signed neurons): events are |spikes|
        self.static: Dict[int, bool] = {}
        self.analog: Dict[int, int] = {}            # an analog op's index -> sample-steps it ran (0: constant input)

    def add_analog(self, index: int, sample_steps: int, static: bool) -> None:
        """An analog op (``expectation.py``) ran ``sample_steps`` (steps × samples), or once per
        sample on a constant input (``static``)."""
        if static:
            self.analog.setdefault(index, 0)
        else:
            self.analog[index] = self.analog.get(index, 0) + sample_steps

    def add(self, index: int, value: torch.Tensor, static: bool) -> None:
        """``value``: the layer's input for a chunk, ``[steps·B, ...]``; a ``static`` input (the
        same at every step, computed once per sample) is not summed: its layer does MACs once."""
        self.static[index] = static
        if not static:
            summed = sum_leading(value.abs() if index in self.signed else value)
            self.events[index] = summed if index not in self.events else self.events[index] + summed


def sum_leading(value: torch.Tensor) -> torch.Tensor:
    """``value.sum(dim=0)`` in float32 (float64 stays float64), summing the flat memory where each entry of dim 0 is one dense
    block (NCHW or NHWC samples, or steps): torch's reduction over dim 0 of an NHWC tensor is ~40x
    slower on CPU. The result keeps the entries' layout."""
    dtype = torch.float64 if value.dtype == torch.float64 else torch.float32
    n, per_sample = value.shape[0], value[0].numel()
    if n > 1 and value.stride(0) == per_sample and dense(value[0]):
        flat = torch.as_strided(value, (n, per_sample), (per_sample, 1)).sum(dim=0, dtype=dtype)
        return torch.as_strided(flat, value.shape[1:], value.stride()[1:])
    return value.sum(dim=0, dtype=dtype)


AVERAGING = SUBSAMPLING
PASSIVE = AVERAGING + LAYOUT


def pooling_area(steps, index: int) -> float:
    """Input elements per output element of the average pooling between step ``index``'s input and
    the spikes that feed it (1 where none)."""
    producer = {s.output: i for i, s in enumerate(steps)}
    area, tensor = 1.0, steps[index].inputs[0]
    while tensor in producer and steps[producer[tensor]].op in PASSIVE:
        step = steps[producer[tensor]]
        before = steps[producer[step.inputs[0]]].shape if step.inputs[0] in producer else None
        if step.op in AVERAGING and before and step.shape:
            area *= float(np.prod(before)) / float(np.prod(step.shape))
        tensor = step.inputs[0]
    return area


def synaptic_operations(network, counter: EventCounter, n_samples: int, sample_shapes: Dict[int, tuple]
                        ) -> Dict[str, dict]:
    """Per weighted layer: the SNN's ACs (or MACs, for the constant input current) per inference,
    and the ANN's MACs; per analog op, its MACs (module docstring). ``sample_shapes``: each weighted
    layer's per-sample input shape, each analog op's output shape."""
    rows = {}
    for index, static in counter.static.items():
        step, module = network.steps[index], network.layers[index]
        macs = connections(module, torch.ones(sample_shapes[index]))
        snn = macs if static else (connections(module, counter.events[index].cpu()) / n_samples
                                   * pooling_area(network.steps, index))
        rows[index] = (step.name, {"op": step.op, "snn_ops": snn, "snn_op": "MAC" if static else "AC",
                                   "ann_macs": macs, "kind": "constant input" if static else "event-driven"})
    for index, sample_steps in getattr(counter, "analog", {}).items():
        step, module = network.steps[index], network.layers[index]
        outputs = float(np.prod(sample_shapes[index])) if sample_shapes[index] else 1.0
        ann = module.macs_per_output * outputs
        # every step: the op on the rate estimate, plus the compensation (a multiply and a subtraction)
        snn = ann if not sample_steps else (module.macs_per_output + ANALOG_COMPENSATION_MACS) * outputs * (
            sample_steps / n_samples)
        rows[index] = (step.name, {"op": step.op, "snn_ops": snn, "snn_op": "MAC", "ann_macs": ann,
                                   "kind": "analog on rate estimates" if sample_steps else "constant input"})
    return dict(rows[i] for i in sorted(rows))              # in the network's order


# An analog op's compensation per output element and step: t·f(m_t) and the difference, as MACs.
ANALOG_COMPENSATION_MACS = 2.0


def energy(table: Dict[str, dict]) -> Dict[str, float]:
    """Totals and the arithmetic-energy estimate (pJ per inference) of a ``synaptic_operations`` table."""
    acs = sum(r["snn_ops"] for r in table.values() if r["snn_op"] == "AC")
    snn_macs = sum(r["snn_ops"] for r in table.values() if r["snn_op"] == "MAC")
    ann_macs = sum(r["ann_macs"] for r in table.values())
    snn_pj = acs * ENERGY_AC_PJ + snn_macs * ENERGY_MAC_PJ
    ann_pj = ann_macs * ENERGY_MAC_PJ
    return {"snn_acs": acs, "snn_macs": snn_macs, "ann_macs": ann_macs, "snn_energy_pj": snn_pj,
            "ann_energy_pj": ann_pj, "energy_ratio_snn_to_ann": snn_pj / ann_pj if ann_pj else float("nan"),
            "constants": ENERGY_SOURCE}
