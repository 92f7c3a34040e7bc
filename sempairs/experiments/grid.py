"""Grids of pretraining runs: axes of config values, one run per cell, one results row per cell.

An experiment YAML names a ``base`` run config (a mapping, or a path to a run YAML relative to
the experiment file) and ``axes``; the cartesian product of the axes' values gives the cells.
An axis is a dotted config key (``method.name: [simclr, byol]``, ``train.seed: [0, 1, 2]``), a
section whose values set several of its keys together (``backbone: [{width: 1}, {width: 0.25,
small_stem: true}]``), or a named axis of :mod:`sempairs.experiments.axes` (one module each):
``pairs`` (the pair set: ``ap``, ``sp``, ``ap+sp``, ``curated:<file>``, ``ap+mined``, ...; see
:mod:`sempairs.experiments.axes.pairs`) and ``transforms`` (an augmentation preset).

``arms`` names settings that vary together (e.g. a matched AP+SP arm with half the pairs per
class): ``arms: [{name: SP, pairs: sp}, {name: AP+SP, pairs: ap+sp, pairs.per_class: 500}]``;
each arm sets keys as an axis value would, and the arms are crossed with the axes. The arm's name
is the ``arm`` column of the results and the row label of reports; a cell's id holds the arm's
settings (not its name), so renaming an arm, or writing an axis-and-skip grid as arms, keeps its
cells. ``skip`` lists partial cells left out of the product: ``{transforms: crop_only, pairs: ap+sp}``
drops every cell with those two values (a rule may name ``arm`` or an arm's keys too).

Everything lives in ``<out_dir>/<name>/``: ``runs/<cell>/`` (each cell's run), ``results.csv``,
``report.md`` and ``plots/``; each run's ``history.csv`` holds its metrics per epoch. ``run_grid`` trains the cells one after the other, resumes a
half-trained cell from its checkpoint, skips cells whose results row exists, and rewrites
``results.csv`` atomically after each cell, so a killed grid continues where it stopped. A grid
holds the lock of its folder (:mod:`sempairs.runlock`) while it runs: a second grid of the same
name fails at once, naming the holder; each write merges the cell's row into the file as it is
then (never a copy read earlier), so no row written meanwhile is lost.

A cell's identity is its id (the axis values) and its ``config_hash``: a hash of the fully
resolved run config and of the contents of the pair files it reads (:func:`cell_hash`). A
results row counts only for the cell with the same hash, so a rerun after the ``base`` (or a
pair file) changed never reuses a finished cell under the new settings; a changed cell whose
checkpoint cannot be resumed with the new config is refused before any cell is trained.
"""

from __future__ import annotations

import hashlib
import itertools
import json
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
from sempairs.config import (ConfigError, Layer, RunConfig, _describe, load_layers, nested, plain_name, read_yaml_mapping,
                             recipe_overrides, sources)
from sempairs.csvio import read_rows, write_rows
from sempairs.experiments.axes import AXES
from sempairs.experiments.axes.pairs import PAIRS_AXIS, mined_threshold
from sempairs.experiments.embedding_maps import MAP_METHODS, require_method
from sempairs.experiments.evaluations import EVALUATORS
from sempairs.experiments.evaluations.base import current_columns, current_name
from sempairs.experiments.generated import ADDED_SP_FILE, MINED_FILE, MiningSettings, mined_columns, write_added_sp, write_mined
from sempairs.runlock import run_lock
from sempairs.train import TrainingStopped, train
from sempairs.trained.checkpoint import LAST
from sempairs.train.loop import resolve_precision, uses_cuda
from sempairs.train.rundir import ResumeRefused, RunExists, check_resume
from sempairs.strict import Strict

BASE = "grid base"
SECTIONS = ("data", "backbone", "method", "augment", "optim", "train", "knn")  # axes whose values set several keys
RESULTS = "results.csv"
ARM = "arm"  # the results column naming a cell's arm
# Columns of every results row, in order: cell, the axes, RUN_COLUMNS, the metrics, COST_COLUMNS, other values.
RUN_COLUMNS = ("epochs", "num_pairs")
COST_COLUMNS = ("final_loss", "images_per_s", "seconds", "device", "precision", "run_dir", "error", "warning", "config_hash")


# ----------------------------------------------------------------------------- config


