"""Optimisers (LARS: ``train.lars``; SGD, AdamW), their parameter groups, and the per-step schedules.

Parameter groups: weights (``ndim > 1``) take the weight decay and, with LARS, the trust-ratio
adaptation; biases and normalisation parameters take neither (SimCLR/BYOL, solo-learn's
``exclude_bias_n_norm``), whatever the weight decay. The modules named in ``optim.fixed_lr``
get groups of their own whose learning rate stays at the peak (SimSiam's predictor).

Schedules, per optimiser step: the learning rate warms up linearly and then follows a cosine to
``min_lr``; with ``final_weight_decay`` the weight decay follows a cosine from ``weight_decay``
to it (DINO). ``clip_gradients`` caps the norm of each parameter's gradient (DINO).
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn as nn

from sempairs.config import OptimConfig
from sempairs.train.lars import Lars


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Weights and no-decay parameters, each split again into scheduled and fixed-lr ones (empty groups dropped).

    Every group records ``decay`` (whether it takes the weight decay) and ``fixed_lr``.
    """
    fixed = set()
    for name in cfg.fixed_lr:
        module = getattr(model, name, None)
        if not isinstance(module, nn.Module):
            children = ", ".join(n for n, _ in model.named_children())
            raise ValueError(f"optim.fixed_lr names '{name}', which is not a module of {type(model).__name__} "
                             f"(its modules: {children})")
        fixed.update(id(p) for p in module.parameters())
    groups = {(decay, fix): [] for decay in (True, False) for fix in (False, True)}
    for param in model.parameters():
        if param.requires_grad:
            groups[param.ndim > 1, id(param) in fixed].append(param)
    lars = cfg.name == "lars"
    return [
        {"params": params, "decay": decay, "fixed_lr": fix, "weight_decay": cfg.weight_decay if decay else 0.0,
         **({"always_adapt": decay, "trust_coeff": cfg.lars_eta, "trust_clip": cfg.lars_clip} if lars else {})}
        for (decay, fix), params in groups.items() if params
    ]


# Off the CPU, LARS steps with timm's form, all parameters at once where timm can (``foreach`` in
# recent timm, e.g. 1.0.31; by default only on the GPU); older timm refuses the keyword.
LARS_FOREACH = {"foreach": True} if "foreach" in inspect.signature(Lars).parameters else {}


def build_optimizer(model: nn.Module, cfg: OptimConfig, batch_size: int, fused: bool = False) -> torch.optim.Optimizer:
    """The configured optimiser at the peak learning rate ``cfg.lr * batch_size / 256``.

    ``fused`` selects PyTorch's fused CUDA kernels for SGD and AdamW (LARS is fused on the CPU
    and timm's foreach form on a GPU); the model must already be on the GPU.
    """
    lr = cfg.lr * batch_size / 256
    groups = param_groups(model, cfg)
    if cfg.name == "lars":
        return Lars(groups, lr=lr, momentum=cfg.momentum, **LARS_FOREACH)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, fused=fused or None)
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float = 0.0) -> float:
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then cosine decay to ``floor``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    return cosine(step - warmup_steps, total_steps - warmup_steps, peak, floor)


def cosine(step: int, steps: int, start: float, end: float) -> float:
    """Half a cosine from ``start`` (step 0) to ``end`` (step ``steps`` and after)."""
    progress = min(1.0, step / max(1, steps))
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every scheduled group (groups with ``fixed_lr`` keep theirs)."""
    for group in optimizer.param_groups:
        if not group.get("fixed_lr"):
            group["lr"] = lr


class Schedule:
    """The learning rate and weight decay of each optimiser step of a run."""

    def __init__(self, cfg: OptimConfig, batch_size: int, steps_per_epoch: int, epochs: int):
        self.cfg = cfg
        self.peak = cfg.lr * batch_size / 256
        self.floor = cfg.min_lr * batch_size / 256
        self.total = steps_per_epoch * epochs
        self.warmup = round(cfg.warmup_epochs * steps_per_epoch)

    def weight_decay_at(self, step: int) -> float:
        """``weight_decay``, or the cosine from it to ``final_weight_decay`` over the run."""
        final = self.cfg.final_weight_decay
        return self.cfg.weight_decay if final is None else cosine(step, self.total, self.cfg.weight_decay, final)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set the optimiser's learning rates and weight decays for ``step``; return the learning rate."""
        lr = lr_at(step, self.total, self.warmup, self.peak, self.floor)
        set_lr(optimizer, lr)
        if self.cfg.final_weight_decay is not None:
            decay = self.weight_decay_at(step)
            for group in optimizer.param_groups:
                if group.get("decay"):
                    group["weight_decay"] = decay
        return lr


@torch.no_grad()
def clip_gradients(parameters, max_norm: float) -> None:
    """Scale each parameter's gradient to an L2 norm of at most ``max_norm`` (DINO's ``clip_gradients``).

    The factor is ``max_norm / (norm + 1e-6)`` where that is below 1, as in DINO and
    ``torch.nn.utils.clip_grad_norm_`` applied to each parameter on its own.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norms = torch.stack(torch._foreach_norm(grads))
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, list(scale.unbind()))
