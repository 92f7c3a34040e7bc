"""VICReg: invariance, variance and covariance terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sempairs.losses._numerics import check_pair, no_autocast, off_diagonal


def vicreg_terms(z1: Tensor, z2: Tensor, eps: float = 1e-4) -> dict[str, Tensor]:
    r"""The three unweighted VICReg terms (Bardes, Ponce, LeCun, ICLR 2022).

    For ``(N, D)`` embeddings ``z1``, ``z2`` (``N >= 2``):

    * ``invariance``  :math:`s = \frac{1}{ND} \sum_{i,d} (z1_{id} - z2_{id})^2`
    * ``variance``    :math:`v = \frac12 \sum_{z \in \{z1, z2\}} \frac1D \sum_d
      \max(0, 1 - \sqrt{\mathrm{Var}(z_{:,d}) + \epsilon})`, unbiased variance, gamma = 1
    * ``covariance``  :math:`c = \sum_{z \in \{z1, z2\}} \frac1D \sum_{i \ne j} C(z)_{ij}^2`,
      :math:`C(z) = \frac{1}{N-1} (z - \bar z)^T (z - \bar z)`

    (averaging the variance term and summing the covariance term over the two
    branches, as in the official implementation).
    """
    check_pair(z1, z2, "z1 and z2")
    n, d = z1.shape
    if n < 2:
        raise ValueError("VICReg needs a batch of at least 2")
    with no_autocast(z1):
        dt = torch.float64 if z1.dtype == torch.float64 else torch.float32
        a, b = z1.to(dt), z2.to(dt)
        invariance = F.mse_loss(a, b)
        a = a - a.mean(dim=0)
        b = b - b.mean(dim=0)
        std_a = torch.sqrt(a.var(dim=0) + eps)
        std_b = torch.sqrt(b.var(dim=0) + eps)
        variance = 0.5 * (F.relu(1.0 - std_a).mean() + F.relu(1.0 - std_b).mean())
        cov_a = (a.T @ a) / (n - 1)
        cov_b = (b.T @ b) / (n - 1)
        covariance = off_diagonal(cov_a).pow(2).sum() / d + off_diagonal(cov_b).pow(2).sum() / d
    return {"invariance": invariance, "variance": variance, "covariance": covariance}


def vicreg_loss(
    z1: Tensor,
    z2: Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = 1e-4,
) -> Tensor:
    r"""VICReg: Variance-Invariance-Covariance Regularization.

    Bardes, Ponce, LeCun, ICLR 2022:

    .. math::  L = \lambda\, s(z1, z2) + \mu\, v(z1, z2) + \nu\, c(z1, z2)

    with ``lambda = sim_weight``, ``mu = var_weight``, ``nu = cov_weight`` and the
    terms defined in :func:`vicreg_terms`.
    """
    t = vicreg_terms(z1, z2, eps=eps)
    return sim_weight * t["invariance"] + var_weight * t["variance"] + cov_weight * t["covariance"]
