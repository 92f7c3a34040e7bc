"""``random_init``: the same kNN protocol on the cell's backbone untrained (seeded like the run).

The reference a short run must clearly beat (at 32 px an untrained ResNet scores far above
chance); with ``data.classes`` leaving two or more classes out, also on those, as ``unseen_classes`` measures them.
Reports and plots draw it as the reference of those kNN metrics, not as a metric of its own.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import torch

from sempairs.config import RunConfig
from sempairs.eval.selection import leaves_classes_out, other_classes
from sempairs.experiments.evaluations.base import knn_on, needs_test_split, register_evaluator
from sempairs.train import TrainResult
from sempairs.train.loop import uses_cuda
from sempairs.trained.loading import build_method


def untrained_backbone(cfg: RunConfig) -> torch.nn.Module:
    """The run's backbone as initialised with its seed, before any training (the global RNG is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.train.seed)
        device = "cuda" if uses_cuda(cfg) else "cpu"
        return build_method(cfg, device).backbone.to(device)


UNTRAINED_DEPENDS_ON = ("data", "backbone", "method", "augment", "knn", "features")  # and train.seed, train.accelerator


@register_evaluator("random_init", {"random_init_knn_top1": "kNN top-1 of the untrained backbone (%)"}, needs_test_split,
                    references={"random_init_knn_top1": ("knn_top1",),
                                "random_init_unseen_knn_top1": ("unseen_knn_top1",)})
def knn_of_random_init(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """kNN accuracy of the cell's architecture before training, with the run's seed, data and protocol.

    Cells that differ only in what does not reach the untrained backbone (the pairs, the optimiser, the
    epochs) share one evaluation within a process: the quickstart's three arms of a seed evaluate it once.
    """
    tree = cfg.model_dump(mode="json")
    key = {section: tree[section] for section in UNTRAINED_DEPENDS_ON}
    key["train"] = {"seed": cfg.train.seed, "accelerator": cfg.train.accelerator}
    return dict(_random_init_row(json.dumps(key, sort_keys=True)))


@functools.lru_cache(maxsize=256)  # a few numbers per seed; a grid's cells revisit each seed once per setting
def _random_init_row(key: str) -> tuple[tuple[str, float], ...]:
    cfg = RunConfig.model_validate(json.loads(key))
    backbone = untrained_backbone(cfg)
    row = {"random_init_knn_top1": knn_on(backbone, cfg)["knn_top1"]}
    if leaves_classes_out(cfg.data):  # a subset of all the classes (a cell of a class-count axis) has no unseen ones
        row["random_init_unseen_knn_top1"] = knn_on(backbone, cfg, other_classes(cfg.data))["knn_top1"]
    return tuple(row.items())
