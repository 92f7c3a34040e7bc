"""``test_split``: the final reading on the test split of a grid chosen and read on held-out images.

A grid that chooses and reads its comparison on held-out training images (``data.test_split:
heldout``) reads the test split once, at the end: this evaluation runs the run's kNN protocol with
the same memory (the run's training selection: the held-out images are the last of each class, so
the first ``data.limit_per_class`` are the same either way) and the test split as queries
(``data.test_limit_per_class`` per class), on the trained backbone and on the untrained one (the
reference). Nothing is trained again: add it to ``evaluations`` and run the grid's command again,
and the finished cells are only evaluated.
"""

from __future__ import annotations

from typing import Any

from sempairs.config import RunConfig
from sempairs.eval.selection import HELDOUT
from sempairs.experiments.evaluations.base import knn_on, register_evaluator, trained_backbone
from sempairs.experiments.evaluations.random_init import untrained_backbone
from sempairs.train import TrainResult

TEST = "test"


def needs_heldout(cfg: RunConfig) -> str | None:
    """What the final test-split reading lacks: a grid read on held-out images (None: nothing)."""
    if cfg.data.test_split != HELDOUT:
        return (f"it is the final test-split reading of a grid read on held-out images: set data.test_split: {HELDOUT} "
                f"(with data.test_split: {cfg.data.test_split}, the knn evaluation already reads that split)")
    return None


@register_evaluator("test_split", {"test_knn_top1": "kNN top-1 on the test split, the final reading (%)"}, needs_heldout,
                    references={"random_init_test_knn_top1": ("test_knn_top1",)}, reference_label="random init")
def test_split_of_run(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """kNN accuracy on the test split of the trained and of the untrained backbone, with the run's memory and settings."""
    data = cfg.data.model_copy(update={"test_split": TEST})
    return {"test_knn_top1": knn_on(trained_backbone(result, cfg).module, cfg, data)["knn_top1"],
            "random_init_test_knn_top1": knn_on(untrained_backbone(cfg), cfg, data)["knn_top1"]}
