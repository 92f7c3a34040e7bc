"""SimCLR (Chen et al., ICML 2020, arXiv 2002.05709).

Loss: NT-Xent over the 2N views of a batch; each view's positive is the other member of its pair
(two augmentations of one image, or two images of a semantic pair), the other 2N-2 views are
negatives: l(i,j) = -log exp(sim(z_i,z_j)/t) / sum_{k != i} exp(sim(z_i,z_k)/t).
With several processes each scores its own 2n views against the 2N views of the gathered batch
(lightly's local rows x global columns): the work per process does not grow with their number.
Small-image defaults follow solo-learn's CIFAR recipe: 2-layer projector 2048 -> 256,
temperature 0.2. Optimiser (``recipe``): solo-learn's CIFAR SimCLR (scripts/pretrain/cifar/simclr.sh):
LARS, lr 0.4 x batch/256, weight decay 1e-5 (its later simclr.yaml says 1e-4), trust coefficient
0.02 with clipping, biases and norms excluded, 10 warmup epochs then cosine.

Variant ``mask_same_class`` (uses labels, so not self-supervised; report it under its own name):
the views of images of the anchor's class are removed from its negatives (``nt_xent(exclude=)``),
the pair's partner stays its only positive. With few classes a batch holds many same-class
images, which plain NT-Xent pushes away from the anchor while a semantic pair pulls them close.

Variant ``supcon`` (uses labels too): every view of an image of the anchor's class is a positive
(``nt_xent(positives=)``, the SupCon "L_out" form of Khosla et al., NeurIPS 2020), not only the
pair's partner. The two variants exclude each other.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import model_validator

from sempairs.losses.nt_xent import nt_xent
from sempairs.methods.base import Method, MethodConfig, StepOutput, first_row, gather, register
from sempairs.models.heads import mlp


class SimCLRConfig(MethodConfig):
    name: Literal["simclr"] = "simclr"
    temperature: float = 0.2
    proj_hidden_dim: int = 2048
    proj_dim: int = 256
    mask_same_class: bool = False
    supcon: bool = False

    @model_validator(mode="after")
    def _one_variant(self):
        if self.mask_same_class and self.supcon:
            raise ValueError("mask_same_class and supcon are two variants: set at most one of them")
        return self


@register
class SimCLR(Method):
    config_class = SimCLRConfig
    recipe = {"name": "lars", "lr": 0.4, "weight_decay": 1e-5}  # solo-learn scripts/pretrain/cifar/simclr.sh

    def __init__(self, backbone, feat_dim: int, cfg: SimCLRConfig):
        super().__init__(backbone, feat_dim, cfg)
        self.projector = mlp(feat_dim, cfg.proj_hidden_dim, cfg.proj_dim)

    @property
    def uses_labels(self) -> bool:
        return self.cfg.mask_same_class or self.cfg.supcon

    def step(self, view1: torch.Tensor, view2: torch.Tensor, labels: torch.Tensor | None = None) -> StepOutput:
        h = self.backbone(torch.cat([view1, view2]))
        z = self.projector(h)
        z1, z2 = z.chunk(2)
        exclude = positives = None
        if labels is not None:  # a named variant: same-class views are no negatives, or are positives
            pair_labels = labels.chunk(2)[0]
            if self.cfg.supcon:
                positives = pair_labels[:, None] == gather(pair_labels)[None, :]
            else:
                columns = torch.cat([gather(part) for part in labels.chunk(2)])
                exclude = labels[:, None] == columns[None, :]
        loss = nt_xent(z1, z2, self.cfg.temperature, columns=(gather(z1), gather(z2)), offset=first_row(z1),
                       exclude=exclude, positives=positives)
        return StepOutput(loss, h.chunk(2)[0].detach())
