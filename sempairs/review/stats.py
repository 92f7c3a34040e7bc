"""Reviewed precision with 95 % Wilson score intervals: overall, per class and per score bin.

Precision is accepted / (accepted + rejected); skipped and unreviewed pairs do not count. It
estimates the precision of the whole pair file only when the reviewed pairs are a random sample
of it (the page's ``random`` order).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from sempairs.review.store import ACCEPT, DECISIONS, REJECT, class_of

Z95 = NormalDist().inv_cdf(0.975)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion (no continuity correction); None when n is 0."""
    if n == 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def summary(decisions: list[str | None]) -> dict:
    """Counts of each decision among ``decisions`` (None: unreviewed), precision and its interval."""
    counts = {d: decisions.count(d) for d in DECISIONS}
    reviewed = counts[ACCEPT] + counts[REJECT]
    interval = wilson(counts[ACCEPT], reviewed)
    return {
        "pairs": len(decisions), **counts, "unreviewed": decisions.count(None), "reviewed": reviewed,
        "precision": counts[ACCEPT] / reviewed if reviewed else None,
        "ci_low": interval[0] if interval else None, "ci_high": interval[1] if interval else None,
    }


def score_bins(scores: np.ndarray, bins: int) -> np.ndarray:
    """``bins + 1`` equal-width edges over the range of the finite ``scores`` (empty if there are none)."""
    finite = scores[np.isfinite(scores)]
    if not len(finite):
        return np.empty(0)
    return np.linspace(finite.min(), finite.max(), bins + 1)


def review_stats(pairs: list[dict], decisions: dict[int, dict], bins: int = 5) -> dict:
    """Precision overall, per class (:func:`~sempairs.review.store.class_of`) and per score bin.

    ``pairs`` and ``decisions`` are as :class:`~sempairs.review.store.DecisionStore` returns them.
    Bins are ``bins`` equal-width score ranges ``[from, to)`` (the last one closed); each also
    carries ``at_least``: the precision of all pairs scoring at least its lower edge, the number
    to read when choosing a mining threshold.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    verdict = [decisions.get(p["pos"], {}).get("decision") for p in pairs]
    classes = [class_of(p) for p in pairs]
    per_class = [
        {"class": c or "(unknown)", **summary([v for v, k in zip(verdict, classes) if k == c])}
        for c in sorted(set(classes))
    ]
    scores = np.array([np.nan if p["score"] is None else p["score"] for p in pairs], dtype=np.float64)
    edges = score_bins(scores, bins)
    per_bin = []
    if len(edges):
        which = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
        for b in range(bins):
            inside = np.isfinite(scores) & (which == b)
            above = scores >= edges[b]
            per_bin.append({
                "score_from": float(edges[b]), "score_to": float(edges[b + 1]),
                **summary([v for v, m in zip(verdict, inside) if m]),
                "at_least": summary([v for v, m in zip(verdict, above) if m]),
            })
    return {"overall": summary(verdict), "per_class": per_class, "per_bin": per_bin}
