"""Writing a figure: the PNG and, beside it, the numbers it draws."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from sempairs.atomic import atomic_open
from sempairs.csvio import write_rows


def save_plot(fig: Figure, table: list[dict], out_dir: Path, name: str) -> Path:
    """Write ``<name>.png`` and ``<name>.csv`` (the numbers drawn) to ``out_dir``; return the PNG's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_rows(out_dir / f"{name}.csv", table)
    png = out_dir / f"{name}.png"
    with atomic_open(png, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    return png
