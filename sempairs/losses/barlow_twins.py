"""Barlow Twins: the cross-correlation matrix pulled to the identity."""

from __future__ import annotations

import torch
from torch import Tensor

from sempairs.losses._numerics import check_pair, no_autocast, off_diagonal


def barlow_twins_terms(z1: Tensor, z2: Tensor, *, eps: float = 1e-5) -> dict[str, Tensor]:
    r"""The two terms of the Barlow Twins redundancy-reduction loss.

    Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning
    via Redundancy Reduction", ICML 2021.

    Each dimension is standardised over the batch as a BatchNorm without affine
    parameters does in training mode, :math:`\hat z_{:,d} = (z_{:,d} - \mu_d) /
    \sqrt{\sigma_d^2 + \epsilon}` (biased variance, ``eps`` = BatchNorm's 1e-5);
    then :math:`C = \hat z_1^T \hat z_2 / N` and

    .. math::  L = \sum_i (1 - C_{ii})^2 + \lambda \sum_i \sum_{j \ne i} C_{ij}^2

    Returns the two unweighted terms: ``on_diagonal`` (the first sum) and ``off_diagonal`` (the second).
    """
    check_pair(z1, z2, "z1 and z2")
    n = z1.shape[0]
    with no_autocast(z1):
        dt = torch.float64 if z1.dtype == torch.float64 else torch.float32

        def standardise(z: Tensor) -> Tensor:
            z = z.to(dt)
            return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)

        c = standardise(z1).T @ standardise(z2) / n
        return {"on_diagonal": (1.0 - torch.diagonal(c)).pow(2).sum(), "off_diagonal": off_diagonal(c).pow(2).sum()}


def barlow_twins_loss(z1: Tensor, z2: Tensor, lambda_offdiag: float = 5e-3, *, eps: float = 1e-5) -> Tensor:
    """The Barlow Twins loss: ``on_diagonal + lambda_offdiag * off_diagonal`` of :func:`barlow_twins_terms`."""
    terms = barlow_twins_terms(z1, z2, eps=eps)
    return terms["on_diagonal"] + lambda_offdiag * terms["off_diagonal"]
