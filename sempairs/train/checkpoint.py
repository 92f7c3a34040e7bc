"""Checkpoint files of a run: where they live, and rebuilding a trained method from one."""

from __future__ import annotations

from pathlib import Path

import torch

from sempairs.config import RunConfig
from sempairs.methods import METHODS, Method
from sempairs.models import build_backbone

LAST = "last.ckpt"


def build_method(cfg: RunConfig) -> Method:
    """A freshly initialised method (backbone + heads) as the config describes."""
    backbone, dim = build_backbone(cfg.backbone, cfg.data.size)
    return METHODS[cfg.method.name](backbone, dim, cfg.method)


def epoch_checkpoint(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / f"epoch_{epoch:04d}.ckpt"


def load_method(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Method, RunConfig]:
    """The trained method stored in a sempairs checkpoint, with the run's config."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist: give a .ckpt file or a run directory holding {LAST}")
    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a sempairs checkpoint (it needs 'model' and 'config' entries)")
    cfg = RunConfig.model_validate(state["config"])
    method = build_method(cfg)
    method.load_state_dict(state["model"])
    return method, cfg
