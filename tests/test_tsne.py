"""t-SNE: perplexity calibration, the KL gradient against autograd, cluster structure kept."""

import math

import pytest
import torch

from sempairs.experiments.tsne import conditional_probabilities, kl_divergence, kl_gradient, tsne


def test_conditional_probabilities_have_the_asked_perplexity():
    x = torch.randn(200, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = conditional_probabilities(torch.cdist(x, x).square(), perplexity=20)
    assert torch.allclose(p.sum(1), torch.ones(200, dtype=torch.float64))
    assert torch.all(p.diagonal() == 0)
    entropy_bits = [-sum(v * math.log2(v) for v in row.tolist() if v > 0) for row in p]
    assert [2**h for h in entropy_bits] == pytest.approx([20.0] * 200, rel=1e-4)
    with pytest.raises(ValueError, match="perplexity"):
        conditional_probabilities(torch.cdist(x, x).square(), perplexity=500)


def test_kl_gradient_matches_autograd():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(12, 12, generator=g, dtype=torch.float64)
    p = p + p.T
    p.fill_diagonal_(0)
    p = p / p.sum()
    y = torch.randn(12, 2, generator=g, dtype=torch.float64, requires_grad=True)
    diff = y[:, None, :] - y[None, :, :]
    kernel = 1 / (1 + (diff**2).sum(-1))
    off = ~torch.eye(12, dtype=torch.bool)
    q = kernel[off] / kernel[off].sum()
    kl = (p[off] * torch.log(p[off] / q)).sum()
    (expected,) = torch.autograd.grad(kl, y)
    assert torch.allclose(kl_gradient(p, y.detach()), expected, atol=1e-10)


def test_tsne_keeps_separated_clusters_apart():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 3
    x = (torch.randn(3, 40, generator=g) * 8)[labels] + torch.randn(300, 40, generator=g)
    y = tsne(x, perplexity=20, iterations=500)
    assert y.shape == (300, 2) and torch.isfinite(y).all()
    d = torch.cdist(y, y)
    d.fill_diagonal_(float("inf"))
    neighbours = d.topk(5, largest=False).indices
    assert (labels[neighbours] == labels[:, None]).all()
    assert kl_divergence(x, y, 20) < 0.8 * kl_divergence(x, torch.randn(300, 2, generator=g), 20)
    assert torch.equal(y, tsne(x, perplexity=20, iterations=500))  # deterministic
