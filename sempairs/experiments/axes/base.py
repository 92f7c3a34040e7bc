"""What a named grid axis is (:data:`Axis`), and ``AXES``, where each module of this package registers one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sempairs.registry import Registry

Axis = Callable[[str, Path], tuple[dict[str, Any], dict[str, Path]]]
"""``axis(value, run_dir) -> (overrides, generated)``: for one value of the axis (as it appears in cell ids),
the cell's config overrides (dotted key -> value) and the files the grid generates for it before training,
by kind: ``sp`` (pairs from the labels) and ``mined`` (pairs mined with the ``ap`` cell's checkpoint), each
a path in the cell's ``run_dir`` (see :mod:`sempairs.experiments.generated`)."""

AXES: Registry[Axis] = Registry("grid axis", "sempairs.experiments.axes")
"""Every named grid axis by name: each module of ``sempairs.experiments.axes`` registers its own."""
