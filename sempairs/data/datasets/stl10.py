"""STL-10, read from torchvision's ``stl10_binary`` or a local image folder, zip or npz."""

from __future__ import annotations

from typing import Any

import numpy as np

from sempairs.data.datasets.base import NamedDataset, Torchvision, register

CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def _split_args(split: str) -> dict[str, Any]:
    return {"split": split}


def _arrays(ds) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Images (N, H, W, 3), labels (None for the unlabelled split) and class names of torchvision's STL10."""
    images = np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1))
    labels = None if ds.labels is None or (ds.labels < 0).all() else ds.labels.astype(np.int64)
    return images, labels, list(getattr(ds, "classes", CLASSES))


register(NamedDataset(
    name="stl10",
    description="STL-10: 96x96 colour images in 10 classes (train 5,000, test 8,000, unlabeled 100,000)",
    num_classes=10,
    splits=("train", "test", "unlabeled"),
    torchvision=Torchvision("STL10", "stl10_binary", split_args=_split_args, arrays=_arrays),
))
