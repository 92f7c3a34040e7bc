"""The ``pair_precision`` axis: the share of same-class pairs among the pairs from the labels (``pairs.precision``;
the rest cross-class, seeded). ``ap`` cells keep their matched anchors, so their pairs do not change with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sempairs.config import ConfigError
from sempairs.experiments.axes.base import AXES

PAIR_PRECISION_AXIS = "pair_precision"


def pair_precision_settings(value: str, run_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """``pairs.precision`` for a ``pair_precision`` axis value (a share from 0 to 1; no files to generate)."""
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"pair_precision axis value {value!r}: give a share of same-class pairs from 0 to 1, e.g. 0.8")
    return {"pairs.precision": share}, {}


AXES.register(PAIR_PRECISION_AXIS, pair_precision_settings)
