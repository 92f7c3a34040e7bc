"""What a grid evaluation is (:class:`Evaluator`), ``EVALUATORS`` where each module of this package registers one,
the names and columns renamed since (read with a deprecation warning), and what several evaluations share: the
run's trained backbone, its kNN protocol."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sempairs.config import DataConfig, RunConfig
from sempairs.errors import SempairsWarning
from sempairs.eval.protocol import Selection, knn_evaluate
from sempairs.registry import Registry
from sempairs.train import TrainResult
from sempairs.train.loop import uses_cuda
from sempairs.trained.loading import LoadedBackbone, load_backbone


@dataclass(frozen=True)
class Evaluator:
    """A named evaluation of a trained cell.

    ``fn(result, cfg)`` returns a row's values: the ``metrics`` (column -> label for tables and
    plots, higher is better) and any other columns worth keeping (e.g. the protocol's settings).
    ``requires(cfg)`` says what a cell's config lacks for it (None: nothing), so a grid that
    cannot be evaluated is refused before any training. ``references``: columns it writes that
    are a reference for other evaluations' metrics (column -> those metrics), drawn as lines and
    named ``reference_label`` (empty: the evaluation's name).
    """

    metrics: dict[str, str]
    fn: Callable[[TrainResult, RunConfig], dict[str, Any]]
    requires: Callable[[RunConfig], str | None] | None = None
    references: dict[str, tuple[str, ...]] = field(default_factory=dict)
    reference_label: str = ""


EVALUATORS: Registry[Evaluator] = Registry("evaluation", "sempairs.experiments.evaluations")
"""Every grid evaluation by name: each module of ``sempairs.experiments.evaluations`` registers its own."""


def register_evaluator(name: str, metrics: dict[str, str], requires: Callable[[RunConfig], str | None] | None = None,
                       references: dict[str, tuple[str, ...]] | None = None, reference_label: str = ""):
    """Decorator: register ``fn(result, cfg) -> dict`` as the evaluation ``name`` with these metric columns
    (and ``references``: its columns that are a reference for other metrics, named ``reference_label``, see
    :class:`Evaluator`)."""

    def decorate(fn):
        EVALUATORS.register(name, Evaluator(metrics, fn, requires, references or {}, reference_label))
        return fn

    return decorate


RENAMED = {"transfer": "unseen_classes"}  # grid evaluation names before 2026-12 -> now
RENAMED_COLUMNS = {"transfer_unseen_knn_top1": "unseen_knn_top1", "transfer_unseen_classes": "unseen_classes",
                   "transfer_seen_knn_top1": None}  # None: a copy of knn_top1, dropped


def current_name(name: str) -> str:
    """The evaluation's name now (an old name is read with a deprecation warning)."""
    if name not in RENAMED:
        return name
    warnings.warn(f"the grid evaluation {name!r} is now {RENAMED[name]!r} (kNN on the dataset's other classes; "
                  "sempairs eval transfer evaluates other datasets). Fix: rename it in the experiment's evaluations",
                  SempairsWarning, stacklevel=2)
    return RENAMED[name]


def current_columns(row: dict, source: str) -> dict:
    """A results row with the columns renamed since under their new names (with a deprecation warning)."""
    old = [column for column in row if column in RENAMED_COLUMNS]
    if not old:
        return row
    warnings.warn(f"{source}: columns {old} are from before 2026-12; they are read as "
                  f"{[RENAMED_COLUMNS[c] for c in old]} (None: dropped, the same number as knn_top1). "
                  "Fix: evaluate the grid again to rewrite them", SempairsWarning, stacklevel=2)
    renamed = {RENAMED_COLUMNS.get(column, column): value for column, value in row.items()}
    renamed.pop(None, None)
    return renamed


def needs_test_split(cfg: RunConfig) -> str | None:
    """What an evaluation on the run's test split lacks: the split itself (None: nothing)."""
    return None if cfg.data.test_split else "it needs a labelled test split (data.test_split)"


def trained_backbone(result: TrainResult, cfg: RunConfig) -> LoadedBackbone:
    """The run's trained backbone (from its ``last.ckpt``), on the GPU when the run may use one."""
    loaded = load_backbone(result.run_dir)
    if uses_cuda(cfg):
        loaded.module.to("cuda")
    return loaded


def knn_on(backbone: torch.nn.Module, cfg: RunConfig, data: DataConfig | None = None) -> dict[str, Any]:
    """kNN accuracy of ``backbone`` with the run's protocol on ``data`` (default: the run's own selection)."""
    return knn_evaluate(backbone, Selection(data=data or cfg.data, knn=cfg.knn), (cfg.data.size, cfg.augment.mean,
                        cfg.augment.std), batch_size=cfg.features.batch_size, channels_last=uses_cuda(cfg))
