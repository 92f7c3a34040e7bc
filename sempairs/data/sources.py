"""Readers that turn one split of a dataset on disk into an ImageStore.

Formats: an image folder (``<root>/<split>/<class>/<file>``), a zip of one (read in place),
an ``.npz`` of arrays, and the torchvision on-disk layout of a named dataset that has one
(see :mod:`sempairs.data.datasets`).
Every reader resizes once, to ``size`` x ``size`` by ``resize`` (see :func:`fit`; PIL bicubic,
which antialiases when it shrinks), or keeps the native size when ``size`` is None.
"""

from __future__ import annotations

import functools
import io
import multiprocessing
import os
import unicodedata
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

from sempairs.data.datasets import DATASETS, Torchvision
from sempairs.data.memory import require_ram, store_bytes
from sempairs.data.store import ImageStore
from sempairs.errors import SempairsError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
SPLIT_NAMES = frozenset({"train", "test", "val", "valid", "validation", "unlabeled", "unlabelled"})

RESIZES = ("squash", "short_side_center_crop")  # how an image becomes size x size (see fit)

# Below this many images, decoding in the calling process beats starting workers.
_PARALLEL_MIN_IMAGES = 2000
MAX_WORKERS = 4  # decoding processes by default (more rarely pay: reading the source becomes the limit)
CHUNK_BYTES = 16 * 2**20  # decoded bytes per chunk: a build holds a few chunks, not the store


class DataError(SempairsError, ValueError):
    """A dataset on disk that cannot be read as asked; the message names the file and the fix."""


# --------------------------------------------------------------------------- class names


def class_key(name: str) -> str:
    """What a class name reads as: NFC-normalised, without surrounding whitespace (two names with one key print alike)."""
    return unicodedata.normalize("NFC", name).strip()


def check_class_names(names: Sequence[str], where: str) -> None:
    """Refuse class names a pair file, a table or a terminal cannot tell apart or show on one line.

    Every other name is kept exactly as found (spaces, quotes, commas, either Unicode form), and
    the CSV writers quote and escape it. Refused, naming the name and the fix: an empty or
    whitespace-only name, one holding a control character (newline, tab, ...), and two names that
    differ only by Unicode normal form or surrounding whitespace.
    """
    seen: dict[str, str] = {}
    for name in names:
        if not class_key(name):
            raise DataError(f"{where}: class name {name!r} is empty or only whitespace. Fix: rename that class (its folder or class_names entry)")
        control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
        if control is not None:
            raise DataError(f"{where}: class name {name!r} holds the control character {control!r}, which a pair file "
                            "or a terminal line cannot show. Fix: rename that class (its folder or class_names entry) without it")
        other = seen.setdefault(class_key(name), name)
        if other != name:
            raise DataError(f"{where}: class names {other!r} and {name!r} differ only by Unicode normal form or surrounding "
                            "spaces, so they print the same. Fix: rename one of the two classes")


# --------------------------------------------------------------------------- selection


