"""The run directory's records, and a resume checked before any of them is written (the run's lock: :mod:`sempairs.runlock`).

Resume: the saved config (read from the checkpoint) must equal the run's config except in keys
that do not change what is computed (:data:`RESUMABLE_CHANGES`), and the pairs the run would
train on must be the pairs it trained on (its ``pairs.csv``). Both are checked before any file
of the run is written, so a refused resume leaves the run as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from sempairs.atomic import write_text
from sempairs.config import RunConfig, flatten
from sempairs.data.store import ImageStore
from sempairs.errors import SempairsError
from sempairs.pairs import PairFileError, PairSet, load_pairs
from sempairs.trained.checkpoint import LAST, read_checkpoint

CONFIG = "config.yaml"
PAIRS = "pairs.csv"
# Keys that may change between a run and its resumption without changing what is computed (name, out_dir: the run
# folder was moved or renamed; train.loggers: where the metrics go;
# train.resume: whether this command resumes).
RESUMABLE_CHANGES = ("train.epochs", "train.checkpoint_every", "train.log_every", "train.loader_workers", "data.memory",
                     "train.loggers", "train.resume", "knn.", "name", "out_dir")


class RunExists(SempairsError, FileExistsError):
    """The run directory already holds a run that was not asked to be resumed."""


class ResumeRefused(SempairsError, ValueError):
    """A resume whose config or pairs differ from the run's own."""


def config_changes(saved: dict, cfg: RunConfig) -> dict[str, tuple]:
    """Keys whose value differs between the ``saved`` config (a mapping) and ``cfg``: key -> (old, new).

    Keys added to the config since the run was saved take their defaults in both, so they are no difference.
    """
    old, new = flatten(RunConfig.model_validate(saved).model_dump(mode="json")), flatten(cfg.model_dump(mode="json"))
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def check_resume(cfg: RunConfig) -> None:
    """Refuse (ResumeRefused) to resume ``cfg``'s run when its checkpoint's config differs in a key that changes the result."""
    last = cfg.run_dir / LAST
    saved = read_checkpoint(last, mmap=True)["config"]
    changed = {k: v for k, v in config_changes(saved, cfg).items() if not k.startswith(RESUMABLE_CHANGES)}
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ResumeRefused(f"cannot resume {last}: the config differs in {detail}; use the run's own "
                            f"{cfg.run_dir / CONFIG} or a new run name")


def check_same_pairs(run_dir: Path, pairs: PairSet, store: ImageStore) -> None:
    """Refuse (ResumeRefused) a resume whose ``pairs`` differ from the run's ``pairs.csv`` (read against ``store``)."""
    path = Path(run_dir) / PAIRS
    if not path.exists():
        return  # a run killed before its first checkpoint may lack it; it is written next
    fix = f"resume with the run's own pair settings (see {Path(run_dir) / CONFIG}), or start a new run name"
    try:
        saved = load_pairs(path, store)
    except PairFileError as exc:
        raise ResumeRefused(f"cannot resume {run_dir}: its {PAIRS} no longer matches the data ({exc.problems[0]}); {fix}") from None
    fields = ("anchor", "positive", "label", "source")
    same = len(saved) == len(pairs) and all(np.array_equal(getattr(saved, f), getattr(pairs, f)) for f in fields)
    if not same:
        raise ResumeRefused(f"cannot resume {run_dir}: the pairs differ from the {len(saved)} pairs it trained on "
                            f"({path}; now {len(pairs)}); {fix}")


def write_records(run_dir: Path, cfg: RunConfig, pairs: PairSet, store: ImageStore) -> None:
    """Write the run's ``config.yaml`` and ``pairs.csv`` (atomically)."""
    write_text(Path(run_dir) / CONFIG, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    pairs.save(Path(run_dir) / PAIRS, store=store)
