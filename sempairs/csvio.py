"""CSV tables written atomically (see :mod:`sempairs.atomic`): a reader never sees half a file.

Text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return) are written with a leading ``'`` (the OWASP rule against CSV injection), unless
the text is a plain number (``-0.5`` stays ``-0.5``); so is a text that starts with ``'`` followed by
such a text, so that :func:`unescape_cell` turns every written cell back into exactly the text given.
Numbers (int, float) are never escaped.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sempairs.atomic import atomic_open

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _needs_escape(text: str) -> bool:
    """Whether ``text`` is written with a leading ``'``: a formula-like text, or ``'`` before one."""
    if text.startswith(FORMULA_STARTS):
        return not _is_number(text)
    return text.startswith("'") and _needs_escape(text[1:])


def escape_cell(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet shows as text (see the module docstring); non-text values unchanged."""
    return "'" + value if isinstance(value, str) and _needs_escape(value) else value


def unescape_cell(text: str) -> str:
    """The text :func:`escape_cell` was given for the cell ``text`` (the inverse; other texts unchanged)."""
    return text[1:] if text.startswith("'") and _needs_escape(text[1:]) else text


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``path`` (UTF-8) atomically; columns in first-seen order; text cells escaped; return ``path``."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows({key: escape_cell(value) for key, value in row.items()} for row in rows)
    return Path(path)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV written by :func:`write_rows`, each cell's text as it was given (escaping undone)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{key: unescape_cell(value) for key, value in row.items()} for row in csv.DictReader(f)]
