"""Reports: the seed-style summary line, the per-layer table, and the JSON report."""
from __future__ import annotations

import json
from typing import List

import numpy as np

from .graph.annotate import base_name, format_scale


def summary_line(ann_acc: float, snn_acc: float, metric: str = "accuracy") -> str:
    diff = 100 * (ann_acc - snn_acc)
    trend = f"decreased {diff:.2f} %" if diff >= 0 else f"increased {-diff:.2f} %"
    return f"ANN {metric} {100 * ann_acc:.2f} %  SNN {metric} {100 * snn_acc:.2f} % [{trend}]"


def layer_table(layers: List) -> str:
    """One row per weighted layer: op, λ_pre, λ and the statistic λ came from."""
    rows = [("layer", "op", "lambda_in", "lambda", "from")]
    for l in layers:
        rows.append((l.node, l.op, format_scale(l.lambda_in), format_scale(l.lambda_out), l.statistic))
    return _table(rows)


def rates_table(layers: List, rates: dict, neuron_of: dict) -> str:
    """One row per layer of neurons, in network order: the weighted layer(s) that drive it, their
    λ (pooling neurons have none), and the mean spikes per neuron per step. ``neuron_of``: weighted
    layer name -> the neuron layer its λ was measured at."""
    drivers = {}
    for l in layers:
        if l.node in neuron_of:
            drivers.setdefault(neuron_of[l.node], []).append(l)
    rows = [("neuron layer", "driven by", "lambda", "mean firing rate")]
    for name, rate in rates.items():
        ls = drivers.get(name, [])
        rows.append((name, " + ".join(f"{base_name(l.node)} ({l.op})" for l in ls) or "-",
                     format_scale(ls[0].lambda_out) if ls else "-", f"{rate:.4f}"))
    return _table(rows)


def synops_table(table: dict, totals: dict, T: int) -> str:
    """One row per weighted layer (and analog op): how it runs (event-driven, analog on rate estimates,
    on the constant input), the SNN's operations per inference at T against the ANN's MACs, then the totals and the arithmetic-energy estimate (snn/synops.py)."""
    rows = [("layer", "runs as", f"SNN ops per inference (T={T})", "ANN MACs", "SNN/ANN")]
    for name, r in table.items():
        rows.append((base_name(name), r.get("kind", ""), f"{_count(r['snn_ops'])} {r['snn_op']}", _count(r["ann_macs"]),
                     f"{r['snn_ops'] / r['ann_macs']:.2f}" if r["ann_macs"] else "-"))
    rows.append(("total", "", f"{_count(totals['snn_acs'])} AC + {_count(totals['snn_macs'])} MAC",
                 _count(totals["ann_macs"]), ""))
    return (_table(rows) + f"\nenergy estimate per inference: SNN {totals['snn_energy_pj'] / 1e6:.3g} µJ, "
            f"ANN {totals['ann_energy_pj'] / 1e6:.3g} µJ ({totals['energy_ratio_snn_to_ann']:.2f}×; "
            f"{totals['constants']})")


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


# Below this many held-back images one image moves the agreement by more than 0.5 %: the choice is noise.
FEW_HELD_BACK = 200


def calibration_lines(cal, config) -> str:
    """What the calibration for the target T did, in a few lines."""
    lines = [f"calibrated for T={cal.T} on {cal.fit_images} calibration images"
             + (f" (the readout chosen on {cal.holdout_images} others)" if cal.holdout_images else "")
             + f": thresholds by {'T-step search' if config.parser.threshold == 'search' else 'statistic'}"]
    if cal.rate_error:
        before = np.mean([e[0] for e in cal.rate_error.values()])
        after = np.mean([e[-1] for e in cal.rate_error.values()])
        lines.append(f"  bias calibration: {len(cal.offsets)} layers of neurons (their input offsets), mean |rate error| {before:.4f} -> {after:.4f}")
    if cal.readout is not None:
        kind, delay = cal.readout
        agree = cal.readout_agreement[f"{kind}/delay={delay}"]
        lines.append(f"  readout: {kind}" + (f", first {delay} steps skipped" if delay else "")
                     + f" ({100 * agree:.1f} % agreement with the ANN on the held-back images)")
        if cal.holdout_images < FEW_HELD_BACK:
            lines.append(f"warning: the readout was chosen on only {cal.holdout_images} held-back calibration images, "
                         "where one image is a whole percent; give more calibration images, or fix the readout "
                         "(--output membrane --readout-delay 0)")
    return "\n".join(lines)


def _table(rows) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: str, report: dict) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=_jsonable)
        f.write("\n")


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)
