"""Every file sempairs writes is written atomically: a reader sees the old file or the new one, never half.

The data goes to a hidden temporary file in the target's folder (``.<name>.<host>.<pid>.tmp``),
is flushed to disk (fsync), and is renamed over the target (``os.replace``, atomic on POSIX and
Windows). On any failure (an exception, a full disk) the temporary file is removed and the target
is left as it was. A process killed mid-write leaves its temporary file behind; the next
successful write of the same target on the same host removes it.

An ``OSError`` raised while writing without a file name (``ENOSPC`` from ``write``) is raised
again naming the target, so the message says which file could not be written.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _tmp_name(path: Path, pid: int | str) -> Path:
    return path.with_name(f".{path.name}.{socket.gethostname()}.{pid}.tmp")


def _remove_stale(path: Path) -> None:
    """Remove temporary files of ``path`` left by killed writers on this host."""
    for tmp in path.parent.glob(_tmp_name(path, "*").name):
        pid = tmp.name[: -len(".tmp")].rsplit(".", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # a live process of another user


def _fsync(path: Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return  # some platforms cannot open folders; the rename is still atomic
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write the new ``path`` to; renamed over ``path`` when the block succeeds.

    The block must create the file (e.g. ``shutil.copyfile(src, tmp)``). On any failure the
    temporary file is removed and ``path`` is unchanged.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "a folder is in the way of the file to write", str(path))
    tmp = _tmp_name(path, os.getpid())
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp)) and exc.errno is not None:  # name the file to write
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    _fsync(path.parent, directory=True)
    _remove_stale(path)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode, **kwargs)`` for writing (``"w"`` or ``"wb"``), replacing ``path`` atomically on success."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode 'w' or 'wb', not {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode.replace("w", "x"), **kwargs) as f:
        yield f


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return ``path``."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def snapshot_file(src: str | Path, dst: str | Path) -> Path:
    """Keep the current content of ``src`` as ``dst`` atomically; return ``dst``.

    A hard link where the file system allows one (no second copy on disk: ``src`` is only ever
    replaced by a rename, never written in place, so ``dst`` keeps today's content), else a copy.
    """
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            shutil.copyfile(src, tmp)
    return Path(dst)