class ExperimentConfig(Strict):
    """A grid of runs: ``base`` run config x ``axes``, evaluated by ``evaluations``.

    ``arms``: named settings that vary together, crossed with the axes (see the module doc).
    ``seed_axis`` is the axis that repeats a setting (reports average over it). ``embedding``
    lists the cells whose test features get a 2-D map (None: the first cell of each ``pairs``
    value, or the first cell; ``[]``: no map), drawn by ``embedding_method``: ``tsne`` (openTSNE) or
    ``umap`` (umap-learn, the ``umap`` extra). ``skip``: partial cells (axis -> value) left out.
    ``mining``: how ``+mined`` cells mine their pairs.
    """


    name: str
    out_dir: str = "experiments"
    base: dict[str, Any] | str = {}
    axes: dict[str, list[Any]] = {}
    arms: list[dict[str, Any]] = []
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
        for name, values in axes.items():
            _check_key(f"axis {name!r}", name, values)
            if not values:
                raise ValueError(f"axis {name!r} has no values")
            shown = [format_value(v) for v in values]
            if len(set(shown)) != len(shown):
                raise ValueError(f"axis {name!r} repeats a value: {shown}")
        return axes

    @field_validator("arms")
    @classmethod
    def _arms_well_formed(cls, arms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for arm in arms:
            if not isinstance(arm.get(ARM_NAME), str) or not arm[ARM_NAME] or len(arm) < 2:
                raise ValueError(f"arm {arm}: give each arm a name and its settings, e.g. {{name: SP, pairs: sp}}")
            for key, value in arm.items():
                if key != ARM_NAME:
                    _check_key(f"arm {arm[ARM_NAME]!r}: key {key!r}", key, [value])
        names = [arm[ARM_NAME] for arm in arms]
        settings = [arm_id(arm) for arm in arms]
        for what, seen in (("name", names), ("settings", settings)):
            if len(set(seen)) != len(seen):
                raise ValueError(f"two arms have the same {what}: {seen}")
        return arms

    @model_validator(mode="after")
    def _axes_and_arms_fit(self):
        if not self.axes and not self.arms:
            raise ValueError("give at least one axis, e.g. pairs: [ap, sp], or arms")
        shared = sorted(set(self.arm_keys) & set(self.axes))
        if shared:
            raise ValueError(f"{shared} are set by both the arms and the axes: keep each key in one of them")
        for rule in self.skip:
            unknown = sorted(set(rule) - set(self.columns))
            if not rule or unknown:
                raise ValueError(f"skip rule {rule} must name axes of the grid ({', '.join(self.columns)}); unknown: {unknown}")
        return self

    @field_validator("embedding_method")
    @classmethod
    def _map_package_installed(cls, method: str) -> str:
        return require_method(method)  # before any training: a missing umap-learn fails here, not at the plots

    @field_validator("evaluations")
    @classmethod
    def _known_evaluations(cls, names: list[str]) -> list[str]:
        names = [current_name(n) for n in names]
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
    def arm_keys(self) -> list[str]:
        """The keys the arms set, in first-seen order."""
        return list(dict.fromkeys(key for arm in self.arms for key in arm if key != ARM_NAME))

    @property
    def labels(self) -> list[str]:
        """The columns that name a cell in tables: ``arm`` (with arms) and the axes."""
        return [ARM, *self.axes] if self.arms else list(self.axes)

    @property
    def columns(self) -> list[str]:
        """The results columns that say what a cell is: ``arm``, the arms' keys and the axes."""
        return [ARM, *self.arm_keys, *self.axes] if self.arms else list(self.axes)

    @property
    def group_axes(self) -> list[str]:
        """The columns a result is grouped by: ``arm`` (with arms) and every axis but the seed axis."""
        return [a for a in self.labels if a != self.seed_axis]

    @property
    def compared(self) -> str | None:
        """The column whose values are compared with its first one: ``arm``, else the ``pairs`` axis (None: neither)."""
        return ARM if self.arms else PAIRS_AXIS if PAIRS_AXIS in self.axes else None

    def compared_values(self) -> list[str]:
        """The values of :attr:`compared`, the first one the baseline."""
        if self.arms:
            return [arm[ARM_NAME] for arm in self.arms]
        return [format_value(v) for v in self.axes.get(PAIRS_AXIS, [])]

    def values_of(self, key: str) -> list[Any]:
        """The values the axes or the arms give ``key`` (empty when neither sets it)."""
        return self.axes.get(key) or [arm[key] for arm in self.arms if key in arm]

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


ARM_NAME = "name"  # the key of an arm that names it


def _check_key(what: str, name: str, values: list[Any]) -> None:
    """Refuse an axis or arm key that is neither a dotted config key, a section nor a named axis."""
    if name not in AXES and name not in SECTIONS and "." not in name:
        raise ValueError(f"{what} is neither a dotted config key (e.g. train.seed), a section "
                         f"({', '.join(SECTIONS)}) nor {' / '.join(sorted(AXES))}")
    if name in SECTIONS and not all(isinstance(v, dict) and v for v in values):
        raise ValueError(f"{what}: each value is a mapping of {name} keys, e.g. {{width: 0.25}}")
    if name.split(".")[0] in ("name", "out_dir"):
        raise ValueError(f"{what}: the grid names the runs and places them itself")


def arm_id(arm: dict[str, Any]) -> str:
    """An arm's settings as they appear in cell ids: ``key=value`` joined by commas (its name left out)."""
    return ",".join(f"{key}={format_value(v)}" for key, v in arm.items() if key != ARM_NAME)


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
    """One run of the grid: its arm's and axes' values, arm name (None without arms), stable id, validated config,
    and the pair files it must generate: ``added_sp`` (``+sp``), ``mined`` (``+mined``, with the checkpoint of the
    cell ``encoder``); ``layers``: the base, the arm's and each axis's settings and the grid's placement, from which
    the config was made."""

    id: str
    values: dict[str, str]
    config: RunConfig
    arm: str | None = None
    added_sp: Path | None = None
    mined: Path | None = None
    encoder: "Cell | None" = None
    layers: tuple[Layer, ...] = ()  # where its settings come from (sempairs.config.sources)

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir


def base_layers(exp: ExperimentConfig) -> list[Layer]:
    """The grid's ``base`` as the first layers of every cell's config: the run YAML it names, or its mapping."""
    if isinstance(exp.base, str):
        return [(f"{BASE} file {exp.base}", read_yaml_mapping(exp.base, "config", "sections data, pairs"))]
    return [(BASE, exp.base)]


def expand(exp: ExperimentConfig) -> list[Cell]:
    """The cells of the grid, arms x the axes' cartesian product in order, each with a validated RunConfig."""
    base = base_layers(exp)
    runs = exp.directory / "runs"
    cells = []
    for arm, combo in itertools.product(exp.arms or [{}], itertools.product(*exp.axes.values())):
        raw = {**{k: v for k, v in arm.items() if k != ARM_NAME}, **dict(zip(exp.axes, combo))}
        values = {key: format_value(v) for key, v in raw.items()}
        cell_id = ",".join(f"{key}={v}" for key, v in values.items())
        run_dir = runs / cell_dirname(cell_id)
        named = {**values, ARM: arm.get(ARM_NAME)}
        if any(all(a in named and named[a] == format_value(v) for a, v in rule.items()) for rule in exp.skip):
            continue
        settings: dict[str, Any] = {}
        layers = list(base)
        generated: dict[str, Path] = {}
        for key, value in raw.items():
            if key in AXES:
                these, files = AXES[key](values[key], run_dir)
                generated.update(files)
            elif key in SECTIONS:
                these = {f"{key}.{k}": v for k, v in value.items()}
            else:
                these = {key: value}
            clash = sorted(set(these) & set(settings))
            if clash:
                raise ConfigError(f"cell {cell_id}: {key!r} sets {clash}, which another axis sets too (or the arm)")
            settings.update(these)
            layers.append((f"grid arm {arm[ARM_NAME]}" if key in arm else f"grid axis {key}", nested(these)))
        layers.append(("grid (where its runs go)", {"out_dir": str(runs), "name": run_dir.name}))
        try:
            cfg = load_layers(layers)
        except ConfigError as exc:
            raise ConfigError(f"cell {cell_id}: {exc}") from None
        for name in exp.evaluations:
            requires = EVALUATORS[name].requires
            problem = requires(cfg) if requires is not None else None
            if problem:
                raise ConfigError(f"cell {cell_id}: evaluation {name!r} cannot run: {problem}")
        cells.append(Cell(cell_id, values, cfg, arm.get(ARM_NAME), generated.get("sp"), generated.get("mined"),
                          layers=tuple(layers)))
    cells = [_with_encoder(cell, cells, list(exp.axes)) if cell.mined else cell for cell in cells]
    unknown = sorted(set(exp.embedding or ()) - {c.id for c in cells})
    if unknown:
        raise ConfigError(f"embedding names cells not in the grid: {unknown}; cell ids look like {cells[0].id}")
    return cells


def base_over_recipes(cells: Sequence[Cell]) -> str | None:
    """A sentence naming the optimiser keys the grid's ``base`` sets over the recipes of its cells' methods
    (None when it sets none): those cells do not train with their method's own recipe."""
    found: dict[str, dict[str, Any]] = {}  # method -> key -> the recipe's value
    stated: dict[str, Any] = {}
    for cell in cells:
        for key, (source, value, recipe) in recipe_overrides(cell.config, sources(cell.config, list(cell.layers))).items():
            if source.startswith(BASE):
                found.setdefault(cell.config.method.name, {})[key] = recipe
                stated[key] = value
    if not found:
        return None
    keys = ", ".join(f"{k}={format_value(v)}" for k, v in sorted(stated.items()))
    methods = "; ".join(f"{m} ({', '.join(f'{k}={format_value(v)}' for k, v in sorted(r.items()))})"
                        for m, r in sorted(found.items()))
    return (f"note: the grid's base sets {keys} over the optimiser recipe of {methods}: those cells train with the "
            "base's values, not their method's (remove the keys from base to use the recipes; `sempairs config show` "
            "names where every value comes from)")


def _with_encoder(cell: Cell, cells: list[Cell], axes: Sequence[str]) -> Cell:
    """``cell`` (an ``ap+mined`` cell) linked to the ``ap`` cell whose checkpoint mines: the one with the same values
    on every axis but ``pairs`` (and the same arm settings, where several ``ap`` cells have those axis values)."""
    same = [k for k in axes if k != PAIRS_AXIS]
    found = [c for c in cells if c.values.get(PAIRS_AXIS) == "ap" and all(c.values.get(k) == cell.values.get(k) for k in same)]
    if len(found) > 1:
        found = [c for c in found if c.values == {**cell.values, PAIRS_AXIS: "ap"}]
    if len(found) != 1:
        wanted = ",".join(f"{k}={cell.values[k]}" for k in same if k in cell.values)
        raise ConfigError(f"cell {cell.id}: ap+mined mines with the checkpoint of the one cell with pairs=ap"
                          f"{' and ' + wanted if wanted else ''}; the grid has {len(found)}: give it one ap cell (or arm) "
                          "per setting of the other axes (and do not skip it)")
    return replace(cell, encoder=found[0])


# ----------------------------------------------------------------------------- results


def read_results(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a results CSV by cell id (empty if there is none yet)."""
    if not path.exists():
        return {}
    return {row["cell"]: current_columns(row, str(path)) for row in read_rows(path)}


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
        contents[MINED_FILE] = [cell_hash(cell.encoder), cell_mining(cell, mining).identity()]
    return hashlib.sha256(json.dumps([tree, contents], sort_keys=True).encode()).hexdigest()[:16]


def cell_mining(cell: Cell, mining: MiningSettings | None = None) -> MiningSettings:
    """How an ``ap+mined`` cell mines: the grid's ``mining`` section, with the threshold of an ``ap+mined@<t>`` value."""
    mining = mining or MiningSettings()
    threshold = mined_threshold(cell.values.get(PAIRS_AXIS, ""))
    return mining if threshold is None else mining.model_copy(update={"threshold": threshold})


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
    row: dict[str, Any] = dict.fromkeys(["cell", *exp.columns, *RUN_COLUMNS, *exp.metrics(), *COST_COLUMNS], "")
    row.update({"cell": cell.id, **cell.values, **({ARM: cell.arm} if exp.arms else {}), "device": _device_name(cfg), "precision": resolve_precision(cfg),
                "run_dir": str(cell.run_dir), "config_hash": cell_hash(cell, exp.mining)})
    if _writes_files():  # the other ranks read these files after rank 0 loaded the run's data
        if cell.added_sp is not None and not cell.added_sp.exists():
            write_added_sp(cfg, cell.added_sp)
        if cell.mined is not None and not cell.mined.exists():
            write_mined(cfg, cell.mined, cell.encoder.run_dir, cell_mining(cell, exp.mining))
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
    every rank runs the grid (each cell's training is distributed) and rank 0 writes the files. First it logs
    the optimiser keys its base sets over the cells' method recipes, if any (:func:`base_over_recipes`).
    """
    cells = expand(exp)
    notice = base_over_recipes(cells)
    if notice:
        log(notice)
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
    with run_lock(exp.directory, take=_writes_files()):
        if _writes_files():
            write_text(exp.directory / "experiment.yaml", yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
        rows = read_results(exp.results_path)
        metrics = list(exp.metrics())
        order = sorted(range(len(cells)), key=lambda k: cells[k].encoder is not None)  # encoders train before their miners
        for i, cell in ((k + 1, cells[k]) for k in order):
            if is_done(rows.get(cell.id), cell, metrics, exp.mining):
                log(f"[{i}/{len(cells)}] {cell.id}: done, skipped")
                continue
            log(f"[{i}/{len(cells)}] {cell.id} -> {cell.run_dir}")
            row = run_cell(exp, cell, callbacks, progress)
            if row["error"]:
                log(f"[{i}/{len(cells)}] {cell.id} stopped: {row['error']}")
            rows = {**read_results(exp.results_path), cell.id: row}  # the file as it is now, not as it was read before
            if _writes_files():
                write_rows(exp.results_path, [rows[k] for k in _results_order(cells, rows)])
    return [rows[c.id] for c in cells if c.id in rows]


def _results_order(cells: Sequence[Cell], rows: dict[str, dict[str, str]]) -> list[str]:
    """The cell ids of ``rows`` as results.csv lists them: the grid's cells in grid order, then rows of other cells."""
    ids = [c.id for c in cells]
    return [k for k in ids if k in rows] + [k for k in rows if k not in set(ids)]
