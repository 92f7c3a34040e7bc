"""One process at a time in a folder: an OS lock that names its holder and dies with it.

A run holds an OS lock (``fcntl.flock``) on ``<run_dir>/run.lock`` from its start to its end, and
writes its pid, host and start time into that file. A second run with the same directory fails
at once, naming the holder. The kernel releases the lock when the holder's process ends in any
way (also ``kill -9``), so a lock is never stale. (On a network file system the lock is as good
as its ``flock`` support: NFSv4, and Lustre mounted with ``flock``, keep it.)
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sempairs.errors import SempairsError

LOCK = "run.lock"


class RunInUse(SempairsError, RuntimeError):
    """Another process is running in the same run directory (its lock is held)."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


@contextmanager
def run_lock(run_dir: Path, take: bool = True, agree: Callable[[str | None], str | None] = lambda problem: problem) -> Iterator[None]:
    """Hold the lock of ``run_dir`` for the block (see the module docstring); RunInUse if another process holds it.

    With several processes only process 0 takes it (``take``); ``agree`` shares its outcome (a
    broadcast from process 0), so that every process raises when it is held elsewhere.
    """
    fd, problem = None, None
    if take:
        import fcntl

        path = Path(run_dir) / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            fd, problem = None, (f"{run_dir} is in use by another sempairs run ({_holder(path)}): wait for it to end, "
                                 "or choose another run name")
        else:
            started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode())
    try:
        problem = agree(problem)
        if problem:
            raise RunInUse(problem)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
