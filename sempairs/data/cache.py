"""On-disk cache of decoded ImageStores, so each source is decoded (and resized) once.

An entry is ``<key>.npy`` (the uint8 images, uncompressed) plus ``<key>.json`` (labels, ids,
class names). The key hashes the source's resolved path, size and modification time, the split,
the image size and any selection, so editing the source makes a new entry. Both files are
written atomically (:mod:`sempairs.atomic`), the JSON last: an entry without its JSON was never
finished and is ignored.

Opening an entry (``memory``, the run's ``data.memory``): ``ram`` reads the images into memory;
``mmap`` maps the ``.npy`` read-only (``np.load(mmap_mode="r")``), so a store larger than RAM
costs only the pages in use; ``auto`` maps a file larger than ``RAM_SHARE`` of the RAM available
now (the training loop may hold a second, channel-first copy of an in-RAM store, and each DDP
process holds its own).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from sempairs.atomic import atomic_open, write_text
from sempairs.data.store import ImageStore
from sempairs.errors import SempairsWarning

FORMAT_VERSION = 2  # 2: image-folder classes numbered over all splits; modes and bit depths read by to_rgb
MEMORY_MODES = ("auto", "ram", "mmap")
RAM_SHARE = 0.25  # memory="auto" maps a file larger than this share of the available RAM


def cache_root() -> Path:
    """The sempairs cache folder: ``$SEMPAIRS_CACHE`` if set, else ``~/.cache/sempairs``."""
    env = os.environ.get("SEMPAIRS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sempairs"


def stores_dir() -> Path:
    """Where cached stores live: ``<cache root>/stores``."""
    return cache_root() / "stores"


def fingerprint(path: str | Path) -> list:
    """Resolved path, size and mtime of a file; of a folder, its file count, total size and newest mtime."""
    path = Path(path).resolve()
    st = path.stat()
    if not path.is_dir():
        return [str(path), st.st_size, st.st_mtime_ns]
    count, total, newest = 0, 0, st.st_mtime_ns
    for dirpath, _, filenames in os.walk(path):
        newest = max(newest, os.stat(dirpath).st_mtime_ns)
        for name in filenames:
            fst = os.stat(os.path.join(dirpath, name))
            count, total, newest = count + 1, total + fst.st_size, max(newest, fst.st_mtime_ns)
    return [str(path), count, total, newest]


def cache_key(source_fingerprint: list, split: str, size: int | None, **selection) -> str:
    """Hex key of one store of the source with ``source_fingerprint`` (see :func:`fingerprint`).

    ``selection`` holds any further options that change the store (classes, limits).
    """
    parts = {"format": FORMAT_VERSION, "source": source_fingerprint, "split": split, "size": size, **selection}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def available_ram() -> int | None:
    """Bytes of RAM available now: ``MemAvailable`` of /proc/meminfo (Linux: free memory plus the
    reclaimable page cache), else the free pages by ``os.sysconf``; None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def opens_mapped(num_bytes: int, memory: str) -> bool:
    """Whether a store file of ``num_bytes`` is opened memory-mapped under ``memory`` (one of MEMORY_MODES)."""
    if memory == "auto":
        available = available_ram()
        return available is not None and num_bytes > RAM_SHARE * available
    return memory == "mmap"


def load_store(key: str, memory: str = "ram") -> ImageStore | None:
    """The cached store under ``key``, or None when there is none (or it is unreadable).

    ``memory``: ``ram``, ``mmap`` or ``auto``, how the images are opened (see the module docstring).
    """
    if memory not in MEMORY_MODES:
        raise ValueError(f"data.memory must be one of {', '.join(MEMORY_MODES)}, got {memory!r}")
    meta_path, images_path = stores_dir() / f"{key}.json", stores_dir() / f"{key}.npy"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        mapped = opens_mapped(images_path.stat().st_size, memory)
        images = np.load(images_path, mmap_mode="r" if mapped else None, allow_pickle=False)
        if list(images.shape) != meta["shape"]:
            raise ValueError(f"{images_path} holds {images.shape}, its JSON says {meta['shape']}")
        labels = None if meta["labels"] is None else np.asarray(meta["labels"], dtype=np.int64)
        return ImageStore(images=images, labels=labels, class_names=meta["class_names"], ids=meta["ids"],
                          source=meta["source"], split=meta["split"])
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"ignoring unreadable cache entry {meta_path} ({exc}); it will be rebuilt", SempairsWarning, stacklevel=2)
        return None


def save_store(key: str, store: ImageStore) -> None:
    """Cache ``store`` under ``key``; a cache that cannot be written only warns."""
    folder = stores_dir()
    meta = {
        "format": FORMAT_VERSION,
        "source": store.source,
        "split": store.split,
        "shape": list(store.images.shape),
        "class_names": list(store.class_names),
        "ids": list(store.ids),
        "labels": None if store.labels is None else store.labels.tolist(),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(folder / f"{key}.npy", "wb") as f:
            np.save(f, np.ascontiguousarray(store.images))
        write_text(folder / f"{key}.json", json.dumps(meta))
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache in {folder} ({exc}). Fix: set SEMPAIRS_CACHE to a writable folder",
                      SempairsWarning, stacklevel=2)
