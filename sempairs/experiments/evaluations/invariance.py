"""``invariance``: mean cosine similarity of the embeddings of test images and their perturbed versions.

One value per probe of :mod:`sempairs.eval.invariance`, at strength 0.5, on the first 1,000 test images.
"""

from __future__ import annotations

from typing import Any

from sempairs.config import RunConfig
from sempairs.eval.invariance import PROBES, invariance
from sempairs.experiments.evaluations.base import needs_test_split, register_evaluator, trained_backbone
from sempairs.train import TrainResult
from sempairs.eval.selection import load_split

INVARIANCE_STRENGTH = 0.5
INVARIANCE_IMAGES = 1000


@register_evaluator("invariance", {f"invariance_{p}": f"invariance to {p.replace('_', ' ')} (mean cosine, "
                                                    f"strength {INVARIANCE_STRENGTH:g})" for p in PROBES}, needs_test_split)
def invariance_of_run(result: TrainResult, cfg: RunConfig) -> dict[str, Any]:
    """Mean cosine similarity of clean and perturbed test-image embeddings, per probe, at one strength."""
    loaded = trained_backbone(result, cfg)
    test = load_split(cfg.data, cfg.data.test_split, cfg.data.test_limit_per_class)
    images = test.subset(range(min(INVARIANCE_IMAGES, len(test)))).tensor()
    scores = invariance(loaded.module, images, loaded.size, loaded.mean, loaded.std, list(PROBES),
                        [INVARIANCE_STRENGTH], seed=cfg.train.seed)
    return {f"invariance_{p}": per[f"{INVARIANCE_STRENGTH:g}"] for p, per in scores.items()}
