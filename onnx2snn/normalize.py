"""Data-based normalisation: rescale each weighted layer so its ReLU output is at most 1.

Every tensor t of the edited graph equals the original tensor divided by its *scale* s_t, an
array broadcastable to the tensor's per-sample shape: a scalar for most tensors, per channel after
a Concat of branches normalised apart, per feature after a Flatten of those. For a weighted layer
(Conv, Gemm) with input scale s_in and output activation statistic λ (max, or p-th percentile with
robust normalisation):

    W[o, i] <- W[o, i] · s_in[i] / λ,    b <- b / λ

ReLU networks are positively homogeneous, so the rescaled graph computes exactly the original
activations divided by λ at every normalised layer (``verify.py`` checks this).

Which tensor gives a layer's λ: the output of the first ReLU/Clip reached through scale-preserving
ops (pooling, reshapes) and residual Adds, or the graph output for the output layer; otherwise
the layer keeps its input's (largest) scale. Branches that merge:

* Add: every input must arrive at the scale of the Add's output (its ReLU's λ). A weighted layer
  that feeds it gets that λ directly; any other input (an identity shortcut) is multiplied by
  s_in/λ — a synaptic factor, so spikes stay binary;
* Concat: no common scale needed — the output scale is the inputs' scales side by side, and the
  next weighted layer takes it per input channel.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from .calibrate import TensorStats
from .errors import Onnx2SnnError
from .graph import external
from .graph.annotate import NODE_LAMBDA, NODE_LAMBDA_IN, NODE_STATISTIC, OLD_KEY_LAYERS, read_metadata
from .graph.ops import NEURON_OPS, RULES, clip_bounds, constant_add_inputs, conv_transpose_channel, is_spike_site
from .graph.scales import channel_scale, compress, uniform
from .graph.view import GraphView


@dataclass
class LayerScale:
    node: str                   # the weighted node
    op: str
    input: str                  # its data input
    output: str                 # its output tensor
    stat_tensor: Optional[str]  # tensor whose statistic sets λ (None: keeps its input's scale)
    lambda_in: Union[float, List[float]] = 1.0   # scalar, or per input channel/feature
    lambda_out: Union[float, List[float]] = 1.0    # scalar, or per output channel (parser.per_channel)
    statistic: str = ""         # e.g. "p99.9 of relu3_out" or "inherited"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    """What normalisation will do: λ per weighted layer, synaptic factors on Add inputs, Clip bounds."""
    layers: List[LayerScale]
    merge_stats: Dict[str, Optional[str]] = field(default_factory=dict)    # Add node -> stat tensor
    scales: Dict[str, np.ndarray] = field(default_factory=dict)            # tensor -> scale array
    factors: List[Tuple[str, int, np.ndarray]] = field(default_factory=list)  # (Add node, input, s_in/λ)
    clips: Dict[str, float] = field(default_factory=dict)                  # Clip node -> new max
    # Add node -> (constant input, the Add's output scale): a constant added to an activation (a
    # position embedding) is a current at that scale, c <- c / scale
    constants: Dict[str, Tuple[int, np.ndarray]] = field(default_factory=dict)
    # a transformer's two-sided neurons (graph/transformer.py spike_sites): their output tensors, whose
    # λ comes from the statistics of |x| and sets their own scale
    sites: List[str] = field(default_factory=list)
    # node -> the factor its (first) input is multiplied by first (a Mul node): a GELU's or softmax's
    # input back to original units, a two-sided neuron's input from its producer's scale to its own λ
    input_factors: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def stat_tensors(self) -> List[str]:
        names = [l.stat_tensor for l in self.layers] + list(self.merge_stats.values()) + self.sites
        return list(dict.fromkeys(t for t in names if t is not None))


def plan_layers(view: GraphView) -> Plan:
    """The weighted layers in topological order, each with the tensor that will set its scale."""
    layers, merges = [], {}
    for node in view.nodes:
        rule = RULES.get(node.op_type)
        if rule is None:
            continue
        if rule.scale == "weighted":
            layers.append(LayerScale(node.name, node.op_type, view.data_inputs(node)[0], node.output[0],
                                     _stat_tensor(view, node.output[0])))
        elif node.op_type == "Add":
            merges[node.name] = _stat_tensor(view, node.output[0])
    sites = [n.output[0] for n in view.nodes if is_spike_site(n)]
    return Plan(layers, merges, sites=sites)


def _stat_tensor(view: GraphView, tensor: str) -> Optional[str]:
    while True:
        if tensor in view.output_names:
            return tensor
        consumers = view.consumers.get(tensor, [])
        if len(consumers) != 1:
            return None
        (node,) = consumers
        if node.op_type in NEURON_OPS:
            return node.output[0]
        rule = RULES.get(node.op_type)
        if rule is None or not (rule.scale in ("preserve", "transform") or node.op_type == "Add"):
            return None
        tensor = node.output[0]


def layer_scales(model: onnx.ModelProto) -> List:
    """``LayerScale`` per rescaled node, read from the nodes (files since 0.3) or from the layer
    table of files written by 0.1/0.2."""
    meta = read_metadata(model)
    if OLD_KEY_LAYERS in meta:
        return [LayerScale(**d) for d in json.loads(meta[OLD_KEY_LAYERS])]
    producer = {o: n for n in model.graph.node for o in n.output}
    layers = []
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        if NODE_LAMBDA not in props:
            continue
        stat = props.get(NODE_STATISTIC, "")
        tensor = stat.rpartition(" of ")[2] or None
        lam_in = json.loads(props[NODE_LAMBDA_IN]) if props[NODE_LAMBDA_IN].startswith("[") else float(props[NODE_LAMBDA_IN])
        lam = json.loads(props[NODE_LAMBDA]) if props[NODE_LAMBDA].startswith("[") else float(props[NODE_LAMBDA])
        layers.append(LayerScale(node.name, node.op_type, node.input[0], node.output[0],
                                 tensor if tensor in producer or tensor in {o.name for o in model.graph.output}
                                 else None, lam_in, lam, stat))
    return layers


# --- scale arrays -----------------------------------------------------------------------------

def _sample_shape(view: GraphView, tensor: str) -> Tuple[int, ...]:
    shape = view.sample_shape(tensor)
    if shape is None:
        raise Onnx2SnnError(f"the shape of tensor {tensor!r} is unknown after shape inference; "
                            "export the model with static shapes (except the batch dimension)")
    return shape


def _full(s: np.ndarray, shape) -> np.ndarray:
    return np.broadcast_to(s, shape)


class ScaleNotFoldable(Onnx2SnnError):
    """A layer's input scale varies where its weights cannot absorb it (across positions)."""

    def __init__(self, message: str, tensor: str):
        super().__init__(message)
        self.tensor = tensor


