"""The ``transforms`` axis: an augmentation preset of :data:`sempairs.augment.pipeline.PRESETS` (``simclr``,
``no_grayscale``, ``crop_only``, ...) applied over the base's ``augment`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sempairs.augment.pipeline import PRESETS
from sempairs.config import ConfigError
from sempairs.experiments.axes.base import AXES

TRANSFORMS_AXIS = "transforms"


def transform_settings(value: str, run_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Augment settings of a ``transforms`` axis value: the preset's changes over the base (no files to generate)."""
    if value not in PRESETS:
        raise ConfigError(f"transforms axis value {value!r}: unknown preset; valid: {', '.join(sorted(PRESETS))}")
    return {f"augment.{key}": v for key, v in PRESETS[value].items()}, {}


AXES.register(TRANSFORMS_AXIS, transform_settings)
