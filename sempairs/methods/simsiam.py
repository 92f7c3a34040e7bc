"""SimSiam (Chen & He, CVPR 2021, arXiv 2011.10566).

Loss: a shared encoder (backbone + projector) gives z1, z2; a bottleneck predictor h gives
p = h(z); with stop-gradient on z, L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 where
D(p, z) = -cos(p, z) (``negative_cosine``, which detaches its second argument). There is no
momentum network: the stop-gradient alone prevents collapse.

Small-image defaults follow solo-learn's CIFAR recipe (scripts/pretrain/cifar/simsiam.yaml):
projector 3 layers 2048 -> 2048 -> 2048 with BN on every layer including the output
(Linear-BN-ReLU x2, Linear-BN), predictor bottleneck 2048 -> 512 -> 2048 (the paper's
Sec. 4.4). Optimiser (``recipe``): solo-learn's CIFAR SimSiam (scripts/pretrain/cifar/simsiam.yaml
and the ``static_lr`` predictor of solo/methods/simsiam.py): SGD, momentum 0.9, lr 0.5 x
batch/256, weight decay 1e-5, 10 warmup epochs then cosine, and the predictor's learning rate
fixed at the peak (``optim.fixed_lr=[predictor]``; the paper, Sec. 4.2: a fixed predictor lr
works better). The paper's own CIFAR setting is SGD, lr 0.03 x batch/256, weight decay 5e-4.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from sempairs.losses.cosine import negative_cosine
from sempairs.methods.base import Method, MethodConfig, StepOutput, register
from sempairs.models.heads import mlp


class SimSiamConfig(MethodConfig):
    name: Literal["simsiam"] = "simsiam"
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_dim: int = Field(2048, gt=0)
    pred_hidden_dim: int = Field(512, gt=0)


@register
class SimSiam(Method):
    config_class = SimSiamConfig
    # solo-learn scripts/pretrain/cifar/simsiam.yaml; the predictor is static_lr in solo/methods/simsiam.py
    recipe = {"name": "sgd", "lr": 0.5, "weight_decay": 1e-5, "fixed_lr": ["predictor"]}

    def __init__(self, backbone, feat_dim: int, cfg: SimSiamConfig):
        super().__init__(backbone, feat_dim, cfg)
        self.projector = mlp(feat_dim, cfg.proj_hidden_dim, cfg.proj_dim, layers=3, last_bn=True)
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim)

    def step(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        h1 = self.backbone(view1)
        z1 = self.projector(h1)
        z2 = self.projector(self.backbone(view2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))
        return StepOutput(loss, h1.detach())
