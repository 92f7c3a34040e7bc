"""Optimisers (LARS from timm, SGD, AdamW) and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from timm.optim import Lars

from sempairs.config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with decay; biases and normalisation parameters (1-D) without.

    With LARS the second group is also excluded from the trust-ratio adaptation, as in SimCLR/BYOL.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig, batch_size: int, fused: bool = False) -> torch.optim.Optimizer:
    """The configured optimiser at the peak learning rate ``cfg.lr * batch_size / 256``.

    ``fused`` selects PyTorch's fused CUDA kernels for SGD and AdamW (LARS uses timm's foreach
    implementation); the model must already be on the GPU.
    """
    lr = cfg.lr * batch_size / 256
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "lars":
        return Lars(groups, lr=lr, momentum=cfg.momentum, foreach=True)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, fused=fused or None)
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float = 0.0) -> float:
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then cosine decay to ``floor``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
