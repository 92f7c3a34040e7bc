"""A trained method rebuilt from its checkpoint, and the backbone to evaluate or mine with: from a sempairs
checkpoint, or from a plain torchvision/timm weights file.

A sempairs checkpoint (a ``.ckpt`` file or a run directory holding ``last.ckpt``) brings its own
architecture, image size and normalisation (``data.size``, ``augment.mean``/``augment.std``).

A plain weights file (``torch.save`` or ``.safetensors``) is a state dict (optionally wrapped as
``{"state_dict": ...}`` or ``{"model": ...}``, keys optionally prefixed ``module.``; of a whole SSL model, only the ``backbone.`` keys are read) of

* ``arch="resnet18"`` / ``"resnet50"``: a torchvision ResNet. The classifier (``fc.*``) is
  dropped; a 3x3 ``conv1`` is recognised as the small-image stem (3x3/1 conv, no max-pool).
  Evaluated at 224 px with ImageNet normalisation.
* any other ``arch``: a timm model name (``timm.create_model(arch, pretrained=False,
  num_classes=0)``); the classifier keys are dropped, and the image size and normalisation are
  the model's default data config.

Nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from sempairs.config import RunConfig
from sempairs.methods import METHODS, Method
from sempairs.models import BackboneConfig, build_backbone
from sempairs.trained.checkpoint import CheckpointError, NotACheckpoint, checkpoint_file, read_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_ARCHS = ("resnet18", "resnet50")


def build_method(cfg: RunConfig, device: str | torch.device = "cpu") -> Method:
    """A freshly initialised method (backbone + heads) as the config describes, to run on ``device``."""
    backbone, dim = build_backbone(cfg.backbone, cfg.data.size, device)
    return METHODS[cfg.method.name](backbone, dim, cfg.method)


def load_method(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Method, RunConfig]:
    """The trained method stored in a sempairs checkpoint (file or run directory), with the run's config."""
    state = read_checkpoint(checkpoint_file(path), map_location, mmap=True)
    cfg = RunConfig.model_validate(state["config"])
    method = build_method(cfg)
    method.load_state_dict(state["model"])
    return method, cfg


@dataclass
class LoadedBackbone:
    """A backbone with what evaluating it needs; unpacks as ``module, size, mean, std``.

    ``path`` is the weights file (features are cached by it), ``arch`` the architecture name,
    ``config`` the run config for sempairs checkpoints (None for plain weights files).
    """

    module: nn.Module
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    path: Path
    arch: str
    config: RunConfig | None = None

    def __iter__(self):
        return iter((self.module, self.size, self.mean, self.std))


def load_backbone(path: str | Path, arch: str | None = None) -> LoadedBackbone:
    """The backbone in ``path`` (sempairs checkpoint, or plain weights of ``arch``), on the CPU, in eval mode."""
    path = Path(path)
    if arch is None:
        try:
            method, cfg = load_method(path, map_location="cpu")
        except NotACheckpoint as exc:
            raise NotACheckpoint(f"{exc}. Fix: for a plain torchvision/timm weights file give its architecture "
                                 "(arch=resnet50, --arch resnet50)") from None
        file = checkpoint_file(path)
        loaded = LoadedBackbone(method.backbone, cfg.data.size, tuple(cfg.augment.mean), tuple(cfg.augment.std),
                                file, cfg.backbone.name, cfg)
    else:
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
        loaded = _plain_backbone(path, arch)
    loaded.module.eval()
    return loaded


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure (pickle, zip, safetensors header) means "not a weights file"
        raise CheckpointError(f"{path} is not a readable weights file ({exc.__class__.__name__}: {str(exc)[:200]}). "
                              "Fix: give a sempairs checkpoint, or a state dict saved with torch.save or safetensors") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors. Fix: save one with torch.save(model.state_dict(), path)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):  # an SSL model (lightly, solo-learn): keep its backbone
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return state


def _plain_backbone(path: Path, arch: str) -> LoadedBackbone:
    state = _state_dict(path)
    if arch in TORCHVISION_ARCHS:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        conv1 = state.get("conv1.weight")
        small_stem = conv1 is not None and conv1.shape[-1] == 3
        net, _ = build_backbone(BackboneConfig(name=arch, small_stem=small_stem))
        size, mean, std = 224, IMAGENET_MEAN, IMAGENET_STD
    else:
        import timm  # slow to import; only timm architectures need it

        try:
            net = timm.create_model(arch, pretrained=False, num_classes=0)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: unknown architecture {arch!r} ({exc}). Fix: give resnet18, resnet50 or a timm model name") from None
        head = net.pretrained_cfg.get("classifier") or "head"
        heads = (head,) if isinstance(head, str) else tuple(head)
        state = {k: v for k, v in state.items() if not k.startswith(tuple(f"{h}." for h in heads))}
        data = timm.data.resolve_data_config({}, model=net)
        size, mean, std = data["input_size"][-1], tuple(data["mean"]), tuple(data["std"])
    check_state_dict(path, arch, net.state_dict(), state)
    net.load_state_dict(state)
    return LoadedBackbone(net, size, mean, std, path, arch)


def check_state_dict(path: Path | str, arch: str, expected: Mapping[str, torch.Tensor],
                     state: Mapping[str, torch.Tensor]) -> None:
    """Raise a CheckpointError naming ``path`` when ``state`` does not match ``expected`` key for key and shape."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (needs {tuple(v.shape)})" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if not (missing or unexpected or shapes):
        return

    def few(items):
        return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")

    problems = [f"{label}: {few(items)}" for label, items in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if items]
    raise CheckpointError(f"{path} does not hold {arch} weights ({'; '.join(problems)}). "
                     f"Fix: give the architecture the file was saved from (arch / --arch)")
