"""Exact t-SNE in torch (van der Maaten & Hinton, JMLR 2008), for the 2-D embedding maps of the reports.

None of the project's dependencies ships t-SNE, and the maps need a few thousand points, where
the exact O(N^2) algorithm takes seconds on a CPU and less on a GPU. The steps are the paper's,
with the settings of scikit-learn's ``TSNE`` (the usual reference):

1. PCA to at most 50 dimensions; squared Euclidean distances d_ij.
2. For each point, the Gaussian precision beta_i is found by bisection so that the conditional
   distribution p_{j|i} = exp(-beta_i d_ij) / sum_k exp(-beta_i d_ik) has perplexity
   2^H(P_i) equal to ``perplexity``; P = (P_cond + P_cond^T) / 2N.
3. Q has the Student-t kernel q_ij = (1 + |y_i - y_j|^2)^-1 / Z; the gradient of KL(P || Q) is
   dC/dy_i = 4 sum_j (p_ij - q_ij)(y_i - y_j)(1 + |y_i - y_j|^2)^-1.
4. Gradient descent with momentum 0.5 then 0.8, per-coordinate gains (+0.2 / x0.8, floor 0.01),
   early exaggeration 12 for the first 250 iterations, learning rate max(N / 12 / 4, 50)
   ("auto"), initialisation from the first two principal components scaled to std 1e-4.
"""

from __future__ import annotations

import math

import torch


def _pca(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Projection onto the top ``dims`` principal axes (exact, each axis signed by its largest entry)."""
    x = x - x.mean(0)
    _, vectors = torch.linalg.eigh(x.T @ x)
    v = vectors.flip(1)[:, : min(dims, *x.shape)]
    v = v * v.gather(0, v.abs().argmax(0, keepdim=True)).sign()
    return x @ v


def conditional_probabilities(dist2: torch.Tensor, perplexity: float, steps: int = 64) -> torch.Tensor:
    """Rows p_{j|i} (diagonal 0) whose perplexity is ``perplexity``, by bisection on log beta_i."""
    n = len(dist2)
    if not 1 <= perplexity < n:
        raise ValueError(f"perplexity must be at least 1 and below the number of points ({n}), got {perplexity}")
    target = math.log(perplexity)  # entropy in nats
    d = dist2 - dist2.min(1, keepdim=True).values.fill_diagonal_(0)  # shift per row: same p, no underflow
    d.fill_diagonal_(float("inf"))
    lo = torch.full((n, 1), -50.0, dtype=d.dtype, device=d.device)
    hi = torch.full((n, 1), 50.0, dtype=d.dtype, device=d.device)
    for _ in range(steps):
        log_beta = (lo + hi) / 2
        p = torch.softmax(-d * log_beta.exp(), dim=1)
        entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(1, keepdim=True)
        too_flat = entropy > target  # beta too small: raise it
        lo = torch.where(too_flat, log_beta, lo)
        hi = torch.where(too_flat, hi, log_beta)
    return torch.softmax(-d * ((lo + hi) / 2).exp(), dim=1)


def _joint_p(features: torch.Tensor, perplexity: float, pca_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The PCA-reduced points (float64) and their symmetric affinities P (off-diagonal sum 1)."""
    x = _pca(features.double(), pca_dims)
    n = len(x)
    p = conditional_probabilities(torch.cdist(x, x).square(), min(perplexity, (n - 1) / 3))
    return x, ((p + p.T) / (2 * n)).clamp_min(1e-12)


def _student_q(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Student-t kernel (1 + |y_i - y_j|^2)^-1 (diagonal 0) and Q, its normalisation."""
    kernel = 1.0 / (1.0 + torch.cdist(y, y).square())
    kernel.fill_diagonal_(0)
    return kernel, (kernel / kernel.sum()).clamp_min(1e-12)


def kl_gradient(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dKL(P || Q)/dy_i = 4 sum_j (p_ij - q_ij)(y_i - y_j)(1 + |y_i - y_j|^2)^-1 (P: joint, off-diagonal sum 1)."""
    kernel, q = _student_q(y)
    w = (p - q) * kernel
    return 4 * (w.sum(1, keepdim=True) * y - w @ y)


def tsne(
    features: torch.Tensor,
    perplexity: float = 30.0,
    iterations: int = 1000,
    exaggeration: float = 12.0,
    exaggeration_iterations: int = 250,
    pca_dims: int = 50,
) -> torch.Tensor:
    """2-D t-SNE coordinates (N, 2) of ``features`` (N, D), deterministic (PCA initialisation).

    The perplexity is capped at (N - 1) / 3 for small N.
    """
    n = len(features)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    x, p = _joint_p(features, perplexity, pca_dims)
    p, y = p.float(), x[:, :2].float()  # affinities in float64, the descent in float32
    y = y / y[:, 0].std() * 1e-4
    velocity = torch.zeros_like(y)
    gains = torch.ones_like(y)
    lr = max(n / exaggeration / 4, 50.0)
    for it in range(iterations):
        early = it < exaggeration_iterations
        grad = kl_gradient(exaggeration * p if early else p, y)
        same_sign = (grad > 0) == (velocity > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_min(0.01)
        velocity = (0.5 if early else 0.8) * velocity - lr * gains * grad
        y = y + velocity
    return y


def kl_divergence(features: torch.Tensor, coords: torch.Tensor, perplexity: float = 30.0, pca_dims: int = 50) -> float:
    """KL(P || Q) of a map ``coords`` of ``features``: t-SNE's objective, lower is better."""
    _, p = _joint_p(features, perplexity, pca_dims)
    _, q = _student_q(coords.double())
    mask = ~torch.eye(len(p), dtype=torch.bool, device=p.device)
    return float((p * (p / q).log())[mask].sum())
