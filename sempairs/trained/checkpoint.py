"""Checkpoint files of a run: where they live, writing and reading them safely.

A sempairs checkpoint holds only tensors and plain values (the model's and optimiser's state
dicts, the epoch, the run config as a mapping, the history), so every read uses
``torch.load(weights_only=True)``: a file whose unpickling would run code or build other Python
objects is refused, never executed. Checkpoints are written atomically (:mod:`sempairs.atomic`).
A file that cannot be read (empty, truncated, not a checkpoint) is named in the error, with the
newest intact ``epoch_NNNN.ckpt`` beside it as the way out.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from sempairs.atomic import write_bytes
from sempairs.errors import SempairsError

LAST = "last.ckpt"
REQUIRED = ("model", "config")


class CheckpointError(SempairsError, ValueError):
    """A checkpoint file that cannot be used; the message names it and the way out."""


class NotACheckpoint(CheckpointError):
    """A readable file of tensors that is not a sempairs checkpoint (no ``model``/``config`` entries)."""


def epoch_checkpoint(run_dir: Path, epoch: int) -> Path:
    """The path of the copy of the checkpoint kept after ``epoch``."""
    return Path(run_dir) / f"epoch_{epoch:04d}.ckpt"


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` with ``torch.save`` atomically (serialised in memory first, so a full disk raises
    an ``OSError`` naming ``path`` and leaves no partial file)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_bytes(path, buffer.getbuffer())


def _load(path: Path, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """``torch.load`` restricted to tensors and plain values; CheckpointError naming ``path`` if it fails."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except OSError:
        raise  # permission denied, a folder, ...: the caller's message names the file
    except Exception as exc:  # torch raises many kinds for a bad file (UnpicklingError, RuntimeError, EOFError, ...)
        unsafe = re.search(r"GLOBAL (\S+)", str(exc)) if "Weights only load failed" in str(exc) else None
        if unsafe:
            raise CheckpointError(
                f"refused to load {path}: it holds Python objects other than tensors and plain values "
                f"({unsafe.group(1)}), which a sempairs checkpoint never does, and loading them could run code. "
                "Fix: use a checkpoint written by sempairs (or a state dict of tensors, with --arch)") from None
        reason = str(exc).splitlines()[0].split(". ")[0][:160] if str(exc) else "no data"
        raise CheckpointError(f"cannot read {path} ({exc.__class__.__name__}: {reason}): "
                              f"it is empty, truncated or not a checkpoint. Fix: {_way_out(path)}") from None


def newest_intact(folder: Path, exclude: Path | None = None) -> Path | None:
    """The newest ``epoch_NNNN.ckpt`` in ``folder`` that reads as a sempairs checkpoint (other than ``exclude``)."""
    for candidate in sorted(Path(folder).glob("epoch_*.ckpt"), reverse=True):
        if exclude is not None and candidate.resolve() == exclude.resolve():
            continue
        try:
            state = torch.load(candidate, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - any unreadable candidate is skipped
            continue
        if isinstance(state, dict) and all(key in state for key in REQUIRED):
            return candidate
    return None


def _way_out(path: Path) -> str:
    intact = newest_intact(path.parent, exclude=path)
    if intact is None:
        return f"no intact epoch_*.ckpt lies beside it: train again under a new run name, or restore {path.name} from a copy"
    if path.name == LAST:
        return f"the newest intact checkpoint is {intact}: to continue from it, copy it over {path} (cp {intact} {path}) and resume"
    return f"the newest intact checkpoint beside it is {intact}: use that one"


def read_checkpoint(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict:
    """The contents of the sempairs checkpoint ``path``, read safely (see the module docstring)."""
    path = Path(path)
    state = _load(path, map_location, mmap)
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise NotACheckpoint(f"{path} is not a sempairs checkpoint (it needs 'model' and 'config' entries)")
    return state


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file ``path`` names: itself, or ``last.ckpt`` of a run directory; FileNotFoundError if missing."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist: give a .ckpt file or a run directory holding {LAST}")
    return path


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning Fabric's checkpoint reading and writing through :func:`save_checkpoint` and :func:`read_checkpoint`."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        """Write ``checkpoint`` to ``path`` atomically."""
        save_checkpoint(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        """Read ``path`` safely onto the CPU unless ``map_location`` says otherwise (``weights_only`` is always True)."""
        return read_checkpoint(path, "cpu" if map_location is None else map_location)
