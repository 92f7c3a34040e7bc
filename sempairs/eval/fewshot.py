"""Few-label evaluation: the linear probe trained on small, balanced, seeded subsets of the labels.

Each setting is a fraction of the labelled training images (``"1%"``: 1 % of every class) or a
number per class (``"5/class"``); each seed draws its own subset with
:func:`sempairs.eval.linear.stratified_split`, the probe (with its L2 chosen inside the subset,
unless ``l2`` is fixed) is fit on it and tested on the whole test split. Reported: mean and
sample standard deviation over the seeds, and every run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sempairs.errors import InputError
from sempairs.eval.linear import linear_probe, stratified_split


def fewshot_subset(labels, fraction: float | None = None, per_class: int | None = None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a balanced subset: ``per_class`` images of each class, or ``fraction`` of each."""
    return stratified_split(labels, fraction=fraction, per_class=per_class, seed=seed)[0]


def _setting_name(fraction: float | None, per_class: int | None) -> str:
    return f"{per_class}/class" if per_class is not None else f"{100 * fraction:g}%"


def fewshot_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                  test_labels: torch.Tensor, num_classes: int, fractions: Sequence[float] = (0.01, 0.1),
                  per_class: Sequence[int] = (), seeds: Sequence[int] = (0, 1, 2), l2: float | None = None,
                  **probe_options) -> dict:
    """Linear-probe top-1/top-5 (%) on few-label subsets: ``{setting: {top1_mean, top1_std, ..., runs}}``.

    ``probe_options`` go to :func:`sempairs.eval.linear.linear_probe` (grid, val_fraction, max_iter).
    """
    if not seeds:
        raise InputError("give at least one seed")
    train_labels = train_labels.long().cpu()
    settings = [(f, None) for f in fractions] + [(None, n) for n in per_class]
    results = {}
    for fraction, n in settings:
        runs = []
        for seed in seeds:
            rows = torch.from_numpy(fewshot_subset(train_labels, fraction, n, seed))
            probe = linear_probe(train_features[rows.to(train_features.device)], train_labels[rows], test_features,
                                 test_labels, num_classes, l2=l2, seed=seed, **probe_options)
            runs.append({"seed": seed, "labelled_images": len(rows), "top1": probe["linear_top1"],
                         "top5": probe["linear_top5"], "l2": probe["linear_l2"]})
        summary = {}
        for metric in ("top1", "top5"):
            values = np.array([run[metric] for run in runs])
            summary[f"{metric}_mean"] = float(values.mean())
            summary[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        results[_setting_name(fraction, n)] = {**summary, "runs": runs}
    return results
