"""Barlow Twins (Zbontar et al., ICML 2021, arXiv 2103.03230).

Loss: with z1, z2 standardised per dimension over the batch and C = z1^T z2 / N their
cross-correlation, L = scale * (sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2)
(``barlow_twins_loss``; the batch is gathered across processes, with gradients, so C is the
global cross-correlation).

Small-image defaults follow solo-learn's CIFAR recipe (scripts/pretrain/cifar/barlow.yaml):
projector 3 layers 2048 -> 2048 -> 2048 (Linear-BN-ReLU x2, Linear) and ``scale_loss`` 0.1,
which we keep (its LARS lr 0.3 was tuned for the scaled loss; set ``scale_loss=1`` for the
paper's unscaled objective). lambda = 5e-3 is the paper's value (the official code and
solo-learn use 0.0051). Optimiser (``recipe``): solo-learn's LARS, lr 0.3 x batch/256, weight
decay 1e-4, trust coefficient 0.02 with clipping, 10 warmup epochs then cosine.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from sempairs.losses.barlow_twins import barlow_twins_terms
from sempairs.methods.base import Method, MethodConfig, StepOutput, gather, register
from sempairs.models.heads import mlp


class BarlowTwinsConfig(MethodConfig):
    name: Literal["barlow_twins"] = "barlow_twins"
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_dim: int = Field(2048, gt=0)
    proj_layers: int = Field(3, ge=1)
    lambda_offdiag: float = Field(5e-3, ge=0)
    scale_loss: float = Field(0.1, gt=0)


@register
class BarlowTwins(Method):
    config_class = BarlowTwinsConfig
    recipe = {"name": "lars", "lr": 0.3, "weight_decay": 1e-4}  # solo-learn scripts/pretrain/cifar/barlow.yaml

    def __init__(self, backbone, feat_dim: int, cfg: BarlowTwinsConfig):
        super().__init__(backbone, feat_dim, cfg)
        self.projector = mlp(feat_dim, cfg.proj_hidden_dim, cfg.proj_dim, layers=cfg.proj_layers)

    def step(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        h1 = self.backbone(view1)
        z1 = self.projector(h1)
        z2 = self.projector(self.backbone(view2))
        terms = barlow_twins_terms(gather(z1), gather(z2))
        loss = self.cfg.scale_loss * (terms["on_diagonal"] + self.cfg.lambda_offdiag * terms["off_diagonal"])
        return StepOutput(loss, h1.detach(), {name: term.detach() for name, term in terms.items()})
