"""Peak resident memory of a step of this process (Linux): what the step adds on top of what was resident."""

from __future__ import annotations

from pathlib import Path


def _status(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_growth(action) -> tuple[int, object]:
    """(bytes the peak resident memory rises above the memory resident before ``action()``, its result).

    The peak (VmHWM) is reset first by writing 5 to ``/proc/self/clear_refs``.
    """
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    result = action()
    return _status("VmHWM") - before, result
