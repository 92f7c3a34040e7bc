"""PairSet: which two images form each positive pair, and where the pair came from.

File format (CSV, one pair per row)::

    # sempairs-pairs v1
    # {"builder": "from-labels", "seed": 0, "per_class": 157, "dataset": "cifar10"}
    anchor,positive,label,score,source
    train/cat/0001.jpg,train/cat/0417.jpg,cat,,labels

``anchor`` and ``positive`` name images by id (the path inside an image folder or zip, or the
integer index for array datasets); ``label`` (class name or integer), ``score`` (similarity of
mined pairs) and ``source`` (``augmented``, ``labels``, ``curated``, ``mined``, ``reviewed``, ...) are
optional columns; an empty ``score`` means "no score" (a literal ``nan`` or ``inf`` is refused).
Lines starting with ``#`` before the header carry provenance as JSON; its ``data`` entry (split,
class names, image count of the dataset the file was built on) lets a reader refuse a file built
for another dataset. Files written by sempairs are UTF-8; a reader also takes what spreadsheets
save (UTF-8 with a byte-order mark, UTF-16 with one, Windows-1252 / Latin-1).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sempairs.atomic import atomic_open
from sempairs.data.store import ImageStore

AUGMENTED = "augmented"
FORMAT_TAG = "# sempairs-pairs v1"
COLUMNS = ("anchor", "positive", "label", "score", "source")


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
        """Write the CSV format above atomically; ``ids`` maps indices to image ids, ``class_names`` labels to names.

        With ``store`` (the dataset split the indices point into) its ids and class names are used, and
        its identity (split, class names, image count) is recorded as ``data`` in the provenance line,
        so that reading the file against another dataset is refused (:func:`sempairs.pairs.check_pairs`).
        """
        path = Path(path)
        meta = self.meta
        if store is not None:
            ids, class_names = store.ids, store.class_names
            meta = {**meta, "data": data_identity(store)}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w", newline="") as fh:
            fh.write(FORMAT_TAG + "\n")
            fh.write("# " + json.dumps(meta, sort_keys=True) + "\n")
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for a, p, lab, sc, src in zip(self.anchor, self.positive, self.label, self.score, self.source):
                writer.writerow([
                    ids[a] if ids is not None else int(a),
                    ids[p] if ids is not None else int(p),
                    "" if lab < 0 else (class_names[lab] if class_names else int(lab)),
                    "" if np.isnan(sc) else repr(float(sc)),
                    src,
                ])
        return path


def data_identity(store: ImageStore) -> dict:
    """What a pair file records of the dataset split it indexes: split, class names, number of images."""
    return {"split": store.split, "classes": list(store.class_names), "images": len(store)}


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
