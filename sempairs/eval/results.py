"""Where an evaluation's results live: ``<run_dir>/eval/<protocol>.json``, one file per protocol and checkpoint.

The training loop's final kNN and ``sempairs eval knn`` write the same file, ``eval/knn.json``.
Runs made before 2026-12 kept their kNN result as ``knn.yaml`` (training) or ``knn.json`` (the
eval command) beside the checkpoint: :func:`read_result` still reads those, with a deprecation
warning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import yaml

from sempairs.atomic import write_text
from sempairs.errors import SempairsWarning
from sempairs.trained.checkpoint import LAST

OLD_KNN_FILES = ("knn.yaml", "knn.json")


def result_path(checkpoint: str | Path, protocol: str) -> Path:
    """Where ``protocol``'s results on the checkpoint file ``checkpoint`` go: ``eval/<protocol>.json`` beside it
    (``eval/<checkpoint stem>-<protocol>.json`` for a checkpoint other than ``last.ckpt``)."""
    checkpoint = Path(checkpoint)
    name = protocol if checkpoint.name == LAST else f"{checkpoint.stem}-{protocol}"
    return checkpoint.parent / "eval" / f"{name}.json"


def write_result(path: str | Path, result: dict) -> Path:
    """Write ``result`` as JSON to ``path`` atomically (its folder is made); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(result, indent=2))


def read_result(run_dir: str | Path, protocol: str) -> dict | None:
    """The results of ``protocol`` on the run's ``last.ckpt`` (None when there are none)."""
    run_dir = Path(run_dir)
    path = result_path(run_dir / LAST, protocol)
    if path.exists():
        return json.loads(path.read_text())
    for old in OLD_KNN_FILES if protocol == "knn" else ():
        if (run_dir / old).exists():
            warnings.warn(f"{run_dir / old}: kNN results are now kept in {path}; this older file is still read. "
                          "Fix: evaluate again (sempairs eval knn) or rename it", SempairsWarning, stacklevel=2)
            return yaml.safe_load((run_dir / old).read_text())  # YAML reads both the YAML and the JSON file
    return None
