"""What a grid evaluation is (:class:`Evaluator`), ``EVALUATORS`` where each module of this package registers one,
and what several evaluations share: the run's trained backbone, its splits, its kNN protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sempairs.config import DataConfig, RunConfig
from sempairs.data.store import ImageStore
from sempairs.errors import InputError
from sempairs.eval.protocol import knn_evaluate
from sempairs.registry import Registry
from sempairs.train import TrainResult
from sempairs.train.data import load_split
from sempairs.train.loop import uses_cuda
from sempairs.trained.loading import LoadedBackbone, load_backbone


@dataclass(frozen=True)
class Evaluator:
    """A named evaluation of a trained cell.

    ``fn(result, cfg)`` returns a row's values: the ``metrics`` (column -> label for tables and
    plots, higher is better) and any other columns worth keeping (e.g. the protocol's settings).
    ``requires(cfg)`` says what a cell's config lacks for it (None: nothing), so a grid that
    cannot be evaluated is refused before any training. ``references``: columns it writes that
    are a reference for other evaluations' metrics (column -> those metrics), drawn as lines.
    """

    metrics: dict[str, str]
    fn: Callable[[TrainResult, RunConfig], dict[str, Any]]
    requires: Callable[[RunConfig], str | None] | None = None
    references: dict[str, tuple[str, ...]] = field(default_factory=dict)


EVALUATORS: Registry[Evaluator] = Registry("evaluation", "sempairs.experiments.evaluations")
"""Every grid evaluation by name: each module of ``sempairs.experiments.evaluations`` registers its own."""


def register_evaluator(name: str, metrics: dict[str, str], requires: Callable[[RunConfig], str | None] | None = None,
                       references: dict[str, tuple[str, ...]] | None = None):
    """Decorator: register ``fn(result, cfg) -> dict`` as the evaluation ``name`` with these metric columns
    (and ``references``: its columns that are a reference for other metrics, see :class:`Evaluator`)."""

    def decorate(fn):
        EVALUATORS.register(name, Evaluator(metrics, fn, requires, references or {}))
        return fn

    return decorate


def needs_test_split(cfg: RunConfig) -> str | None:
    """What an evaluation on the run's test split lacks: the split itself (None: nothing)."""
    return None if cfg.data.test_split else "it needs a labelled test split (data.test_split)"


def trained_backbone(result: TrainResult, cfg: RunConfig) -> LoadedBackbone:
    """The run's trained backbone (from its ``last.ckpt``), on the GPU when the run may use one."""
    loaded = load_backbone(result.run_dir)
    if uses_cuda(cfg):
        loaded.module.to("cuda")
    return loaded


def run_splits(data: DataConfig) -> tuple[ImageStore, ImageStore]:
    """The train and test stores of a run's data selection, as its kNN evaluation selects them."""
    return (load_split(data, data.split, data.limit_per_class),
            load_split(data, data.test_split, data.test_limit_per_class))


def knn_on(backbone: torch.nn.Module, cfg: RunConfig, data: DataConfig | None = None) -> dict[str, Any]:
    """kNN accuracy of ``backbone`` with the run's protocol on ``data`` (default: the run's own selection)."""
    train, test = run_splits(data or cfg.data)
    return knn_evaluate(backbone, train, test, cfg.data.size, cfg.augment.mean, cfg.augment.std, k=cfg.knn.k,
                        temperature=cfg.knn.temperature, batch_size=cfg.features.batch_size, channels_last=uses_cuda(cfg))


def other_classes(cfg: RunConfig) -> DataConfig:
    """The run's data selection for the dataset's classes it was not pretrained on."""
    names = load_split(cfg.data.model_copy(update={"classes": None}), cfg.data.split, 1).class_names
    others = [c for c in names if c not in cfg.data.classes]
    if len(others) < 2:
        raise InputError(f"{cfg.data.dataset} has {len(others)} classes outside data.classes: an unseen-class task needs "
                         "two; leave at least two classes out of data.classes")
    return cfg.data.model_copy(update={"classes": others})
