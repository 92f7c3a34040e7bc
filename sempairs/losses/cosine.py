"""Negative cosine similarity with a stop-gradient (SimSiam) and BYOL's normalised squared error."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sempairs.losses._numerics import no_autocast, check_pair


def _cosine(p: Tensor, z: Tensor) -> Tensor:
    check_pair(p, z, "p and z")
    with no_autocast(p):
        dt = torch.float64 if p.dtype == torch.float64 else torch.float32
        return (F.normalize(p.to(dt), dim=1) * F.normalize(z.detach().to(dt), dim=1)).sum(dim=1)


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    r"""SimSiam's symmetric-half loss :math:`D(p, \mathrm{stopgrad}(z))`.

    Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021:

    .. math::  D(p, z) = -\frac{1}{N} \sum_i \frac{p_i}{\|p_i\|} \cdot \frac{z_i}{\|z_i\|}

    ``z`` is detached. The full SimSiam loss is
    ``0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))``.
    """
    return -_cosine(p, z).mean()


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    r"""BYOL regression loss.

    Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020:

    .. math::  L = \frac{1}{N} \sum_i \left\| \bar p_i - \bar z_i \right\|_2^2
                 = \frac{1}{N} \sum_i \left(2 - 2 \cos(p_i, z_i)\right)

    with ``z`` (the target network's projection) detached. Symmetrise by adding
    the loss with the views swapped.
    """
    return (2.0 - 2.0 * _cosine(p, z)).mean()
