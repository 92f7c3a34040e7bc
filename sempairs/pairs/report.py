"""How good are semantic pairs? Precision against the dataset's labels, overall, per class and by score.

Precision is the share of semantic pairs whose two images share a class (augmented pairs are
left out: they always do). With scores (mined pairs), the calibration shows precision per
score bin and, for every threshold t, the precision of the pairs scoring >= t and the coverage:
the share of anchors that keep at least one pair.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sempairs.atomic import atomic_open, write_text
from sempairs.csvio import write_rows
from sempairs.errors import InputError
from sempairs.pairs.builders import pair_stats
from sempairs.pairs.pairset import PairSet


def _share(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if len(hits) else None


def precision_report(
    pairs: PairSet,
    labels: np.ndarray,
    class_names: list[str] | None = None,
    anchors=None,
    bins: int = 10,
    num_thresholds: int = 41,
) -> dict:
    """Precision of the semantic pairs of ``pairs`` against ``labels``, as a JSON-ready dict.

    Keys: pairs, correct, precision, anchors, anchors_with_pair, anchor_coverage, per_class
    (by the anchor's class: pairs, precision), precision_requested (when the pairs were built with
    a precision < 1), calibration (``bins`` equal-width score bins:
    lo, hi, pairs, precision), thresholds (``num_thresholds`` values from the lowest to the
    highest score: threshold, pairs, pair_share, precision, coverage) and stats (pair_stats).
    ``anchors`` are the images that asked for a pair: default the mining run's
    ``meta["anchor_indices"]``, else every image.
    """
    labels = np.asarray(labels)
    names = class_names or [str(c) for c in range(int(labels.max()) + 1)]
    if anchors is None:
        anchors = pairs.meta.get("anchor_indices", np.arange(len(labels)))
    anchors = np.asarray(anchors, dtype=np.int64)
    sem = pairs.subset(np.flatnonzero(pairs.is_semantic))
    correct = labels[sem.anchor] == labels[sem.positive]
    in_pair = np.isin(anchors, sem.images())
    anchor_class = labels[sem.anchor]
    per_class_pairs = np.bincount(anchor_class, minlength=len(names))
    per_class_correct = np.bincount(anchor_class, weights=correct, minlength=len(names))
    report = {
        "pairs": len(sem),
        "correct": int(correct.sum()),
        "precision": _share(correct),
        "anchors": len(anchors),
        "anchors_with_pair": int(in_pair.sum()),
        "anchor_coverage": _share(in_pair),
        "per_class": {
            names[c]: {"pairs": int(per_class_pairs[c]), "precision": float(per_class_correct[c] / per_class_pairs[c])}
            for c in range(len(names)) if per_class_pairs[c]
        },
        "calibration": [],
        "thresholds": [],
        "stats": pair_stats(pairs, labels, class_names),
    }
    if "precision_requested" in pairs.meta:  # built with a precision knob (pairs from-labels --precision)
        report["precision_requested"] = pairs.meta["precision_requested"]
    scored = ~np.isnan(sem.score)
    if scored.any():
        report["calibration"] = _bins(sem.score[scored], correct[scored], bins)
        report["thresholds"] = _threshold_curve(sem.subset(np.flatnonzero(scored)), correct[scored], anchors, len(labels), num_thresholds)
    return report


def _bins(score: np.ndarray, correct: np.ndarray, bins: int) -> list[dict]:
    """Equal-width bins over the score range: pairs and precision in each (the last bin is closed)."""
    edges = np.linspace(score.min(), score.max(), bins + 1)
    which = np.clip(np.searchsorted(edges, score, side="right") - 1, 0, bins - 1)
    return [
        {"lo": float(edges[b]), "hi": float(edges[b + 1]), "pairs": int((which == b).sum()), "precision": _share(correct[which == b])}
        for b in range(bins)
    ]


def _threshold_curve(pairs: PairSet, correct: np.ndarray, anchors: np.ndarray, num_images: int, num: int) -> list[dict]:
    """For thresholds from the lowest to the highest score: pairs kept, their precision, anchor coverage."""
    best = np.full(num_images, -np.inf)  # each image's best pair score
    np.maximum.at(best, pairs.anchor, pairs.score)
    np.maximum.at(best, pairs.positive, pairs.score)
    rows = []
    for t in np.linspace(pairs.score.min(), pairs.score.max(), num):
        kept = pairs.score >= t
        rows.append({
            "threshold": float(t), "pairs": int(kept.sum()), "pair_share": float(kept.mean()),
            "precision": _share(correct[kept]), "coverage": _share(best[anchors] >= t),
        })
    return rows


def write_report(report: dict, path: str | Path) -> Path:
    """The report as indented JSON at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(report, indent=2))
    return path


def plot_calibration(report: dict, path: str | Path, title: str | None = None) -> list[Path]:
    """PNG of precision per score bin and precision/coverage vs threshold, plus the data behind it.

    Writes ``path`` and, beside it, ``<stem>.bins.csv`` and ``<stem>.thresholds.csv``; returns
    the three paths. Needs a report with scores (non-empty ``calibration``).
    """
    from matplotlib.figure import Figure  # Agg canvas, no GUI backend involved

    if not report["calibration"]:
        raise InputError("the report has no scored pairs: precision by score needs a pair file with a score column")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cal, thr = report["calibration"], report["thresholds"]

    fig = Figure(figsize=(12, 5.4), dpi=150, layout="constrained")
    left, right = fig.subplots(1, 2)
    centres = [(b["lo"] + b["hi"]) / 2 for b in cal]
    width = (cal[0]["hi"] - cal[0]["lo"]) * 0.9 or 0.01
    heights = [b["precision"] or 0.0 for b in cal]
    bars = left.bar(centres, heights, width=width, color="tab:blue", alpha=0.8, label="precision in bin")
    for bar, b in zip(bars, cal):
        if b["pairs"]:
            left.annotate(f"{b['pairs']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                          textcoords="offset points", ha="center", va="bottom", fontsize=8,
                          bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    left.axhline(report["precision"], color="tab:red", linestyle="--", label=f"all pairs: {report['precision']:.3f}")
    left.set(xlabel="cosine similarity of the pair (bin centre)", ylabel="precision (share of same-class pairs)",
             ylim=(0, 1.1), title="Precision by similarity bin (numbers: pairs per bin)")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9)
    left.grid(axis="y", alpha=0.3)

    x = [r["threshold"] for r in thr]
    right.plot(x, [np.nan if r["precision"] is None else r["precision"] for r in thr], color="tab:blue", lw=2,
               label="precision of pairs with score >= threshold")
    right.plot(x, [r["coverage"] for r in thr], color="tab:green", lw=2, label="coverage: anchors with >= 1 pair")
    right.plot(x, [r["pair_share"] for r in thr], color="tab:gray", lw=1.5, linestyle=":", label="share of pairs kept")
    right.set(xlabel="threshold (minimum cosine similarity kept)", ylabel="share (0-1)", ylim=(0, 1.05),
              title="Precision and coverage vs threshold")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9)
    right.grid(alpha=0.3)
    summary = (f"{report['pairs']} pairs, precision {report['precision']:.3f}, "
               f"coverage {report['anchors_with_pair']}/{report['anchors']} anchors")
    fig.suptitle(f"{title}\n{summary}" if title else summary)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return [path, write_rows(path.with_name(path.stem + ".bins.csv"), cal),
            write_rows(path.with_name(path.stem + ".thresholds.csv"), thr)]
