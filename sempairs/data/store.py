"""The in-memory form of every dataset: a uint8 image array with labels, class names and ids."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class ImageStore:
    """Images as one uint8 array (N, H, W, 3), in memory or memory-mapped from the cache (read-only),
    with optional integer labels.

    ``ids`` names each image the way pair files refer to it: the path inside the source
    (``train/cat/0001.jpg``) for folders and zips, ``"<index>"`` for array sources.
    """

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str]
    ids: list[str]
    source: str
    split: str = "train"
    _id_index: dict[str, int] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(
                f"{self.source}: images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}"
            )
        n = len(self.images)
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"{self.source}: {len(self.labels)} labels for {n} images")
        if len(self.ids) != n:
            raise ValueError(f"{self.source}: {len(self.ids)} ids for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        """Side length of the (square) images."""
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def index_of(self, image_id: str) -> int | None:
        """Position of the image called ``image_id``, or None if there is none."""
        if self._id_index is None:
            self._id_index = {name: i for i, name in enumerate(self.ids)}
        return self._id_index.get(image_id)

    def subset(self, indices) -> "ImageStore":
        """A new store holding the images at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageStore(
            images=self.images[idx],
            labels=None if self.labels is None else self.labels[idx],
            class_names=list(self.class_names),
            ids=[self.ids[i] for i in idx],
            source=self.source,
            split=self.split,
        )

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """All images as a uint8 tensor (N, 3, H, W) on ``device`` (a memory-mapped store is read in full)."""
        images = self.images if self.images.flags.writeable else np.array(self.images)  # torch wants writable arrays
        return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).contiguous()
