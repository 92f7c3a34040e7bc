"""Pieces shared by the command groups: consoles, error reporting, dataset loading, common options.

Errors: a command lets the project's own errors (:class:`sempairs.errors.SempairsError`) and the
OS errors users meet (permission denied, disk full, a folder or a missing file where a file is
needed, and those in :data:`OS_FIXES`: a read-only file system, a name too long, ...) rise;
:class:`ErrorReportingGroup` prints each as one line naming the file and the fix and exits
with status 2 (a preempted training run: 75, its ``exit_status``). Any other exception is a bug and keeps its traceback (a ValueError, and a
UnicodeDecodeError too: code that reads a user's text file turns a bad one into its own error,
naming the file). Messages are never hard-wrapped (``soft_wrap``), so they read and grep the same
at any terminal width.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from sempairs.errors import InputError, SempairsError, SempairsWarning

console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)

FULL_DISK = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
# Other OS errors a user can fix, by errno: what to do. Any other OSError keeps its traceback.
OS_FIXES = {
    errno.EROFS: "write elsewhere (--out ..., out_dir=..., SEMPAIRS_CACHE=...), or mount the file system writable",
    errno.ENAMETOOLONG: "choose a shorter file name or path",
    errno.ELOOP: "a symbolic link on the path points back to itself: correct the link",
    errno.EEXIST: "a file (or a broken link) stands where a folder is needed: move it, or choose another path",
    errno.EFBIG: "the file is larger than this file system allows: write to another one",
    errno.EMFILE: "raise the limit on open files (ulimit -n) or lower train.loader_workers",
    errno.ENFILE: "the system has too many open files: retry when other programs have closed theirs",
    errno.EIO: "the device reported an input/output error (a failing disk, a lost network mount): check it, or use another path",
}


def fail(message: str, status: int = 2) -> None:
    """Print ``message`` as an error and exit with ``status``."""
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(status)


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix (see the module docstring), or None for a bug."""
    if isinstance(exc, SempairsError):
        return str(exc)
    name = getattr(exc, "filename", None)
    if isinstance(exc, PermissionError):
        return f"permission denied: {name}. Fix: give your user access to it (chmod / chown), or use another path"
    if isinstance(exc, OSError) and exc.errno in FULL_DISK:
        return (f"no space left on the device while writing {name} (no partial file was kept). Fix: free some space, "
                "or write elsewhere (out_dir=..., --out ..., SEMPAIRS_CACHE=...)")
    if isinstance(exc, IsADirectoryError):
        return f"{name} is a folder, where a file is needed. Fix: give the path of the file"
    if isinstance(exc, NotADirectoryError):
        return f"{name}: a part of this path is a file, where a folder is needed. Fix: correct the path"
    if isinstance(exc, FileNotFoundError):
        return str(exc) if name is None else f"{name} does not exist. Fix: correct the path"
    if isinstance(exc, OSError) and exc.errno in OS_FIXES:
        return f"{(exc.strerror or 'error').lower()}: {name}. Fix: {OS_FIXES[exc.errno]}"
    return None


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning) -> None:
    if issubclass(category, SempairsWarning):
        error_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False)
    else:
        _default(message, category, filename, lineno, file, line)


class ErrorReportingGroup(TyperGroup):
    """The command group of ``sempairs``: user errors as one line (exit 2), SempairsWarnings as one line."""

    def invoke(self, ctx):
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except Exception as exc:
                message = user_message(exc)
                if message is None:
                    raise
                fail(message, getattr(exc, "exit_status", 2))  # a preempted run: PREEMPTED_STATUS


def _overwrites(out: Path, item: Path) -> str | None:
    """How writing ``out`` would write over ``item``: it is ``item``, the same file by another name (a symbolic or hard
    link), or lies in ``item`` (a folder); None if it would not."""
    real_out, real_item = Path(os.path.realpath(out)), Path(os.path.realpath(item))  # (a link loop fails later, as ELOOP)
    if real_out == real_item and out.absolute() == item.absolute():
        return "is an input of this command"
    if real_out == real_item or out.exists() and item.exists() and os.path.samefile(out, item):
        return f"is the same file as {item}, an input of this command"
    if item.is_dir() and real_out.is_relative_to(real_item):
        return f"is inside {item}, an input folder of this command"
    return None


def check_not_input(out: Path, *inputs: str | Path | None) -> None:
    """Refuse (InputError) an ``out`` that is one of the command's ``inputs`` (also by a link) or lies in an input folder."""
    for item in inputs:
        how = None if item is None else _overwrites(Path(out), Path(item))
        if how:
            raise InputError(f"{out} {how}, which it never overwrites (not even with --force). Fix: choose another output path")


def check_output(out: Path | None, *inputs: str | Path | None, force: bool = False) -> None:
    """The rule of every output a command writes: an existing ``out`` is replaced only with ``force`` (``--force``), and
    an ``out`` that is one of the command's ``inputs``, or lies in an input folder, never, even with ``force``
    (InputError naming it and the fix)."""
    if out is None:
        return
    out = Path(out)
    check_not_input(out, *inputs)
    if out.exists() and not force:
        raise InputError(f"{out} exists. Fix: pass --force to replace it, or choose another output path")


ForceOpt = typer.Option(False, "--force", help="Replace the output if it exists (never one of the command's inputs).")


def load(dataset: str, split: str, root: Optional[str], download: bool, size: Optional[int] = None):
    """A dataset split (errors rise to :class:`ErrorReportingGroup`)."""
    from sempairs.data.registry import load_dataset

    return load_dataset(dataset, split=split, size=size, download=download, root=root)


DatasetArg = typer.Argument(..., help="cifar10 | cifar100 | stl10 | image folder | zip of one | .npz")
SplitOpt = typer.Option("train", help="Split of the dataset the pairs index.")
RootOpt = typer.Option(None, help="Folder holding (or to receive) the dataset.")
DownloadOpt = typer.Option(False, "--download", help="Download torchvision datasets if not found locally.")
