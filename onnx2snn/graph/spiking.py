"""The spiking graph: a normalised ReLU graph rewritten so that every spiking element is a node.

``to_spiking(model, options)`` (a ``SpikingOptions``, from ``Config.spiking_options()``) replaces

* each ReLU/Clip whose input is a current by an ``onnx2snn.IF`` (``ClipIF`` for a Clip) node:
  attributes ``threshold``, ``reset`` ("subtract" or "value") with ``v_reset``, and ``v_init`` (a
  fraction of the threshold); a per-neuron initial potential (potential calibration) is a second
  input, an initializer of the per-sample shape; an input current offset per channel (the bias
  calibration's shift) is a third, shaped (C, 1, ...) to broadcast over one sample;
* each MaxPool of spikes by an ``onnx2snn.SpikeMaxPool`` node whose ``rule`` says how spikes are
  pooled ("max": running max of counts, "gate": spike-count gate with optional ``momentum``,
  "wta": plain max of spikes, "avg": average pooling);
* average pooling of spikes (AveragePool, GlobalAveragePool, ReduceMean) with IF neurons after it
  when ``simulation.avg_pool.has_neuron`` — a separate IF node;
* and adds an ``onnx2snn.Readout`` node at the graph output: ``mode`` "membrane" or "spikes", and
  ``delay``, the first steps the readout skips.

Each of these ops is a model-local ONNX function whose body is the ANN op it stands for (IF:
``Relu``, ClipIF: ``Clip``, SpikeMaxPool: ``MaxPool``, Readout: ``Identity``), so ``onnx.checker``
accepts the file, onnxruntime runs it as the rescaled ANN, and Netron draws the spiking nodes with
their attributes. Whatever only the SNN needs (initial potentials, input offsets, the readout) is
an input or attribute of a spiking node that the body ignores: the file run as an ANN stays the
rescaled original, exactly (``api.convert`` verifies the file as written). ``fold_offsets`` tells
a backend where an offset can instead be added to the bias of the weighted layer ahead of it. The
torch lowering (``lower/``) and every other backend read the SNN from these nodes alone; the
options (``SpikingOptions``) only matter here, when a plain graph (the calibration's working copy,
or a file written by onnx2snn 0.1/0.2) is turned into a spiking one.

The input the SNN takes is recorded too, in the model's metadata (``KEY_ENCODING``): the
encoding it was converted for ("current" or "poisson"), and why Poisson input is refused where a
max pooling takes the input current before the first neurons (the max of each step's Poisson
current overstates the max of the rates). The runtime reads it (``input_encoding``) instead of
guessing from the structure.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

import numpy as np
import onnx
from onnx import helper

from ..options import SpikingOptions
from .ops import (EXPECTATION, NEURON_OPS, RULES, SIGNED_NEURONS, SUBSAMPLING, bias_of, clip_bounds, keeps_spikes,
                  layer_norm_axis, out_channels, passes_channel_offset, pool_arguments, resize_mode, softmax_axis)
from .transformer import ANN_DOMAIN, gelu_body, gelu_form, layer_norm_body
from .view import GraphView, downstream_of, onnx_opset

DOMAIN = "onnx2snn"
DOMAIN_VERSION = 1
IR_VERSION = 10          # node metadata_props (IR 10) carry the scales
# On a plain graph's ReLU/Clip (the calibration's working copy): the initializers with its neurons'
# initial potentials and input offsets, which to_spiking makes inputs of the IF node.
KEY_V_INIT = "onnx2snn.v_init"
KEY_OFFSET = "onnx2snn.offset"
# Model metadata: the input the SNN takes (``InputEncoding``); at most 16 characters (Netron).
KEY_ENCODING = "onnx2snn.input"
POOL_ATTRS = ("kernel_shape", "strides", "pads", "dilations", "ceil_mode")


def is_spiking(model: onnx.ModelProto) -> bool:
    return any(n.domain == DOMAIN for n in model.graph.node)


@dataclass(frozen=True)
class InputEncoding:
    """The input a spiking graph takes (``KEY_ENCODING``): the encoding it was converted for, and,
    where Poisson input would give a different network than the one converted, why."""
    encoding: str = "current"
    poisson_refused: Optional[str] = None

    def to_json(self) -> str:
        return json.dumps({"encoding": self.encoding, "poisson_refused": self.poisson_refused})


def input_encoding(model: onnx.ModelProto) -> InputEncoding:
    """The input a spiking graph takes, as its metadata records it; files written before 0.5 (no
    record) are read from their structure, as ``to_spiking`` would have recorded it."""
    meta = {p.key: p.value for p in model.metadata_props}
    if KEY_ENCODING in meta:
        d = json.loads(meta[KEY_ENCODING])
        return InputEncoding(d.get("encoding", "current"), d.get("poisson_refused"))
    view = GraphView(model)
    after = downstream_of(((n.op_type, n.input, n.output) for n in view.nodes), NEURON_OPS + ("IF", "ClipIF"))
    return InputEncoding("current", _poisson_refused(view, after))


def _poisson_refused(view: GraphView, after_neurons: Set[str]) -> Optional[str]:
    """Why Poisson input cannot drive this graph: a max pooling of the input current before any
    neurons (``simulation.max_pool.before_neuron``) is the max of a current that only constant-current
    input keeps the same at every step."""
    node = next((n for n in view.nodes if n.op_type == "MaxPool" and n.domain != DOMAIN
                 and view.data_inputs(n)[0] not in after_neurons), None)
    if node is None:
        return None
    return (f"this SNN pools its constant input current before its first neurons ({node.name}, "
            "simulation.max_pool.before_neuron); Poisson input would overstate that max: convert again with "
            "--poisson (the pooling then stays on spikes)")


def neuron_attributes(options: SpikingOptions) -> dict:
    """The IF attributes the options ask for (threshold 1: normalisation put every scale at 1)."""
    if options.reset == "subtract":
        return {"threshold": 1.0, "reset": "subtract", "v_init": float(options.v_init)}
    return {"threshold": 1.0, "reset": "value", "v_reset": float(options.reset), "v_init": float(options.v_init)}


def to_spiking(model: onnx.ModelProto, options: Optional[SpikingOptions] = None) -> onnx.ModelProto:
    """The spiking graph of a normalised graph (see the module docstring); ``model`` is not changed,
    and a graph that is spiking already is returned as it is."""
    if is_spiking(model):
        return model
    options = options or SpikingOptions()
    view = GraphView(model)
    neuron = neuron_attributes(options)
    spikes = set()
    neuron_ops, subsampling = NEURON_OPS, SUBSAMPLING
    after_neurons = downstream_of(((n.op_type, n.input, n.output) for n in view.nodes), neuron_ops)
    nodes: List[onnx.NodeProto] = []
    signed: Set[str] = set()        # spikes that may be -1 (from signed neurons): a ReLU of them is not the identity
    for node in view.nodes:
        op, data = node.op_type, view.data_inputs(node)
        if op in neuron_ops and (data[0] not in spikes or data[0] in signed):
            nodes.append(_if_node(node, view, neuron))
            spikes.add(node.output[0])
            if nodes[-1].op_type in SIGNED_NEURONS:
                signed.add(node.output[0])
        elif op in neuron_ops:
            nodes.append(node)                      # on spikes (≥ 0, ≤ 1): the identity
            spikes.add(node.output[0])
        elif op == "MaxPool" and data[0] in spikes:
            kernel, strides, dilations, pads, ceil_mode = pool_arguments(node, view)
            rule = options.max_pool_rule
            attrs = dict(rule=rule, kernel_shape=kernel, strides=strides, pads=pads, dilations=dilations,
                         ceil_mode=int(ceil_mode))
            if rule == "gate" and options.momentum is not None:
                attrs["momentum"] = float(options.momentum)
            pool = _replace(node, "SpikeMaxPool", [node.input[0]], [node.output[0]], attrs)
            nodes += (_then_neurons(pool, neuron, data[0] in signed) if rule == "avg" and options.avg_pool_neurons
                      else [pool])
            spikes.add(node.output[0])
            if data[0] in signed:
                signed.add(node.output[0])
        elif op == "MaxPool":                       # of currents, each step's
            pool = onnx.NodeProto()
            pool.CopyFrom(node)
            pool.doc_string = ("max pooling of the input current, before the neurons that follow "
                               "(simulation.max_pool.before_neuron): the current is the same at every step"
                               if data[0] not in after_neurons else
                               "max pooling of each time step's current, before the neurons that follow")
            nodes.append(pool)
        elif op in EXPECTATION:
            nodes.append(_expect_node(node, view))
        elif (op in subsampling or _linear_resize(node, view)) and data[0] in spikes and options.avg_pool_neurons:
            nodes += _then_neurons(node, neuron, data[0] in signed)
            spikes.add(node.output[0])
            if data[0] in signed:
                signed.add(node.output[0])
        else:
            nodes.append(node)
            rule = RULES.get(op)
            if rule is not None and keeps_spikes(node, view) and data and all(i in spikes for i in data):
                spikes.add(node.output[0])
                if any(i in signed for i in data):
                    signed.add(node.output[0])

    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    output = out.graph.output[0].name
    if output not in spikes:
        _add_readout(out, output, options, neuron)
    _add_functions(out)
    encoding = InputEncoding(options.encoding, _poisson_refused(view, after_neurons))
    _set_metadata(out, KEY_ENCODING, encoding.to_json())
    return out


def _set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    kept = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=key, value=value)


def _linear_resize(node: onnx.NodeProto, view: GraphView) -> bool:
    """A bilinear Resize: like average pooling, a weighted average of spikes (weights >= 0 summing
    to 1), which IF neurons with threshold 1 turn back into spikes where asked."""
    return node.op_type in ("Resize", "Upsample") and resize_mode(node, view) == "linear"


def _then_neurons(node: onnx.NodeProto, neuron: dict, signed: bool = False) -> List[onnx.NodeProto]:
    """Average pooling (or a bilinear Resize) of spikes, then IF neurons (``simulation.avg_pool.has_neuron``): the pooling
    writes ``<output>_pooled`` and an IF node turns it back into spikes under the output's name. Of
    signed spikes: signed neurons with slope 1 (the identity on [-1, 1])."""
    pooled = onnx.NodeProto()
    pooled.CopyFrom(node)
    pooled.output[0] = node.output[0] + "_pooled"
    op, attrs = ("SignedIF", dict(neuron, alpha=1.0)) if signed else ("IF", neuron)
    return [pooled, helper.make_node(op, [pooled.output[0]], [node.output[0]], name=node.name + "/" + op,
                                     domain=DOMAIN, doc_string=f"{op} neurons after average pooling of spikes "
                                     "(simulation.avg_pool.has_neuron)", **attrs)]


def _if_node(node: onnx.NodeProto, view: GraphView, neuron: dict) -> onnx.NodeProto:
    props = {p.key: p.value for p in node.metadata_props}
    inputs = [view.data_inputs(node)[0], props.get(KEY_V_INIT, "")]
    if KEY_OFFSET in props:
        inputs.append(props[KEY_OFFSET])
    while inputs[-1] == "":                 # no trailing empty optional inputs
        inputs.pop()
    attrs = dict(neuron)
    if node.op_type == "LeakyRelu":
        attrs["alpha"] = float(view.attrs(node).get("alpha", 0.01))
        return _replace(node, "SignedIF", inputs, [node.output[0]], attrs)
    if node.op_type == "PRelu":             # the slope, an initializer, stays its last input
        inputs = (inputs + ["", ""])[:3] + [node.input[1]]
        return _replace(node, "PReluIF", inputs, [node.output[0]], attrs)
    if node.op_type == "Clip":
        _, hi, _ = clip_bounds(node, view)
        if hi is not None:
            attrs["max"] = float(hi)
            return _replace(node, "ClipIF", inputs, [node.output[0]], attrs)
    return _replace(node, "IF", inputs, [node.output[0]], attrs)


def _expect_node(node: onnx.NodeProto, view: GraphView) -> onnx.NodeProto:
    """LayerNormalization, Gelu, Softmax or a MatMul of two activations as its Expect* node: the op
    on the running mean of its input currents, with expectation compensation (attributes made
    explicit, so that the function body reads them whatever the opset's defaults)."""
    op = node.op_type
    attrs = {"estimator": "running_mean"}
    if op == "LayerNormalization":
        attrs.update(axis=layer_norm_axis(node, view), epsilon=float(view.attrs(node).get("epsilon", 1e-5)))
    elif op == "Softmax":
        attrs["axis"] = softmax_axis(node, view)
    elif op == "Gelu":
        attrs["approximate"] = view.attrs(node).get("approximate", "none")
    return _replace(node, EXPECTATION[op], list(node.input), list(node.output), attrs)


def _replace(node: onnx.NodeProto, op: str, inputs, outputs, attrs: dict) -> onnx.NodeProto:
    """A node of the onnx2snn domain in place of ``node``: same name, description and metadata."""
    new = helper.make_node(op, inputs, outputs, name=node.name, domain=DOMAIN, **attrs)
    new.doc_string = node.doc_string
    new.metadata_props.extend(p for p in node.metadata_props if p.key not in (KEY_V_INIT, KEY_OFFSET))
    return new


def _add_readout(model: onnx.ModelProto, output: str, options: SpikingOptions, neuron: dict) -> None:
    """The output layer: the graph output's producer now writes ``<output>_current``, which the
    Readout node reads out under the output's own name (so the file's interface is unchanged)."""
    current = output + "_current"
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name == output:
                node.output[i] = current
    info = model.graph.value_info.add()
    info.CopyFrom(model.graph.output[0])       # the current has the output's type and shape
    info.name = current
    mode = options.readout
    attrs = {"mode": mode, "delay": int(options.readout_delay)}
    if options.head:
        attrs["head"] = options.head
    if mode == "spikes":
        attrs.update(neuron)
    model.graph.node.append(helper.make_node(
        "Readout", [current], [output], name="output", domain=DOMAIN,
        doc_string=("The class is the output neuron with the most spikes" if mode == "spikes" else
                    "The class is the output with the highest membrane potential (accumulated input current)")
        + (f" over steps {attrs['delay']}..T-1" if attrs["delay"] else " over all T steps")
        + (f". The original applies {options.head} to this output; the readout stands for its input (the "
           f"logits), whose decisions the {options.head} keeps" if options.head else ""), **attrs))


# --- the model-local functions ---------------------------------------------------------------------

def _ref(name: str, kind: int, function_attribute: Optional[str] = None) -> onnx.AttributeProto:
    """A body node's attribute ``name`` that takes the calling node's ``function_attribute``."""
    a = onnx.AttributeProto()
    a.name, a.ref_attr_name, a.type = name, function_attribute or name, kind
    return a


def _function(name: str, inputs, body, attributes, doc: str, opset: int) -> onnx.FunctionProto:
    f = helper.make_function(DOMAIN, name, inputs, ["Y"], body, [helper.make_opsetid("", opset)],
                             attributes=attributes)
    f.doc_string = doc
    return f


NEURON_DOC = ("Integrate-and-fire neurons: v += X + offset every step; a spike (1) when v >= threshold, "
              "then v -= threshold (reset='subtract') or v = v_reset (reset='value'); v starts at "
              "v_init * threshold, or at the per-neuron input v_init_map. offset (optional, per channel) "
              "is an input current only the SNN sees: the bias calibration's correction. The spike rate "
              "stands for the body's ReLU of X; the body ignores v_init_map and offset, so the graph run "
              "as an ANN is the rescaled original.")
NEURON_INPUTS = ["X", "v_init_map", "offset"]


def _functions(opset: int, used: set, gelu: str = "none") -> List[onnx.FunctionProto]:
    """The model-local functions of the spiking ops in ``used`` (``gelu``: the GELU form below opset 20)."""
    neuron_attrs = ["threshold", "reset", "v_reset", "v_init"]
    out = []
    if "IF" in used:
        out.append(_function("IF", NEURON_INPUTS, [helper.make_node("Relu", ["X"], ["Y"])],
                             neuron_attrs, NEURON_DOC, opset))
    if "ClipIF" in used:
        if opset >= 11:
            body = [helper.make_node("Constant", [], ["lo"], value_float=0.0),
                    helper.make_node("Constant", [], ["hi"]),
                    helper.make_node("Clip", ["X", "lo", "hi"], ["Y"])]
            body[1].attribute.append(_ref("value_float", onnx.AttributeProto.FLOAT, "max"))
        else:
            body = [helper.make_node("Clip", ["X"], ["Y"], min=0.0)]
            body[0].attribute.append(_ref("max", onnx.AttributeProto.FLOAT))
        out.append(_function("ClipIF", NEURON_INPUTS, body, neuron_attrs + ["max"],
                             NEURON_DOC.replace("ReLU", "Clip(0, max)") + " At most one spike per step: the "
                             "upper bound comes free wherever max >= threshold.", opset))
    if "SignedIF" in used:
        body = helper.make_node("LeakyRelu", ["X"], ["Y"])
        body.attribute.append(_ref("alpha", onnx.AttributeProto.FLOAT))
        out.append(_function("SignedIF", NEURON_INPUTS, [body], neuron_attrs + ["alpha"],
                             "Signed integrate-and-fire neurons with an imbalanced threshold (Spiking-YOLO, Kim "
                             "et al., AAAI 2020): v += X + offset every step; +1 when v >= threshold, -1 when v <= "
                             "-threshold/alpha; reset by subtraction takes threshold off after +1 and adds "
                             "threshold/alpha after -1 (or sets v_reset). The signed spike rate stands for the "
                             "body's LeakyRelu(alpha) of X; the body ignores v_init_map and offset.", opset))
    if "PReluIF" in used:
        out.append(_function("PReluIF", NEURON_INPUTS + ["slope"],
                             [helper.make_node("PRelu", ["X", "slope"], ["Y"])], neuron_attrs,
                             "Signed integrate-and-fire neurons as SignedIF, with a negative slope per channel "
                             "(a PReLU's): +1 when v >= threshold, -1 when v <= -threshold/slope[c]. The signed "
                             "spike rate stands for the body's PRelu(X, slope); the body ignores v_init_map and "
                             "offset.", opset))
    if "SpikeMaxPool" in used:
        pool = helper.make_node("MaxPool", ["X"], ["Y"])
        kinds = dict(kernel_shape=onnx.AttributeProto.INTS, strides=onnx.AttributeProto.INTS,
                     pads=onnx.AttributeProto.INTS, dilations=onnx.AttributeProto.INTS,
                     ceil_mode=onnx.AttributeProto.INT)
        pool.attribute.extend(_ref(k, v) for k, v in kinds.items())
        out.append(_function("SpikeMaxPool", ["X"], [pool], list(POOL_ATTRS) + ["rule", "momentum"],
                             "Max pooling of spikes. rule='max': the output's spike count is the running "
                             "max of the window's input counts; 'gate': pass the spikes of the input with "
                             "the highest (momentum-averaged) count; 'wta': max of the spikes at each step; "
                             "'avg': average pooling. The body is the ANN's MaxPool.", opset))
    expect_doc = ("Expectation compensation (ECMT, Huang et al., ACM MM 2024): with m_t the running mean of "
                  "the input currents over steps 1..t, the output at step t is t*f(m_t) - (t-1)*f(m_{t-1}), so "
                  "the outputs summed over t steps are t*f(m_t): the next layer integrates f of the mean rate. "
                  "Analog: f runs every step on the rate estimate (counted as MACs). The body is the ANN's f.")
    if "ExpectLayerNorm" in used:
        if opset >= 17:
            body = [helper.make_node("LayerNormalization", ["X", "Scale", "B"], ["Y"])]
            body[0].attribute.extend([_ref("axis", onnx.AttributeProto.INT), _ref("epsilon", onnx.AttributeProto.FLOAT)])
        else:                  # LayerNormalization is an op from opset 17: its decomposed form (last axis)
            body = layer_norm_body("X", "Scale", "B", "Y", "ln_")
        out.append(_function("ExpectLayerNorm", ["X", "Scale", "B"], body, ["axis", "epsilon", "estimator"],
                             expect_doc.replace("f ", "f = LayerNormalization ", 1), opset))
    if "ExpectGelu" in used:
        if opset >= 20:
            body = [helper.make_node("Gelu", ["X"], ["Y"])]
            body[0].attribute.append(_ref("approximate", onnx.AttributeProto.STRING))
        else:                  # Gelu is an op from opset 20: its Erf (or tanh) form, the model's one
            body = gelu_body("X", "Y", "gelu_", gelu)
        out.append(_function("ExpectGelu", ["X"], body, ["approximate", "estimator"],
                             expect_doc.replace("f ", "f = GELU ", 1), opset))
    if "ExpectSoftmax" in used:
        body = helper.make_node("Softmax", ["X"], ["Y"])
        body.attribute.append(_ref("axis", onnx.AttributeProto.INT))
        out.append(_function("ExpectSoftmax", ["X"], [body], ["axis", "estimator"],
                             expect_doc.replace("f ", "f = Softmax ", 1), opset))
    if "ExpectMatMul" in used:
        out.append(_function("ExpectMatMul", ["A", "B"], [helper.make_node("MatMul", ["A", "B"], ["Y"])],
                             ["estimator"], expect_doc.replace("f ", "f = the product A·B of two spiking tensors' "
                             "running means ", 1).replace("input currents", "inputs' spikes"), opset))
    if "Readout" in used:
        out.append(_function("Readout", ["X"], [helper.make_node("Identity", ["X"], ["Y"])],
                             ["mode", "delay", "head", "threshold", "reset", "v_reset", "v_init"],
                             "Output layer: class = argmax of the membrane potential (mode='membrane') or "
                             "of the spike counts of IF neurons (mode='spikes'), summed over steps "
                             "delay..T-1. head: the op the original applied to this output (Softmax, "
                             "LogSoftmax, Sigmoid, Tanh), dropped by the conversion. The body passes the "
                             "ANN's output (the logits) through.", opset))
    return out


def _add_functions(model: onnx.ModelProto) -> None:
    opset = onnx_opset(model)
    used = {n.op_type for n in model.graph.node if n.domain == DOMAIN}
    del model.functions[:]                 # (the ANN graph's onnx2snn.ann functions included)
    model.functions.extend(_functions(opset, used, gelu_form(model) if "ExpectGelu" in used else "none"))
    kept = [o for o in model.opset_import if o.domain != ANN_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
    model.ir_version = max(model.ir_version, IR_VERSION)


def v_init_input(node: onnx.NodeProto) -> Optional[str]:
    """The initializer with an IF node's per-neuron initial potentials, if any."""
    return node.input[1] if len(node.input) > 1 and node.input[1] else None


def offset_input(node: onnx.NodeProto) -> Optional[str]:
    """The initializer with an IF node's input current offset per channel, if any."""
    return node.input[2] if len(node.input) > 2 and node.input[2] else None


# --- input offsets as biases -------------------------------------------------------------------

@dataclass
class FoldedOffsets:
    """Where the IF nodes' input offsets go when added to a bias instead (``fold_offsets``)."""
    biases: Dict[str, np.ndarray] = field(default_factory=dict)   # weighted node -> its bias + the offset
    neurons: Set[str] = field(default_factory=set)                # IF nodes whose offset is in a bias


def fold_offsets(view) -> FoldedOffsets:
    """An offset added to every step's input current of a layer of IF neurons is the same as a shift
    of the bias of the weighted layer ahead of them, wherever that layer's output reaches them
    through ops that pass a per-channel constant through unchanged — a residual Add, max pooling,
    average pooling that counts no pads, global average pooling — and nothing else reads the
    tensors on the way. The runtime and the NIR exporter fold there (no per-step add), and keep the
    offset on the neurons elsewhere. ``view``: a ``GraphView`` of the spiking graph; nothing in it
    is changed."""
    out = FoldedOffsets()
    for node in view.nodes:
        name = offset_input(node) if node.domain == DOMAIN and node.op_type in ("IF", "ClipIF") else None
        if name is None or view.const(name) is None:
            continue
        layer = _bias_source(view, node.input[0])
        if layer is None or layer.name in out.biases:
            continue
        bias = bias_of(layer, view)
        channels = out_channels(layer, view)
        offset = np.asarray(view.const(name), np.float64).reshape(-1)
        if offset.size != channels:
            continue
        bias = np.zeros(channels) if bias is None else np.broadcast_to(np.asarray(bias, np.float64).reshape(-1),
                                                                       (channels,))
        out.biases[layer.name] = (bias + offset).astype(np.float32)
        out.neurons.add(node.name)
    return out


def _bias_source(view, tensor: str) -> Optional[onnx.NodeProto]:
    """The Conv/Gemm whose bias arrives unchanged per channel at ``tensor`` (see ``fold_offsets``)."""
    if len(view.consumers.get(tensor, [])) != 1 or tensor in view.output_names:
        return None
    node = view.producer.get(tensor)
    if node is None:
        return None
    if RULES.get(node.op_type) and RULES[node.op_type].group == "weighted" and view.const(node.input[1]) is not None:
        return node
    if node.op_type == "Add":
        return next((found for i in view.data_inputs(node) if (found := _bias_source(view, i)) is not None), None)
    if passes_channel_offset(node, view):
        return _bias_source(view, node.input[0])
    return None
