"""Pair builders: augmented pairs, semantic pairs from labels, and the matched AP baseline."""

from __future__ import annotations

import numpy as np

from sempairs.errors import InputError
from sempairs.pairs.pairset import AUGMENTED, PairSet

LABELS = "labels"
CROSS_CLASS = "cross-class"  # the source of the pairs a precision < 1 made cross-class


def augmented_pairs(num_images: int | None = None, indices=None, labels: np.ndarray | None = None, meta: dict | None = None) -> PairSet:
    """One augmented pair (positive = anchor) per image: all ``num_images`` or the given ``indices``."""
    idx = np.arange(num_images, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    lab = None if labels is None else np.asarray(labels)[idx]
    return PairSet.build(idx, idx, label=lab, source=AUGMENTED, meta={"builder": "augmented", **(meta or {})})


def _class_pairs(members: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct unordered pairs (anchor, positive) of two different members.

    Disjoint when the class is big enough (2k <= n). Otherwise every member is an anchor in turn,
    in a shuffled order, as evenly as ``k`` allows (k = n: each member once), with a positive drawn
    among the members it is not yet paired with; so the anchors (the matched AP set's images) cover
    the class evenly rather than favouring some members.
    """
    n = len(members)
    if 2 * k <= n:
        return rng.permutation(members)[: 2 * k].reshape(k, 2)
    anchors = np.concatenate([rng.permutation(n) for _ in range(-(-k // n))])[:k]
    partners: list[set[int]] = [set() for _ in range(n)]
    pairs = []
    for a in anchors:
        a = int(a)
        if len(partners[a]) == n - 1:  # paired with every member already: the free pair drawn from the rest
            a = int(rng.choice([m for m in range(n) if len(partners[m]) < n - 1]))
        b = int(rng.integers(n - 1))
        b += b >= a
        if b in partners[a]:
            b = int(rng.choice([m for m in range(n) if m != a and m not in partners[a]]))
        partners[a].add(b)
        partners[b].add(a)
        pairs.append((a, b))
    return members[np.array(pairs, dtype=np.int64)]


def pairs_from_labels(labels: np.ndarray, per_class: int | None = None, seed: int = 0, classes=None, meta: dict | None = None,
                      precision: float = 1.0) -> PairSet:
    """Semantic pairs: ``per_class`` pairs of two *different* images of the same class per class.

    With ``per_class=None`` every image of a class is used once, paired disjointly (n // 2
    pairs). Pairs within a class are disjoint while 2*per_class <= class size, otherwise distinct
    unordered pairs are drawn. Seeded; raises if a class cannot supply enough distinct pairs.
    ``precision`` < 1 makes the share 1 - precision of the pairs cross-class (:func:`with_precision`);
    the metadata records the requested and the true precision.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    wanted = np.unique(labels[labels >= 0]) if classes is None else np.asarray(classes)
    anchors, positives, pair_labels = [], [], []
    for c in wanted:
        members = np.flatnonzero(labels == c)
        k = len(members) // 2 if per_class is None else per_class
        possible = len(members) * (len(members) - 1) // 2
        if k > possible:
            raise InputError(f"class {c} has {len(members)} images: at most {possible} distinct pairs, {k} asked; lower per_class")
        pairs = _class_pairs(members, k, rng)
        anchors.append(pairs[:, 0])
        positives.append(pairs[:, 1])
        pair_labels.append(np.full(len(pairs), c, dtype=np.int64))
    pairs = PairSet.build(
        np.concatenate(anchors), np.concatenate(positives), label=np.concatenate(pair_labels), source=LABELS,
        meta={"builder": "from-labels", "per_class": per_class, "seed": seed, **(meta or {})},
    )
    return pairs if precision == 1.0 else with_precision(pairs, labels, precision, rng)


def with_precision(pairs: PairSet, labels: np.ndarray, precision: float, rng: np.random.Generator) -> PairSet:
    """``pairs`` with round((1 - precision) * n) of them, drawn by ``rng``, made cross-class: each drawn pair
    keeps its anchor and gets a positive drawn from the images of the other classes, with source
    ``cross-class`` and no label (a pair file check accepts it as a pair not meant to share a class).
    Metadata: ``precision_requested`` and ``precision`` (the true share of same-class pairs)."""
    if not 0.0 <= precision <= 1.0:
        raise InputError(f"pair precision {precision}: give a share between 0 and 1 (e.g. 0.8 for 80 % same-class pairs)")
    labels = np.asarray(labels)
    usable = np.flatnonzero(labels >= 0)
    if precision < 1.0 and len(np.unique(labels[usable])) < 2:
        raise InputError(f"pair precision {precision} needs cross-class pairs, and the data has one class; use precision 1")
    crossed = PairSet(pairs.anchor, pairs.positive.copy(), pairs.label.copy(), pairs.score, pairs.source.copy(),
                      {**pairs.meta, "precision_requested": precision})
    for i in rng.choice(len(pairs), size=int(round((1.0 - precision) * len(pairs))), replace=False):
        others = usable[labels[usable] != labels[pairs.anchor[i]]]
        crossed.positive[i], crossed.label[i], crossed.source[i] = others[rng.integers(len(others))], -1, CROSS_CLASS
    crossed.meta["precision"] = float((labels[crossed.anchor] == labels[crossed.positive]).mean()) if len(pairs) else 1.0
    return crossed


def matched_augmented(semantic: PairSet) -> PairSet:
    """The AP baseline matched to a semantic set: one augmented pair per semantic pair, on its anchor.

    Same pair count and class composition, as in the published protocol (e.g. 157 images per
    class whose two views come from the augmentation pipeline). Each image at most once: a set with
    more pairs of a class than the class has images would train some images twice as often as the
    others, so it is refused.
    """
    anchors, counts = np.unique(semantic.anchor, return_counts=True)
    if len(anchors) and counts.max() > 1:
        classes = np.unique(semantic.label[np.isin(semantic.anchor, anchors[counts > 1])]) if semantic.label is not None else []
        raise InputError(f"the matched augmented set needs one image per pair, and class(es) {', '.join(map(str, classes))} "
                         "have fewer images than pairs asked. Fix: lower pairs.per_class to at most the images per class")
    return PairSet.build(
        semantic.anchor, semantic.anchor, label=semantic.label, source=AUGMENTED,
        meta={"builder": "matched-augmented", "matched_to": semantic.meta},
    )


def pair_stats(pairs: PairSet, labels: np.ndarray | None = None, class_names: list[str] | None = None) -> dict:
    """Counts a user checks before training: pairs, images, per-source and per-class counts, precision."""
    stats: dict = {
        "pairs": len(pairs),
        "images": int(len(pairs.images())),
        "self_pairs": int((pairs.anchor == pairs.positive).sum()),
        "by_source": {s: int((pairs.source == s).sum()) for s in pairs.sources},
    }
    finite = pairs.score[~np.isnan(pairs.score)]
    if len(finite):
        stats["score"] = {"min": float(finite.min()), "mean": float(finite.mean()), "max": float(finite.max())}
    if labels is not None:
        la, lp = labels[pairs.anchor], labels[pairs.positive]
        semantic = pairs.is_semantic
        if semantic.any():
            stats["semantic_precision"] = float((la[semantic] == lp[semantic]).mean())
        names = class_names or [str(c) for c in range(int(labels.max()) + 1)]
        counts = np.bincount(la, minlength=len(names))
        stats["per_class"] = {names[c]: int(counts[c]) for c in range(len(names)) if counts[c]}
    return stats
