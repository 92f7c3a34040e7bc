"""Where an evaluation's results live: ``<run_dir>/eval/<protocol>[-<key>].json``, one file per protocol, selection
and checkpoint.

A kNN result's name carries the key of its selection and settings (:attr:`sempairs.eval.protocol.Selection.key`),
so the training loop's final kNN (the run's own selection and ``knn`` settings) and ``sempairs eval knn``
with other settings write two files, and neither overwrites the other. Runs made before 2026-12 kept one
``eval/knn.json`` (written by both), and before that ``knn.yaml`` (training) or ``knn.json`` (the eval
command) beside the checkpoint: :func:`read_result` still reads those, with a deprecation warning.
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


def result_path(checkpoint: str | Path, protocol: str, key: str | None = None) -> Path:
    """Where ``protocol``'s results (on the selection with ``key``, if the protocol has one) on the checkpoint file
    ``checkpoint`` go: ``eval/<protocol>-<key>.json`` beside it (prefixed ``<checkpoint stem>-`` for a checkpoint
    other than ``last.ckpt``)."""
    checkpoint = Path(checkpoint)
    name = protocol if key is None else f"{protocol}-{key}"
    name = name if checkpoint.name == LAST else f"{checkpoint.stem}-{name}"
    return checkpoint.parent / "eval" / f"{name}.json"


def write_result(path: str | Path, result: dict) -> Path:
    """Write ``result`` as JSON to ``path`` atomically (its folder is made); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(result, indent=2))


def read_result(run_dir: str | Path, protocol: str, key: str | None = None) -> dict | None:
    """The results of ``protocol`` (on the selection with ``key``) on the run's ``last.ckpt`` (None when there are none).

    A keyed result of a run made before keys were used is read from its older file, with a warning.
    """
    run_dir = Path(run_dir)
    path = result_path(run_dir / LAST, protocol, key)
    if path.exists():
        return json.loads(path.read_text())
    older = [result_path(run_dir / LAST, protocol)] if key is not None else []
    older += [run_dir / old for old in OLD_KNN_FILES] if protocol == "knn" else []
    for old in older:
        if old.exists():
            warnings.warn(f"{old}: {protocol} results are now kept in {path}, named by their selection and settings; "
                          "this older file is still read (it records no selection). Fix: evaluate again "
                          f"(sempairs eval {protocol})", SempairsWarning, stacklevel=2)
            return yaml.safe_load(old.read_text())  # YAML reads both the YAML and the JSON files
    return None
