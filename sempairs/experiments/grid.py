"""Grids of pretraining runs: axes of config values, one run per cell, one results row per cell.

An experiment YAML names a ``base`` run config (a mapping, or a path to a run YAML relative to
the experiment file) and ``axes``; the cartesian product of the axes' values gives the cells.
An axis is a dotted config key (``method.name: [simclr, byol]``, ``train.seed: [0, 1, 2]``), a
section whose values set several of its keys together (``backbone: [{width: 1}, {width: 0.25,
small_stem: true}]``), or a named axis of :mod:`sempairs.experiments.axes` (one module each):
``pairs`` (the pair set: ``ap``, ``sp``, ``ap+sp``, ``curated:<file>``, ``ap+mined``, ...; see
:mod:`sempairs.experiments.axes.pairs`) and ``transforms`` (an augmentation preset).

``skip`` lists partial cells left out of the product: ``{transforms: crop_only, pairs: ap+sp}``
drops every cell with those two values.

Everything lives in ``<out_dir>/<name>/``: ``runs/<cell>/`` (each cell's run), ``results.csv``,
``report.md`` and ``plots/``; each run's ``history.csv`` holds its metrics per epoch. ``run_grid`` trains the cells one after the other, resumes a
half-trained cell from its checkpoint, skips cells whose results row exists, and rewrites
``results.csv`` atomically after each cell, so a killed grid continues where it stopped.

A cell's identity is its id (the axis values) and its ``config_hash``: a hash of the fully
resolved run config and of the contents of the pair files it reads (:func:`cell_hash`). A
results row counts only for the cell with the same hash, so a rerun after the ``base`` (or a
pair file) changed never reuses a finished cell under the new settings; a changed cell whose
checkpoint cannot be resumed with the new config is refused before any cell is trained.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only
from pydantic import ValidationError, field_validator, model_validator

from sempairs.atomic import write_text
from sempairs.config import ConfigError, RunConfig, _describe, load_config, plain_name, read_yaml_mapping
from sempairs.csvio import write_rows
from sempairs.experiments.axes import AXES
from sempairs.experiments.axes.pairs import PAIRS_AXIS
from sempairs.experiments.embedding_maps import MAP_METHODS, require_method
from sempairs.experiments.evaluations import EVALUATORS
from sempairs.experiments.generated import ADDED_SP_FILE, MINED_FILE, MiningSettings, mined_columns, write_added_sp, write_mined
from sempairs.train import TrainingStopped, train
from sempairs.trained.checkpoint import LAST
from sempairs.train.loop import resolve_precision, uses_cuda
from sempairs.train.rundir import ResumeRefused, RunExists, check_resume
from sempairs.strict import Strict

SECTIONS = ("data", "backbone", "method", "augment", "optim", "train", "knn")  # axes whose values set several keys
RESULTS = "results.csv"
# Columns of every results row, in order: cell, the axes, RUN_COLUMNS, the metrics, COST_COLUMNS, other values.
RUN_COLUMNS = ("epochs", "num_pairs")
COST_COLUMNS = ("final_loss", "images_per_s", "seconds", "device", "precision", "run_dir", "error", "warning", "config_hash")


# ----------------------------------------------------------------------------- config


class ExperimentConfig(Strict):
    """A grid of runs: ``base`` run config x ``axes``, evaluated by ``evaluations``.

    ``seed_axis`` is the axis that repeats a setting (reports average over it). ``embedding``
    lists the cells whose test features get a 2-D map (None: the first cell of each ``pairs``
    value, or the first cell; ``[]``: no map), drawn by ``embedding_method``: ``tsne`` (openTSNE) or
    ``umap`` (umap-learn, the ``umap`` extra). ``skip``: partial cells (axis -> value) left out.
    ``mining``: how ``+mined`` cells mine their pairs.
    """


    name: str
    out_dir: str = "experiments"
    base: dict[str, Any] | str = {}
    axes: dict[str, list[Any]]
    seed_axis: str = "train.seed"
    evaluations: list[str] = ["knn"]
    embedding: list[str] | None = None
    embedding_method: Literal[MAP_METHODS] = "tsne"
    skip: list[dict[str, Any]] = []
    mining: MiningSettings = MiningSettings()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return plain_name(value)

    @field_validator("axes")
    @classmethod
    def _axes_well_formed(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not axes:
            raise ValueError("give at least one axis, e.g. pairs: [ap, sp]")
        for name, values in axes.items():
            if name not in AXES and name not in SECTIONS and "." not in name:
                raise ValueError(f"axis {name!r} is neither a dotted config key (e.g. train.seed), a section "
                                 f"({', '.join(SECTIONS)}) nor {' / '.join(sorted(AXES))}")
            if name in SECTIONS and not all(isinstance(v, dict) and v for v in values):
                raise ValueError(f"axis {name!r}: each value is a mapping of {name} keys, e.g. {{width: 0.25}}")
            if name.split(".")[0] in ("name", "out_dir"):
                raise ValueError(f"axis {name!r}: the grid names the runs and places them itself")
            if not values:
                raise ValueError(f"axis {name!r} has no values")
            shown = [format_value(v) for v in values]
            if len(set(shown)) != len(shown):
                raise ValueError(f"axis {name!r} repeats a value: {shown}")
        return axes

    @model_validator(mode="after")
    def _skips_name_axes(self):
        for rule in self.skip:
            unknown = sorted(set(rule) - set(self.axes))
            if not rule or unknown:
                raise ValueError(f"skip rule {rule} must name axes of the grid ({', '.join(self.axes)}); unknown: {unknown}")
        return self

    @field_validator("embedding_method")
    @classmethod
    def _map_package_installed(cls, method: str) -> str:
        return require_method(method)  # before any training: a missing umap-learn fails here, not at the plots

    @field_validator("evaluations")
    @classmethod
    def _known_evaluations(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in EVALUATORS]
        if unknown:
            raise ValueError(f"unknown evaluation(s) {unknown}; registered: {sorted(EVALUATORS)}")
        return names

    @property
    def directory(self) -> Path:
        """``<out_dir>/<name>``: runs, results, report and plots of this experiment."""
        return Path(self.out_dir) / self.name

    @property
    def results_path(self) -> Path:
        return self.directory / RESULTS

    @property
    def group_axes(self) -> list[str]:
        """The axes a result is grouped by: all but the seed axis."""
        return [a for a in self.axes if a != self.seed_axis]

    def metrics(self) -> dict[str, str]:
        """Metric column -> label, over all evaluations, in order."""
        return {col: label for name in self.evaluations for col, label in EVALUATORS[name].metrics.items()}


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML; a relative ``base`` path is relative to the file's folder."""
    path = Path(path)
    tree = read_yaml_mapping(path, "experiment", "name, base, axes")
    if isinstance(tree.get("base"), str) and not Path(tree["base"]).is_absolute():
        tree["base"] = str(path.parent / tree["base"])
    try:
        exp = ExperimentConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_describe(err, str(path))) from None
    expand(exp)  # every cell must be a valid run config
    return exp


