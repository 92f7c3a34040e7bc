"""DINO (Caron et al., ICCV 2021, arXiv 2104.14294).

Loss: self-distillation without labels. A student (backbone + head) and a teacher (a copy,
updated as the EMA of the student, no gradient) map each view to K prototype scores; the
teacher's are centred and sharpened, P_t = softmax((t - c) / tau_t), the student's are
log_softmax(s / tau_s), and L is the cross-entropy -sum P_t log P_s averaged over the pairs of
different views (teacher view 1 -> student view 2 and 2 -> 1, and with multi-crop each teacher
view -> every local view; ``dino_loss``). The centre c is an EMA of the teacher outputs on the
global views (``dino_center_update``, momentum 0.9, global-batch mean). Head: MLP
(Linear-GELU x2, Linear to a bottleneck, no BN) -> L2 normalisation -> weight-normalised linear
layer without bias onto K prototypes (``norm_last_layer`` fixes the weight norms to 1).

Small-image defaults follow solo-learn's CIFAR recipe (scripts/pretrain/cifar/dino.yaml and
solo/methods/dino.py): hidden 2048, bottleneck 256, K = 4096 prototypes, no BN in the head,
norm_last_layer, student temperature 0.1. Teacher momentum: the paper's cosine 0.996 -> 1
(solo-learn uses 0.9995 on CIFAR, and the DINO code recommends 0.9995 for batches of 256).
Teacher temperature: fixed 0.04 by default; for the paper's linear warmup from
``warmup_teacher_temp`` (0.04) to ``teacher_temp`` (e.g. 0.07, solo-learn's CIFAR value) set
``warmup_teacher_temp_fraction`` > 0: the warmup spans that fraction of the total optimiser steps
(the method sees steps, not epochs; solo-learn's 50 of 1000 epochs is 0.05). The current value
is a buffer, so it survives resume.

Multi-crop (``augment.local_crops`` > 0, e.g. the ``dino_multicrop`` augmentation preset): the
two global views are the pair's anchor and positive; the local views (smaller crops at
``augment.local_size``, half of the anchor, half of the positive, see ``sempairs.augment``) pass
through the student only, in one forward (as DINO's MultiCropWrapper groups crops of one
resolution), while the teacher sees the global views. With SP pairs a local crop of the anchor is
thus matched to the teacher's view of the anchor itself and of its semantic positive.
The prototype layer takes no update during the first ``freeze_last_layer_epochs`` epochs (1 in
the paper and solo-learn). The student backbone is ``backbone`` (what evaluation uses); the paper
evaluates the teacher, which is ``teacher_backbone``.

Optimiser (``recipe_for``): ResNets take solo-learn's CIFAR DINO (scripts/pretrain/cifar/dino.yaml:
LARS, lr 0.3 x batch/256, weight decay 1e-6, trust coefficient 0.02 with clipping, no gradient
clipping, 10 warmup epochs then cosine); ViTs the paper's (facebookresearch/dino main_dino.py
defaults: AdamW, lr 5e-4 x batch/256, weight decay cosine 0.04 -> 0.4, per-parameter gradient
clipping at 3.0, 10 warmup epochs, cosine to 1e-6).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from sempairs.losses.dino import dino_center_update, dino_loss
from sempairs.losses.momentum import cosine_momentum, ema_update
from sempairs.methods.base import Method, MethodConfig, StepOutput, frozen_copy, register


class DINOConfig(MethodConfig):
    name: Literal["dino"] = "dino"
    proj_hidden_dim: int = Field(2048, gt=0)
    bottleneck_dim: int = Field(256, gt=0)
    out_dim: int = Field(4096, gt=0)
    norm_last_layer: bool = True
    student_temp: float = Field(0.1, gt=0)
    teacher_temp: float = Field(0.04, gt=0)
    warmup_teacher_temp: float = Field(0.04, gt=0)
    warmup_teacher_temp_fraction: float = Field(0.0, ge=0, le=1)
    center_momentum: float = Field(0.9, ge=0, le=1)
    base_momentum: float = Field(0.996, ge=0, le=1)
    final_momentum: float = Field(1.0, ge=0, le=1)
    freeze_last_layer_epochs: int = Field(1, ge=0)

    def teacher_temp_at(self, step: int, total_steps: int) -> float:
        """Linear warmup from ``warmup_teacher_temp`` to ``teacher_temp``, then constant.

        With ``warmup_teacher_temp_fraction=0`` (the default) it is ``teacher_temp`` throughout.
        """
        warmup = self.warmup_teacher_temp_fraction * total_steps
        if warmup == 0 or step >= warmup:
            return self.teacher_temp
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * step / warmup


class DINOHead(nn.Module):
    """MLP -> L2 normalisation -> weight-normalised prototypes (no bias)."""

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int, norm_last_layer: bool = True):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        # Weight norm w_k = g_k v_k / |v_k| with g initialised to 1 (and frozen when norm_last_layer).
        self.prototypes = nn.Parameter(nn.Linear(bottleneck_dim, out_dim, bias=False).weight.detach().clone())
        self.prototype_norms = None if norm_last_layer else nn.Parameter(torch.ones(out_dim, 1))

    def last_layer(self) -> list[nn.Parameter]:
        """The parameters of the prototype layer (DINO's ``last_layer``)."""
        return [p for p in (self.prototypes, self.prototype_norms) if p is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        w = F.normalize(self.prototypes, dim=1)
        if self.prototype_norms is not None:
            w = w * self.prototype_norms
        return F.linear(x, w)


@register
class DINO(Method):
    config_class = DINOConfig
    supports_local_crops = True
    recipe = {"name": "lars", "lr": 0.3, "weight_decay": 1e-6}  # solo-learn scripts/pretrain/cifar/dino.yaml
    vit_recipe = {"name": "adamw", "lr": 5e-4, "weight_decay": 0.04, "final_weight_decay": 0.4, "clip_grad": 3.0,
                  "min_lr": 1e-6}  # facebookresearch/dino main_dino.py defaults

    @classmethod
    def recipe_for(cls, backbone: str) -> dict:
        """The paper's recipe for ViTs, solo-learn's CIFAR recipe for ResNets."""
        return dict(cls.vit_recipe if backbone.startswith("vit") else cls.recipe)

    def __init__(self, backbone, feat_dim: int, cfg: DINOConfig):
        super().__init__(backbone, feat_dim, cfg)
        self.head = DINOHead(feat_dim, cfg.proj_hidden_dim, cfg.bottleneck_dim, cfg.out_dim, cfg.norm_last_layer)
        self.teacher_backbone = frozen_copy(backbone)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))
        self.register_buffer("teacher_temp", torch.tensor(cfg.teacher_temp_at(0, 1)))
        self._pending: list[torch.Tensor] | None = None

    @torch.no_grad()
    def _teacher(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher_head(self.teacher_backbone(x))

    def step(self, view1: torch.Tensor, view2: torch.Tensor, *local_views: torch.Tensor) -> StepOutput:
        h1 = self.backbone(view1)
        s1 = self.head(h1)
        s2 = self.head(self.backbone(view2))
        student = [s1, s2]
        if local_views:
            student += self.head(self.backbone(torch.cat(local_views))).chunk(len(local_views))
        t1, t2 = self._teacher(view1), self._teacher(view2)
        loss = dino_loss(student, [t1, t2], self.center, self.cfg.student_temp, float(self.teacher_temp))
        if self.training:
            self._pending = [t1, t2]
        return StepOutput(loss, h1.detach())

    def before_update(self, epoch: int) -> None:
        """No update of the prototype layer during the first ``freeze_last_layer_epochs`` epochs."""
        if epoch < self.cfg.freeze_last_layer_epochs:
            for param in self.head.last_layer():
                param.grad = None

    def after_step(self, step: int, total_steps: int) -> None:
        m = cosine_momentum(step, total_steps, self.cfg.base_momentum, self.cfg.final_momentum)
        ema_update(self.teacher_backbone, self.backbone, m)
        ema_update(self.teacher_head, self.head, m)
        if self._pending is not None:
            self.center.copy_(dino_center_update(self.center, self._pending, self.cfg.center_momentum))
            self._pending = None
        self.teacher_temp.fill_(self.cfg.teacher_temp_at(step + 1, total_steps))
