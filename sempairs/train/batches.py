"""Batches of pairs for the training step: gather both members' uint8 images, augment on the device.

Small datasets live on the device as one uint8 tensor (CIFAR-10 at 32 px is 150 MB) and batches
are gathered there by index: no DataLoader workers in the hot path. A dataset too large for the
device's memory budget stays in pinned host memory; each batch is gathered on the host and copied
asynchronously, then augmented on the device by the same batched pipeline.
"""

from __future__ import annotations

import torch

from sempairs.augment import AugmentConfig, BatchAugment
from sempairs.pairs import PairSet

DEVICE_MEMORY_SHARE = 0.25  # at most this share of the free device memory holds the images


def fits_on_device(num_bytes: int, device: torch.device) -> bool:
    """Whether ``num_bytes`` of images should live on ``device`` (always on the CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return num_bytes <= DEVICE_MEMORY_SHARE * free


class PairBatches:
    """Turns a batch of pair indices into the two augmented views (anchor members, positive members)."""

    def __init__(self, images, pairs: PairSet, augment: AugmentConfig, device: torch.device,
                 on_device: bool | None = None, channels_last: bool = False):
        """``images``: uint8 ``(N, H, W, 3)`` array; ``on_device=None`` decides by :func:`fits_on_device`."""
        host = torch.from_numpy(images).permute(0, 3, 1, 2)
        self.device = device
        self.on_device = fits_on_device(host.numel(), device) if on_device is None else on_device
        if self.on_device:
            self.images = host.to(device).contiguous()
        else:
            self.images = host.contiguous().pin_memory() if device.type == "cuda" else host.contiguous()
        home = device if self.on_device else torch.device("cpu")
        self.anchors = torch.from_numpy(pairs.anchor).to(home)
        self.positives = torch.from_numpy(pairs.positive).to(home)
        self.augment = BatchAugment(augment)
        self.channels_last = channels_last

    def _gather(self, members: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.on_device:
            return self.images[members[idx.to(self.device)]]
        return self.images[members[idx.cpu()]].to(self.device, non_blocking=True)

    def views(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented views (float, normalised) of the anchors and positives of pairs ``idx``."""
        out = []
        for members in (self.anchors, self.positives):
            view = self.augment(self._gather(members, idx), generator=generator)
            out.append(view.contiguous(memory_format=torch.channels_last) if self.channels_last else view)
        return out[0], out[1]
