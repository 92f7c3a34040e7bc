"""NNCLR: the nearest neighbour from a support set as the positive."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sempairs.losses._numerics import no_autocast, check_temperature, check_pair


@torch.no_grad()
def nearest_neighbour(z: Tensor, support: Tensor) -> Tensor:
    r"""Nearest neighbour of each row of ``z`` in a support set (NNCLR).

    Dwibedi, Aytar, Tompson, Sermanet, Zisserman, "With a Little Help from My
    Friends: Nearest-Neighbor Contrastive Learning of Visual
    Representations", ICCV 2021:

    .. math::  NN(z_i, Q) = Q_{k^*},\quad k^* = \arg\max_k \frac{z_i \cdot Q_k}{\|z_i\| \|Q_k\|}

    Returns the (un-modified) rows of ``support`` (``(M, D)``), one per row of
    ``z`` (``(N, D)``), detached: no gradient flows through the lookup.
    """
    if z.dim() != 2 or support.dim() != 2 or z.shape[1] != support.shape[1]:
        raise ValueError(f"z (N, D) and support (M, D) must share D, got {tuple(z.shape)} and {tuple(support.shape)}")
    if support.shape[0] == 0:
        raise ValueError("support set is empty")
    with no_autocast(z):
        dt = torch.float64 if z.dtype == torch.float64 or support.dtype == torch.float64 else torch.float32
        zn = F.normalize(z.to(dt), dim=1)
        sn = F.normalize(support.to(device=z.device, dtype=dt), dim=1)
        idx = (zn @ sn.T).argmax(dim=1)
    return support.detach()[idx.to(support.device)]


def nnclr_loss(
    z1: Tensor,
    z2: Tensor,
    support: Tensor,
    temperature: float = 0.1,
    p1: Tensor | None = None,
    p2: Tensor | None = None,
    *,
    offset: int = 0,
) -> Tensor:
    r"""NNCLR loss (Dwibedi et al., ICCV 2021).

    With :math:`n_i = NN(z1_i, Q)` from :func:`nearest_neighbour` (no gradient),
    :math:`q2` the predictions ``p2`` of view 2 (or ``z2`` itself without a predictor)
    and all vectors L2-normalised,

    .. math::  L_{1 \to 2} = \frac1N \sum_i -\log \frac{\exp(n_i \cdot q2_{o+i} / t)}
               {\sum_k \exp(n_i \cdot q2_k / t)}

    and symmetrically :math:`L_{2 \to 1}` with :math:`NN(z2_i)` against ``p1`` (or ``z1``);
    the loss is :math:`(L_{1 \to 2} + L_{2 \to 1}) / 2`. The rows are the ``N`` pairs
    of ``z1``, ``z2``; the columns ``p1``, ``p2`` may be a whole batch (``(M, D)``, e.g.
    gathered across processes) of which the rows are the pairs from ``offset`` = o on
    (local rows against global columns, solo-learn's distributed form).
    """
    check_pair(z1, z2, "z1 and z2")
    check_temperature(temperature)
    q1 = z1 if p1 is None else p1
    q2 = z2 if p2 is None else p2
    check_pair(q1, q2, "p1 and p2")
    if q1.shape[1] != z1.shape[1] or not 0 <= offset <= q1.shape[0] - z1.shape[0]:
        raise ValueError(f"z1 {tuple(z1.shape)} at offset {offset} must be rows of the columns {tuple(q1.shape)}")
    nn1 = nearest_neighbour(z1, support)
    nn2 = nearest_neighbour(z2, support)
    with no_autocast(q1):
        dt = torch.float64 if q1.dtype == torch.float64 else torch.float32
        a1, a2 = F.normalize(q1.to(dt), dim=1), F.normalize(q2.to(dt), dim=1)
        b1 = F.normalize(nn1.to(device=q1.device, dtype=dt), dim=1)
        b2 = F.normalize(nn2.to(device=q1.device, dtype=dt), dim=1)
        target = offset + torch.arange(z1.shape[0], device=q1.device)
        l12 = F.cross_entropy(b1 @ a2.T / temperature, target)
        l21 = F.cross_entropy(b2 @ a1.T / temperature, target)
        return 0.5 * (l12 + l21)
