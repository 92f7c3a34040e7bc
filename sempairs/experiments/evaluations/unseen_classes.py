"""``unseen_classes``: kNN top-1 on the dataset's classes the run was not pretrained on (``transfer`` before 2026-12).

The dataset's other classes, as one task, with the run's selection per class (``data.limit_per_class``,
``data.test_limit_per_class``, splits) and ``knn`` settings, through the one kNN path
(:func:`sempairs.eval.protocol.knn_evaluate`); needs ``data.classes``. The seen classes' number is the
``knn`` evaluation's ``knn_top1`` (the same path on the run's own selection), not a copy here.
``sempairs eval transfer`` is another protocol: whole other datasets, with a linear probe.
"""

from __future__ import annotations

from typing import Any

from sempairs.config import RunConfig
from sempairs.eval.selection import other_classes
from sempairs.experiments.evaluations.base import knn_on, needs_test_split, register_evaluator, trained_backbone
from sempairs.train import TrainResult


def needs_classes(cfg: RunConfig) -> str | None:
    """What the unseen-classes evaluation lacks: a class subset (``data.classes``) and a test split (None: nothing)."""
    if cfg.data.classes is None:
        return "it evaluates the classes not pretrained on: set data.classes (a class subset)"
    return needs_test_split(cfg)


@register_evaluator("unseen_classes", {"unseen_knn_top1": "kNN top-1, classes not seen in pretraining (%)"}, needs_classes)
def unseen_classes_of_run(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """kNN accuracy on the dataset's other classes, with the run's selection per class and kNN settings."""
    others = other_classes(cfg.data)
    unseen = knn_on(trained_backbone(result, cfg).module, cfg, others)
    return {"unseen_knn_top1": unseen["knn_top1"], "unseen_classes": " ".join(others.classes)}
