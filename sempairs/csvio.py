"""CSV tables written atomically (see :mod:`sempairs.atomic`): a reader never sees half a file."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sempairs.atomic import atomic_open


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``path`` (UTF-8) atomically; columns in first-seen order; return ``path``."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
