"""NNCLR (Dwibedi et al., ICCV 2021, arXiv 2104.14548).

Loss: contrastive, but the positive of a view is the nearest neighbour of its projection in a
support set Q of past projections (no gradient through the look-up). With z = g(f(x)), a
predictor p = h(z) and NN(z) = argmax_{q in Q} cos(z, q),
L = 1/2 [CE(NN(z1) . p2^T / t) + CE(NN(z2) . p1^T / t)] where row i of NN(z1) . p2^T has its
positive in column i and the rest of the (global) batch as negatives, all vectors L2-normalised
(solo-learn's form). With ``use_predictor=False`` the predictions are the projections themselves
and the loss is ``sempairs.losses.nnclr_loss``. The support set is a FIFO queue of the
projections of the first view of each (global) batch, pushed in ``after_step``.

Small-image defaults follow solo-learn's CIFAR recipe (scripts/pretrain/cifar/nnclr.yaml,
solo/methods/nnclr.py): projector 3 layers 2048 -> 2048 -> 256 with BN on the output, predictor
256 -> 4096 -> 256, temperature 0.2 (the paper's ImageNet value is 0.1). Support set: 16384, our
choice, not a published value: the paper uses 98,304 on ImageNet and solo-learn 65,536 on
CIFAR-10, more than its 50,000 images; the pair sets studied here are smaller, and a queue far
larger than the data set mostly holds stale copies of the same images. Only filled slots are
searched; before the first push the support set is the current batch's first-view projections.
With several processes each scores its own rows against the predictions of the gathered batch
(solo-learn's local rows x global columns). Optimiser (``recipe``): solo-learn's CIFAR NNCLR
(scripts/pretrain/cifar/nnclr.yaml): LARS, lr 0.4 x batch/256, weight decay 1e-5, trust
coefficient 0.02 with clipping, 10 warmup epochs then cosine.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from sempairs.losses.nnclr import nnclr_loss
from sempairs.methods.base import Method, MethodConfig, StepOutput, enqueue, first_row, gather, register
from sempairs.models.heads import mlp


class NNCLRConfig(MethodConfig):
    name: Literal["nnclr"] = "nnclr"
    temperature: float = Field(0.2, gt=0)
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_dim: int = Field(256, gt=0)
    pred_hidden_dim: int = Field(4096, gt=0)
    use_predictor: bool = True
    queue_size: int = Field(16384, gt=0)


@register
class NNCLR(Method):
    config_class = NNCLRConfig
    recipe = {"name": "lars", "lr": 0.4, "weight_decay": 1e-5}  # solo-learn scripts/pretrain/cifar/nnclr.yaml

    def __init__(self, backbone, feat_dim: int, cfg: NNCLRConfig):
        super().__init__(backbone, feat_dim, cfg)
        self.projector = mlp(feat_dim, cfg.proj_hidden_dim, cfg.proj_dim, layers=3, last_bn=True)
        if cfg.use_predictor:
            self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden_dim, cfg.proj_dim)
        self.register_buffer("queue", torch.zeros(cfg.queue_size, cfg.proj_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_len", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None

    def support(self, fallback: torch.Tensor) -> torch.Tensor:
        """The filled part of the support queue, or ``fallback`` while it is empty."""
        filled = int(self.queue_len)
        return self.queue[:filled] if filled else fallback.detach()

    def step(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        h1 = self.backbone(view1)
        z1 = self.projector(h1)
        z2 = self.projector(self.backbone(view2))
        with torch.no_grad():
            new = gather(F.normalize(z1.detach(), dim=1))
        support = self.support(new)
        p1, p2 = (self.predictor(z1), self.predictor(z2)) if self.cfg.use_predictor else (z1, z2)
        loss = nnclr_loss(z1, z2, support, self.cfg.temperature, p1=gather(p1), p2=gather(p2), offset=first_row(z1))
        if self.training:
            self._pending = new
        return StepOutput(loss, h1.detach())

    def after_step(self, step: int, total_steps: int) -> None:
        if self._pending is not None:
            n = enqueue(self.queue, self.queue_ptr, self._pending)
            self.queue_len.fill_(min(int(self.queue_len) + n, self.queue.shape[0]))
            self._pending = None
