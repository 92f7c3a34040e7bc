"""The ``pairs`` axis: which pair set a cell trains on.

``ap`` (augmented pairs: the matched AP set when ``pairs.per_class`` is set), ``sp`` (semantic
pairs from the labels), ``curated:<file>`` / ``mined:<file>`` / ``reviewed:<file>`` (a pair file;
``sempairs review export`` writes reviewed ones), or a union of them joined by ``+`` whose first
term is the main set: ``ap+sp``, ``ap+mined:<file>`` (SePP-ID: mined pairs merged with the
dataset), or ``ap+mined``: SePP-ID within the grid, pairs mined with the checkpoint of the cell
whose ``pairs`` value is ``ap`` and whose other axis values are the same (trained first; the
``mining`` section says how, and the results row holds the mined pairs' precision;
:mod:`sempairs.experiments.generated`); ``ap+mined@0.8`` mines with the cosine threshold 0.8
instead of the ``mining`` section's. Paths are relative to the working directory, as in run configs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sempairs.config import ConfigError
from sempairs.experiments.axes.base import AXES
from sempairs.experiments.generated import ADDED_SP_FILE, MINED_FILE

PAIRS_AXIS = "pairs"
PAIR_TERMS = ("ap", "sp", "mined")
PAIR_FILE_KINDS = ("curated", "mined", "reviewed")


def split_pair_terms(value: str) -> list[str]:
    """The terms of a ``pairs`` axis value: ``ap+mined:a+b.csv`` -> ``["ap", "mined:a+b.csv"]``."""
    return re.split(r"\+(?=(?:ap|sp|curated:|reviewed:|mined))", value)


def mined_threshold(value: str) -> float | None:
    """The threshold of a ``mined@<t>`` term of a ``pairs`` axis value (None: none given); raises on a bad one."""
    for term in split_pair_terms(value):
        if term.startswith("mined@"):
            match = re.fullmatch(r"mined@(-?\d+(?:\.\d*)?)", term)
            if match is None or not -1.0 <= float(match[1]) <= 1.0:
                raise ConfigError(f"pairs axis value {value!r}: {term!r} needs a cosine threshold from -1 to 1, e.g. mined@0.8")
            return float(match[1])
    return None


def pairs_settings(value: str, run_dir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Pair settings of a ``pairs`` axis value (see the module doc), and the files to generate (``sp``, ``mined``)."""
    mined_threshold(value)  # refuses a bad mined@<t>; the threshold itself is the mining's (grid.cell_mining)
    terms = ["mined" if term.startswith("mined@") else term for term in split_pair_terms(value)]
    settings: dict[str, Any] = {"pairs.file": None}
    added: list[str] = []
    generated: dict[str, Path] = {}
    for i, term in enumerate(terms):
        kind, _, file = term.partition(":")
        if term not in PAIR_TERMS and not (kind in PAIR_FILE_KINDS and file):
            raise ConfigError(f"pairs axis value {value!r}: unknown term {term!r}; use ap, sp, mined, mined@<threshold>, curated:<file>, "
                              "mined:<file>, reviewed:<file>, joined by +")
        if terms.index(term) != i:
            raise ConfigError(f"pairs axis value {value!r} repeats {term!r}")
        if i == 0:
            if term == "mined":
                raise ConfigError(f"pairs axis value {value!r}: mined pairs are added to the augmented ones: ap+mined")
            settings["pairs.source"] = {"ap": "augmented", "sp": "labels"}.get(term, "file")
            if file:
                settings["pairs.file"] = file
        elif term == "ap":
            raise ConfigError(f"pairs axis value {value!r}: put ap first (ap+...), the augmented set is the main set")
        elif term in ("sp", "mined"):
            generated[term] = run_dir / (ADDED_SP_FILE if term == "sp" else MINED_FILE)
            added.append(str(generated[term]))
        else:
            added.append(file)
    if "mined" in generated and terms[0] != "ap":
        raise ConfigError(f"pairs axis value {value!r}: mined pairs come from the ap cell's checkpoint: use ap+mined")
    settings["pairs.add_files"] = added
    return settings, generated


AXES.register(PAIRS_AXIS, pairs_settings)