def _channel_vector(s: np.ndarray, shape, what: str, tensor: str = "") -> np.ndarray:
    """The per-channel (axis 0 of the per-sample shape) values of a scale; it must not vary
    spatially."""
    c = compress(s)
    if any(d != 1 for d in c.shape[1:]):
        raise ScaleNotFoldable(f"{what}: the input's scale varies across spatial positions; cannot normalise", tensor)
    return np.broadcast_to(c.reshape(-1), (shape[0],)) if c.ndim else np.full(shape[0], float(c))


# --- assigning scales --------------------------------------------------------------------------

Lambdas = Dict[str, Tuple[float, str]]   # activation tensor -> (λ, where it came from)


def statistic_lambdas(stats: Dict[str, TensorStats], robust: bool) -> Lambdas:
    """The seed's rule: λ = the p-th percentile (robust) or the max of each activation."""
    out = {}
    for tensor, s in stats.items():
        lam, kind = (s.percentile, f"p{s.p:g}") if robust else (s.max, "max")
        out[tensor] = (float(lam), f"{kind} of {tensor}")
    return out


def usable_lambdas(lambdas: Lambdas, stats: Dict[str, TensorStats]) -> Lambdas:
    """λ must be positive: a layer that never fired on the calibration data falls back to its max,
    or to 1 if it was never positive at all."""
    out = dict(lambdas)
    for tensor, (lam, desc) in lambdas.items():
        if np.ndim(lam):        # per channel: a channel that never fired takes the layer's largest λ
            lam = np.asarray(lam, np.float64)
            fallback = lam.max() if lam.max() > 0 else (stats[tensor].max if stats[tensor].max > 0 else 1.0)
            out[tensor] = (np.where(lam > 0, lam, fallback), desc)
            continue
        if not lam > 0:
            s = stats[tensor]
            out[tensor] = ((s.max, f"max of {tensor}") if s.max > 0
                           else (1.0, f"none (all activations of {tensor} <= 0)"))
    return out