# ----------------------------------------------------------------------------- cells


def format_value(value: Any) -> str:
    """How an axis value appears in cell ids and results columns (strings as they are, the rest as compact JSON)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def cell_dirname(cell_id: str) -> str:
    """A directory name for ``cell_id``: itself when safe, else sanitised plus a hash of the id (so still distinct)."""
    safe = re.sub(r"[^A-Za-z0-9._,=+-]", "_", cell_id)
    if safe == cell_id and len(safe) <= 150:
        return safe
    return f"{safe[:150]}-{hashlib.sha1(cell_id.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its axis values, stable id, validated config, and the pair files it must generate:
    ``added_sp`` (``+sp``), ``mined`` (``+mined``, with the checkpoint of the cell ``encoder``)."""

    id: str
    values: dict[str, str]
    config: RunConfig
    added_sp: Path | None = None
    mined: Path | None = None
    encoder: "Cell | None" = None

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir


def _override(key: str, value: Any) -> str:
    """A ``key=value`` override whose value YAML reads back exactly."""
    return f"{key}={yaml.safe_dump(value, default_flow_style=True, width=math.inf)}"


def expand(exp: ExperimentConfig) -> list[Cell]:
    """The cells of the grid, in the order of the axes' cartesian product, each with a validated RunConfig."""
    base_path = exp.base if isinstance(exp.base, str) else None
    base_tree = exp.base if isinstance(exp.base, dict) else None
    runs = exp.directory / "runs"
    cells = []
    for combo in itertools.product(*exp.axes.values()):
        values = {axis: format_value(v) for axis, v in zip(exp.axes, combo)}
        cell_id = ",".join(f"{axis}={v}" for axis, v in values.items())
        run_dir = runs / cell_dirname(cell_id)
        if any(all(values[a] == format_value(v) for a, v in rule.items()) for rule in exp.skip):
            continue
        settings: dict[str, Any] = {}
        generated: dict[str, Path] = {}
        for axis, raw in zip(exp.axes, combo):
            if axis in AXES:
                these, files = AXES[axis](values[axis], run_dir)
                generated.update(files)
            elif axis in SECTIONS:
                these = {f"{axis}.{key}": v for key, v in raw.items()}
            else:
                these = {axis: raw}
            clash = sorted(set(these) & set(settings))
            if clash:
                raise ConfigError(f"cell {cell_id}: axis {axis!r} sets {clash}, which another axis sets too")
            settings.update(these)
        overrides = [_override(k, v) for k, v in {**settings, "out_dir": str(runs), "name": run_dir.name}.items()]
        try:
            cfg = load_config(base_path, overrides, base_tree)
        except ConfigError as exc:
            raise ConfigError(f"cell {cell_id}: {exc}") from None
        for name in exp.evaluations:
            requires = EVALUATORS[name].requires
            problem = requires(cfg) if requires is not None else None
            if problem:
                raise ConfigError(f"cell {cell_id}: evaluation {name!r} cannot run: {problem}")
        cells.append(Cell(cell_id, values, cfg, generated.get("sp"), generated.get("mined")))
    cells = [_with_encoder(cell, cells) if cell.mined else cell for cell in cells]
    unknown = sorted(set(exp.embedding or ()) - {c.id for c in cells})
    if unknown:
        raise ConfigError(f"embedding names cells not in the grid: {unknown}; cell ids look like {cells[0].id}")
    return cells


