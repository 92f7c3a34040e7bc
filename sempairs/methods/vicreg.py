"""VICReg (Bardes, Ponce & LeCun, ICLR 2022, arXiv 2105.04906).

Loss: on the expander outputs z1, z2 of the two views (no negatives, no momentum network),
L = lambda s(z1, z2) + mu v(z1, z2) + nu c(z1, z2): s the mean squared distance (invariance),
v a hinge keeping the std of every dimension above 1 (variance), c the sum of squared
off-diagonal covariances / D (covariance); see ``sempairs.losses.vicreg_terms``. The statistics
are over the global batch (embeddings gathered across processes with their gradients).

Small-image defaults follow solo-learn's CIFAR recipe (scripts/pretrain/cifar/vicreg.yaml):
expander 3 layers 2048 -> 2048 -> 2048 (Linear-BN-ReLU x2, Linear), weights
lambda = mu = 25, nu = 1 (the paper's values), eps 1e-4. Optimiser (``recipe``): solo-learn's
LARS, lr 0.3 x batch/256, weight decay 1e-4, trust coefficient 0.02 with clipping, 10 warmup
epochs then cosine.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from sempairs.losses.vicreg import vicreg_terms
from sempairs.methods.base import Method, MethodConfig, StepOutput, gather, register
from sempairs.models.heads import mlp


class VICRegConfig(MethodConfig):
    name: Literal["vicreg"] = "vicreg"
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_dim: int = Field(2048, gt=0)
    proj_layers: int = Field(3, ge=1)
    sim_weight: float = Field(25.0, ge=0)
    var_weight: float = Field(25.0, ge=0)
    cov_weight: float = Field(1.0, ge=0)
    eps: float = Field(1e-4, gt=0)


@register
class VICReg(Method):
    config_class = VICRegConfig
    recipe = {"name": "lars", "lr": 0.3, "weight_decay": 1e-4}  # solo-learn scripts/pretrain/cifar/vicreg.yaml

    def __init__(self, backbone, feat_dim: int, cfg: VICRegConfig):
        super().__init__(backbone, feat_dim, cfg)
        self.projector = mlp(feat_dim, cfg.proj_hidden_dim, cfg.proj_dim, layers=cfg.proj_layers)

    def step(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        h1 = self.backbone(view1)
        z1 = self.projector(h1)
        z2 = self.projector(self.backbone(view2))
        c = self.cfg
        terms = vicreg_terms(gather(z1), gather(z2), eps=c.eps)
        loss = c.sim_weight * terms["invariance"] + c.var_weight * terms["variance"] + c.cov_weight * terms["covariance"]
        return StepOutput(loss, h1.detach(), {name: term.detach() for name, term in terms.items()})