def assign_scales(view: GraphView, plan: Plan, lambdas: Lambdas) -> Plan:
    """Fill in λ per layer (from ``lambdas``, per activation tensor), the scale of every tensor,
    the Add factors and Clip bounds."""
    by_node = {l.node: l for l in plan.layers}
    plan.scales.clear(), plan.factors.clear(), plan.clips.clear(), plan.constants.clear()  # idempotent: redone, never added
    plan.input_factors.clear()
    sites = set(plan.sites)
    scale = plan.scales
    scale[view.input_name] = uniform(1.0, len(_sample_shape(view, view.input_name)))

    def statistic(tensor: str) -> Tuple[float, str]:
        return lambdas[tensor]

    for node in view.nodes:
        if node.op_type == "Constant":
            continue
        data = view.data_inputs(node)
        ins = [scale[t] for t in data]
        out = node.output[0]
        out_rank = len(_sample_shape(view, out))
        kind = RULES[node.op_type].scale
        layer = by_node.get(node.name)
        if layer is not None:
            in_shape = _sample_shape(view, data[0])
            if node.op_type == "Gemm":
                lam_in = _full(ins[0], in_shape).reshape(-1)
            elif node.op_type == "LayerNormalization":     # it mixes the features: one input scale
                if compress(ins[0]).size != 1:
                    raise ScaleNotFoldable(f"{node.name} (LayerNormalization): its input is normalised at "
                                           "different scales; it needs one", data[0])
                lam_in = np.full(in_shape[0], float(compress(ins[0]).reshape(-1)[0]))
            else:
                lam_in = _channel_vector(ins[0], in_shape, f"{node.name} ({node.op_type})", data[0])
            if layer.stat_tensor is None:
                layer.lambda_out, layer.statistic = float(np.max(lam_in)), "inherited"
            else:
                lam, layer.statistic = statistic(layer.stat_tensor)
                layer.lambda_out = np.asarray(lam).tolist() if np.ndim(lam) else float(lam)
            layer.lambda_in = float(lam_in[0]) if np.all(lam_in == lam_in[0]) else lam_in.tolist()
            scale[out] = channel_scale(layer.lambda_out, out_rank)
        elif kind == "merge":   # Add, Concat: the rule lives with the op (graph/ops.py)
            stat = plan.merge_stats.get(node.name)
            for t in data:
                _sample_shape(view, t)   # a clear error where a branch's shape is unknown
            scale[out], factors = RULES[node.op_type].merge(node, view, ins, statistic(stat)[0] if stat else None)
            plan.factors.extend((node.name, index, factor) for index, factor in factors)
            for index in constant_add_inputs(node, view):
                plan.constants[node.name] = (index, scale[out])
        elif out in sites:      # two-sided neurons: their own λ, their input brought to it
            lam = float(np.max(statistic(out)[0]))
            ratio = compress(ins[0]) / lam
            if not np.allclose(ratio, 1.0, rtol=1e-7, atol=0):
                plan.input_factors[node.name] = ratio
            scale[out] = uniform(lam, out_rank)
        elif kind == "unit":    # GELU, softmax: original units in and out
            if not np.allclose(compress(ins[0]), 1.0, rtol=1e-7, atol=0):
                plan.input_factors[node.name] = compress(ins[0])
            scale[out] = uniform(1.0, out_rank)
        elif kind == "factor":  # a Mul by a constant: (x/s)·c = (x·c)/s
            scale[out] = ins[0]
        elif kind == "preserve":
            scale[out] = ins[0]
            if node.op_type == "Clip":
                bound = clip_bounds(node, view)[1]
                if bound is not None:
                    c = compress(ins[0])
                    if c.size != 1:
                        raise Onnx2SnnError(f"{node.name} (Clip): its input's scale varies per channel; cannot rescale the bound")
                    plan.clips[node.name] = bound / float(c.reshape(-1)[0])
        elif kind == "transform":
            full = np.ascontiguousarray(_full(ins[0], _sample_shape(view, data[0])))
            scale[out] = compress(RULES[node.op_type].transform(node, view, full))
        else:
            raise RuntimeError(f"no scale rule for {node.op_type} ({node.name})")
    return plan