def _with_encoder(cell: Cell, cells: list[Cell]) -> Cell:
    """``cell`` (an ``ap+mined`` cell) linked to the ``ap`` cell with the same other values, whose checkpoint mines."""
    wanted = {**cell.values, PAIRS_AXIS: "ap"}
    encoder = next((c for c in cells if c.values == wanted), None)
    if encoder is None:
        raise ConfigError(f"cell {cell.id}: ap+mined mines with the checkpoint of the cell "
                          f"{','.join(f'{a}={v}' for a, v in wanted.items())}, which the grid lacks: add ap to the "
                          "pairs axis (and do not skip it)")
    return replace(cell, encoder=encoder)


# ----------------------------------------------------------------------------- results


def read_results(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a results CSV by cell id (empty if there is none yet)."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["cell"]: row for row in csv.DictReader(f)}


def cell_hash(cell: Cell, mining: MiningSettings | None = None) -> str:
    """The identity of what a cell computes: a hash of its resolved run config (but where the
    experiment folder lies) and of the contents of the pair files it reads; a file the grid
    generates counts by what generates it (the SP file: the config; the mined file: the encoder
    cell's identity and the ``mining`` settings)."""
    tree = cell.config.model_dump(mode="json", exclude={"out_dir"})
    generated = {str(path): name for path, name in ((cell.added_sp, ADDED_SP_FILE), (cell.mined, MINED_FILE)) if path}
    tree["pairs"]["add_files"] = [generated.get(f, f) for f in tree["pairs"]["add_files"]]
    files = [f for f in [tree["pairs"]["file"], *tree["pairs"]["add_files"]] if f and f not in generated.values()]
    contents = {f: hashlib.sha256(Path(f).read_bytes()).hexdigest() if Path(f).is_file() else None for f in files}
    if cell.encoder is not None:
        contents[MINED_FILE] = [cell_hash(cell.encoder), (mining or MiningSettings()).model_dump()]
    return hashlib.sha256(json.dumps([tree, contents], sort_keys=True).encode()).hexdigest()[:16]


def grid_rows(exp: ExperimentConfig, cells: Sequence[Cell] | None = None) -> list[dict[str, str]]:
    """The results rows of the grid's cells, in grid order: rows of cells no longer in the grid, and
    rows computed with other settings (another ``config_hash``), left out."""
    rows = read_results(exp.results_path)
    return [rows[c.id] for c in (cells if cells is not None else expand(exp))
            if c.id in rows and rows[c.id].get("config_hash") == cell_hash(c, exp.mining)]


def is_done(row: dict[str, str] | None, cell: Cell, metrics: Sequence[str], mining: MiningSettings | None = None) -> bool:
    """A row of the same cell (same ``config_hash``) counts as done when training stopped for good, or it
    has every metric at the configured epochs."""
    if row is None or row.get("config_hash") != cell_hash(cell, mining):
        return False
    if row.get("error"):
        return True
    return row.get("epochs") == str(cell.config.train.epochs) and all(row.get(m) not in (None, "") for m in metrics)


def _writes_files() -> bool:
    """Whether this process writes the grid's files: always, except on ranks other than 0 of a torchrun/SLURM job."""
    return rank_zero_only.rank == 0


def _device_name(cfg: RunConfig) -> str:
    if uses_cuda(cfg):
        return torch.cuda.get_device_name(0)
    return "cpu" if cfg.train.accelerator == "auto" else cfg.train.accelerator


def run_cell(exp: ExperimentConfig, cell: Cell, callbacks: Sequence[Callable[[int, dict], None]] = (), progress: bool = True) -> dict[str, str]:
    """Train (or resume) one cell, evaluate it, and return its results row (as text, as results.csv holds it).

    A run stopped by :class:`TrainingStopped` (NaN loss, collapse) gives a row with ``error`` set.
    """
    cfg = cell.config
    row: dict[str, Any] = dict.fromkeys(["cell", *exp.axes, *RUN_COLUMNS, *exp.metrics(), *COST_COLUMNS], "")
    row.update({"cell": cell.id, **cell.values, "device": _device_name(cfg), "precision": resolve_precision(cfg),
                "run_dir": str(cell.run_dir), "config_hash": cell_hash(cell, exp.mining)})
    if _writes_files():  # the other ranks read these files after rank 0 loaded the run's data
        if cell.added_sp is not None and not cell.added_sp.exists():
            write_added_sp(cfg, cell.added_sp)
        if cell.mined is not None and not cell.mined.exists():
            write_mined(cfg, cell.mined, cell.encoder.run_dir, exp.mining)
    if cell.mined is not None:
        row.update(mined_columns(cfg, cell.mined))
    try:
        result = train(cfg, resume=(cell.run_dir / LAST).exists(), callbacks=callbacks, progress=progress)
    except TrainingStopped as exc:
        row["error"] = str(exc)
        return {k: str(v) for k, v in row.items()}
    history = result.history
    seconds = sum(h["seconds"] for h in history)
    row.update({"epochs": history[-1]["epoch"], "num_pairs": result.pairs, "final_loss": history[-1]["loss"],
                "warning": history[-1].get("warning", ""),
                "images_per_s": sum(h["images_per_s"] * h["seconds"] for h in history) / seconds, "seconds": seconds})
    for name in exp.evaluations:
        row.update(EVALUATORS[name].fn(result, cfg))
    return {k: str(v) for k, v in row.items()}


def run_grid(
    exp: ExperimentConfig,
    resume: bool = True,
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, str]]:
    """Train and evaluate every cell not yet done, one after the other; return the grid's results rows.

    ``results.csv`` is rewritten after each cell. Without ``resume`` an experiment folder that
    already holds results or checkpoints is refused (nothing is deleted). ``callbacks`` go to
    :func:`sempairs.train.train` (called after every epoch of every cell). Under torchrun/SLURM
    every rank runs the grid (each cell's training is distributed) and rank 0 writes the files.
    """
    cells = expand(exp)
    if not resume:
        earlier = [p for p in (exp.results_path, *(c.run_dir / LAST for c in cells)) if p.exists()]
        if earlier:
            raise RunExists(f"{exp.directory} already holds results or checkpoints ({earlier[0]}): resume it, "
                                  "or delete the folder / choose another experiment name")
    for cell in cells:  # every cell that will resume must be resumable, before any cell is trained
        if (cell.run_dir / LAST).exists():
            try:
                check_resume(cell.config)
            except ResumeRefused as exc:
                raise ResumeRefused(f"cell {cell.id}: {exc}. For a grid: restore the experiment's settings, or give "
                                    "it a new name") from None
    if _writes_files():
        exp.directory.mkdir(parents=True, exist_ok=True)
        write_text(exp.directory / "experiment.yaml", yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
    rows = read_results(exp.results_path)
    metrics = list(exp.metrics())
    order = sorted(range(len(cells)), key=lambda k: cells[k].encoder is not None)  # encoders train before their miners
    for i, cell in ((k + 1, cells[k]) for k in order):
        if is_done(rows.get(cell.id), cell, metrics, exp.mining):
            log(f"[{i}/{len(cells)}] {cell.id}: done, skipped")
            continue
        log(f"[{i}/{len(cells)}] {cell.id} -> {cell.run_dir}")
        rows[cell.id] = run_cell(exp, cell, callbacks, progress)
        if rows[cell.id]["error"]:
            log(f"[{i}/{len(cells)}] {cell.id} stopped: {rows[cell.id]['error']}")
        order = [c.id for c in cells if c.id in rows] + [k for k in rows if k not in {c.id for c in cells}]
        if _writes_files():
            write_rows(exp.results_path, [rows[k] for k in order])
    return [rows[c.id] for c in cells if c.id in rows]
