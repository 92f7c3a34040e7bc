"""Which pairs the page shows, in which order: file order, lowest score first, or a seeded random sample."""

from __future__ import annotations

import numpy as np

from sempairs.review.store import ReviewError

ORDERS = ("file", "score", "random")


def order_pairs(
    score: np.ndarray,
    source: np.ndarray,
    pair_class: np.ndarray,
    order: str = "file",
    seed: int = 0,
    cls: str | None = None,
    src: str | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
) -> np.ndarray:
    """Positions of the pairs that pass the filters, in ``order``.

    ``score`` ascending puts pairs without a score last; ``random`` is a permutation of all pairs
    drawn with ``seed`` (then filtered), so reviewing its first n pairs reviews a simple random
    sample, whose precision is an unbiased estimate. A score bound drops pairs without a score.
    """
    n = len(score)
    if order == "file":
        idx = np.arange(n)
    elif order == "score":
        idx = np.argsort(score, kind="stable")  # NaN sorts last
    elif order == "random":
        idx = np.random.default_rng(seed).permutation(n)
    else:
        raise ReviewError(f"order {order!r}: use one of {', '.join(ORDERS)}")
    keep = np.ones(n, bool)
    if cls is not None:
        keep &= pair_class == cls
    if src is not None:
        keep &= source == src
    if min_score is not None:
        keep &= score >= min_score  # NaN compares False
    if max_score is not None:
        keep &= score <= max_score
    return idx[keep[idx]]
