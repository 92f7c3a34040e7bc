"""``knn``: the weighted kNN accuracy the training loop measured after the last epoch on the run's own selection
(``data``, ``knn`` config), through :func:`sempairs.eval.protocol.knn_evaluate`; for a class-subset run, the
seen classes' number."""

from __future__ import annotations

from typing import Any

from sempairs.config import RunConfig
from sempairs.errors import InputError
from sempairs.eval.protocol import result_columns
from sempairs.experiments.evaluations.base import needs_test_split, register_evaluator
from sempairs.train import TrainResult


@register_evaluator("knn", {"knn_top1": "kNN top-1 accuracy (%)", "knn_top5": "kNN top-5 accuracy (%)"}, needs_test_split)
def knn_of_training(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """The kNN accuracy the training loop measured on the test split after the last epoch."""
    if result.knn is None:
        raise InputError(f"{cfg.run_dir}: no kNN result (data.test_split={cfg.data.test_split!r} or the data has no labels)")
    return result_columns(result.knn)
