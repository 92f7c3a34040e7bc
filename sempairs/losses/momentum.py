"""Momentum (EMA) target networks: the update and BYOL's cosine momentum schedule."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def ema_update(target: torch.nn.Module, online: torch.nn.Module, momentum: float) -> None:
    r"""In-place exponential moving average of ``online`` into ``target``.

    BYOL / MoCo momentum encoder (Grill et al. 2020; He et al. 2020):

    .. math::  \theta_t \leftarrow m\, \theta_t + (1 - m)\, \theta_o

    for every floating-point parameter (matched by name); buffers (e.g.
    BatchNorm running statistics) and non-floating parameters are copied from
    ``online``.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    t_params = dict(target.named_parameters())
    o_params = dict(online.named_parameters())
    if t_params.keys() != o_params.keys():
        raise ValueError("target and online modules have different parameters")
    tf, of = [], []
    for name, pt in t_params.items():
        po = o_params[name]
        if pt.shape != po.shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(pt.shape)} in target, {tuple(po.shape)} in online")
        if pt.is_floating_point():
            tf.append(pt)
            of.append(po.detach().to(device=pt.device, dtype=pt.dtype))
        else:
            pt.copy_(po)
    if tf:
        torch._foreach_mul_(tf, momentum)
        torch._foreach_add_(tf, of, alpha=1.0 - momentum)
    t_bufs = dict(target.named_buffers())
    for name, bo in online.named_buffers():
        if name in t_bufs:
            t_bufs[name].copy_(bo)


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    r"""BYOL's cosine momentum schedule (Grill et al. 2020).

    .. math::  m_k = m_{final} - (m_{final} - m_{base}) \frac{\cos(\pi k / K) + 1}{2}

    so ``m_0 = base`` and ``m_K = final``; ``step`` is clamped to ``[0, K]``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    k = min(max(step, 0), total_steps)
    return final - (final - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0
