"""InfoNCE against a queue of keys (MoCo v2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sempairs.losses._numerics import no_autocast, check_temperature, check_pair


def info_nce(q: Tensor, k: Tensor, queue: Tensor | None, temperature: float = 0.2) -> Tensor:
    r"""InfoNCE as used by MoCo v2.

    He, Fan, Wu, Xie, Girshick, "Momentum Contrast for Unsupervised Visual
    Representation Learning", CVPR 2020; Chen, Fan, Girshick, He, "Improved
    Baselines with Momentum Contrastive Learning", arXiv 2003.04297 (2020).

    ``q`` (queries) and ``k`` (keys) are ``(N, D)`` and are L2-normalised here;
    ``k`` is treated as a constant (detached). With a ``queue`` of ``K``
    negative keys (``(K, D)``, normalised here too and detached) the logits of
    query ``i`` are ``[q_i . k_i, q_i . queue_1, ..., q_i . queue_K] / t`` and

    .. math::  L = \frac{1}{N} \sum_i -\log \frac{\exp(q_i k_i / t)}
               {\exp(q_i k_i / t) + \sum_j \exp(q_i \cdot queue_j / t)}

    i.e. cross-entropy with target 0. With ``queue=None`` the negatives of
    query ``i`` are the other keys of the batch ``k_j, j != i`` (logits
    ``q k^T / t``, target ``i``).
    """
    check_pair(q, k, "q and k")
    check_temperature(temperature)
    with no_autocast(q):
        dt = torch.float64 if q.dtype == torch.float64 else torch.float32
        qn = F.normalize(q.to(dt), dim=1)
        kn = F.normalize(k.detach().to(dt), dim=1)
        if queue is None:
            logits = qn @ kn.T / temperature
            target = torch.arange(q.shape[0], device=q.device)
        else:
            if queue.dim() != 2 or queue.shape[1] != q.shape[1]:
                raise ValueError(f"queue must be (K, {q.shape[1]}), got {tuple(queue.shape)}")
            negs = F.normalize(queue.detach().to(device=q.device, dtype=dt), dim=1)
            pos = (qn * kn).sum(dim=1, keepdim=True)
            logits = torch.cat([pos, qn @ negs.T], dim=1) / temperature
            target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, target)
