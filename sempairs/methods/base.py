"""What every method provides to the training loop, its config base, and the registry of methods by name."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.distributed as dist
import torch.nn as nn

from sempairs.registry import Registry
from sempairs.strict import Strict



class MethodConfig(Strict):
    """The base of every method's config: ``name`` (a ``Literal`` in each subclass) selects the method."""

    name: str


@dataclass
class StepOutput:
    """A method's result on one batch of pairs.

    ``loss``: the scalar to minimise. ``features``: the backbone features of the first view, detached,
    ``(n, feat_dim)``: for every method the representation evaluation uses (kNN, linear probe), which the
    training loop watches for collapse. ``logs``: named detached scalars the loop logs with the loss (the
    loss's terms, a positive-pair cosine), the same names at every step; they take no part in the loss.
    """

    loss: torch.Tensor
    features: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


class Method(nn.Module):
    """A self-supervised method: a backbone, its heads and a loss on two views of a batch of pairs.

    Subclasses define ``config_class`` (a pydantic model with a literal ``name``) and ``step``.
    ``backbone`` is what evaluation uses; ``after_step`` runs after each optimiser step (EMA
    updates, queues), ``before_update`` between the backward pass and the optimiser step. A method
    with ``supports_local_crops`` also takes the multi-crop local views (``augment.local_crops``)
    after the two global ones: ``step(view1, view2, *local_views)``. ``recipe`` holds the optimiser
    settings (``OptimConfig`` keys) the method trains with unless the run config says otherwise,
    with their source in a comment.
    """

    config_class: type[MethodConfig]
    supports_local_crops: bool = False
    recipe: ClassVar[dict] = {}

    @property
    def uses_labels(self) -> bool:
        """Whether ``step`` takes the class labels of the views (``labels=``): label-aware variants only."""
        return False

    @classmethod
    def recipe_for(cls, backbone: str) -> dict:
        """The optimiser recipe for a backbone (``backbone.name``); the same for all unless a method says otherwise."""
        return dict(cls.recipe)

    def __init__(self, backbone: nn.Module, feat_dim: int, cfg: MethodConfig):
        super().__init__()
        self.backbone, self.feat_dim, self.cfg = backbone, feat_dim, cfg

    def step(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        raise NotImplementedError

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, *local_views: torch.Tensor,
                labels: torch.Tensor | None = None) -> StepOutput:
        """The step's output; ``labels`` (the class of each view of ``cat(view1, view2)``) reach methods that use them."""
        if local_views and not self.supports_local_crops:
            raise ValueError(f"method {self.cfg.name} trains on two views and got {len(local_views)} local crops: "
                             "set augment.local_crops=0")
        if self.uses_labels:
            if labels is None:
                raise ValueError(f"method {self.cfg.name} with these settings needs the views' class labels")
            return self.step(view1, view2, *local_views, labels=labels)
        return self.step(view1, view2, *local_views)

    def before_update(self, epoch: int) -> None:
        """Hook after the backward pass of each step of ``epoch`` (0-based), before the update; nothing by default."""

    def after_step(self, step: int, total_steps: int) -> None:
        """Hook after each optimiser step; nothing by default."""


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather(z: torch.Tensor) -> torch.Tensor:
    """Concatenate ``z`` from all processes, keeping gradients (identity on one process)."""
    if _distributed():
        import torch.distributed.nn.functional as dist_fn

        return torch.cat(dist_fn.all_gather(z), dim=0)
    return z


def first_row(z: torch.Tensor) -> int:
    """Where this process's rows of ``z`` start in ``gather(z)`` (0 on one process)."""
    return dist.get_rank() * z.shape[0] if _distributed() else 0


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


METHODS: Registry[type[Method]] = Registry("method", "sempairs.methods")
"""Every method by its config's ``name``: each module of ``sempairs.methods`` registers its own (``@register``)."""


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to METHODS under its config's ``name``."""
    return METHODS.register(cls.config_class.model_fields["name"].default, cls)
