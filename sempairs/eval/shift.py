"""Generalisation beyond the training distribution: accuracy of a frozen backbone under corruption shift.

The CIFAR-10-C protocol (Hendrycks & Dietterich 2019; the corruptions are in
:mod:`sempairs.eval.corruptions`), for self-supervised features:

1. features of the clean train split: the kNN memory, and the data a linear probe is fit on
   ONCE (L2 strength chosen on a held-out part of it, as :func:`sempairs.eval.linear.linear_probe`);
2. the test split (optionally a seeded random subset of ``limit`` images), clean and under each
   corruption x severity, each scored by weighted kNN top-1 and the same linear probe's top-1.

The summary gives, per classifier, the clean accuracy, the **mean corruption accuracy** (mean
over the 15 standard CIFAR-10-C corruptions x the severities evaluated; occlusion, not part of
the benchmark, is reported on its own), and the **drop**: clean minus mean corruption accuracy,
in points. Corrupted test sets are cached (see :func:`corrupted_store`); their features are not
(one set of features per corruption x severity x checkpoint would be large, and extracting
them is quick next to generating the images).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from sempairs.data.store import ImageStore
from sempairs.errors import InputError
from sempairs.trained.loading import LoadedBackbone
from sempairs.eval.corruptions import CORRUPTIONS, SEVERITIES, STANDARD_CORRUPTIONS, corrupted_store
from sempairs.trained.features import cached_features, extract_features
from sempairs.eval.protocol import knn_result
from sempairs.eval.linear import fit_logistic, select_l2, topk_accuracy

CLASSIFIERS = ("knn", "linear")
OCCLUSION = "occlusion"


def limited(store: ImageStore, limit: int | None, seed: int = 0) -> ImageStore:
    """``store`` itself, or a seeded random subset of ``limit`` of its images (in their original order)."""
    if limit is None or limit >= len(store):
        return store
    if limit <= 0:
        raise InputError(f"limit must be a positive number of images, got {limit}")
    return store.subset(np.sort(np.random.default_rng(seed).choice(len(store), limit, replace=False)))


def summarise(rows: Sequence[dict], clean: dict[str, float]) -> tuple[dict[str, dict], dict[str, float | None]]:
    """Per-corruption means over severities, and the summary (clean, mean corruption, drop, occlusion per classifier)."""
    metrics = [m for m in CLASSIFIERS if f"{m}_top1" in clean]
    per_corruption: dict[str, dict] = {}
    for name in dict.fromkeys(r["corruption"] for r in rows):
        mine = [r for r in rows if r["corruption"] == name]
        per_corruption[name] = {f"{m}_top1": float(np.mean([r[f"{m}_top1"] for r in mine])) for m in metrics}
    summary: dict[str, float | None] = {}
    for m in metrics:
        standard = [r[f"{m}_top1"] for r in rows if r["corruption"] in STANDARD_CORRUPTIONS]
        mean = float(np.mean(standard)) if standard else None
        occluded = per_corruption.get(OCCLUSION, {}).get(f"{m}_top1")
        summary.update({f"{m}_clean": clean[f"{m}_top1"], f"{m}_mean_corruption": mean,
                        f"{m}_drop": None if mean is None else clean[f"{m}_top1"] - mean, f"{m}_occlusion": occluded})
    return per_corruption, summary


def shift_evaluate(backbone: LoadedBackbone, train: ImageStore, test: ImageStore,
                   corruptions: Sequence[str] | None = None, severities: Sequence[int] = SEVERITIES,
                   limit: int | None = None, seed: int = 0, knn_k: int = 200, knn_temperature: float = 0.1,
                   linear: bool = True, l2: float | None = None, use_cache: bool = True, batch_size: int = 1024,
                   on_set: Callable[[int, int, str], None] | None = None) -> dict:
    """kNN (and linear-probe) top-1 on ``test`` clean and under each corruption x severity (see the module doc).

    ``train`` and ``test`` are labelled stores at the backbone's resolution. ``seed`` draws the
    test subset (with ``limit``) and the corruptions. ``on_set(done, total, label)`` is called
    after each corrupted set. Returns the settings, ``clean``, ``rows`` (one per corruption x
    severity), ``per_corruption`` (means over severities), ``corruptions_in_mean`` and ``summary``.
    """
    corruptions = list(corruptions or CORRUPTIONS)
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown:
        raise InputError(f"unknown corruption {unknown[0]!r}; the corruptions are: {', '.join(CORRUPTIONS)}")
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise InputError(f"severities must be among {list(SEVERITIES)}, got {list(severities)}")
    for store in (train, test):
        if store.labels is None:
            raise InputError(f"{store.source} ({store.split}) has no labels. Fix: give a labelled split or dataset")
    if train.class_names != test.class_names:
        raise InputError(f"{train.source}: the {train.split} and {test.split} splits have different classes")
    test = limited(test, limit, seed)
    device = next(backbone.module.parameters()).device
    fast = device.type == "cuda"
    train_x = cached_features(backbone, train, batch_size=batch_size, channels_last=fast)
    train_y, test_y = torch.from_numpy(train.labels), torch.from_numpy(test.labels)
    classes = len(train.class_names)
    probe = None
    if linear:
        if l2 is None:
            l2, _ = select_l2(train_x, train_y, classes, seed=seed)
        probe = fit_logistic(train_x, train_y, classes, l2)

    def scores(features: torch.Tensor) -> dict[str, float]:
        out = {"knn_top1": knn_result(train_x, train_y, features, test_y, classes, knn_k, knn_temperature)["knn_top1"]}
        if probe is not None:
            out["linear_top1"] = topk_accuracy(probe(features), test_y)[0]
        return out

    clean = scores(cached_features(backbone, test, batch_size=batch_size, channels_last=fast))
    rows = []
    total = len(corruptions) * len(severities)
    for name in corruptions:
        for severity in severities:
            images = corrupted_store(test, name, severity, seed, use_cache).tensor()
            feats = extract_features(backbone.module, images, backbone.size, backbone.mean, backbone.std,
                                     batch_size, channels_last=fast)
            rows.append({"corruption": name, "severity": severity, **scores(feats)})
            if on_set is not None:
                on_set(len(rows), total, f"{name} {severity}")
    per_corruption, summary = summarise(rows, clean)
    return {"train_images": len(train), "test_images": len(test), "seed": seed, "knn_k": min(knn_k, len(train)),
            "knn_temperature": knn_temperature, "linear_l2": l2 if linear else None,
            "corruptions": corruptions, "severities": list(severities),
            "corruptions_in_mean": [c for c in corruptions if c in STANDARD_CORRUPTIONS], "clean": clean, "rows": rows,
            "per_corruption": per_corruption, "summary": summary}
