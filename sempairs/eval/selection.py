"""Which images an evaluation uses: the one place a data selection (a :class:`DataConfig`) becomes image stores.

A selection names the dataset, its folder, the resolution, the memory split (``split``) and query
split (``test_split``, ``heldout`` included: images carved from the training split), the classes
and the images per class of each. The training loop's kNN, every grid evaluation and every
``sempairs eval`` command select their images here; a run's training images come from
:func:`load_split` too. :func:`selection_record` is what a result file records of it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from sempairs.config import DataConfig
from sempairs.data.registry import load_dataset
from sempairs.data.sources import DataError, select
from sempairs.data.store import ImageStore
from sempairs.errors import InputError

HELDOUT = "heldout"  # data.test_split value: images carved from the training split (see DataConfig)
RECORDED = ("dataset", "root", "size", "split", "test_split", "classes", "limit_per_class", "test_limit_per_class")


def load_split(cfg: DataConfig, split: str, limit_per_class: int | None) -> ImageStore:
    """One split of the configured dataset, at the configured resolution.

    With ``data.test_split: heldout`` the training split loses the last ``data.heldout_per_class``
    images of each class, and those images are the ``heldout`` split (see :class:`DataConfig`).
    """
    carved = cfg.test_split == HELDOUT and split in (cfg.split, HELDOUT)
    store = load_dataset(cfg.dataset, split=cfg.split if carved else split, size=cfg.size, download=cfg.download,
                         root=cfg.root, classes=cfg.classes, limit_per_class=None if carved else limit_per_class,
                         memory=cfg.memory, resize=cfg.resize, workers=cfg.decode_workers)
    if not carved:
        return store
    held = heldout_mask(store, cfg.heldout_per_class)
    part = store.subset(np.flatnonzero(held if split == HELDOUT else ~held))
    part.split = split
    return select(part, limit_per_class=limit_per_class)


def heldout_mask(store: ImageStore, per_class: int) -> np.ndarray:
    """True for the last ``per_class`` images of each class of ``store`` (the carved-out validation images)."""
    if store.labels is None:
        raise DataError(f"{store.source}: data.test_split={HELDOUT} needs labels to hold out images per class; "
                        "use a labelled split or data.test_split=null")
    held = np.zeros(len(store), dtype=bool)
    for c in range(store.num_classes):
        members = np.flatnonzero(store.labels == c)
        if len(members) <= per_class:
            raise DataError(f"{store.source}: class {store.class_names[c]!r} has {len(members)} images, too few to hold "
                            f"out data.heldout_per_class={per_class} and train on the rest; lower data.heldout_per_class")
        held[members[-per_class:]] = True
    return held


def whole_dataset(dataset: str, size: int | None, root: str | None = None, download: bool = False) -> DataConfig:
    """The selection of every image and class of a dataset, split by split (``sempairs eval`` on whole datasets)."""
    return DataConfig(dataset=str(dataset), size=size, root=root, download=download, memory="ram", test_split=None)


def labelled_splits(data: DataConfig) -> tuple[ImageStore, ImageStore]:
    """The memory/training store (``data.split``, ``data.limit_per_class``) and the query/test store
    (``data.test_split``, ``data.test_limit_per_class``) of a selection; both must be labelled."""
    if data.test_split is None:
        raise InputError(f"the selection of {data.dataset} has no query split (data.test_split is null). "
                         "Fix: give a test split (test, or heldout)")
    stores = (load_split(data, data.split, data.limit_per_class), load_split(data, data.test_split, data.test_limit_per_class))
    for store in stores:
        if store.labels is None:
            raise InputError(f"{store.source} ({store.split}) has no labels: an evaluation needs a labelled memory "
                             "and query split. Fix: give a labelled dataset or split")
    return stores


def _others(data: DataConfig) -> list[str]:
    names = load_split(data.model_copy(update={"classes": None}), data.split, 1).class_names
    return [c for c in names if c not in data.classes]


def leaves_classes_out(data: DataConfig) -> bool:
    """Whether ``data`` names a class subset that leaves at least two of the dataset's classes unseen."""
    return data.classes is not None and len(_others(data)) >= 2


def other_classes(data: DataConfig) -> DataConfig:
    """The selection ``data`` with the dataset's classes it does not name (the unseen classes of a class-subset run)."""
    if data.classes is None:
        raise InputError(f"the selection of {data.dataset} has every class (data.classes is null): it has no unseen "
                         "classes. Fix: evaluate a run pretrained on a class subset, or name the classes")
    others = _others(data)
    if len(others) < 2:
        raise InputError(f"{data.dataset} has {len(others)} classes outside data.classes: an unseen-class task needs "
                         "two; leave at least two classes out of data.classes")
    return data.model_copy(update={"classes": others})


def selection_record(data: DataConfig) -> dict:
    """What a result records of its selection (the keys that change which images are used, or how they look)."""
    record = {key: getattr(data, key) for key in RECORDED}
    if data.test_split == HELDOUT:
        record["heldout_per_class"] = data.heldout_per_class
    return record


def selection_key(protocol: str, data: DataConfig, settings: dict) -> str:
    """A short hex key of a protocol, its selection and its settings: results made another way get another key."""
    text = json.dumps({"protocol": protocol, "selection": selection_record(data), "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]
