"""PairSet: which two images form each positive pair, and where the pair came from.

The file format a PairSet is saved in and read from is :mod:`sempairs.pairs.pairfile`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sempairs.data.store import ImageStore
from sempairs.pairs.pairfile import write_pair_file

AUGMENTED = "augmented"


@dataclass
class PairSet:
    """Positive pairs as index arrays into one ImageStore.

    ``label`` is the class of each pair (-1 when unknown), ``score`` a similarity (NaN when
    unknown), ``source`` the name of the builder or file each pair came from, so that a union of
    sets (AP + SP) remembers which pair is which. ``meta`` holds the provenance.
    """

    anchor: np.ndarray
    positive: np.ndarray
    label: np.ndarray
    score: np.ndarray
    source: np.ndarray
    meta: dict = field(default_factory=dict)

    @classmethod
    def build(cls, anchor, positive, label=None, score=None, source: str = AUGMENTED, meta=None) -> "PairSet":
        """Make a PairSet from index sequences; missing labels/scores become -1/NaN."""
        anchor = np.asarray(anchor, dtype=np.int64)
        n = len(anchor)
        return cls(
            anchor=anchor,
            positive=np.asarray(positive, dtype=np.int64),
            label=np.full(n, -1, np.int64) if label is None else np.asarray(label, dtype=np.int64),
            score=np.full(n, np.nan) if score is None else np.asarray(score, dtype=np.float64),
            source=np.full(n, source, dtype=object),
            meta=dict(meta or {}),
        )

    def __len__(self) -> int:
        return len(self.anchor)

    @property
    def is_semantic(self) -> np.ndarray:
        """Per pair: True unless the pair is an augmented pair (two views of one image)."""
        return self.source != AUGMENTED

    @property
    def sources(self) -> list[str]:
        """Distinct pair sources, in order of first appearance."""
        return list(dict.fromkeys(self.source.tolist()))

    def subset(self, indices) -> "PairSet":
        idx = np.asarray(indices, dtype=np.int64)
        return PairSet(self.anchor[idx], self.positive[idx], self.label[idx], self.score[idx], self.source[idx], dict(self.meta))

    def images(self) -> np.ndarray:
        """Distinct image indices used by any pair."""
        return np.unique(np.concatenate([self.anchor, self.positive]))

    def save(self, path: str | Path, ids: list[str] | None = None, class_names: list[str] | None = None,
             store: ImageStore | None = None) -> Path:
        """Write the pair file atomically (:func:`sempairs.pairs.pairfile.write_pair_file`, which says what the arguments do)."""
        return write_pair_file(path, zip(self.anchor, self.positive, self.label, self.score, self.source), self.meta,
                               ids, class_names, store)


def concat(*sets: PairSet) -> PairSet:
    """Union of pair sets (e.g. AP + mined SP); each pair keeps its source, provenance is listed."""
    if not sets:
        raise ValueError("concat needs at least one PairSet")
    return PairSet(
        anchor=np.concatenate([s.anchor for s in sets]),
        positive=np.concatenate([s.positive for s in sets]),
        label=np.concatenate([s.label for s in sets]),
        score=np.concatenate([s.score for s in sets]),
        source=np.concatenate([s.source for s in sets]),
        meta={"builder": "concat", "parts": [s.meta for s in sets]},
    )
