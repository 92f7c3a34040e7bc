"""SimCLR (Chen et al., ICML 2020, arXiv 2002.05709).

Loss: NT-Xent over the 2N views of a batch; each view's positive is the other member of its pair
(two augmentations of one image, or two images of a semantic pair), the other 2N-2 views are
negatives: l(i,j) = -log exp(sim(z_i,z_j)/t) / sum_{k != i} exp(sim(z_i,z_k)/t).
Small-image defaults follow solo-learn's CIFAR recipe: 2-layer projector 2048 -> 256,
temperature 0.2 (LARS, lr 0.4 x batch/256, weight decay 1e-5 are set in the optimiser config).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from sempairs.losses import nt_xent
from sempairs.methods.base import Method, StepOutput, gather, register
from sempairs.models.heads import mlp


class SimCLRConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["simclr"] = "simclr"
    temperature: float = 0.2
    proj_hidden_dim: int = 2048
    proj_dim: int = 256


@register
class SimCLR(Method):
    config_class = SimCLRConfig

    def __init__(self, backbone, feat_dim: int, cfg: SimCLRConfig):
        super().__init__(backbone, feat_dim, cfg)
        self.projector = mlp(feat_dim, cfg.proj_hidden_dim, cfg.proj_dim)

    def step(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        z = self.projector(self.backbone(torch.cat([view1, view2])))
        z1, z2 = z.chunk(2)
        loss = nt_xent(gather(z1), gather(z2), self.cfg.temperature)
        return StepOutput(loss, z1.detach())
