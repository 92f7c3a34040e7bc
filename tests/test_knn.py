"""kNN against data with known structure and an independent brute-force vote."""

from __future__ import annotations

import torch

from sempairs.eval.knn import knn_accuracy, knn_scores


def clusters(n_per_class: int, num_classes: int, dim: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centres[labels] + noise * torch.randn(len(labels), dim, generator=g), labels


def test_separated_clusters_are_classified_perfectly():
    train, ytrain = clusters(50, 5, 16, 0.05, 0)
    g = torch.Generator().manual_seed(1)
    test = train[::5] + 0.05 * torch.randn(len(train[::5]), 16, generator=g)
    acc = knn_accuracy(train, ytrain, test, ytrain[::5], 5, k=10)
    assert acc["knn_top1"] == 100.0


def test_random_labels_are_near_chance():
    train, _ = clusters(200, 4, 8, 1.0, 2)
    g = torch.Generator().manual_seed(3)
    ytrain = torch.randint(0, 4, (len(train),), generator=g)
    test, _ = clusters(100, 4, 8, 1.0, 4)
    ytest = torch.randint(0, 4, (len(test),), generator=g)
    assert 15 < knn_accuracy(train, ytrain, test, ytest, 4, k=20)["knn_top1"] < 35


def test_scores_match_a_brute_force_weighted_vote():
    g = torch.Generator().manual_seed(5)
    train = torch.randn(40, 6, generator=g, dtype=torch.float64)
    ytrain = torch.randint(0, 3, (40,), generator=g)
    test = torch.randn(7, 6, generator=g, dtype=torch.float64)
    k, t = 5, 0.1
    got = knn_scores(train, ytrain, test, 3, k=k, temperature=t, chunk=3)
    for q in range(len(test)):
        sims = [float(test[q] @ train[j] / (test[q].norm() * train[j].norm())) for j in range(len(train))]
        nearest = sorted(range(len(train)), key=lambda j: -sims[j])[:k]
        expected = [0.0, 0.0, 0.0]
        for j in nearest:
            expected[int(ytrain[j])] += torch.exp(torch.tensor(sims[j] / t)).item()
        torch.testing.assert_close(got[q], torch.tensor(expected, dtype=torch.float32), rtol=1e-4, atol=1e-4)


def test_k_larger_than_memory_is_capped():
    train, ytrain = clusters(3, 2, 4, 0.01, 6)
    assert knn_accuracy(train, ytrain, train, ytrain, 2, k=200)["knn_top1"] == 100.0