def select_indices(
    labels: np.ndarray | None,
    n: int,
    class_names: Sequence[str],
    classes: Sequence[str] | None,
    limit_per_class: int | None,
    source: str,
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Rows of ``n`` kept by ``classes`` / ``limit_per_class``, with their new labels and class names.

    Rows keep their order; labels are renumbered in the order of ``classes``. With
    ``limit_per_class`` the first N rows of each class are kept (of an unlabelled split, whose
    ``labels`` are None: the first N rows).
    """
    keep = np.arange(n)
    if classes is not None:
        if labels is None:
            raise DataError(f"{source} has no labels, so classes={list(classes)} cannot be selected. Fix: drop the classes option")
        if not classes or len(set(classes)) != len(classes):
            raise DataError(f"classes={list(classes)} must be a non-empty list without repeats")
        unknown = [c for c in classes if c not in class_names]
        if unknown:
            raise DataError(f"{source} has no class {unknown[0]!r}; its classes are: {', '.join(class_names)}")
        old_to_new = np.full(len(class_names), -1, dtype=np.int64)
        old_to_new[[list(class_names).index(c) for c in classes]] = np.arange(len(classes))
        labels = old_to_new[labels]
        keep = np.flatnonzero(labels >= 0)
        class_names = classes
    if limit_per_class is not None:
        if labels is None:
            keep = keep[:limit_per_class]
        else:
            kept = labels[keep]
            rank = np.zeros(len(keep), dtype=np.int64)
            for c in np.unique(kept):
                where = np.flatnonzero(kept == c)
                rank[where] = np.arange(len(where))
            keep = keep[rank < limit_per_class]
    return keep, None if labels is None else labels[keep], list(class_names)


def select(store: ImageStore, classes: Sequence[str] | None = None, limit_per_class: int | None = None) -> ImageStore:
    """The store restricted to ``classes`` (renumbered in that order) and ``limit_per_class``."""
    if classes is None and limit_per_class is None:
        return store
    keep, labels, names = select_indices(store.labels, len(store), store.class_names, classes, limit_per_class, store.source)
    return ImageStore(
        images=store.images[keep],
        labels=labels,
        class_names=names,
        ids=[store.ids[i] for i in keep],
        source=store.source,
        split=store.split,
    )


# --------------------------------------------------------------------------- decoding


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as 8-bit RGB, whatever its mode and bit depth (ValueError for pixels without a defined scale).

    16-bit grey (``I;16*``, and ``I`` within 0..65535, as 16-bit PNG/TIFF open) is scaled by
    255/65535, not clipped; 32-bit float (``F``) is read as 0..1 when its maximum is at most 1, as
    0..255 when at most 255; transparent pixels are composited over black (premultiplied alpha);
    palette, bilevel, CMYK and YCbCr images are converted by Pillow. 16-bit RGB PNGs open as 8-bit
    RGB in Pillow already.
    """
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        values = np.asarray(im).astype(np.float64)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if mode == "F":
            scale = 255.0 if high <= 1 else 1.0 if high <= 255 else None
        else:
            scale = 255.0 / 65535.0 if high <= 65535 else None
        if scale is None or low < 0:
            raise ValueError(f"{mode} pixels range {low:g}..{high:g}, which has no defined 8-bit scale. "
                             "Fix: save the image as 8-bit or 16-bit (PNG, TIFF) or as float in 0..1")
        return _grey_to_rgb(np.round(values * scale).clip(0, 255).astype(np.uint8))
    if mode in ("P", "PA") and (mode == "PA" or "transparency" in im.info):
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("LA", "La", "RGBA", "RGBa"):
        rgba = np.asarray(im.convert("RGBa" if mode.startswith("RGB") else "La"))
        rgb = rgba[..., :3] if mode.startswith("RGB") else np.repeat(rgba[..., :1], 3, axis=-1)
        return Image.fromarray(np.ascontiguousarray(rgb))
    return im.convert("RGB")


def _oriented_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) of ``im`` once turned upright by its EXIF orientation (Pillow reads a PNG whole to find its EXIF)."""
    w, h = im.size
    return (h, w) if im.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8) else (w, h)


class _OtherSize(ValueError):
    """An image whose native size differs from the first image's (found from its header, before decoding)."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__(f"{shape[1]}x{shape[0]} px")
        self.shape = shape


def fit(im: Image.Image, size: int, resize: str = "squash") -> Image.Image:
    """``im`` resized to ``size`` x ``size`` (PIL bicubic, antialiased when shrinking): ``squash`` stretches
    the whole image; ``short_side_center_crop`` scales the short side to ``size`` and keeps the centre square
    (torchvision's ``Resize(size)`` then ``CenterCrop(size)``)."""
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {resize!r}")
    if im.size == (size, size):
        return im
    if resize == "squash":
        return im.resize((size, size), Image.Resampling.BICUBIC)
    w, h = im.size
    scale = size / min(w, h)
    w, h = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = round((w - size) / 2), round((h - size) / 2)
    return im.resize((w, h), Image.Resampling.BICUBIC).crop((left, top, left + size, top + size))


