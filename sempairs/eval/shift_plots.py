"""Plots of corruption-shift results (PNG, each beside the CSV of the numbers drawn; see :mod:`sempairs.eval.shift`).

- :func:`shift_heatmap`: one checkpoint, accuracy per corruption x severity (one panel per classifier).
- :func:`shift_comparison`: several checkpoints side by side, accuracy per corruption (mean over
  severities) as grouped bars, after the clean accuracy and the mean corruption accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sempairs.errors import InputError
from sempairs.eval.shift import OCCLUSION
from sempairs.plotting import save_plot

LABELS = {"knn": "kNN top-1 accuracy (%)", "linear": "linear probe top-1 accuracy (%)"}


def _name(corruption: str) -> str:
    return "occlusion (not in mean)" if corruption == OCCLUSION else corruption.replace("_", " ")


def _classifiers(result: dict) -> list[str]:
    return [m for m in LABELS if f"{m}_top1" in result["clean"]]


def shift_heatmap(result: dict, out_dir: Path, name: str = "shift", title: str | None = None) -> Path:
    """Heat-map of accuracy per corruption (rows) x severity (columns) of one shift result; writes ``<name>.png/.csv``."""
    metrics = _classifiers(result)
    corruptions, severities = result["corruptions"], result["severities"]
    values = {m: np.full((len(corruptions), len(severities)), np.nan) for m in metrics}
    for row in result["rows"]:
        for m in metrics:
            values[m][corruptions.index(row["corruption"]), severities.index(row["severity"])] = row[f"{m}_top1"]
    low = min(np.nanmin(v) for v in values.values())
    high = max(max(np.nanmax(v) for v in values.values()), *(result["clean"][f"{m}_top1"] for m in metrics))
    fig = Figure(figsize=(1.8 + 0.75 * len(severities) * len(metrics) + 1.2 * len(metrics), 1.4 + 0.34 * len(corruptions)),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics), sharey=True))
    for ax, m in zip(axes, metrics):
        image = ax.imshow(values[m], cmap="viridis", vmin=low, vmax=high, aspect="auto")
        for (i, j), v in np.ndenumerate(values[m]):
            if not np.isnan(v):
                shade = (v - low) / max(high - low, 1e-9)
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="black" if shade > 0.6 else "white")
        ax.set_xticks(range(len(severities)), [str(s) for s in severities])
        ax.set_yticks(range(len(corruptions)), [_name(c) for c in corruptions])
        ax.set_xlabel("severity")
        summary = result["summary"]
        mean = summary.get(f"{m}_mean_corruption")
        ax.set_title(f"{LABELS[m].split(' top-1')[0]}: clean {summary[f'{m}_clean']:.1f}"
                     + (f", mean corrupted {mean:.1f}" if mean is not None else ""), fontsize=9)
        fig.colorbar(image, ax=ax, label=LABELS[m], shrink=0.9)
    fig.suptitle(title or f"Accuracy under corruption ({result['test_images']} test images, seed {result['seed']})",
                 fontsize=10)
    table = [{"corruption": r["corruption"], "severity": r["severity"], **{f"{m}_top1": r[f"{m}_top1"] for m in metrics}}
             for r in result["rows"]]
    return save_plot(fig, table, out_dir, name)


def shift_comparison(results: Sequence[dict], labels: Sequence[str], out_dir: Path, metric: str = "knn",
                     name: str = "shift_compare") -> Path:
    """Grouped bars: per corruption (mean over severities), one bar per result; writes ``<name>.png/.csv``."""
    if metric not in LABELS:
        raise InputError(f"metric must be one of {', '.join(LABELS)}, got {metric!r}")
    for label, result in zip(labels, results):
        if metric not in _classifiers(result):
            raise InputError(f"{label}: the shift result has no {metric} accuracy. Fix: evaluate it with that classifier")
    key = f"{metric}_top1"
    corruptions = list(dict.fromkeys(c for r in results for c in r["per_corruption"]))
    groups = ["clean", "mean corrupted", *corruptions]
    width = 0.8 / len(results)
    fig = Figure(figsize=(max(8.0, 1.5 + len(groups) * (0.25 + 0.22 * len(results))), 4.8), layout="constrained")
    ax = fig.subplots()
    table = []
    for j, (label, result) in enumerate(zip(labels, results)):
        summary = result["summary"]
        heights = [summary[f"{metric}_clean"], summary[f"{metric}_mean_corruption"],
                   *(result["per_corruption"].get(c, {}).get(key) for c in corruptions)]
        xs = [i + (j - (len(results) - 1) / 2) * width for i in range(len(groups))]
        drawn = [(x, h) for x, h in zip(xs, heights) if h is not None]
        ax.bar([x for x, _ in drawn], [h for _, h in drawn], width, label=label, color=f"C{j}")
        table += [{"label": label, "checkpoint": result.get("checkpoint", ""), "group": g, key: h}
                  for g, h in zip(groups, heights) if h is not None]
    ax.set_xticks(range(len(groups)), [_name(g) for g in groups], rotation=40, ha="right")
    ax.axvline(1.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylabel(LABELS[metric])
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(title="checkpoint", loc="outside right upper", fontsize=8)
    fig.suptitle(f"{LABELS[metric]} under corruption, mean over severities", fontsize=10)
    return save_plot(fig, table, out_dir, name)
