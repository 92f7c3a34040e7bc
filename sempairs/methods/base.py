"""What every method provides to the training loop, and the registry of methods by name."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn as nn
from pydantic import BaseModel


@dataclass
class StepOutput:
    """A method's result on one batch: the loss to minimise, an embedding to watch for collapse, logs."""

    loss: torch.Tensor
    embedding: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


class Method(nn.Module):
    """A self-supervised method: a backbone, its heads and a loss on two views of a batch of pairs.

    Subclasses define ``config_class`` (a pydantic model with a literal ``name``) and ``step``.
    ``backbone`` is what evaluation uses; ``after_step`` runs after each optimiser step (EMA
    updates, queues). A method with ``supports_local_crops`` also takes the multi-crop local views
    (``augment.local_crops``) after the two global ones: ``step(view1, view2, *local_views)``.
    """

    config_class: type[BaseModel]
    supports_local_crops: bool = False

    def __init__(self, backbone: nn.Module, feat_dim: int, cfg: BaseModel):
        super().__init__()
        self.backbone, self.feat_dim, self.cfg = backbone, feat_dim, cfg

    def step(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        raise NotImplementedError

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, *local_views: torch.Tensor) -> StepOutput:
        if local_views and not self.supports_local_crops:
            raise ValueError(f"method {self.cfg.name} trains on two views and got {len(local_views)} local crops: "
                             "set augment.local_crops=0")
        return self.step(view1, view2, *local_views)

    def after_step(self, step: int, total_steps: int) -> None:
        """Hook after each optimiser step; nothing by default."""


def gather(z: torch.Tensor) -> torch.Tensor:
    """Concatenate ``z`` from all processes, keeping gradients (identity on one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        import torch.distributed.nn.functional as dist_fn

        return torch.cat(dist_fn.all_gather(z), dim=0)
    return z


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters take no gradient (a momentum/teacher network)."""
    target = copy.deepcopy(module)
    for param in target.parameters():
        param.requires_grad_(False)
    return target


@torch.no_grad()
def enqueue(queue: torch.Tensor, ptr: torch.Tensor, items: torch.Tensor) -> int:
    """Write ``items`` into the ring buffer ``queue`` at ``ptr`` (wrapping), advance ``ptr``.

    Returns how many rows were written (at most the queue length: only the newest are kept).
    """
    size = queue.shape[0]
    items = items.detach()[-size:]
    n = items.shape[0]
    start = int(ptr)
    idx = (start + torch.arange(n, device=queue.device)) % size
    queue[idx] = items.to(device=queue.device, dtype=queue.dtype)
    ptr.fill_((start + n) % size)
    return n


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to METHODS under its config's ``name``."""
    METHODS[cls.config_class.model_fields["name"].default] = cls
    return cls
