"""Datasets by name or by path: finding local copies, downloading, and loading through the cache.

A path (image folder, ``.zip`` of one, ``.npz``, or a torchvision folder such as
``cifar-10-batches-py``) is read by its format. A name (``cifar10``, ``cifar100``, ``stl10``: any
entry of :data:`sempairs.data.datasets.DATASETS`) is looked up in ``root``, then each folder of
``$SEMPAIRS_DATA`` (separated by ``os.pathsep``), then the cache root (``$SEMPAIRS_CACHE`` or
``~/.cache/sempairs``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from sempairs.data import cache, sources
from sempairs.data.datasets import DATASETS, NamedDataset
from sempairs.data.sources import DataError
from sempairs.data.store import ImageStore
from sempairs.errors import SempairsWarning


def _names() -> list[str]:
    """The registered names, sorted (so that no listing depends on the order modules were imported in)."""
    return sorted(DATASETS)


def _spelling(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _dataset_name(name: str) -> str | None:
    """The registered name ``name`` spells (``CIFAR-10`` -> ``cifar10``), or None."""
    return next((known for known in _names() if _spelling(known) == _spelling(name)), None)


def _known(name: str) -> NamedDataset:
    key = _dataset_name(name)
    if key is None:
        raise DataError(f"unknown dataset name {name!r}; the named datasets are: {', '.join(_names())}")
    return DATASETS[key]


def _torchvision_folders() -> dict[str, str]:
    """Name -> folder torchvision keeps it in, for each named dataset that has a torchvision source."""
    return {name: d.torchvision.folder for name, d in sorted(DATASETS.items()) if d.torchvision is not None}


def search_dirs(root: str | Path | None = None) -> list[Path]:
    """Folders searched for named datasets, in order: ``root``, each ``$SEMPAIRS_DATA`` folder, the cache root."""
    dirs = [Path(root).expanduser()] if root else []
    dirs += [Path(d).expanduser() for d in os.environ.get("SEMPAIRS_DATA", "").split(os.pathsep) if d]
    return dirs + [cache.cache_root()]


def find_dataset(name: str, root: str | Path | None = None) -> Path | None:
    """The first local copy of the named dataset in :func:`search_dirs`, or None."""
    dataset = _known(name)
    tv_folder = dataset.torchvision.folder if dataset.torchvision else None
    for folder in search_dirs(root):
        for candidate in dataset.local_names:
            path = folder / candidate
            if candidate == tv_folder:
                if path.is_dir():
                    return path
            elif candidate.endswith((".zip", ".npz")):
                if path.is_file():
                    return path
            elif path.is_dir():
                # a folder called "cifar10" may be a torchvision root rather than an image folder
                return path / tv_folder if tv_folder and (path / tv_folder).is_dir() else path
    return None


def list_datasets(root: str | Path | None = None) -> list[dict]:
    """The named datasets: name, description, num_classes, splits, and found (local path, or None)."""
    rows = []
    for name in _names():
        dataset, found = DATASETS[name], find_dataset(name, root)
        rows.append({"name": name, "description": dataset.description, "num_classes": dataset.num_classes,
                     "splits": list(dataset.splits), "found": str(found) if found else None})
    return rows


def _not_found(dataset: NamedDataset, root: str | Path | None) -> FileNotFoundError:
    looked = "\n".join(f"  {d}" for d in search_dirs(root))
    download = "pass --download (download=True) to fetch it with torchvision, or " if dataset.torchvision else ""
    return FileNotFoundError(
        f"dataset {dataset.name!r} not found locally. Looked for {', '.join(dataset.local_names)} in:\n{looked}\n"
        f"Fix: {download}set SEMPAIRS_DATA to a folder holding one of those (e.g. export SEMPAIRS_DATA=/path/to/data)"
    )


def _resolve(name_or_path: str, download: bool, root: str | Path | None) -> Path:
    """The file or folder to read for ``name_or_path``, downloading a named dataset if asked."""
    path = Path(name_or_path).expanduser()
    if path.is_dir() and _torchvision_name(path) is None:
        # a torchvision root (e.g. ./data holding cifar-10-batches-py) rather than an image folder
        inner = [path / folder for folder in _torchvision_folders().values() if (path / folder).is_dir()]
        if len(inner) > 1:
            raise DataError(f"{path} holds several datasets ({', '.join(p.name for p in inner)}). Fix: give one of them")
        if inner:
            return inner[0]
    if path.exists():
        return path
    name = _dataset_name(name_or_path)
    if name is None:
        raise FileNotFoundError(
            f"{name_or_path!r} is neither an existing file or folder nor a dataset name ({', '.join(_names())}). "
            "Fix: give the path of an image folder, a .zip of one or a .npz, or one of those names"
        )
    found = find_dataset(name, root)
    if found is not None:
        return found
    if not download or DATASETS[name].torchvision is None:  # only a torchvision source can be downloaded
        raise _not_found(DATASETS[name], root)
    return sources.download_torchvision(name, Path(root).expanduser() if root else cache.cache_root())


def _torchvision_name(path: Path) -> str | None:
    """The dataset name when ``path`` is a torchvision folder (``cifar-10-batches-py``, ...), else None."""
    return next((n for n, folder in _torchvision_folders().items() if path.name == folder and path.is_dir()), None)


def _decodes_images(path: Path) -> bool:
    """Whether ``path`` is an image folder or zip, whose reader decodes only the selected images."""
    return _torchvision_name(path) is None and (path.is_dir() or path.suffix.lower() == ".zip")


def _read(path: Path, split: str, size: int | None, resize: str, download: bool, collect: sources.Collect,
          workers: int | None, classes=None, limit_per_class=None) -> ImageStore:
    """Read ``path`` by its format, keeping ``classes`` / ``limit_per_class``; decoded images go to ``collect``."""
    tv_name = _torchvision_name(path)
    if tv_name is not None:
        store = sources.read_torchvision(tv_name, path.parent, split, size, download, resize)
    elif path.is_dir():
        return sources.read_image_folder(path, split, size, classes, limit_per_class, workers, resize, collect)
    elif path.suffix.lower() == ".zip":
        return sources.read_image_zip(path, split, size, classes, limit_per_class, workers, resize, collect)
    elif path.suffix.lower() == ".npz":
        store = sources.read_npz(path, split, size, resize)
    else:
        raise DataError(f"{path}: unsupported dataset file. Fix: give an image folder, a .zip of one, or a .npz")
    return sources.select(store, classes, limit_per_class)


def load_dataset(
    name_or_path: str | os.PathLike,
    split: str = "train",
    size: int | None = None,
    download: bool = False,
    root: str | None = None,
    classes: Sequence[str] | None = None,
    limit_per_class: int | None = None,
    memory: str = "ram",
    resize: str = "squash",
    workers: int | None = None,
) -> ImageStore:
    """One split of a dataset, given by name or path, with images resized to ``size`` (None: native).

    ``classes`` keeps those classes only (labels renumbered in that order); ``limit_per_class``
    keeps the first N images of each class. Results are cached (see :mod:`sempairs.data.cache`),
    so a second call reads one ``.npy`` instead of decoding again; a first call streams the
    decoded images into the cache (``workers`` decoding processes, see
    :func:`sempairs.data.sources.decode_all`), and concurrent calls decode once. ``memory``
    (``ram``, ``mmap``, ``auto``) says whether the cached images are read into memory or
    memory-mapped. ``resize``: ``squash`` or ``short_side_center_crop`` (see
    :func:`sempairs.data.sources.fit`). A selection from a full cached store
    (``classes``/``limit_per_class`` of a torchvision or npz source) is copied into memory.
    """
    if size is not None and size <= 0:
        raise DataError(f"size must be a positive number of pixels or None, got {size}")
    if limit_per_class is not None and limit_per_class <= 0:
        raise DataError(f"limit_per_class must be positive or None, got {limit_per_class}")
    if resize not in sources.RESIZES:
        raise DataError(f"resize must be one of {', '.join(sources.RESIZES)}, got {resize!r}")
    classes = None if classes is None else list(classes)
    path = _resolve(os.fspath(name_or_path), download, root)
    store = _load(path, split, size, resize, download, classes, limit_per_class, memory, workers)
    empty = [name for i, name in enumerate(store.class_names) if store.labels is not None and not (store.labels == i).any()]
    if empty:
        warnings.warn(f"{store.source}: split {split!r} has no images of class(es) {', '.join(map(repr, empty))} "
                      "(labels are numbered by the class names of all splits, so they mean the same class in every split)",
                      SempairsWarning, stacklevel=2)
    return store


def _load(path: Path, split: str, size: int | None, resize: str, download: bool, classes: list[str] | None,
          limit_per_class: int | None, memory: str, workers: int | None) -> ImageStore:
    """One split of the dataset at ``path`` with the selection, from the cache or decoded into it."""
    fingerprint = cache.fingerprint(path)
    full_key = cache.cache_key(fingerprint, split, size, resize=resize)
    selected = classes is not None or limit_per_class is not None
    if selected:
        key = cache.cache_key(fingerprint, split, size, resize=resize, classes=classes, limit_per_class=limit_per_class)
        store = cache.load_store(key, memory)
        if store is not None:
            return store
    store = cache.load_store(full_key, memory)
    if store is not None:
        return sources.select(store, classes, limit_per_class)
    if selected and _decodes_images(path):
        return cache.build(key, memory, lambda collect: _read(path, split, size, resize, download, collect, workers,
                                                              classes, limit_per_class))
    store = cache.build(full_key, memory, lambda collect: _read(path, split, size, resize, download, collect, workers))
    return sources.select(store, classes, limit_per_class)