def decode_image(data: bytes, size: int | None, resize: str = "squash", expect: tuple[int, int] | None = None) -> np.ndarray:
    """One encoded image as uint8 (H, W, 3) (see :func:`to_rgb`), turned upright by its EXIF orientation,
    resized to ``size`` x ``size`` by ``resize`` (see :func:`fit`) unless None.

    A JPEG at least twice ``size`` is decoded at a reduced scale (``draft``: 1/2 to 1/8, still at
    least twice ``size``) before the antialiased resize, so a huge photo costs little memory. With
    ``size`` None, an image that cannot be ``expect`` (width, height) in any orientation is refused
    from its header, before decoding.
    """
    with Image.open(io.BytesIO(data)) as im:
        if size is None and expect is not None and sorted(im.size) != sorted(expect):  # its orientation aside
            raise _OtherSize((im.size[1], im.size[0], 3))
        if size is not None and im.format == "JPEG":
            im.draft(None, (2 * size, 2 * size))
        if im.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            im = ImageOps.exif_transpose(im)
        im = to_rgb(im)
        if size is not None:
            im = fit(im, size, resize)
        return np.asarray(im)


def resize_images(images: np.ndarray, size: int | None, resize: str = "squash") -> np.ndarray:
    """uint8 (N, H, W, 3) images resized to ``size`` x ``size`` by ``resize`` (unchanged when already that size or None)."""
    if size is None or images.shape[1:3] == (size, size):
        return images
    require_ram((len(images), size, size, 3), "resizing", "lower the image size (data.size)")
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(fit(Image.fromarray(img), size, resize))
    return out


def _reader(kind: str, path: str) -> Callable[[str], bytes]:
    """A function reading one member (zip) or file (folder) of ``path`` as bytes; a worker keeps it for life."""
    if kind == "zip":
        return zipfile.ZipFile(path).read
    root = Path(path)
    return lambda rel: (root / rel).read_bytes()


def _decode_chunk(read: Callable[[str], bytes], members: Sequence[str], size: int | None, resize: str,
                  shape: tuple[int, int, int], first: str, where: str) -> np.ndarray:
    """Decode ``members`` into one (n, H, W, 3) array, each image of ``shape`` (that of the job's ``first`` image);
    errors name the member and the fix."""
    out = np.empty((len(members),) + shape, dtype=np.uint8)
    for i, member in enumerate(members):
        try:
            img = decode_image(read(member), size, resize, expect=(shape[1], shape[0]))
        except PermissionError:
            raise  # the user's access, not the file: reported as "permission denied" naming the file
        except _OtherSize as exc:
            raise _size_mismatch(where, first, shape, member, exc.shape) from None
        except Exception as exc:  # PIL raises many kinds (OSError, SyntaxError, ValueError, ...)
            raise DataError(
                f"cannot read image {member} in {where}: {exc}. Fix: replace or delete that file, then load again"
            ) from None
        if img.shape != shape:
            raise _size_mismatch(where, first, shape, member, img.shape)
        out[i] = img
    return out


def _size_mismatch(where: str, first: str, first_shape, other: str, other_shape) -> DataError:
    return DataError(
        f"images in {where} differ in size: {other} is {other_shape[1]}x{other_shape[0]} but {first} is "
        f"{first_shape[1]}x{first_shape[0]}, and they are read at their own size. Fix: resize the images to one size, "
        "or read them at one size (data.size in a run config; --size where a command has it; size= in Python)"
    )


