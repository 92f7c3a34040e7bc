"""Weighted k-nearest-neighbour classification on L2-normalised features.

The common SSL protocol (Wu et al., CVPR 2018, "instance discrimination"): each test feature
votes with its k most cosine-similar training features, each vote weighted by exp(sim / t);
defaults k = 200, t = 0.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores (M, C) for each test feature: the sum of exp(sim/t) over its k neighbours per class."""
    train = F.normalize(train_features.float(), dim=1)
    labels = train_labels.to(train.device)
    k = min(k, len(train))
    scores = []
    for start in range(0, len(test_features), chunk):
        query = F.normalize(test_features[start : start + chunk].float().to(train.device), dim=1)
        sim, idx = (query @ train.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(len(query), num_classes, device=train.device)
        votes.scatter_add_(1, labels[idx], weights)
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (in %) of weighted kNN."""
    scores = knn_scores(train_features, train_labels, test_features, num_classes, k, temperature)
    target = test_labels.to(scores.device)
    top = scores.topk(min(5, num_classes), dim=1).indices
    return {
        "knn_top1": 100.0 * (top[:, 0] == target).float().mean().item(),
        "knn_top5": 100.0 * (top == target[:, None]).any(dim=1).float().mean().item(),
    }
