"""Evaluations of a trained grid cell, by name: each adds its metric columns (and settings) to the cell's row.

An experiment lists them in ``evaluations``; :func:`register_evaluator` adds more.

``knn``
    the weighted kNN accuracy the training loop measured after the last epoch (``knn`` config).
``random_init``
    the same kNN protocol on the cell's backbone untrained (seeded like the run): the reference
    a short run must clearly beat (at 32 px an untrained ResNet scores far above chance); with
    ``data.classes`` also on the other classes, as ``transfer`` measures them.
``linear``
    logistic-regression probe on frozen features (L2 chosen on a held-out part of the train
    split, see :mod:`sempairs.eval.linear`): top-1/top-5 on the run's test split.
``transfer``
    kNN top-1 on the classes the run was pretrained on (``seen``: the run's own kNN) and on the
    dataset's other classes (``unseen``), each its own task with the run's selection per class
    (``data.limit_per_class``, ``data.test_limit_per_class``) and kNN settings; needs
    ``data.classes``. ``sempairs eval transfer`` evaluates on whole datasets instead.
``invariance``
    mean cosine similarity of the embeddings of test images and their perturbed versions, per
    probe of :mod:`sempairs.eval.invariance` at strength 0.5 (the first 1,000 test images).
``shift``
    kNN top-1 under the CIFAR-10-C corruptions (:mod:`sempairs.eval.shift`) on a seeded subset
    of 1,000 test images, all severities: clean, mean over the 15 corruptions, occlusion.

All but ``knn`` load the backbone from the run's ``last.ckpt`` and use the run's data selection
(``data.classes``, ``data.limit_per_class``, ``data.test_limit_per_class``, ``data.test_split``,
including ``heldout``); ``transfer`` takes the other classes with the same selection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sempairs.config import DataConfig, RunConfig
from sempairs.errors import InputError
from sempairs.trained.loading import load_backbone
from sempairs.trained.features import cached_features
from sempairs.eval.invariance import PROBES, invariance
from sempairs.eval.linear import linear_probe
from sempairs.eval.protocol import knn_evaluate
from sempairs.eval.shift import shift_evaluate
from sempairs.train import TrainResult
from sempairs.trained.loading import build_method
from sempairs.train.data import load_split
from sempairs.train.loop import uses_cuda

INVARIANCE_STRENGTH = 0.5
INVARIANCE_IMAGES = 1000
SHIFT_IMAGES = 1000


@dataclass(frozen=True)
class Evaluator:
    """A named evaluation of a trained cell.

    ``fn(result, cfg)`` returns a row's values: the ``metrics`` (column -> label for tables and
    plots, higher is better) and any other columns worth keeping (e.g. the protocol's settings).
    ``requires(cfg)`` says what a cell's config lacks for it (None: nothing), so a grid that
    cannot be evaluated is refused before any training.
    """

    metrics: dict[str, str]
    fn: Callable[[TrainResult, RunConfig], dict[str, Any]]
    requires: Callable[[RunConfig], str | None] | None = None


EVALUATORS: dict[str, Evaluator] = {}


def register_evaluator(name: str, metrics: dict[str, str], requires: Callable[[RunConfig], str | None] | None = None):
    """Decorator: register ``fn(result, cfg) -> dict`` as the evaluation ``name`` with these metric columns."""

    def decorate(fn):
        EVALUATORS[name] = Evaluator(metrics, fn, requires)
        return fn

    return decorate


def _test_split(cfg: RunConfig) -> str | None:
    return None if cfg.data.test_split else "it needs a labelled test split (data.test_split)"


def _loaded(result: TrainResult, cfg: RunConfig):
    """The run's trained backbone, on the GPU when the run may use one."""
    loaded = load_backbone(result.run_dir)
    if uses_cuda(cfg):
        loaded.module.to("cuda")
    return loaded


def _splits(cfg: RunConfig):
    """The run's train and test stores, as its kNN evaluation selects them."""
    return (load_split(cfg.data, cfg.data.split, cfg.data.limit_per_class),
            load_split(cfg.data, cfg.data.test_split, cfg.data.test_limit_per_class))


@register_evaluator("knn", {"knn_top1": "kNN top-1 accuracy (%)", "knn_top5": "kNN top-5 accuracy (%)"}, _test_split)
def knn_of_training(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """The kNN accuracy the training loop measured on the test split after the last epoch."""
    if result.knn is None:
        raise InputError(f"{cfg.run_dir}: no kNN result (data.test_split={cfg.data.test_split!r} or the data has no labels)")
    return dict(result.knn)


def untrained_backbone(cfg: RunConfig) -> torch.nn.Module:
    """The run's backbone as initialised with its seed, before any training (the global RNG is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.train.seed)
        return build_method(cfg).backbone.to("cuda" if uses_cuda(cfg) else "cpu")


def knn_on(backbone: torch.nn.Module, cfg: RunConfig, data: DataConfig | None = None) -> dict[str, Any]:
    """kNN accuracy of ``backbone`` with the run's protocol on ``data`` (default: the run's own selection)."""
    data = data or cfg.data
    train = load_split(data, data.split, data.limit_per_class)
    test = load_split(data, data.test_split, data.test_limit_per_class)
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


@register_evaluator("random_init", {"random_init_knn_top1": "kNN top-1 of the untrained backbone (%)"}, _test_split)
def knn_of_random_init(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """kNN accuracy of the cell's architecture before training, with the run's seed, data and protocol."""
    backbone = untrained_backbone(cfg)
    row = {"random_init_knn_top1": knn_on(backbone, cfg)["knn_top1"]}
    if cfg.data.classes is not None:
        row["random_init_unseen_knn_top1"] = knn_on(backbone, cfg, other_classes(cfg))["knn_top1"]
    return row


@register_evaluator("linear", {"linear_top1": "linear probe top-1 accuracy (%)",
                               "linear_top5": "linear probe top-5 accuracy (%)"}, _test_split)
def linear_of_run(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """Logistic-regression probe on the run's frozen features, L2 chosen on the train split."""
    loaded = _loaded(result, cfg)
    train, test = _splits(cfg)
    if train.labels is None or test.labels is None:
        raise InputError(f"{cfg.run_dir}: the linear probe needs labelled train and test splits")
    feats = [cached_features(loaded, store, batch_size=cfg.features.batch_size) for store in (train, test)]
    probe = linear_probe(feats[0], torch.from_numpy(train.labels), feats[1], torch.from_numpy(test.labels),
                         train.num_classes, seed=cfg.train.seed)
    return {k: probe[k] for k in ("linear_top1", "linear_top5", "linear_l2")}


def _has_classes(cfg: RunConfig) -> str | None:
    if cfg.data.classes is None:
        return "it compares the classes pretrained on with the others: set data.classes (a class subset)"
    return _test_split(cfg)


@register_evaluator("transfer", {"transfer_seen_knn_top1": "kNN top-1, classes seen in pretraining (%)",
                                 "transfer_unseen_knn_top1": "kNN top-1, classes not seen in pretraining (%)"},
                    _has_classes)
def transfer_of_run(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """kNN accuracy on the pretraining classes (the run's own) and on the dataset's other classes, same protocol."""
    others = other_classes(cfg)
    unseen = knn_on(_loaded(result, cfg).module, cfg, others)
    return {"transfer_seen_knn_top1": knn_of_training(result, cfg)["knn_top1"], "transfer_unseen_knn_top1": unseen["knn_top1"],
            "transfer_unseen_classes": " ".join(others.classes)}


@register_evaluator("invariance", {f"invariance_{p}": f"invariance to {p.replace('_', ' ')} (mean cosine, "
                                                    f"strength {INVARIANCE_STRENGTH:g})" for p in PROBES}, _test_split)
def invariance_of_run(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """Mean cosine similarity of clean and perturbed test-image embeddings, per probe, at one strength."""
    loaded = _loaded(result, cfg)
    test = load_split(cfg.data, cfg.data.test_split, cfg.data.test_limit_per_class)
    images = test.subset(range(min(INVARIANCE_IMAGES, len(test)))).tensor()
    scores = invariance(loaded.module, images, loaded.size, loaded.mean, loaded.std, list(PROBES),
                        [INVARIANCE_STRENGTH], seed=cfg.train.seed)
    return {f"invariance_{p}": per[f"{INVARIANCE_STRENGTH:g}"] for p, per in scores.items()}


@register_evaluator("shift", {"shift_knn_clean": "kNN top-1, clean test subset of the shift evaluation (%)",
                              "shift_knn_mean_corruption": "kNN top-1 under corruption, mean of 15 x 5 (%)",
                              "shift_knn_occlusion": "kNN top-1 under occlusion, mean of 5 severities (%)"},
                    _test_split)
def shift_of_run(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """kNN accuracy under the CIFAR-10-C corruptions and occlusion, on a seeded subset of the test split."""
    train, test = _splits(cfg)
    report = shift_evaluate(_loaded(result, cfg), train, test, limit=SHIFT_IMAGES, seed=0, knn_k=cfg.knn.k,
                            knn_temperature=cfg.knn.temperature, linear=False, batch_size=cfg.features.batch_size)
    summary = report["summary"]
    return {"shift_knn_clean": summary["knn_clean"], "shift_knn_mean_corruption": summary["knn_mean_corruption"],
            "shift_knn_occlusion": summary["knn_occlusion"], "shift_knn_drop": summary["knn_drop"],
            "shift_test_images": report["test_images"]}
