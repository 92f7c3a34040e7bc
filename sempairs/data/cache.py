"""On-disk cache of decoded ImageStores, so each source is decoded (and resized) once.

An entry is ``<key>.npy`` (the uint8 images, uncompressed) plus ``<key>.json`` (labels, ids,
class names, the file's size and CRC-32). The key hashes the source's resolved path, size and
modification time, the split, the image size, the resize rule and any selection, so editing the
source makes a new entry. Both files are written atomically (:mod:`sempairs.atomic`), the JSON
last: an entry without its JSON was never finished and is ignored. Images are streamed to the
``.npy`` chunk by chunk as they are decoded (:func:`build`), so a build holds a few chunks in
memory, not the store. Every open checks the file's size and checksum (a full read: ~0.1 s for
CIFAR-10's 150 MB, see docs/benchmarks.md); a damaged entry is reported and rebuilt.

Opening an entry (``memory``, the run's ``data.memory``): ``ram`` reads the images into memory;
``mmap`` maps the ``.npy`` read-only (``np.load(mmap_mode="r")``), so a store larger than RAM
costs only the pages in use; ``auto`` maps a file larger than ``RAM_SHARE`` of the RAM available
now (the training loop may hold a second, channel-first copy of an in-RAM store, and each DDP
process holds its own).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from filelock import FileLock
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sempairs.atomic import atomic_open, write_text
from sempairs.data.memory import available_ram, gib, require_disk, require_ram, store_bytes
from sempairs.data.sources import CHUNK_BYTES, Collect, in_memory
from sempairs.data.store import ImageStore
from sempairs.errors import SempairsWarning

FORMAT_VERSION = 3  # 2: image-folder classes numbered over all splits; 3: a checksum and the file size in the JSON
READ_BLOCK = 16 * 2**20  # bytes read at a time to check a checksum
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


def opens_mapped(num_bytes: int, memory: str) -> bool:
    """Whether a store file of ``num_bytes`` is opened memory-mapped under ``memory`` (one of MEMORY_MODES)."""
    if memory == "auto":
        available = available_ram()
        return available is not None and num_bytes > RAM_SHARE * available
    return memory == "mmap"


def file_checksum(path: Path) -> str:
    """CRC-32 of the whole file at ``path`` (read in blocks), as ``crc32:<hex>``."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            crc = zlib.crc32(block, crc)
    return f"crc32:{crc:08x}"


def _paths(key: str) -> tuple[Path, Path]:
    return stores_dir() / f"{key}.json", stores_dir() / f"{key}.npy"


def load_store(key: str, memory: str = "ram") -> ImageStore | None:
    """The cached store under ``key``, or None when there is none, or it is unreadable or damaged (with a warning:
    the caller rebuilds it).

    ``memory``: ``ram``, ``mmap`` or ``auto``, how the images are opened (see the module docstring).
    """
    if memory not in MEMORY_MODES:
        raise ValueError(f"data.memory must be one of {', '.join(MEMORY_MODES)}, got {memory!r}")
    meta_path, images_path = _paths(key)
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {meta.get('format')}, this version writes {FORMAT_VERSION}")
        size = images_path.stat().st_size
        if size != meta["file_bytes"]:
            raise ValueError(f"{images_path} has {size} bytes, its JSON says {meta['file_bytes']}")
        checksum = file_checksum(images_path)
        if checksum != meta["checksum"]:
            raise ValueError(f"{images_path} has checksum {checksum}, its JSON says {meta['checksum']}")
        return _open(meta, images_path, memory)
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"ignoring damaged cache entry {meta_path} ({exc}); it is rebuilt", SempairsWarning, stacklevel=2)
        return None


def _open(meta: dict, images_path: Path, memory: str) -> ImageStore:
    mapped = opens_mapped(images_path.stat().st_size, memory)
    images = np.load(images_path, mmap_mode="r" if mapped else None, allow_pickle=False)
    if list(images.shape) != meta["shape"]:
        raise ValueError(f"{images_path} holds {images.shape}, its JSON says {meta['shape']}")
    labels = None if meta["labels"] is None else np.asarray(meta["labels"], dtype=np.int64)
    return ImageStore(images=images, labels=labels, class_names=meta["class_names"], ids=meta["ids"],
                      source=meta["source"], split=meta["split"])


