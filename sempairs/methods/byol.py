"""BYOL (Grill et al., NeurIPS 2020, arXiv 2006.07733).

Loss: an online network (backbone, projector g, predictor q) regresses the target network's
projection of the other view; the target (a copy of backbone + projector) is an exponential
moving average of the online weights and takes no gradient:
L = ||q(z1)/|q(z1)| - z2'/|z2'| ||^2 + ||q(z2)/|q(z2)| - z1'/|z1'| ||^2 (``byol_loss`` per direction,
averaged over the batch; the two directions are summed, as in the paper and solo-learn).
Momentum follows the cosine schedule m_k = 1 - (1 - m_base)(cos(pi k / K) + 1) / 2.

Small-image defaults follow solo-learn's CIFAR recipe (scripts/pretrain/cifar/byol.yaml):
projector 2-layer MLP 4096 -> 256, predictor 256 -> 4096 -> 256, momentum 0.99 -> 1.0
(the paper's ImageNet value is 0.996). Optimiser (``recipe``): solo-learn's (byol.yaml) LARS,
lr 1.0 x batch/256, weight decay 1e-5, trust coefficient 0.02 with clipping, 10 warmup epochs
then cosine. The EMA update runs in ``after_step``, after the optimiser step.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from sempairs.losses.cosine import byol_loss
from sempairs.losses.momentum import cosine_momentum, ema_update
from sempairs.methods.base import Method, MethodConfig, StepOutput, frozen_copy, register
from sempairs.models.heads import mlp


class BYOLConfig(MethodConfig):
    name: Literal["byol"] = "byol"
    proj_hidden_dim: int = Field(4096, gt=0)
    proj_dim: int = Field(256, gt=0)
    pred_hidden_dim: int = Field(4096, gt=0)
    base_momentum: float = Field(0.99, ge=0, le=1)
    final_momentum: float = Field(1.0, ge=0, le=1)


@register
class BYOL(Method):
    config_class = BYOLConfig
    recipe = {"name": "lars", "lr": 1.0, "weight_decay": 1e-5}  # solo-learn scripts/pretrain/cifar/byol.yaml

    def __init__(self, backbone, feat_dim: int, cfg: BYOLConfig):
        super().__init__(backbone, feat_dim, cfg)
        self.projector = mlp(feat_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim)
        self.target_backbone = frozen_copy(backbone)
        self.target_projector = frozen_copy(self.projector)

    @torch.no_grad()
    def _target(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_backbone(x))

    def step(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        h1 = self.backbone(view1)
        z1 = self.projector(h1)
        z2 = self.projector(self.backbone(view2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self._target(view1), self._target(view2)
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return StepOutput(loss, h1.detach())

    def after_step(self, step: int, total_steps: int) -> None:
        m = cosine_momentum(step, total_steps, self.cfg.base_momentum, self.cfg.final_momentum)
        ema_update(self.target_backbone, self.backbone, m)
        ema_update(self.target_projector, self.projector, m)
