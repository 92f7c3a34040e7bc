"""What a named dataset is (:class:`NamedDataset`), and ``DATASETS``, where each module of this package registers one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sempairs.registry import Registry


def train_flag(split: str) -> dict[str, Any]:
    """Constructor arguments of a torchvision dataset that takes ``train=`` (CIFAR, MNIST, ...) for ``split``."""
    return {"train": split == "train"}


def data_targets_classes(ds) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Images (N, H, W, 3), labels and class names of a torchvision dataset keeping ``data``, ``targets``, ``classes``."""
    return np.ascontiguousarray(ds.data), np.asarray(ds.targets, dtype=np.int64), list(ds.classes)


@dataclass(frozen=True)
class Torchvision:
    """How torchvision downloads and reads a dataset: its class, the folder it keeps under its root, its arguments."""

    class_name: str  # in torchvision.datasets
    folder: str  # kept under the root torchvision is given, e.g. cifar-10-batches-py
    split_args: Callable[[str], dict[str, Any]] = train_flag  # constructor arguments selecting one split
    arrays: Callable[[Any], tuple[np.ndarray, np.ndarray | None, list[str]]] = data_targets_classes


@dataclass(frozen=True)
class NamedDataset:
    """A dataset loadable by name: what ``list_datasets`` shows, and where and how a copy is found or fetched."""

    name: str
    description: str
    num_classes: int
    splits: tuple[str, ...]
    torchvision: Torchvision | None = None  # None: found locally only, never downloaded

    @property
    def local_names(self) -> tuple[str, ...]:
        """File and folder names a local copy may have, best first."""
        tv = (self.torchvision.folder,) if self.torchvision else ()
        n = self.name
        return tv + (f"{n}-jpeg.zip", f"{n}.zip", f"{n}.npz", f"{n}-jpeg", n)


DATASETS: Registry[NamedDataset] = Registry("dataset", "sempairs.data.datasets")
"""Every named dataset by name: each module of ``sempairs.data.datasets`` registers its own (:func:`register`)."""


def register(dataset: NamedDataset) -> NamedDataset:
    """Add ``dataset`` to DATASETS under its name."""
    return DATASETS.register(dataset.name, dataset)