def foldable_channel_scales(view: GraphView, candidates: List[str]) -> List[str]:
    """The ``candidates`` (activation tensors) that may take one λ per channel (axis 1): those whose
    scale every weighted layer downstream can fold into its weights. A Conv can only where the
    channels still lie on its input's axis 1 — a per-feature scale that a Transpose moved to a
    spatial axis (a Mixer's channel MLP feeding its token MLP) cannot be folded into weights shared
    across positions, while a channel shuffle (Reshape, Transpose, Reshape) only permutes channels.
    Found by assigning distinct trial scales per channel (the scale arrays move exactly as the
    tensors do) and dropping the candidates upstream of a layer that cannot take them."""
    kept = list(candidates)
    while kept:
        plan = plan_layers(view)
        trial: Lambdas = {t: (1.0, "trial") for t in plan.stat_tensors}
        for t in kept:
            channels = view.shapes[t][1]
            trial[t] = (1.0 + np.arange(channels) / channels, "trial")
        try:
            assign_scales(view, plan, trial)
            return kept
        except ScaleNotFoldable as e:
            upstream = _ancestors(view, e.tensor)
            if not upstream & set(kept):
                return kept           # not a per-channel scale's doing: the conversion says so later
            kept = [t for t in kept if t not in upstream]
    return kept


def _ancestors(view: GraphView, tensor: str) -> set:
    """``tensor`` and every tensor it is computed from."""
    out, todo = set(), [tensor]
    while todo:
        t = todo.pop()
        if t in out:
            continue
        out.add(t)
        node = view.producer.get(t)
        if node is not None:
            todo.extend(i for i in node.input if i)
    return out


# --- applying them -----------------------------------------------------------------------------

