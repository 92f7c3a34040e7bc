"""Read a pair file against a dataset and report every problem, each with its row and its fix.

The file itself (encoding, provenance, header, rows) is read by :mod:`sempairs.pairs.pairfile`;
here each row is resolved to images of the dataset and checked, and the good rows become a PairSet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sempairs.data.sources import class_key
from sempairs.data.store import ImageStore
from sempairs.pairs.pairfile import COLUMNS, REQUIRED, PairFileError, PairProblem, RawPairFile, read_pair_file
from sempairs.pairs.pairset import AUGMENTED, PairSet

SAME_CLASS_SOURCES = ("labels", "curated")


@dataclass(frozen=True)
class _Pair:
    """One row whose cells all make sense: image indices, label (-1: none), score (NaN: none), source."""

    line: int
    anchor: int
    positive: int
    label: int
    score: float
    source: str

    @property
    def key(self) -> tuple[int, int, str]:
        """What two rows share when one repeats the other: the unordered images and the source."""
        return min(self.anchor, self.positive), max(self.anchor, self.positive), self.source


def _file_problems(raw: RawPairFile, store: ImageStore) -> list[PairProblem]:
    """Problems that make the whole file unusable: built for another dataset split, or a header short of columns."""
    identity = _identity_problem(raw.meta, store)
    if identity is not None:
        return [identity]
    if not raw.header:
        return [PairProblem(0, "the file has no header row", f"start the file with the header: {','.join(COLUMNS)}")]
    missing = [c for c in REQUIRED if c not in raw.header]
    unknown = [c for c in raw.header if c not in COLUMNS]
    problems = []
    if missing:
        problems.append(PairProblem(1, f"missing column(s) {missing}", f"the header must name at least {','.join(REQUIRED)}"))
    if unknown:
        problems.append(PairProblem(1, f"unknown column(s) {unknown}", f"allowed columns are {','.join(COLUMNS)}"))
    return problems


def _identity_problem(meta: dict, store: ImageStore) -> PairProblem | None:
    """A file-level problem when the file records (``data``) that it was built for another dataset split."""
    built = meta.get("data")
    if not isinstance(built, dict):
        return None
    fix = "give the dataset and split the file was built for, or build the pairs again for this one"
    if built.get("split") not in (None, store.split):
        return PairProblem(0, f"built for split {built['split']!r} of a dataset, read against split {store.split!r} of "
                              f"{store.source}", fix)
    classes = built.get("classes")
    unknown = [c for c in store.class_names if classes is not None and c not in classes]
    if unknown:
        return PairProblem(0, f"built for a dataset with classes {classes[:5]}{' ...' if len(classes) > 5 else ''}, but "
                              f"{store.source} has class {unknown[0]!r}: it was built for another dataset", fix)
    return None


def _spellings(text: str) -> list[str]:
    """A cell as written, then as typed by hand: without surrounding spaces, NFC-normalised (first match wins)."""
    return list(dict.fromkeys((text, text.strip(), class_key(text))))


def _resolve(value: str, store: ImageStore) -> tuple[int | None, str | None]:
    """Image index for an id or integer index, or an error message."""
    for spelling in _spellings(value):
        idx = store.index_of(spelling)
        if idx is not None:
            return idx, None
    value = value.strip()
    if value.lstrip("-").isdigit():
        i = int(value)
        if 0 <= i < len(store):
            return i, None
        return None, f"index {i} is out of range (the dataset has {len(store)} images, 0..{len(store) - 1})"
    return None, f"image {value!r} is not in the dataset"


class _RowReader:
    """Turns the cells of a row into a :class:`_Pair`, against the header of one file and the dataset ``store``."""

    def __init__(self, header: list[str], store: ImageStore, default_source: str):
        self.header, self.store, self.default_source = header, store, default_source
        self.col = {name: header.index(name) for name in header}
        self.classes = {n: i for i, n in enumerate(store.class_names)}
        self.classes.update({class_key(n): i for n, i in self.classes.items() if class_key(n) not in self.classes})

    def read(self, lineno: int, cells: list[str]) -> tuple[_Pair | None, list[PairProblem]]:
        """The row as a pair, or None and the problems of its cells (their count, images, label, score)."""
        if len(cells) != len(self.header):
            return None, [PairProblem(lineno, f"{len(cells)} cells for {len(self.header)} columns",
                                      "one value per column; leave optional values empty")]
        get = lambda name: cells[self.col[name]] if name in self.col else ""  # noqa: E731
        anchor, anchor_problem = self._image(lineno, "anchor", get("anchor"))
        positive, positive_problem = self._image(lineno, "positive", get("positive"))
        label, label_problem = self._label(lineno, get("label"))
        score, score_problem = _score(lineno, get("score"))
        problems = [p for p in (anchor_problem, positive_problem, label_problem, score_problem) if p is not None]
        if problems:
            return None, problems
        return _Pair(lineno, anchor, positive, label, score, get("source").strip() or self.default_source), []

    def _image(self, lineno: int, role: str, value: str) -> tuple[int | None, PairProblem | None]:
        store = self.store
        i, err = _resolve(value, store)
        if err is None:
            return i, None
        return None, PairProblem(lineno, f"{role}: {err}", f"use an image id listed for {store.source} (e.g. '{store.ids[0]}') "
                                                           f"or an index 0..{len(store) - 1}")

    def _label(self, lineno: int, text: str) -> tuple[int, PairProblem | None]:
        """The class index of a class name or integer; -1 for an empty cell."""
        if not text.strip():
            return -1, None
        for spelling in _spellings(text):
            if spelling in self.classes:
                return self.classes[spelling], None
        if text.strip().isdigit() and int(text) < len(self.store.class_names):
            return int(text), None
        return -1, PairProblem(lineno, f"label {text!r} is not a class of the dataset",
                               f"use one of {self.store.class_names[:10]} or leave it empty")


def _score(lineno: int, text: str) -> tuple[float, PairProblem | None]:
    """A finite number; NaN for an empty cell."""
    if not text.strip():
        return float("nan"), None
    try:
        score = float(text)
        what = "" if math.isfinite(score) else "a finite number"
    except ValueError:
        what = "a number"
    if not what:
        return score, None
    return float("nan"), PairProblem(lineno, f"score '{text}' is not {what}", "write a decimal number, or leave it empty for no score")


def _pair_problem(pair: _Pair, seen: dict[tuple, int], store: ImageStore) -> PairProblem | None:
    """A pair whose two images do not fit its source, or that repeats one of ``seen`` (key -> line)."""
    if pair.source != AUGMENTED and pair.anchor == pair.positive:
        return PairProblem(pair.line, f"semantic pair of one image with itself ({store.ids[pair.anchor]})",
                           "pick a different positive image, or set source=augmented for a two-view pair")
    if pair.source == AUGMENTED and pair.anchor != pair.positive:
        return PairProblem(pair.line, "source=augmented but anchor and positive are different images",
                           "set positive equal to anchor, or give the row a semantic source such as curated")
    if pair.key in seen:
        return PairProblem(pair.line, f"duplicate of the pair on line {seen[pair.key]}", "remove one of the two rows")
    return None


def _class_problems(pair: _Pair, store: ImageStore) -> list[PairProblem]:
    """Disagreements between a pair and the dataset's labels (none for a dataset without labels).

    A given label must be the dataset class of both members; a same-class source (``labels``,
    ``curated``) must pair two images of one class. Mined pairs, and ``reviewed`` ones (kept by a
    person who judged them, see :mod:`sempairs.review`), may cross classes: that is what
    their precision measures.
    """
    if store.labels is None:
        return []
    cls, labels, ids, a, p = store.class_names, store.labels, store.ids, pair.anchor, pair.positive
    if pair.label >= 0:
        return [PairProblem(pair.line, f"label '{cls[pair.label]}' but the {role} {ids[i]} is '{cls[labels[i]]}' in the dataset",
                            "correct the label column, or remove the pair")
                for role, i in (("anchor", a), ("positive", p)) if labels[i] != pair.label]
    if pair.source in SAME_CLASS_SOURCES and labels[a] != labels[p]:
        return [PairProblem(pair.line, f"{pair.source} pair of different classes: {ids[a]} is '{cls[labels[a]]}', {ids[p]} is "
                                       f"'{cls[labels[p]]}'",
                            "pair two images of the same class, or set source=mined for pairs not meant to share a class")]
    return []


def _pair_set(pairs: list[_Pair], meta: dict) -> PairSet:
    return PairSet(
        anchor=np.asarray([p.anchor for p in pairs], np.int64),
        positive=np.asarray([p.positive for p in pairs], np.int64),
        label=np.asarray([p.label for p in pairs], np.int64),
        score=np.asarray([p.score for p in pairs], np.float64),
        source=np.asarray([p.source for p in pairs], dtype=object),
        meta=meta,
    )


def check_pairs(path: str | Path, store: ImageStore, default_source: str = "curated") -> tuple[PairSet | None, list[PairProblem]]:
    """Validate a pair file against ``store``; returns the PairSet of the good rows (None if unusable) and all problems.

    Checked: required and unknown columns, ids that do not exist, out-of-range indices, a semantic
    pair whose two members are the same image, an augmented pair of two different images,
    duplicate pairs, labels that are unknown or disagree with the dataset's labels, scores that are
    not finite numbers, a file recorded as built for another dataset split, text that is not in an
    encoding spreadsheets save (see :mod:`sempairs.pairs.pairfile`). Rows without a ``source`` column are
    ``default_source`` (a curated list is semantic).
    """
    path = Path(path)
    try:
        raw = read_pair_file(path)
    except PairFileError as exc:
        return None, exc.problems
    problems = _file_problems(raw, store)
    if problems:
        return None, problems
    reader = _RowReader(raw.header, store, default_source)
    pairs: list[_Pair] = []
    seen: dict[tuple, int] = {}
    for lineno, cells in raw.rows:
        pair, row_problems = reader.read(lineno, cells)
        problems += row_problems
        if pair is None:
            continue
        problem = _pair_problem(pair, seen, store)
        if problem is not None:
            problems.append(problem)
            continue
        seen[pair.key] = pair.line
        problems += _class_problems(pair, store)
        pairs.append(pair)
    if not raw.rows:
        problems.append(PairProblem(0, "the file has a header but no pairs", "add at least one pair row"))
    return _pair_set(pairs, {**raw.meta, "file": str(path)}), problems


def load_pairs(path: str | Path, store: ImageStore, default_source: str = "curated") -> PairSet:
    """Load a pair file; any problem raises PairFileError naming every bad row and its fix."""
    pairs, problems = check_pairs(path, store, default_source)
    if problems:
        raise PairFileError(Path(path), problems)
    return pairs
