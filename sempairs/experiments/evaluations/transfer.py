"""``transfer``: kNN top-1 on the classes the run was pretrained on and on the dataset's other classes.

``seen`` is the run's own kNN; ``unseen`` the dataset's other classes, each its own task with the
run's selection per class (``data.limit_per_class``, ``data.test_limit_per_class``) and kNN
settings; needs ``data.classes``. ``sempairs eval transfer`` evaluates on whole datasets instead.
"""

from __future__ import annotations

from typing import Any

from sempairs.config import RunConfig
from sempairs.experiments.evaluations.base import knn_on, needs_test_split, other_classes, register_evaluator, trained_backbone
from sempairs.experiments.evaluations.knn import knn_of_training
from sempairs.train import TrainResult


def needs_classes(cfg: RunConfig) -> str | None:
    """What the transfer evaluation lacks: a class subset (``data.classes``) and a test split (None: nothing)."""
    if cfg.data.classes is None:
        return "it compares the classes pretrained on with the others: set data.classes (a class subset)"
    return needs_test_split(cfg)


@register_evaluator("transfer", {"transfer_seen_knn_top1": "kNN top-1, classes seen in pretraining (%)",
                                 "transfer_unseen_knn_top1": "kNN top-1, classes not seen in pretraining (%)"},
                    needs_classes)
def transfer_of_run(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """kNN accuracy on the pretraining classes (the run's own) and on the dataset's other classes, same protocol."""
    others = other_classes(cfg)
    unseen = knn_on(trained_backbone(result, cfg).module, cfg, others)
    return {"transfer_seen_knn_top1": knn_of_training(result, cfg)["knn_top1"], "transfer_unseen_knn_top1": unseen["knn_top1"],
            "transfer_unseen_classes": " ".join(others.classes)}
