"""Make the edited graph self-describing: scales on each rescaled node (visible in Netron), and the
onnx2snn version, config, layer table and source hash in the model metadata.

Annotations are written on the exported ``ModelProto`` (onnx-graphsurgeon drops node doc strings
and metadata on export).
"""
from __future__ import annotations

import json
from typing import Dict, List, Optional

import numpy as np
import onnx

KEY_VERSION = "onnx2snn.version"
KEY_CONFIG = "onnx2snn.config"
KEY_LAYERS = "onnx2snn.layers"
KEY_SOURCE = "onnx2snn.source_sha256"
KEY_OUTPUT_SCALE = "onnx2snn.output_scale"


def annotate(model: onnx.ModelProto, layers: List, config_json: str, source_sha256: str,
             version: str, bias_shifts: Optional[Dict[str, np.ndarray]] = None, target_T: Optional[int] = None
             ) -> onnx.ModelProto:
    """``bias_shifts``: per layer, the bias calibration's shift (normalised units), for the node's
    description."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_name = {l.node: l for l in layers}
    bias_shifts = bias_shifts or {}
    for node in out.graph.node:
        layer = by_name.get(node.name)
        if layer is None:
            continue
        node.doc_string = (f"onnx2snn: W <- W*lambda_pre/lambda, b <- b/lambda with lambda_pre={format_scale(layer.lambda_in)}, "
                           f"lambda={layer.lambda_out:.6g} ({layer.statistic})")
        if node.name in bias_shifts:
            shift = np.asarray(bias_shifts[node.name])
            node.doc_string += (f"; then b += the SNN's mean rate error per channel at T={target_T} "
                                f"(mean |shift| {np.mean(np.abs(shift)):.3g}, max {np.max(np.abs(shift)):.3g})")
        del node.metadata_props[:]
        pre = json.dumps(layer.lambda_in) if isinstance(layer.lambda_in, list) else f"{layer.lambda_in:.9g}"
        for k, v in (("onnx2snn.lambda_pre", pre),
                     ("onnx2snn.lambda", f"{layer.lambda_out:.9g}"),
                     ("onnx2snn.statistic", layer.statistic)):
            node.metadata_props.add(key=k, value=v)
    output_scale = next((l.lambda_out for l in layers if l.stat_tensor in {o.name for o in out.graph.output}), 1.0)
    meta = {KEY_VERSION: version, KEY_CONFIG: config_json, KEY_SOURCE: source_sha256,
            KEY_LAYERS: json.dumps([l.to_dict() for l in layers]), KEY_OUTPUT_SCALE: f"{output_scale:.9g}"}
    del out.metadata_props[:]
    for k, v in meta.items():
        out.metadata_props.add(key=k, value=v)
    out.producer_name, out.producer_version = "onnx2snn", version
    out.doc_string = ("Rate-coded SNN by onnx2snn: a rescaled ANN in which every ReLU becomes IF neurons with "
                      "threshold 1. onnxruntime runs it as the rescaled ANN; onnx2snn.load() rebuilds the SNN.")
    return out


def format_scale(value) -> str:
    """A scalar, or 'per channel min–max' for a vector of scales."""
    if isinstance(value, list):
        return f"per channel {min(value):.4g}-{max(value):.4g}"
    return f"{value:.4g}"


def read_metadata(model: onnx.ModelProto) -> dict:
    return {p.key: p.value for p in model.metadata_props}
