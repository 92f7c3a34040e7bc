"""``linear``: a logistic-regression probe on frozen features: top-1/top-5 on the run's test split.

The L2 penalty is chosen on a held-out part of the train split (see :mod:`sempairs.eval.linear`).
"""

from __future__ import annotations

from typing import Any

import torch

from sempairs.config import RunConfig
from sempairs.eval.linear import linear_probe
from sempairs.eval.selection import labelled_splits
from sempairs.experiments.evaluations.base import needs_test_split, register_evaluator, trained_backbone
from sempairs.train import TrainResult
from sempairs.trained.features import cached_features


@register_evaluator("linear", {"linear_top1": "linear probe top-1 accuracy (%)",
                               "linear_top5": "linear probe top-5 accuracy (%)"}, needs_test_split)
def linear_of_run(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """Logistic-regression probe on the run's frozen features, L2 chosen on the train split."""
    loaded = trained_backbone(result, cfg)
    train, test = labelled_splits(cfg.data)
    feats = [cached_features(loaded, store, batch_size=cfg.features.batch_size) for store in (train, test)]
    probe = linear_probe(feats[0], torch.from_numpy(train.labels), feats[1], torch.from_numpy(test.labels),
                         train.num_classes, seed=cfg.train.seed)
    return {k: probe[k] for k in ("linear_top1", "linear_top5", "linear_l2")}