def apply_scales(model: onnx.ModelProto, plan: Plan) -> onnx.ModelProto:
    """A copy of ``model`` with each weighted layer's initializers rescaled (new initializers: the
    originals may be shared), a Mul before each Add input that needs a factor, Clip bounds moved."""
    graph = gs.import_onnx(model)
    _fresh = itertools.count()  # per call: two conversions of one model write identical bytes
    nodes = {n.name: n for n in graph.nodes}
    # weights read from the proto, not through graphsurgeon, which would keep each old array alive
    # beside the new one (above 2 GiB each copy of the weights counts)
    inits = {t.name: t for t in model.graph.initializer}
    for layer in plan.layers:
        node = nodes[layer.node]
        if node.op == "LayerNormalization":
            _rescale_layer_norm(node, float(np.max(layer.lambda_in)), np.asarray(layer.lambda_out, np.float64), _fresh)
            continue
        name = node.inputs[1].name
        w = numpy_helper.to_array(inits[name]) if name in inits else node.inputs[1].values
        lam_in = np.asarray(layer.lambda_in, np.float64)
        lam_out = np.asarray(layer.lambda_out, np.float64)          # per output channel, or one
        if node.op == "ConvTranspose":      # W (C_in, C_out/group, k…)
            lam_in = lam_in.reshape(-1, *([1] * (w.ndim - 1))) if lam_in.ndim else lam_in
            index = conv_transpose_channel(w.shape, node.attrs.get("group", 1))
            lam_w = lam_out[index].reshape(*index.shape, *([1] * (w.ndim - 2))) if lam_out.ndim else lam_out
            _rescale_layer(node, w, lam_in, lam_w, lam_out, _fresh)
            continue
        if lam_in.ndim and node.op == "Conv":
            groups = node.attrs.get("group", 1)
            cout, cin_g = w.shape[:2]
            index = (np.arange(cout)[:, None] // (cout // groups)) * cin_g + np.arange(cin_g)[None, :]
            lam_in = lam_in[index].reshape(cout, cin_g, *([1] * (w.ndim - 2)))
        elif lam_in.ndim:  # Gemm, W (out, in)
            lam_in = lam_in[None, :]
        lam_w = lam_out.reshape(-1, *([1] * (w.ndim - 1))) if lam_out.ndim else lam_out
        _rescale_layer(node, w, lam_in, lam_w, lam_out, _fresh)
    for add_name, index, factor in plan.factors:
        add = nodes[add_name]
        src = add.inputs[index]
        scaled = gs.Variable(f"{add_name}/factor{index}_output_0", dtype=np.float32)
        graph.nodes.append(gs.Node("Mul", f"{add_name}/factor{index}",
                                   inputs=[src, gs.Constant(f"{add_name}.factor{index}.{next(_fresh)}",
                                                            factor.astype(np.float32))],
                                   outputs=[scaled]))
        add.inputs[index] = scaled
    for name, factor in plan.input_factors.items():
        node = nodes[name]
        scaled = gs.Variable(f"{name}/input_factor_output_0", dtype=np.float32)
        graph.nodes.append(gs.Node("Mul", f"{name}/input_factor", inputs=[
            node.inputs[0], gs.Constant(f"{name}.input_factor.{next(_fresh)}", np.asarray(factor, np.float32))],
            outputs=[scaled]))
        node.inputs[0] = scaled
    for add_name, (index, target) in plan.constants.items():
        add = nodes[add_name]
        # (the per-sample scale broadcasts from the right, as the constant does onto (N, *sample))
        rescaled = np.asarray(add.inputs[index].values, np.float64) / np.asarray(target, np.float64)
        add.inputs[index] = gs.Constant(f"{add_name}.constant.snn{next(_fresh)}", rescaled.astype(np.float32))
    for clip_name, bound in plan.clips.items():
        clip = nodes[clip_name]
        if len(clip.inputs) > 2:
            clip.inputs[2] = gs.Constant(f"{clip_name}.max.snn{next(_fresh)}", np.array(bound, np.float32))
        else:
            clip.attrs["max"] = float(bound)
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    return external.infer_shapes(out)


def _rescale_layer_norm(node, lam_in: float, lam_out: np.ndarray, fresh) -> None:
    """LN(x)/λ_out = LN(x/λ_in; γ/λ_out, β/λ_out, ε/λ_in²): the normalised input's variance is the
    original's over λ_in², so ε shrinks alike; the output's scale is γ's and β's."""
    gamma = np.asarray(node.inputs[1].values, np.float64)
    node.inputs[1] = gs.Constant(f"{node.name}.scale.snn{next(fresh)}", (gamma / lam_out).astype(np.float32))
    if len(node.inputs) > 2 and isinstance(node.inputs[2], gs.Constant):
        beta = np.asarray(node.inputs[2].values, np.float64)
        node.inputs[2] = gs.Constant(f"{node.name}.bias.snn{next(fresh)}", (beta / lam_out).astype(np.float32))
    node.attrs["epsilon"] = float(node.attrs.get("epsilon", 1e-5)) / lam_in ** 2


def _rescale_layer(node, w, lam_in, lam_w, lam_out, fresh) -> None:
    """W <- W·λ_in/λ_w and b <- b/λ_out, as new constants (``lam_w``: λ_out laid out as W's output axis)."""
    node.inputs[1] = gs.Constant(f"{node.name}.weight.snn{next(fresh)}", _rescaled(w, lam_in, lam_w))
    if len(node.inputs) > 2 and isinstance(node.inputs[2], gs.Constant):
        b = node.inputs[2].values.astype(np.float64) / lam_out
        node.inputs[2] = gs.Constant(f"{node.name}.bias.snn{next(fresh)}", b.astype(np.float32))


def _rescaled(w: np.ndarray, lam_in: np.ndarray, lam_w: np.ndarray) -> np.ndarray:
    """``w · λ_in / λ_w`` in float64, rounded to float32, a block of rows at a time: the same numbers
    as one expression, without float64 temporaries three times the size of a (GiB-sized) layer."""
    out = np.empty(w.shape, np.float32)
    rows = max(1, 2**24 // max(1, w[0].size))               # 128 MiB of float64 per block

    def block(a, s):                                        # a λ per row, or one for all rows
        return a[s:s + rows] if np.ndim(a) and a.shape[0] == len(w) else a
    for s in range(0, len(w), rows):
        out[s:s + rows] = w[s:s + rows].astype(np.float64) * block(lam_in, s) / block(lam_w, s)
    return out
