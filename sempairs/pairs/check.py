"""Read a pair file against a dataset and report every problem, each with its row and its fix."""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sempairs.data.store import ImageStore
from sempairs.errors import SempairsError
from sempairs.pairs.pairset import AUGMENTED, COLUMNS, PairSet

REQUIRED = ("anchor", "positive")
SAME_CLASS_SOURCES = ("labels", "curated")


@dataclass(frozen=True)
class PairProblem:
    """One problem in a pair file: where it is (file line), what is wrong, how to fix it."""

    line: int
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.message} — fix: {self.fix}"


class PairFileError(SempairsError, ValueError):
    """A pair file that cannot be used as it is; the message lists every problem."""

    def __init__(self, path: Path, problems: list[PairProblem], limit: int = 20):
        self.path, self.problems = path, problems
        shown = "\n".join(f"  {p}" for p in problems[:limit])
        more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
        super().__init__(f"{path}: {len(problems)} problem(s) in pair file:\n{shown}{more}")


def _decode(path: Path) -> tuple[str, str]:
    """The text of ``path`` and its encoding: by byte-order mark, else UTF-8, else Windows-1252 (Latin-1).

    Windows-1252 decodes almost any bytes, but a file read in the wrong encoding names images
    that are not in the dataset, which the row checks report: nothing is used on a guess.
    """
    raw = path.read_bytes()
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
                          (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            break
    else:
        encoding = "utf-8" if b"\0" not in raw else None
    if encoding is None:
        raise PairFileError(path, [PairProblem(0, "the file holds NUL bytes: UTF-16 or UTF-32 text without a byte-order "
                                                  "mark, or not a text file", "save it as CSV UTF-8")])
    try:
        return raw.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        if encoding != "utf-8":
            raise PairFileError(path, [PairProblem(0, f"not valid {encoding} text ({exc.reason} at byte {exc.start})",
                                                   "save it as CSV UTF-8")]) from None
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        raise PairFileError(path, [PairProblem(0, f"neither UTF-8 nor Windows-1252 text (byte {raw[exc.start]:#04x} at "
                                                  f"offset {exc.start})", "save it as CSV UTF-8")]) from None


def _read_rows(path: Path) -> tuple[dict, list[str], list[tuple[int, list[str]]]]:
    """Provenance (from '#' lines, plus the text ``encoding``), header and (line number, cells) of each data row."""
    text, encoding = _decode(path)
    meta: dict = {} if encoding in ("utf-8", "utf-8-sig") else {"encoding": encoding}
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    for lineno, cells in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not cells or not "".join(cells).strip():
            continue
        if not header and cells[0].startswith("#"):
            text = ",".join(cells)[1:].strip()
            if text.startswith("{"):
                try:
                    meta.update(json.loads(text))
                except json.JSONDecodeError:
                    pass  # a free-text comment, not provenance
            continue
        if not header:
            header = [c.strip() for c in cells]
            continue
        rows.append((lineno, [c.strip() for c in cells]))
    return meta, header, rows


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


def _resolve(value: str, store: ImageStore) -> tuple[int | None, str | None]:
    """Image index for an id or integer index, or an error message."""
    idx = store.index_of(value)
    if idx is not None:
        return idx, None
    if value.lstrip("-").isdigit():
        i = int(value)
        if 0 <= i < len(store):
            return i, None
        return None, f"index {i} is out of range (the dataset has {len(store)} images, 0..{len(store) - 1})"
    return None, f"image '{value}' is not in the dataset"


def _class_problems(lineno: int, a: int, p: int, label: int, source: str, store: ImageStore) -> list[PairProblem]:
    """Disagreements between a row and the dataset's labels.

    A given label must be the dataset class of both members; a same-class source (``labels``,
    ``curated``) must pair two images of one class. Mined pairs, and ``reviewed`` ones (kept by a
    person who judged them, see :mod:`sempairs.review`), may cross classes: that is what
    their precision measures.
    """
    cls = store.class_names
    out = []
    if label >= 0:
        for role, i in (("anchor", a), ("positive", p)):
            if store.labels[i] != label:
                out.append(PairProblem(lineno, f"label '{cls[label]}' but the {role} {store.ids[i]} is '{cls[store.labels[i]]}' in the dataset", "correct the label column, or remove the pair"))
    elif source in SAME_CLASS_SOURCES and store.labels[a] != store.labels[p]:
        out.append(PairProblem(lineno, f"{source} pair of different classes: {store.ids[a]} is '{cls[store.labels[a]]}', {store.ids[p]} is '{cls[store.labels[p]]}'", "pair two images of the same class, or set source=mined for pairs not meant to share a class"))
    return out


def check_pairs(path: str | Path, store: ImageStore, default_source: str = "curated") -> tuple[PairSet | None, list[PairProblem]]:
    """Validate a pair file against ``store``; returns the PairSet (None if unusable) and all problems.

    Checked: required and unknown columns, ids that do not exist, out-of-range indices, a semantic
    pair whose two members are the same image, an augmented pair of two different images,
    duplicate pairs, labels that are unknown or disagree with the dataset's labels, scores that are
    not finite numbers, a file recorded as built for another dataset split, text that is not in an
    encoding spreadsheets save (see :func:`_decode`). Rows without a ``source`` column are ``default_source`` (a curated list is semantic).
    """
    path = Path(path)
    if not path.exists():
        return None, [PairProblem(0, f"{path} does not exist", "give the path of a pair CSV file")]
    if path.is_dir():
        return None, [PairProblem(0, f"{path} is a folder", "give the path of a pair CSV file")]
    try:
        meta, header, rows = _read_rows(path)
    except PairFileError as exc:
        return None, exc.problems
    identity = _identity_problem(meta, store)
    if identity is not None:
        return None, [identity]
    problems: list[PairProblem] = []
    if not header:
        return None, [PairProblem(0, "the file has no header row", f"start the file with the header: {','.join(COLUMNS)}")]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing:
        problems.append(PairProblem(1, f"missing column(s) {missing}", f"the header must name at least {','.join(REQUIRED)}"))
    if unknown:
        problems.append(PairProblem(1, f"unknown column(s) {unknown}", f"allowed columns are {','.join(COLUMNS)}"))
    if problems:
        return None, problems
    col = {name: header.index(name) for name in header}
    names = {n: i for i, n in enumerate(store.class_names)}
    anchors, positives, labels, scores, sources = [], [], [], [], []
    seen: dict[tuple, int] = {}
    for lineno, cells in rows:
        if len(cells) != len(header):
            problems.append(PairProblem(lineno, f"{len(cells)} cells for {len(header)} columns", "one value per column; leave optional values empty"))
            continue
        get = lambda name: cells[col[name]] if name in col else ""  # noqa: E731
        source = get("source") or default_source
        ok = True
        idx = {}
        for role in REQUIRED:
            i, err = _resolve(get(role), store)
            if err:
                ok = False
                problems.append(PairProblem(lineno, f"{role}: {err}", f"use an image id listed for {store.source} (e.g. '{store.ids[0]}') or an index 0..{len(store) - 1}"))
            idx[role] = i
        label = -1
        if get("label"):
            text = get("label")
            if text in names:
                label = names[text]
            elif text.lstrip("-").isdigit() and 0 <= int(text) < len(store.class_names):
                label = int(text)
            else:
                ok = False
                problems.append(PairProblem(lineno, f"label '{text}' is not a class of the dataset", f"use one of {store.class_names[:10]} or leave it empty"))
        score = float("nan")
        if get("score"):
            try:
                score = float(get("score"))
                what = "" if math.isfinite(score) else "a finite number"
            except ValueError:
                what = "a number"
            if what:
                ok = False
                problems.append(PairProblem(lineno, f"score '{get('score')}' is not {what}",
                                            "write a decimal number, or leave it empty for no score"))
        if not ok:
            continue
        a, p = idx["anchor"], idx["positive"]
        if source != AUGMENTED and a == p:
            problems.append(PairProblem(lineno, f"semantic pair of one image with itself ({store.ids[a]})", "pick a different positive image, or set source=augmented for a two-view pair"))
            continue
        if source == AUGMENTED and a != p:
            problems.append(PairProblem(lineno, "source=augmented but anchor and positive are different images", "set positive equal to anchor, or give the row a semantic source such as curated"))
            continue
        key = (min(a, p), max(a, p), source)
        if key in seen:
            problems.append(PairProblem(lineno, f"duplicate of the pair on line {seen[key]}", "remove one of the two rows"))
            continue
        seen[key] = lineno
        if store.labels is not None:
            problems.extend(_class_problems(lineno, a, p, label, source, store))
        anchors.append(a)
        positives.append(p)
        labels.append(label)
        scores.append(score)
        sources.append(source)
    if not rows:
        problems.append(PairProblem(0, "the file has a header but no pairs", "add at least one pair row"))
    pairs = PairSet(
        anchor=np.asarray(anchors, np.int64),
        positive=np.asarray(positives, np.int64),
        label=np.asarray(labels, np.int64),
        score=np.asarray(scores, np.float64),
        source=np.asarray(sources, dtype=object),
        meta={**meta, "file": str(path)},
    )
    return pairs, problems


def load_pairs(path: str | Path, store: ImageStore, default_source: str = "curated") -> PairSet:
    """Load a pair file; any problem raises PairFileError naming every bad row and its fix."""
    pairs, problems = check_pairs(path, store, default_source)
    if problems:
        raise PairFileError(Path(path), problems)
    return pairs
