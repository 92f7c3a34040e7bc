"""MoCo v2 (He et al., CVPR 2020, arXiv 1911.05722; Chen et al., arXiv 2003.04297).

Loss: InfoNCE between a query q = g(f(x1)) of the online encoder and the key k = g'(f'(x2)) of a
momentum encoder (a copy of backbone + projector updated as theta' <- m theta' + (1 - m) theta),
with a FIFO queue of K past keys as negatives:
l = -log exp(q.k+/t) / (exp(q.k+/t) + sum_{k- in queue} exp(q.k-/t)), q, k L2-normalised.
``symmetric=True`` also swaps the views (q2 against k1) and averages the two losses; the keys of
both views are then enqueued (the MoCo CIFAR-10 demo's symmetric option).

Small-image defaults: MoCo v2's 2-layer MLP projector without BN (2048 -> 128) and t = 0.2
(solo-learn's CIFAR mocov2plus also uses t = 0.2, with a 256-d output); momentum 0.99 and
K = 4096 from the official MoCo CIFAR-10 demo (facebookresearch/moco, colab notebook: ResNet-18,
"queue size saturated at --moco-k 4096" on CIFAR; solo-learn uses 32768 with a cosine momentum
0.99 -> 0.999, reachable here via ``queue_size`` and ``final_momentum``). Symmetric loss on by
default (demo kNN at 200 epochs: 85.3 vs 82.6, at twice the encoder passes per step).
Optimiser (``recipe``): solo-learn's CIFAR MoCo v2+ (scripts/pretrain/cifar/mocov2plus.yaml): SGD,
momentum 0.9, lr 0.3 x batch/256, weight decay 1e-4, 10 warmup epochs then cosine (the demo
uses SGD lr 0.06 at batch 512, weight decay 5e-4, no warmup).

Queue and momentum updates happen in ``after_step`` (after the optimiser step), not inside
``step``: ``step`` stays free of side effects, so the queue the loss read is not modified before
its backward, and a forward outside training (or a re-run) never pushes keys. The keys are
gathered across processes inside ``step`` (the forward, where every rank takes part), so every
rank enqueues the same global batch and the queues stay identical.

Not implemented: ShuffleBN (the demo reports -4% at 800 epochs without it on CIFAR; with a
single process shuffling does not change BatchNorm statistics, and the demo's SplitBatchNorm
is not reproduced). With several processes ``train.sync_batchnorm`` (on by default) computes the
statistics over the global batch instead, as solo-learn does. The queue starts as random unit
vectors, as in the reference code.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from sempairs.losses.info_nce import info_nce
from sempairs.losses.momentum import cosine_momentum, ema_update
from sempairs.methods.base import Method, MethodConfig, StepOutput, enqueue, frozen_copy, gather, register


class MoCoConfig(MethodConfig):
    name: Literal["moco"] = "moco"
    temperature: float = Field(0.2, gt=0)
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_dim: int = Field(128, gt=0)
    queue_size: int = Field(4096, gt=0)
    base_momentum: float = Field(0.99, ge=0, le=1)
    final_momentum: float = Field(0.99, ge=0, le=1)
    symmetric: bool = True


@register
class MoCo(Method):
    config_class = MoCoConfig
    recipe = {"name": "sgd", "lr": 0.3, "weight_decay": 1e-4}  # solo-learn scripts/pretrain/cifar/mocov2plus.yaml

    def __init__(self, backbone, feat_dim: int, cfg: MoCoConfig):
        super().__init__(backbone, feat_dim, cfg)
        self.projector = nn.Sequential(
            nn.Linear(feat_dim, cfg.proj_hidden_dim), nn.ReLU(inplace=True), nn.Linear(cfg.proj_hidden_dim, cfg.proj_dim)
        )
        self.target_backbone = frozen_copy(backbone)
        self.target_projector = frozen_copy(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))

    @torch.no_grad()
    def _key(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.target_projector(self.target_backbone(x)), dim=1)

    def step(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        t = self.cfg.temperature
        h1 = self.backbone(view1)
        q1 = self.projector(h1)
        k2 = self._key(view2)
        if self.cfg.symmetric:
            q2 = self._query(view2)
            k1 = self._key(view1)
            loss = 0.5 * (info_nce(q1, k2, self.queue, t) + info_nce(q2, k1, self.queue, t))
            keys = torch.cat([k1, k2])
        else:
            loss = info_nce(q1, k2, self.queue, t)
            keys = k2
        if self.training:
            with torch.no_grad():
                self._pending = gather(keys)
        return StepOutput(loss, h1.detach())

    def after_step(self, step: int, total_steps: int) -> None:
        m = cosine_momentum(step, total_steps, self.cfg.base_momentum, self.cfg.final_momentum)
        ema_update(self.target_backbone, self.backbone, m)
        ema_update(self.target_projector, self.projector, m)
        if self._pending is not None:
            enqueue(self.queue, self.queue_ptr, self._pending)
            self._pending = None