def _first_shape(read: Callable[[str], bytes], member: str, size: int | None, where: str) -> tuple[int, int, int]:
    """Shape (H, W, 3) every image of a job gets: ``size`` square, or the native size of ``member`` (from its header)."""
    if size is not None:
        return (size, size, 3)
    try:
        with Image.open(io.BytesIO(read(member))) as im:
            w, h = _oriented_size(im)
    except PermissionError:
        raise
    except Exception as exc:
        raise DataError(f"cannot read image {member} in {where}: {exc}. Fix: replace or delete that file, then load again") from None
    return (h, w, 3)


@functools.lru_cache(maxsize=1)
def _worker_reader(kind: str, path: str) -> Callable[[str], bytes]:
    """The reader of a decoding worker process: opened by its first chunk, kept for the others."""
    return _reader(kind, path)


def _worker_decode(kind: str, path: str, members: Sequence[str], size: int | None, resize: str,
                   shape: tuple[int, int, int], first: str) -> np.ndarray:
    return _decode_chunk(_worker_reader(kind, path), members, size, resize, shape, first, path)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(n: int) -> int:
    """Decoding processes for ``n`` images: none below _PARALLEL_MIN_IMAGES, else one per CPU, at most MAX_WORKERS."""
    return min(_cpu_count(), MAX_WORKERS) if n >= _PARALLEL_MIN_IMAGES else 1


def in_memory(shape: tuple[int, ...], chunks: Iterable[np.ndarray], where: str) -> np.ndarray:
    """Collect decoded ``chunks`` into one array of ``shape`` in RAM (refused up front when RAM is short)."""
    require_ram(shape, where, "lower the image size (data.size), or read it through the cache with data.memory=mmap")
    out = np.empty(shape, dtype=np.uint8)
    start = 0
    for part in chunks:
        out[start : start + len(part)] = part
        start += len(part)
    return out


Collect = Callable[[tuple, Iterable[np.ndarray], str], np.ndarray]


