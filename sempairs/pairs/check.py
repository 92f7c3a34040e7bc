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
    try:
        meta, header, rows = _read_file(path, store)
    except PairFileError as exc:
        return None, exc.problems
    problems: list[PairProblem] = []
    parsed: list[_Row] = []
    seen: dict[tuple, int] = {}
    for lineno, cells in rows:
        row, row_problems = _parse_row(lineno, header, cells, store, default_source)
        problems += row_problems
        if row is not None:
            pair_problem = _pair_problem(row, seen, store)
            if pair_problem is None:
                parsed.append(row)
                problems += _class_problems(lineno, row.anchor, row.positive, row.label, row.source, store) if store.labels is not None else []
            else:
                problems.append(pair_problem)
    if not rows:
        problems.append(PairProblem(0, "the file has a header but no pairs", "add at least one pair row"))
    return _pair_set(parsed, {**meta, "file": str(path)}), problems


@dataclass(frozen=True)
class _Row:
    """One parsed row of a pair file: image indices, label (-1: none), score (NaN: none), source, its line."""

    line: int
    anchor: int
    positive: int
    label: int
    score: float
    source: str


def _read_file(path: Path, store: ImageStore) -> tuple[dict, list[str], list[tuple[int, list[str]]]]:
    """Metadata, header and rows of a pair file meant for ``store``; PairFileError with the file-level problems."""
    if not path.exists():
        raise PairFileError(path, [PairProblem(0, f"{path} does not exist", "give the path of a pair CSV file")])
    if path.is_dir():
        raise PairFileError(path, [PairProblem(0, f"{path} is a folder", "give the path of a pair CSV file")])
    meta, header, rows = _read_rows(path)
    identity = _identity_problem(meta, store)
    if identity is not None:
        raise PairFileError(path, [identity])
    if not header:
        raise PairFileError(path, [PairProblem(0, "the file has no header row", f"start the file with the header: {','.join(COLUMNS)}")])
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    problems = [PairProblem(1, f"missing column(s) {missing}", f"the header must name at least {','.join(REQUIRED)}")] if missing else []
    if unknown:
        problems.append(PairProblem(1, f"unknown column(s) {unknown}", f"allowed columns are {','.join(COLUMNS)}"))
    if problems:
        raise PairFileError(path, problems)
    return meta, header, rows


def _parse_row(lineno: int, header: list[str], cells: list[str], store: ImageStore,
               default_source: str) -> tuple[_Row | None, list[PairProblem]]:
    """The row's values and the problems of its cells (the row is None when any cell is unusable)."""
    if len(cells) != len(header):
        return None, [PairProblem(lineno, f"{len(cells)} cells for {len(header)} columns",
                                  "one value per column; leave optional values empty")]
    cell = {name: cells[header.index(name)] for name in header}
    problems: list[PairProblem] = []
    idx = {}
    for role in REQUIRED:
        idx[role], err = _resolve(cell.get(role, ""), store)
        if err:
            problems.append(PairProblem(lineno, f"{role}: {err}", f"use an image id listed for {store.source} (e.g. '{store.ids[0]}') or an index 0..{len(store) - 1}"))
    label, label_problem = _label(lineno, cell.get("label", ""), store)
    score, score_problem = _score(lineno, cell.get("score", ""))
    problems += [p for p in (label_problem, score_problem) if p is not None]
    if problems:
        return None, problems
    return _Row(lineno, idx["anchor"], idx["positive"], label, score, cell.get("source") or default_source), []


def _label(lineno: int, text: str, store: ImageStore) -> tuple[int, PairProblem | None]:
    """The class index a label cell names (a class name or index; -1 when empty)."""
    if not text:
        return -1, None
    if text in store.class_names:
        return store.class_names.index(text), None
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(store.class_names):
        return int(text), None
    return -1, PairProblem(lineno, f"label '{text}' is not a class of the dataset", f"use one of {store.class_names[:10]} or leave it empty")


def _score(lineno: int, text: str) -> tuple[float, PairProblem | None]:
    """The finite number a score cell holds (NaN when empty)."""
    if not text:
        return float("nan"), None
    try:
        score = float(text)
        what = "" if math.isfinite(score) else "a finite number"
    except ValueError:
        score, what = float("nan"), "a number"
    if what:
        return score, PairProblem(lineno, f"score '{text}' is not {what}", "write a decimal number, or leave it empty for no score")
    return score, None


def _pair_problem(row: _Row, seen: dict[tuple, int], store: ImageStore) -> PairProblem | None:
    """What is wrong with the pair itself: one image as a semantic pair, two as an augmented one, a repeat."""
    a, p, source = row.anchor, row.positive, row.source
    if source != AUGMENTED and a == p:
        return PairProblem(row.line, f"semantic pair of one image with itself ({store.ids[a]})", "pick a different positive image, or set source=augmented for a two-view pair")
    if source == AUGMENTED and a != p:
        return PairProblem(row.line, "source=augmented but anchor and positive are different images", "set positive equal to anchor, or give the row a semantic source such as curated")
    key = (min(a, p), max(a, p), source)
    if key in seen:
        return PairProblem(row.line, f"duplicate of the pair on line {seen[key]}", "remove one of the two rows")
    seen[key] = row.line
    return None


def _pair_set(rows: list[_Row], meta: dict) -> PairSet:
    """The PairSet of the usable rows."""
    return PairSet(
        anchor=np.asarray([r.anchor for r in rows], np.int64),
        positive=np.asarray([r.positive for r in rows], np.int64),
        label=np.asarray([r.label for r in rows], np.int64),
        score=np.asarray([r.score for r in rows], np.float64),
        source=np.asarray([r.source for r in rows], dtype=object),
        meta=meta,
    )


def load_pairs(path: str | Path, store: ImageStore, default_source: str = "curated") -> PairSet:
    """Load a pair file; any problem raises PairFileError naming every bad row and its fix."""
    pairs, problems = check_pairs(path, store, default_source)
    if problems:
        raise PairFileError(Path(path), problems)
    return pairs
