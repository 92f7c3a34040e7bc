"""``shift``: kNN top-1 under the CIFAR-10-C corruptions (:mod:`sempairs.eval.shift`).

On a seeded subset of 1,000 test images, all severities: clean, mean over the 15 corruptions, occlusion.
"""

from __future__ import annotations

from typing import Any

from sempairs.config import RunConfig
from sempairs.eval.shift import shift_evaluate
from sempairs.eval.selection import labelled_splits
from sempairs.experiments.evaluations.base import needs_test_split, register_evaluator, trained_backbone
from sempairs.train import TrainResult

SHIFT_IMAGES = 1000


@register_evaluator("shift", {"shift_knn_clean": "kNN top-1, clean test subset of the shift evaluation (%)",
                              "shift_knn_mean_corruption": "kNN top-1 under corruption, mean of 15 x 5 (%)",
                              "shift_knn_occlusion": "kNN top-1 under occlusion, mean of 5 severities (%)"},
                    needs_test_split)
def shift_of_run(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """kNN accuracy under the CIFAR-10-C corruptions and occlusion, on a seeded subset of the test split."""
    train, test = labelled_splits(cfg.data)
    report = shift_evaluate(trained_backbone(result, cfg), train, test, limit=SHIFT_IMAGES, seed=0, knn_k=cfg.knn.k,
                            knn_temperature=cfg.knn.temperature, linear=False, batch_size=cfg.features.batch_size)
    summary = report["summary"]
    return {"shift_knn_clean": summary["knn_clean"], "shift_knn_mean_corruption": summary["knn_mean_corruption"],
            "shift_knn_occlusion": summary["knn_occlusion"], "shift_knn_drop": summary["knn_drop"],
            "shift_test_images": report["test_images"]}