def decode_all(
    kind: str,
    path: str,
    members: Sequence[str],
    size: int | None,
    workers: int | None = None,
    read: Callable[[str], bytes] | None = None,
    resize: str = "squash",
    collect: Collect = in_memory,
) -> np.ndarray:
    """Decode ``members`` of a zip (``kind="zip"``) or folder (``"dir"``) into uint8 (N, H, W, 3).

    The images are decoded in chunks of at most CHUNK_BYTES, in order, and handed to
    ``collect(shape, chunks, where)``, which returns the array (:func:`in_memory` by default; the cache
    streams them to disk, so memory holds a few chunks, not the store). ``workers`` processes
    (default :func:`default_workers`) decode chunks in parallel, at most two each in flight; each opens the
    source once. ``read`` (e.g. the ``read`` of an already open ZipFile) serves this process.
    """
    read = read or _reader(kind, path)
    workers = max(1, min(default_workers(len(members)) if workers is None else workers, len(members)))
    shape = (len(members),) + _first_shape(read, members[0], size, path) if members else (0, size or 0, size or 0, 3)
    per_chunk = max(1, min(max(64, -(-len(members) // (workers * 4))), CHUNK_BYTES // store_bytes(shape[1:])))
    chunks = [members[i : i + per_chunk] for i in range(0, len(members), per_chunk)]
    if workers == 1:
        decoded = (_decode_chunk(read, names, size, resize, shape[1:], members[0], path) for names in chunks)
        return collect(shape, decoded, path)
    context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    pool = ProcessPoolExecutor(workers, mp_context=context)
    try:
        return collect(shape, _in_order(pool, kind, path, chunks, size, resize, shape[1:], members[0], 2 * workers), path)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _in_order(pool: ProcessPoolExecutor, kind: str, path: str, chunks: list, size: int | None, resize: str,
              shape: tuple[int, int, int], first: str, window: int) -> Iterator[np.ndarray]:
    """The decoded chunks in order, with at most ``window`` submitted and not yet taken."""
    pending: deque = deque()
    for names in chunks:
        pending.append(pool.submit(_worker_decode, kind, path, names, size, resize, shape, first))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# --------------------------------------------------------------------------- image folders and zips


def _is_image_path(rel: str) -> bool:
    parts = rel.split("/")
    return (
        os.path.splitext(parts[-1])[1].lower() in IMAGE_EXTENSIONS
        and not any(p.startswith(".") for p in parts)
        and parts[0] != "__MACOSX"
    )


def _plan_layout(paths: Sequence[str], split: str, where: str) -> tuple[list[str], np.ndarray | None, list[str]]:
    """Pick the split's images from ``paths`` (relative, '/'-separated): (paths, labels or None, class names).

    Layouts: ``<split>/<class>/<file>``; ``<class>/<file>`` (no split level, only for split
    "train"); images directly under the split folder (or root) make an unlabelled split.
    """
    tops = {p.split("/", 1)[0] for p in paths if "/" in p}
    if split in tops:
        prefix = split + "/"
    elif split == "train" and not tops & SPLIT_NAMES:
        prefix = ""
    else:
        splits = sorted(tops & SPLIT_NAMES)
        found = f"its split folders are: {', '.join(splits)}" if splits else "it has no split folders (read as split 'train')"
        raise DataError(
            f"{where} has no {split!r} split folder; {found}. "
            f"Fix: load one of those splits, or add {split}/<class>/<image> files"
        )
    rel = [p[len(prefix) :] for p in paths if p.startswith(prefix)]
    own = sorted({r.split("/", 1)[0] for r in rel if "/" in r})
    loose = sorted(r for r in rel if "/" not in r)
    if own and loose:
        raise DataError(
            f"{where}: image {prefix}{loose[0]} lies next to the class folders of split {split!r}. "
            "Fix: move it into a class folder or delete it"
        )
    if not rel:
        raise DataError(f"{where}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found for split {split!r}")
    if not own:
        return [prefix + r for r in loose], None, []
    # classes are numbered over all splits, so that a label means the same class in every split
    class_names = sorted({p.split("/")[1] for p in paths if p.count("/") >= 2 and p.split("/", 1)[0] in tops & SPLIT_NAMES}
                         | set(own)) if prefix else own
    check_class_names(class_names, where)
    index = {name: i for i, name in enumerate(class_names)}
    keyed = sorted((index[r.split("/", 1)[0]], r) for r in rel)
    return [prefix + r for _, r in keyed], np.array([c for c, _ in keyed], dtype=np.int64), class_names


def _read_layout(
    kind: str,
    path: Path,
    read: Callable[[str], bytes],
    members: list[str],
    ids: list[str],
    split: str,
    size: int | None,
    classes: Sequence[str] | None,
    limit_per_class: int | None,
    workers: int | None,
    resize: str,
    collect: Collect,
) -> ImageStore:
    member_of = dict(zip(ids, members))
    picked, labels, class_names = _plan_layout(ids, split, str(path))
    if classes is not None or limit_per_class is not None:
        keep, labels, class_names = select_indices(labels, len(picked), class_names, classes, limit_per_class, str(path))
        picked = [picked[i] for i in keep]
    images = decode_all(kind, str(path), [member_of[p] for p in picked], size, workers, read, resize, collect)
    return ImageStore(images=images, labels=labels, class_names=class_names, ids=picked, source=str(path), split=split)


def _raise(error: OSError) -> None:
    raise error


def read_image_folder(
    root: str | Path,
    split: str = "train",
    size: int | None = None,
    classes: Sequence[str] | None = None,
    limit_per_class: int | None = None,
    workers: int | None = None,
    resize: str = "squash",
    collect: Collect = in_memory,
) -> ImageStore:
    """One split of an image folder ``<root>/<split>/<class>/<file>`` (or ``<root>/<class>/<file>`` as "train").

    Classes are sorted alphabetically into label ids; images come class by class in sorted path
    order; ids are paths relative to ``root`` (``train/cat/0001.jpg``). ``workers``, ``resize`` and
    ``collect``: see :func:`decode_all`.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    rels = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):  # an unreadable folder is an error, not skipped
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath).relative_to(root).as_posix()
        rels.extend(f if base == "." else f"{base}/{f}" for f in filenames)
    rels = [r for r in rels if _is_image_path(r)]
    return _read_layout("dir", root, _reader("dir", str(root)), rels, rels, split, size, classes, limit_per_class, workers,
                        resize, collect)


def read_image_zip(
    path: str | Path,
    split: str = "train",
    size: int | None = None,
    classes: Sequence[str] | None = None,
    limit_per_class: int | None = None,
    workers: int | None = None,
    resize: str = "squash",
    collect: Collect = in_memory,
) -> ImageStore:
    """One split of a zip of an image folder, read in place (nothing is unpacked to disk).

    A top folder holding everything (``cifar10/train/cat/0001.jpg``) is stripped from the ids,
    unless it is a split name; otherwise as :func:`read_image_folder`.
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{path} is not a readable zip file ({exc}). Fix: download or copy it again") from None
    with zf:
        members = [i.filename for i in zf.infolist() if not i.is_dir() and _is_image_path(i.filename)]
        ids = members
        tops = {m.split("/", 1)[0] for m in members}
        if len(tops) == 1 and not tops & SPLIT_NAMES and all(m.count("/") >= 2 for m in members):
            ids = [m.split("/", 1)[1] for m in members]
        return _read_layout("zip", path, zf.read, members, ids, split, size, classes, limit_per_class, workers, resize,
                            collect)


# --------------------------------------------------------------------------- arrays


def _check_images(arr: np.ndarray, where: str, key: str) -> np.ndarray:
    if arr.dtype != np.uint8:
        fix = "(x * 255).round().clip(0, 255).astype(np.uint8)" if arr.dtype.kind == "f" else "x.astype(np.uint8)"
        raise DataError(f"{where}: key {key!r} has dtype {arr.dtype}, expected uint8 pixels 0..255. Fix: save {fix}")
    if arr.ndim == 4 and arr.shape[-1] == 3:
        return arr
    if arr.ndim == 4 and arr.shape[1] == 3:
        return np.ascontiguousarray(arr.transpose(0, 2, 3, 1))
    raise DataError(
        f"{where}: key {key!r} has shape {arr.shape}, expected RGB images (N, H, W, 3) or (N, 3, H, W). "
        "Fix: grey images need a channel axis repeated 3 times, e.g. np.repeat(x[..., None], 3, axis=-1)"
    )


def _check_labels(arr: np.ndarray, n: int, where: str, key: str) -> np.ndarray | None:
    if arr.dtype.kind not in "iu" or arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{where}: key {key!r} must hold {n} integer labels (shape ({n},)), got {arr.dtype} {arr.shape}")
    labels = arr.astype(np.int64)
    if len(labels) and (labels < 0).all():
        return None  # the convention for unlabelled data: every label -1
    if (labels < 0).any():
        row = int(np.flatnonzero(labels < 0)[0])
        raise DataError(f"{where}: key {key!r} row {row} is {labels[row]}; labels must be >= 0 (or all -1 for unlabelled data)")
    return labels


def _npz_get(data, key: str, where: str) -> np.ndarray:
    try:
        return data[key]
    except ValueError as exc:  # object arrays need pickle, which is not loaded
        raise DataError(
            f"{where}: key {key!r} cannot be read without pickle ({exc}). "
            "Fix: save it as a plain array, e.g. np.array(names, dtype=str) or an integer/uint8 array"
        ) from None


def read_npz(path: str | Path, split: str = "train", size: int | None = None, resize: str = "squash") -> ImageStore:
    """One split of an ``.npz``: keys ``x_<split>`` / ``y_<split>``, or ``images`` (+ ``labels``) as split "train".

    Images are uint8 (N, H, W, 3) or (N, 3, H, W); optional ``class_names`` (an array of
    strings) name the label ids. Ids are row numbers as strings.
    """
    path = Path(path)
    where = str(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{where} is not a readable .npz file ({exc}). Fix: save it with np.savez") from None
    with data:
        keys = set(data.files)
        if f"x_{split}" in keys:
            image_key, label_key = f"x_{split}", f"y_{split}"
        elif "images" in keys and split == "train":
            image_key, label_key = "images", "labels"
        else:
            hint = (" ('images' holds one unnamed split, read as 'train')" if "images" in keys else "")
            raise DataError(
                f"{where} has no images for split {split!r}{hint}; its keys are {sorted(keys)}. "
                f"Fix: store that split as 'x_{split}' (+ 'y_{split}'), or use split='train' with key 'images'"
            )
        images = _check_images(_npz_get(data, image_key, where), where, image_key)
        labels = _check_labels(_npz_get(data, label_key, where), len(images), where, label_key) if label_key in keys else None
        names = [str(s) for s in _npz_get(data, "class_names", where)] if "class_names" in keys else None
    if names is not None:
        check_class_names(names, where)
    else:
        names = [] if labels is None else [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
    if labels is not None and len(labels) and labels.max() >= len(names):
        row = int(np.argmax(labels))
        raise DataError(f"{where}: key {label_key!r} row {row} is label {labels[row]} but only {len(names)} class_names are given")
    images = resize_images(images, size, resize)
    ids = [str(i) for i in range(len(images))]
    return ImageStore(images=images, labels=labels, class_names=names, ids=ids, source=where, split=split)


def _torchvision(name: str) -> Torchvision:
    """How torchvision keeps the named dataset ``name``; a dataset without a torchvision source is an error."""
    tv = DATASETS[name].torchvision
    if tv is None:
        raise DataError(f"dataset {name!r} has no torchvision source. Fix: copy it into a folder named in SEMPAIRS_DATA")
    return tv


def download_torchvision(name: str, root: str | Path) -> Path:
    """Download the named dataset ``name`` with torchvision into ``root`` (unless already there); returns its folder."""
    import torchvision.datasets as tvd

    tv = _torchvision(name)
    Path(root).mkdir(parents=True, exist_ok=True)
    try:
        getattr(tvd, tv.class_name)(str(root), download=True, **tv.split_args("test"))
    except (OSError, RuntimeError) as exc:
        raise DataError(
            f"downloading {name} into {root} failed ({exc}). Fix: check the network, or copy the dataset "
            "into a folder named in SEMPAIRS_DATA"
        ) from None
    return Path(root) / tv.folder


def read_torchvision(name: str, root: str | Path, split: str = "train", size: int | None = None, download: bool = False,
                     resize: str = "squash") -> ImageStore:
    """One split of the named dataset ``name`` (``cifar10``, ``stl10``, ...) kept by torchvision under ``root``.

    With ``download`` torchvision fetches it into ``root`` first. Ids are row numbers as strings;
    an unlabelled split (STL-10's) has labels None.
    """
    import torchvision.datasets as tvd

    tv, splits = _torchvision(name), DATASETS[name].splits
    where = str(Path(root) / tv.folder)
    if split not in splits:
        raise DataError(f"{name} has no split {split!r}; its splits are: {', '.join(splits)}")
    try:
        ds = getattr(tvd, tv.class_name)(str(root), download=download, **tv.split_args(split))
    except RuntimeError as exc:
        raise DataError(
            f"{where}: torchvision cannot read {name} ({exc}). Fix: delete that folder and load again with "
            "download=True (--download), or copy a complete one there"
        ) from None
    images, labels, class_names = tv.arrays(ds)
    images = resize_images(images, size, resize)
    ids = [str(i) for i in range(len(images))]
    return ImageStore(images=images, labels=labels, class_names=class_names, ids=ids, source=where, split=split)
