"""Evaluation protocols on image stores: features of both splits, then the classifier."""

from __future__ import annotations

import torch
import torch.nn as nn

from sempairs.data.store import ImageStore
from sempairs.errors import InputError
from sempairs.trained.features import extract_features
from sempairs.eval.knn import knn_accuracy


def _labelled(store: ImageStore) -> torch.Tensor:
    if store.labels is None:
        raise InputError(f"{store.source} ({store.split}) has no labels: kNN needs a labelled train and test split")
    return torch.from_numpy(store.labels)


def knn_evaluate(
    backbone: nn.Module,
    train: ImageStore,
    test: ImageStore,
    size: int,
    mean,
    std,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
    channels_last: bool = False,
) -> dict[str, float]:
    """Weighted kNN top-1/top-5 (%) of ``backbone`` features: train split as memory, test split as queries."""
    device = next(backbone.parameters()).device
    feats = [
        extract_features(backbone, s.tensor(device), size, mean, std, batch_size, channels_last) for s in (train, test)
    ]
    result = knn_accuracy(feats[0], _labelled(train), feats[1], _labelled(test), train.num_classes, k, temperature)
    return {**result, "knn_k": k, "knn_temperature": temperature, "train_images": len(train), "test_images": len(test)}
