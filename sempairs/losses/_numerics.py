"""Shared numerics of the losses: autocast off, argument checks."""

from __future__ import annotations

import torch
from torch import Tensor


def no_autocast(x: Tensor):
    """A context that disables autocast on ``x``'s device type."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def check_temperature(temperature: float) -> None:
    """ValueError unless ``temperature`` > 0."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def check_pair(a: Tensor, b: Tensor, names: str) -> None:
    """ValueError unless ``a`` and ``b`` are 2-D tensors of the same shape (``names`` says which)."""
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"{names} must be 2-D tensors of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def off_diagonal(m: Tensor) -> Tensor:
    """The off-diagonal entries of the square matrix ``m``, flattened."""
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()