class _Entry:
    """One cache entry being written: :meth:`collect` streams the images into its ``.npy`` (see
    :func:`sempairs.data.sources.decode_all`), :meth:`finish` writes its JSON, last."""

    def __init__(self, key: str, memory: str):
        self.key, self.memory = key, memory
        self.meta_path, self.images_path = _paths(key)
        self.checksum: str | None = None

    def collect(self, shape: tuple, chunks: Iterable[np.ndarray], where: str, verb: str = "decoding") -> np.ndarray:
        """Write ``chunks`` (uint8, together ``shape``) to the entry's ``.npy`` with a progress bar; return it mapped."""
        shape = tuple(int(n) for n in shape)
        require_disk(shape, self.images_path.parent, where)
        if not opens_mapped(store_bytes(shape), self.memory):
            require_ram(shape, where, "read it memory-mapped (data.memory=mmap or auto in a run config, memory='mmap' "
                        "in Python), or lower the image size (data.size)")
        self.meta_path.unlink(missing_ok=True)  # a damaged entry being rebuilt is no entry meanwhile
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        console.print(f"{verb} {shape[0]} images of {where} into the cache ({shape[2]}x{shape[1]} px, "
                      f"{gib(store_bytes(shape))}): {self.images_path}")
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
        written = 0
        with atomic_open(self.images_path, "wb") as f, Progress(
            TextColumn(verb), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        ) as bar:
            task = bar.add_task("decode", total=shape[0])
            f.write(header.getvalue())
            crc = zlib.crc32(header.getvalue())
            for part in chunks:
                data = np.ascontiguousarray(part, dtype=np.uint8)
                if data.shape[1:] != shape[1:] or written + len(data) > shape[0]:
                    raise ValueError(f"a chunk of shape {data.shape} does not fit the store {shape} after {written} images")
                f.write(memoryview(data).cast("B"))
                crc = zlib.crc32(memoryview(data).cast("B"), crc)
                written += len(data)
                bar.update(task, completed=written)
            if written != shape[0]:
                raise ValueError(f"{written} images decoded for a store of {shape[0]}")
        self.checksum = f"crc32:{crc:08x}"
        return np.load(self.images_path, mmap_mode="r", allow_pickle=False)

    def write(self, store: ImageStore) -> None:
        """Write the images of a store read whole (an ``.npz``, a torchvision source), in CHUNK_BYTES blocks."""
        rows = max(1, CHUNK_BYTES // max(1, store_bytes(store.images.shape[1:])))
        blocks = (store.images[i : i + rows] for i in range(0, len(store), rows))
        self.collect(store.images.shape, blocks, store.source, verb="caching")

    def finish(self, store: ImageStore) -> ImageStore:
        """Write the entry's JSON (its images are written); return the store opened as ``memory`` asks."""
        meta = {
            "format": FORMAT_VERSION,
            "source": store.source,
            "split": store.split,
            "shape": list(store.images.shape),
            "file_bytes": self.images_path.stat().st_size,
            "checksum": self.checksum,
            "class_names": list(store.class_names),
            "ids": list(store.ids),
            "labels": None if store.labels is None else store.labels.tolist(),
        }
        write_text(self.meta_path, json.dumps(meta))
        return _open(meta, self.images_path, self.memory)


def save_store(key: str, store: ImageStore) -> None:
    """Cache ``store`` under ``key``; a cache that cannot be written only warns."""
    try:
        stores_dir().mkdir(parents=True, exist_ok=True)
        entry = _Entry(key, "mmap")
        entry.write(store)
        entry.finish(store)
    except OSError as exc:
        _unwritable(exc)


def _unwritable(exc: OSError) -> None:
    warnings.warn(f"could not write the dataset cache in {stores_dir()} ({exc}). Fix: set SEMPAIRS_CACHE to a writable "
                  "folder", SempairsWarning, stacklevel=3)


def build(key: str, memory: str, read: Callable[[Collect], ImageStore]) -> ImageStore:
    """The store under ``key``: read from the cache, or made by ``read(collect)`` into it, opened as ``memory`` asks.

    ``read`` decodes the store, handing its images to ``collect`` (:func:`sempairs.data.sources.decode_all`),
    which streams them to the entry's file; a store read whole (an ``.npz``, a torchvision source) is
    written after. A file lock on the entry (``<cache root>/locks/<key>.lock``) makes every other
    process (other jobs on a shared file system included) wait for the one building it, then read
    it. A cache that cannot be written (a read-only folder, a full disk) only warns, and the store
    is decoded into memory (again, when the disk filled up midway).
    """
    try:
        stores_dir().mkdir(parents=True, exist_ok=True)
        (cache_root() / "locks").mkdir(exist_ok=True)
        lock = FileLock(str(cache_root() / "locks" / f"{key}.lock"))
        lock.acquire()
    except OSError as exc:
        _unwritable(exc)
        return read(in_memory)
    try:
        store = load_store(key, memory)  # built by another process meanwhile
        if store is not None:
            return store
        entry = _Entry(key, memory)
        try:
            store = read(entry.collect)
            if entry.checksum is None:  # read whole, not streamed
                entry.write(store)
            return entry.finish(store)
        except OSError as exc:
            if not _in_cache(exc):
                raise  # the source's error (a permission denied, ...), not the cache's
            _unwritable(exc)
    finally:
        lock.release()
    return read(in_memory)  # decoded again, into memory


def _in_cache(exc: OSError) -> bool:
    """Whether ``exc`` is about a file of the cache's stores folder (a full disk, a read-only folder)."""
    return exc.filename is not None and Path(exc.filename).resolve().parent == stores_dir().resolve()
