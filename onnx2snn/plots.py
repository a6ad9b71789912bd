"""Figures for the output folder when evaluating: accuracy against time steps, firing rate per layer.

matplotlib is an optional extra (``pip install onnx2snn[plot]``); without it ``write_plots``
raises ``ImportError`` and the CLI prints a one-line note instead.
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence

ACCURACY_PNG = "accuracy_vs_T.png"
RATES_PNG = "firing_rates.png"


def write_plots(folder: str, accuracy_per_step: Sequence[float], ann_accuracy: float,
                firing_rates: Dict[str, float], title: str, metric: str = "accuracy",
                lower_is_better: bool = False) -> List[str]:
    """Write both figures into ``folder``; returns their file names."""
    import matplotlib
    matplotlib.use("Agg")            # files only: no display needed
    import matplotlib.pyplot as plt

    steps = range(1, len(accuracy_per_step) + 1)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(steps, [100 * a for a in accuracy_per_step], label="SNN", color="tab:blue")
    ax.axhline(100 * ann_accuracy, label=f"ANN {100 * ann_accuracy:.2f} %", color="tab:gray", linestyle="--")
    ax.set(xlabel="time steps T", ylabel=f"{metric} (%)", title=f"{title}: {metric} after each time step")
    late = list(accuracy_per_step)[len(accuracy_per_step) // 4:] or list(accuracy_per_step)
    if lower_is_better:              # an error (regression): from 0 to the late steps' worst
        ax.set_ylim(0.0, 100 * max(max(late), ann_accuracy) * 1.1 + 1)
    else:
        low = min(100 * min(late), 100 * ann_accuracy)
        ax.set_ylim(max(0.0, low - 2), min(100.0, 100 * max(max(accuracy_per_step), ann_accuracy) + 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right" if lower_is_better else "lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(folder, ACCURACY_PNG))
    plt.close(fig)

    names = list(firing_rates)
    fig, ax = plt.subplots(figsize=(6, 0.8 + 0.35 * max(1, len(names))), dpi=120)
    ax.barh(range(len(names)), [firing_rates[n] for n in names], color="tab:orange")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()                # network order, top to bottom
    ax.set(xlabel="mean spikes per neuron per step", title=f"{title}: firing rate per layer of IF neurons")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, RATES_PNG))
    plt.close(fig)
    return [ACCURACY_PNG, RATES_PNG]
