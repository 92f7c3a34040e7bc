"""The pair file format, both ways: writing pairs to a file, and reading a file back into raw rows.

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
save (UTF-8 with a byte-order mark, UTF-16 with one, Windows-1252 / Latin-1). Text cells that a
spreadsheet would run as a formula are written with a leading ``'`` and read back without it
(:func:`sempairs.csvio.escape_cell`), so every id and class name reads back as written.

What the cells mean for a dataset (ids, classes, scores) is checked by :mod:`sempairs.pairs.check`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sempairs.atomic import atomic_open
from sempairs.csvio import escape_cell, unescape_cell
from sempairs.data.store import ImageStore
from sempairs.errors import SempairsError

FORMAT_TAG = "# sempairs-pairs v1"
COLUMNS = ("anchor", "positive", "label", "score", "source")
REQUIRED = ("anchor", "positive")


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


@dataclass(frozen=True)
class RawPairFile:
    """A pair file as text: provenance (``#`` JSON lines, plus ``encoding`` when not UTF-8), header, data rows.

    ``rows`` holds (file line number, cells as written) of each non-blank row after the header.
    """

    meta: dict
    header: list[str]
    rows: list[tuple[int, list[str]]]


def data_identity(store: ImageStore) -> dict:
    """What a pair file records of the dataset split it indexes: split, class names, number of images."""
    return {"split": store.split, "classes": list(store.class_names), "images": len(store)}


def write_pair_file(path: str | Path, pairs: Iterable[tuple], meta: dict, ids: list[str] | None = None,
                    class_names: list[str] | None = None, store: ImageStore | None = None) -> Path:
    """Write ``pairs`` ((anchor, positive, label, score, source) each) in the format above, atomically.

    ``ids`` maps indices to image ids, ``class_names`` labels to names; a label < 0 and a NaN score are
    written empty. With ``store`` (the dataset split the indices point into) its ids and class names are
    used, and its identity is recorded as ``data`` in the provenance line, so that reading the file
    against another dataset is refused (:func:`sempairs.pairs.check_pairs`).
    """
    path = Path(path)
    if store is not None:
        ids, class_names = store.ids, store.class_names
        meta = {**meta, "data": data_identity(store)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", newline="") as fh:
        fh.write(FORMAT_TAG + "\n")
        fh.write("# " + json.dumps(meta, sort_keys=True) + "\n")
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for a, p, lab, sc, src in pairs:
            writer.writerow([escape_cell(cell) for cell in (
                ids[a] if ids is not None else int(a),
                ids[p] if ids is not None else int(p),
                "" if lab < 0 else (class_names[lab] if class_names else int(lab)),
                "" if np.isnan(sc) else repr(float(sc)),
                src,
            )])
    return path


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


def _provenance(path: Path, lineno: int, line: str) -> dict:
    """The JSON object of a ``#`` line that starts with ``{`` or ``[`` (provenance); other ``#`` lines are comments: {}."""
    comment = line[1:].strip()
    if not comment.startswith(("{", "[")):
        return {}
    try:
        meta = json.loads(comment)
    except json.JSONDecodeError as exc:
        meta = exc.msg
    if isinstance(meta, dict):
        return meta
    raise PairFileError(path, [PairProblem(lineno, f"the provenance line is not a JSON object ({meta})",
                                           "repair the JSON, or delete the line (a comment must not start with '{' or '[')")])


def _header(path: Path, lineno: int, cells: list[str]) -> list[str]:
    """The column names of the header row; a name given twice is an error."""
    header = [c.strip() for c in cells]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise PairFileError(path, [PairProblem(lineno, f"column(s) {repeated} appear more than once in the header",
                                               "name each column once")])
    return header


def read_pair_file(path: str | Path) -> RawPairFile:
    """Read ``path`` into provenance, header and numbered rows; raises PairFileError when it is no readable text.

    ``#`` lines before the header are provenance when they start with ``{`` or ``[`` (which must then
    be a JSON object), else comments (the :data:`FORMAT_TAG` line among them); blank rows are skipped.
    Cells are kept as written, the spreadsheet escaping of :func:`sempairs.csvio.escape_cell` undone;
    line numbers are those of the file, also after cells that span lines. A repeated column name is
    an error; an empty header is returned as is: what a header must name is checked by the reader of the rows.
    """
    path = Path(path)
    if not path.exists():
        raise PairFileError(path, [PairProblem(0, f"{path} does not exist", "give the path of a pair CSV file")])
    if path.is_dir():
        raise PairFileError(path, [PairProblem(0, f"{path} is a folder", "give the path of a pair CSV file")])
    text, encoding = _decode(path)
    meta: dict = {} if encoding in ("utf-8", "utf-8-sig") else {"encoding": encoding}
    stream = io.StringIO(text, newline="")
    lineno = 0
    while True:  # the comment and provenance lines before the header
        start = stream.tell()
        line = stream.readline()
        if not line.startswith("#") and line.strip():
            stream.seek(start)
            break
        if not line:
            break
        lineno += 1
        if line.startswith("#"):
            meta.update(_provenance(path, lineno, line))
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(stream)
    first = lineno + 1  # the file line the next record starts on
    for cells in reader:
        at, first = first, lineno + reader.line_num + 1
        if not cells or not "".join(cells).strip():
            continue
        if not header:
            header = _header(path, at, cells)
            continue
        rows.append((at, [unescape_cell(c) for c in cells]))
    return RawPairFile(meta, header, rows)
