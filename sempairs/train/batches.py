"""Batches of pairs for the training step: gather both members' uint8 images, augment on the device.

The uint8 images have one of three placements, chosen when the batches are built:

- **device**: the whole store lives on the device as one uint8 tensor (CIFAR-10 at 32 px is
  150 MB) and each batch is gathered there by index: no DataLoader workers in the hot path. Chosen
  for an in-RAM store taking at most ``DEVICE_MEMORY_SHARE`` of the free device memory (always on
  the CPU), or forced by ``train.data_on_device=true``.
- **pinned host**: an in-RAM store too large for the device (or ``train.data_on_device=false``)
  stays in pinned host memory; each batch is gathered on the host and copied asynchronously.
- **memory-mapped**: a store the cache opened memory-mapped (``data.memory=mmap``, or ``auto`` for
  a file larger than a share of the available RAM; see :mod:`sempairs.data.cache`) stays on disk.
  A DataLoader over the epoch's batches of pair indices runs ``train.loader_workers`` processes;
  each reads one batch's member images from the ``.npy`` file (every distinct image once, in file
  order) into a uint8 tensor, pinned on CUDA, a few batches ahead of the training step.

Whatever the placement, the main process augments the gathered uint8 images on the device with
the same :class:`BatchAugment` calls, in the same order, from the same generator, so the views
(and a run resumed from a checkpoint) are identical in all three. Each pair gives its anchor's
view, its positive's view, and with ``augment.local_crops`` = n the local views: ``ceil(n/2)`` of
the anchor, then ``floor(n/2)`` of the positive (see :meth:`PairBatches.augment_pair`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sempairs.augment import AugmentConfig, BatchAugment
from sempairs.config import ConfigError
from sempairs.pairs import PairSet

DEVICE_MEMORY_SHARE = 0.25  # at most this share of the free device memory holds the images


def fits_on_device(num_bytes: int, device: torch.device) -> bool:
    """Whether ``num_bytes`` of images should live on ``device`` (always on the CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return num_bytes <= DEVICE_MEMORY_SHARE * free


def mapped_file(images: np.ndarray) -> str | None:
    """The ``.npy`` file that ``images`` memory-maps as a whole, or None for an in-memory array.

    Loader workers open the file themselves, so a memory-mapped array must be the whole file as
    ``np.load(file, mmap_mode="r")`` opens it (not a slice of it).
    """
    if not isinstance(images, np.memmap):
        return None
    try:
        whole = np.load(images.filename, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"memory-mapped images must be a whole .npy file; {images.filename}: {exc}") from None
    if whole.shape != images.shape or not images.flags.c_contiguous:
        raise ValueError(f"memory-mapped images {images.shape} are a view of {images.filename} {whole.shape}: "
                         f"pass np.load(file, mmap_mode='r') itself, or an in-memory copy")
    return images.filename


def read_members(images: np.ndarray, anchors: np.ndarray, positives: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(B, 3, H, W)`` tensors of ``images[anchors]`` and ``images[positives]`` (``images`` NHWC).

    Each distinct image is read once, in increasing index order (sequential reads of a file).
    """
    rows, where = np.unique(np.concatenate([anchors, positives]), return_inverse=True)
    block = torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2).contiguous()
    members = block[torch.from_numpy(where.reshape(-1))]
    return members[: len(anchors)], members[len(anchors) :]


class _MappedBatches(Dataset):
    """Item ``i``: the member images of the pairs in row ``i`` of ``order``, read from a ``.npy`` file."""

    def __init__(self, file: str, anchors: np.ndarray, positives: np.ndarray, order: np.ndarray):
        self.file, self.anchors, self.positives, self.order = file, anchors, positives, order
        self.images = None  # mapped by the process that reads: each worker maps the file itself

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.images is None:
            self.images = np.load(self.file, mmap_mode="r", allow_pickle=False)
        row = self.order[i]
        return read_members(self.images, self.anchors[row], self.positives[row])


class PairBatches:
    """Turns batches of pair indices into augmented views: anchor, positive (and local views)."""

    def __init__(self, images, pairs: PairSet, augment: AugmentConfig, device: torch.device,
                 on_device: bool | None = None, channels_last: bool = False, loader_workers: int = 0):
        """``images``: uint8 ``(N, H, W, 3)`` array, in memory or memory-mapped (see the module docstring).

        ``on_device=None`` decides by :func:`fits_on_device`; ``loader_workers`` is the number of
        DataLoader processes reading a memory-mapped store (0: the main process reads).
        """
        self.device = device
        self.file = mapped_file(images)
        if self.file is not None:
            if on_device:
                raise ConfigError(f"train.data_on_device=true cannot hold the memory-mapped store {self.file}: "
                                 "set data.memory=ram (it must fit in RAM) or leave train.data_on_device unset")
            self.placement, self.images = "mmap", images
        else:
            host = torch.from_numpy(images).permute(0, 3, 1, 2)
            on_device = fits_on_device(host.numel(), device) if on_device is None else on_device
            self.placement = "device" if on_device else "host"
            if on_device:
                self.images = host.to(device).contiguous()
            else:
                self.images = host.contiguous().pin_memory() if device.type == "cuda" else host.contiguous()
        home = device if self.placement == "device" else torch.device("cpu")
        self.anchors = torch.from_numpy(pairs.anchor).to(home)
        self.positives = torch.from_numpy(pairs.positive).to(home)
        self.loader_workers = loader_workers
        self.augment = BatchAugment(augment)
        self.augment2 = BatchAugment(augment.second_view())  # the positive member's view (asymmetric presets)
        self.local_crops = augment.local_crops
        self.local_augment = BatchAugment(augment.local_view()) if augment.local_crops else None
        self.channels_last = channels_last

    def view_labels(self, image_labels: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
        """The class of each view the pairs ``idx`` give: ``cat(labels of anchors, labels of positives)``."""
        labels = torch.from_numpy(np.asarray(image_labels)).to(self.anchors.device)
        idx = idx.to(self.anchors.device)
        return torch.cat([labels[self.anchors[idx]], labels[self.positives[idx]]]).to(self.device)

    def _gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.placement == "device":
            idx = idx.to(self.device)
            return self.images[self.anchors[idx]], self.images[self.positives[idx]]
        idx = idx.cpu()
        if self.placement == "host":
            members = self.images[self.anchors[idx]], self.images[self.positives[idx]]
        else:
            members = read_members(self.images, self.anchors[idx].numpy(), self.positives[idx].numpy())
        return tuple(m.to(self.device, non_blocking=True) for m in members)

    def views(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Augmented views (float, normalised) of the pairs ``idx``: see :meth:`augment_pair`."""
        return self.augment_pair(*self._gather(idx), generator)

    def augment_pair(self, anchors: torch.Tensor, positives: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """(anchor view, positive view, *local views) of the pairs' uint8 member images.

        The positive view uses ``augment.second_view()`` (the same pipeline unless ``augment.view2``).
        The n = ``local_crops`` local views are ``ceil(n/2)`` of the anchors, then ``floor(n/2)``
        of the positives; each member's local views come from one batched call on its repeated
        images (per-sample random parameters, so they are independent crops).
        """
        views = [self.augment(anchors, generator=generator), self.augment2(positives, generator=generator)]
        first = (self.local_crops + 1) // 2
        for members, n in ((anchors, first), (positives, self.local_crops - first)):
            if n:
                views += self.local_augment(members.repeat(n, 1, 1, 1), generator=generator).chunk(n)
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return tuple(views)

    def epoch(self, order: torch.Tensor, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """The views of each row of ``order`` (``(steps, batch)`` pair indices), in turn.

        A memory-mapped store is read ahead by ``loader_workers`` DataLoader processes; the views
        are the same as :meth:`views` row by row.
        """
        if self.placement != "mmap":
            for idx in order:
                yield self.views(idx, generator)
            return
        rows = _MappedBatches(self.file, self.anchors.numpy(), self.positives.numpy(), order.cpu().numpy())
        loader = DataLoader(rows, batch_size=None, shuffle=False, num_workers=self.loader_workers,
                            pin_memory=self.device.type == "cuda")
        for anchors, positives in loader:
            members = (m.to(self.device, non_blocking=True) for m in (anchors, positives))
            yield self.augment_pair(*members, generator)
