"""What the machine has room for: the RAM available now, and refusing a store that would not fit
before a byte of it is decoded (a one-line error with the estimate and the fix)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sempairs.errors import SempairsError


class NoRoomError(SempairsError, ValueError):
    """A store larger than the memory or disk the machine has; the message gives the estimate and the fix."""


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


def gib(num_bytes: int) -> str:
    """``num_bytes`` in GiB, for messages."""
    return f"{num_bytes / 2**30:.2f} GiB"


def store_bytes(shape: tuple[int, ...]) -> int:
    """Bytes of a uint8 array of ``shape``."""
    total = 1
    for n in shape:
        total *= int(n)
    return total


def require_ram(shape: tuple[int, ...], where: str, fix: str) -> None:
    """Refuse (NoRoomError) to hold uint8 images of ``shape`` in RAM when they exceed the RAM available now."""
    need, have = store_bytes(shape), available_ram()
    if have is not None and need > have:
        raise NoRoomError(f"{where}: {shape[0]} images of {shape[2]}x{shape[1]} px need {gib(need)} of RAM, "
                          f"{gib(have)} is available. Fix: {fix}")


def require_disk(shape: tuple[int, ...], folder: Path, where: str) -> None:
    """Refuse (NoRoomError) to write uint8 images of ``shape`` into ``folder`` when its disk has less room free."""
    need, have = store_bytes(shape), shutil.disk_usage(folder).free
    if need > have:
        raise NoRoomError(f"{where}: {shape[0]} images of {shape[2]}x{shape[1]} px need {gib(need)} of disk in {folder}, "
                          f"{gib(have)} is free. Fix: set SEMPAIRS_CACHE to a folder on a larger disk, or lower the "
                          "image size (data.size)")
